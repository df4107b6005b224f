//! Compile, serialize, deserialize and execute of one small program through the safe PJRT API.

// mimalloc in place of malloc, as the nlsq binary links it: the timings in docs/performance.md
// were taken with it (the library leaves the allocator to the program).
use libmimalloc_sys as _;

use criterion::{criterion_group, criterion_main, Criterion};

const PROGRAM: &str = r#"
func.func @main(%a: tensor<1000xf64>) -> (tensor<1000xf64>, tensor<f64>) {
  %zero = stablehlo.constant dense<0> : tensor<i64>
  %one = stablehlo.constant dense<1> : tensor<i64>
  %iters = stablehlo.constant dense<50> : tensor<i64>
  %half = stablehlo.constant dense<0.5> : tensor<1000xf64>
  %r:2 = stablehlo.while(%i = %zero, %x = %a) : tensor<i64>, tensor<1000xf64>
    cond {
      %lt = stablehlo.compare LT, %i, %iters : (tensor<i64>, tensor<i64>) -> tensor<i1>
      stablehlo.return %lt : tensor<i1>
    } do {
      %q = stablehlo.divide %a, %x : tensor<1000xf64>
      %s = stablehlo.add %x, %q : tensor<1000xf64>
      %x2 = stablehlo.multiply %s, %half : tensor<1000xf64>
      %i2 = stablehlo.add %i, %one : tensor<i64>
      stablehlo.return %i2, %x2 : tensor<i64>, tensor<1000xf64>
    }
  %fz = stablehlo.constant dense<0.0> : tensor<f64>
  %sum = stablehlo.reduce(%r#1 init: %fz) applies stablehlo.add across dimensions = [0] : (tensor<1000xf64>, tensor<f64>) -> tensor<f64>
  return %r#1, %sum : tensor<1000xf64>, tensor<f64>
}
"#;

fn pjrt(c: &mut Criterion) {
    let client = nlsq::runtime::client().expect("PJRT runtime");
    println!("device: {}", client.default_device().expect("device"));
    let mut g = c.benchmark_group("pjrt");
    g.sample_size(20);
    g.bench_function("compile", |b| b.iter(|| client.compile(PROGRAM).expect("compile")));
    let exe = client.compile(PROGRAM).expect("compile");
    g.bench_function("serialize", |b| b.iter(|| exe.serialize().expect("serialize")));
    let bytes = exe.serialize().expect("serialize");
    g.bench_function("deserialize", |b| {
        b.iter(|| client.deserialize(&bytes).expect("deserialize"))
    });
    g.sample_size(100);
    let data: Vec<f64> = (1..=1000).map(f64::from).collect();
    g.bench_function("execute_50_iter_while_1000", |b| {
        b.iter(|| {
            let x = client.buffer_from_host(&data, &[1000]).expect("upload");
            let out = exe.execute(&[&x]).expect("execute");
            out[1].to_vec::<f64>().expect("read back")
        })
    });
    g.finish();
}

criterion_group!(benches, pjrt);
criterion_main!(benches);
