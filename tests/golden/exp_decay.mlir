func.func @main(%x: tensor<4xf64>, %y: tensor<4xf64>, %p0: tensor<3xf64>) -> (tensor<4xf64>, tensor<4x3xf64>, tensor<f64>, tensor<3xf64>) {
  %0:2 = func.call @decay_jac(%x, %p0) : (tensor<4xf64>, tensor<3xf64>) -> (tensor<4xf64>, tensor<4x3xf64>)
  %1 = stablehlo.subtract %0#0, %y : tensor<4xf64>
  %2 = stablehlo.multiply %1, %1 : tensor<4xf64>
  %3 = stablehlo.constant dense<0.0> : tensor<f64>
  %4 = "stablehlo.reduce"(%2, %3) ({
  ^bb0(%arg0: tensor<f64>, %arg1: tensor<f64>):
    %5 = stablehlo.add %arg0, %arg1 : tensor<f64>
    "stablehlo.return"(%5) : (tensor<f64>) -> ()
  }) {dimensions = array<i64: 0>} : (tensor<4xf64>, tensor<f64>) -> tensor<f64>
  %6 = stablehlo.constant dense<0.5> : tensor<f64>
  %7 = stablehlo.multiply %4, %6 : tensor<f64>
  %8 = stablehlo.constant dense<0> : tensor<i32>
  %9:2 = "stablehlo.while"(%p0, %8) ({
  ^bb0(%arg2: tensor<3xf64>, %arg3: tensor<i32>):
    %10 = stablehlo.constant dense<3> : tensor<i32>
    %11 = "stablehlo.compare"(%arg3, %10) {comparison_direction = #stablehlo<comparison_direction LT>} : (tensor<i32>, tensor<i32>) -> tensor<i1>
    "stablehlo.return"(%11) : (tensor<i1>) -> ()
  }, {
  ^bb0(%arg4: tensor<3xf64>, %arg5: tensor<i32>):
    %12 = stablehlo.constant dense<0.5> : tensor<3xf64>
    %13 = stablehlo.multiply %arg4, %12 : tensor<3xf64>
    %14 = stablehlo.constant dense<1> : tensor<i32>
    %15 = stablehlo.add %arg5, %14 : tensor<i32>
    "stablehlo.return"(%13, %15) : (tensor<3xf64>, tensor<i32>) -> ()
  }) : (tensor<3xf64>, tensor<i32>) -> (tensor<3xf64>, tensor<i32>)
  return %1, %0#1, %7, %9#0 : tensor<4xf64>, tensor<4x3xf64>, tensor<f64>, tensor<3xf64>
}
func.func private @decay_jac(%x: tensor<4xf64>, %p: tensor<3xf64>) -> (tensor<4xf64>, tensor<4x3xf64>) {
  %0 = "stablehlo.slice"(%p) {start_indices = array<i64: 0>, limit_indices = array<i64: 1>, strides = array<i64: 1>} : (tensor<3xf64>) -> tensor<1xf64>
  %1 = "stablehlo.reshape"(%0) : (tensor<1xf64>) -> tensor<f64>
  %2 = "stablehlo.slice"(%p) {start_indices = array<i64: 1>, limit_indices = array<i64: 2>, strides = array<i64: 1>} : (tensor<3xf64>) -> tensor<1xf64>
  %3 = "stablehlo.reshape"(%2) : (tensor<1xf64>) -> tensor<f64>
  %4 = "stablehlo.slice"(%p) {start_indices = array<i64: 2>, limit_indices = array<i64: 3>, strides = array<i64: 1>} : (tensor<3xf64>) -> tensor<1xf64>
  %5 = "stablehlo.reshape"(%4) : (tensor<1xf64>) -> tensor<f64>
  %6 = stablehlo.negate %3 : tensor<f64>
  %7 = "stablehlo.broadcast_in_dim"(%6) {broadcast_dimensions = array<i64>} : (tensor<f64>) -> tensor<4xf64>
  %8 = stablehlo.multiply %7, %x : tensor<4xf64>
  %9 = stablehlo.exponential %8 : tensor<4xf64>
  %10 = "stablehlo.broadcast_in_dim"(%1) {broadcast_dimensions = array<i64>} : (tensor<f64>) -> tensor<4xf64>
  %11 = stablehlo.multiply %10, %9 : tensor<4xf64>
  %12 = "stablehlo.broadcast_in_dim"(%5) {broadcast_dimensions = array<i64>} : (tensor<f64>) -> tensor<4xf64>
  %13 = stablehlo.add %11, %12 : tensor<4xf64>
  %14 = stablehlo.constant dense<[1.0, 0.0, 0.0]> : tensor<3xf64>
  %15 = stablehlo.constant dense<[0.0, 1.0, 0.0]> : tensor<3xf64>
  %16 = stablehlo.constant dense<[0.0, 0.0, 1.0]> : tensor<3xf64>
  %17 = stablehlo.negate %15 : tensor<3xf64>
  %18 = "stablehlo.broadcast_in_dim"(%17) {broadcast_dimensions = array<i64: 0>} : (tensor<3xf64>) -> tensor<3x4xf64>
  %19 = "stablehlo.broadcast_in_dim"(%x) {broadcast_dimensions = array<i64: 1>} : (tensor<4xf64>) -> tensor<3x4xf64>
  %20 = stablehlo.multiply %18, %19 : tensor<3x4xf64>
  %21 = "stablehlo.broadcast_in_dim"(%9) {broadcast_dimensions = array<i64: 1>} : (tensor<4xf64>) -> tensor<3x4xf64>
  %22 = stablehlo.multiply %20, %21 : tensor<3x4xf64>
  %23 = "stablehlo.broadcast_in_dim"(%14) {broadcast_dimensions = array<i64: 0>} : (tensor<3xf64>) -> tensor<3x4xf64>
  %24 = stablehlo.multiply %23, %21 : tensor<3x4xf64>
  %25 = "stablehlo.broadcast_in_dim"(%10) {broadcast_dimensions = array<i64: 1>} : (tensor<4xf64>) -> tensor<3x4xf64>
  %26 = stablehlo.multiply %22, %25 : tensor<3x4xf64>
  %27 = stablehlo.add %24, %26 : tensor<3x4xf64>
  %28 = "stablehlo.broadcast_in_dim"(%16) {broadcast_dimensions = array<i64: 0>} : (tensor<3xf64>) -> tensor<3x4xf64>
  %29 = stablehlo.add %27, %28 : tensor<3x4xf64>
  %30 = "stablehlo.transpose"(%29) {permutation = array<i64: 1, 0>} : (tensor<3x4xf64>) -> tensor<4x3xf64>
  return %13, %30 : tensor<4xf64>, tensor<4x3xf64>
}
