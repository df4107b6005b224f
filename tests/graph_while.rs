//! `while_loop` traced from closures, run through XLA on the CPU plugin: Newton's iteration
//! for sqrt, nested loops with captures at every level, loops inside private functions and
//! function calls inside loops. Checked against closed forms.

use nlsq::graph::{Graph, Params, Program, Tensor, TensorType};
use nlsq::DType;

/// Compiles `program`, feeds f64 inputs and reads every output back as f64.
fn run(program: &Program, inputs: &[&[f64]]) -> Vec<Vec<f64>> {
    let client = nlsq::runtime::client().expect("PJRT client");
    let exe = client
        .compile(&program.text)
        .unwrap_or_else(|e| panic!("{e}\n{}", program.text));
    let bufs: Vec<_> = program
        .inputs
        .iter()
        .zip(inputs)
        .map(|((_, ty), data)| client.buffer_from_host::<f64>(data, ty.dims()).expect("upload"))
        .collect();
    let refs: Vec<_> = bufs.iter().collect();
    let outs = exe.execute(&refs).expect("execute");
    outs.iter()
        .zip(&program.outputs)
        .map(|(b, ty)| match ty.dtype {
            DType::F64 => b.to_vec::<f64>().unwrap(),
            DType::I64 => b.to_vec::<i64>().unwrap().into_iter().map(|v| v as f64).collect(),
            DType::Bool => b
                .to_vec::<bool>()
                .unwrap()
                .into_iter()
                .map(|v| v as u8 as f64)
                .collect(),
            other => panic!("unexpected output dtype {other}"),
        })
        .collect()
}

#[test]
fn newton_sqrt_converges_to_closed_form() {
    let g = Graph::new();
    let a = g.parameter("a", DType::F64, [5]);
    let out = g.while_loop(
        &[g.ones(DType::F64, [5]), g.scalar(DType::I64, 0.0)],
        |s| {
            // Until the relative residual is at rounding level (or 100 steps).
            let resid = ((&s[0] * &s[0] - &a) / &a).abs().reduce_max(&[0]);
            s[1].lt(100.0).and(&resid.gt(1e-15))
        },
        |s| vec![(&s[0] + &a / &s[0]) * 0.5, &s[1] + 1.0],
    );
    let program = g.finish([&out[0], &out[1]]).unwrap();
    let data = [2.0, 9.0, 1e-6, 12345.678, 0.5];
    let r = run(&program, &[&data]);
    for (y, x) in r[0].iter().zip(data) {
        assert!((y - x.sqrt()).abs() <= 2.0 * f64::EPSILON * x.sqrt(), "sqrt({x}) = {y}");
    }
    assert!(r[1][0] > 3.0 && r[1][0] < 100.0, "iterations {}", r[1][0]);
}

#[test]
fn nested_loops_capture_outer_state_and_inputs() {
    // total = x * sum_{i < n} sum_{j < i} (j + i) computed by two nested loops; the inner
    // body captures `x` (an input) and `i` (outer loop state).
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, []);
    let n = 7;
    let zero_i = g.scalar(DType::I64, 0.0);
    let out = g.while_loop(
        &[zero_i.clone(), g.constant(0.0)],
        |s| s[0].lt(n as f64),
        |s| {
            let i = &s[0];
            let inner = g.while_loop(
                &[zero_i.clone(), s[1].clone()],
                |t| t[0].lt(i),
                |t| {
                    let term = (&t[0] + i).convert(DType::F64) * &x;
                    vec![&t[0] + 1.0, &t[1] + term]
                },
            );
            vec![i + 1.0, inner[1].clone()]
        },
    );
    let program = g.finish([&out[1]]).unwrap();
    let mut want = 0.0;
    for i in 0..n {
        for j in 0..i {
            want += (j + i) as f64;
        }
    }
    let r = run(&program, &[&[1.5]]);
    assert_eq!(r[0][0], 1.5 * want);
}

#[test]
fn loops_in_functions_and_calls_in_loops() {
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, [4]);
    let p = g.parameter("p", DType::F64, [2]);
    // A function whose body holds a loop: p[0]^k by repeated multiplication, k = 5.
    let power = g
        .function("power5", &[("v", TensorType::new(DType::F64, [4]))], |a| {
            let out = g.while_loop(
                &[g.ones(DType::F64, [4]), g.scalar(DType::I64, 0.0)],
                |s| s[1].lt(5.0),
                |s| vec![&s[0] * &a[0], &s[1] + 1.0],
            );
            vec![out[0].clone()]
        })
        .unwrap();
    let model = |x: &Tensor, p: &Params| &p[0] * x + &p[1];
    let line = g
        .model_jac_function("line", &model, TensorType::new(DType::F64, [4]), 2)
        .unwrap();
    // A loop whose body calls the model and accumulates f and J three times.
    let acc = g.while_loop(
        &[
            g.zeros(DType::F64, [4]),
            g.zeros(DType::F64, [4, 2]),
            g.scalar(DType::I64, 0.0),
        ],
        |s| s[2].lt(3.0),
        |s| {
            let fj = line.call(&[&x, &p]);
            vec![&s[0] + &fj[0], &s[1] + &fj[1], &s[2] + 1.0]
        },
    );
    let pw = power.call(&[&x]);
    let program = g.finish([&pw[0], &acc[0], &acc[1]]).unwrap();
    assert!(program.text.contains("func.func private @power5"));
    assert!(program.text.contains("func.func private @line"));
    let xs = [1.0, -2.0, 0.5, 3.0];
    let r = run(&program, &[&xs, &[2.0, -1.0]]);
    for i in 0..4 {
        assert_eq!(r[0][i], xs[i].powi(5));
        assert_eq!(r[1][i], 3.0 * (2.0 * xs[i] - 1.0));
        assert_eq!(r[2][2 * i], 3.0 * xs[i]);
        assert_eq!(r[2][2 * i + 1], 3.0);
    }
}

#[test]
fn gauss_newton_with_jacobian_inside_the_loop_body() {
    // Fit y = a * exp(-k x) with Gauss-Newton; the body differentiates the model inline and
    // captures the data (x, y) from the enclosing graph. Exact data: converges to (a, k).
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, [20]);
    let y = g.parameter("y", DType::F64, [20]);
    let p0 = g.parameter("p0", DType::F64, [2]);
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp();
    let out = g.while_loop(
        &[p0.clone(), g.scalar(DType::I64, 0.0)],
        |s| s[1].lt(30.0),
        |s| {
            let (f, jac) = nlsq::graph::jacfwd_model(&model, &x, &s[0]).unwrap();
            let r = &f - &y;
            let jtj = jac.t().dot(&jac); // [2, 2]
            let jtr = jac.t().dot(&r); // [2]
            let (a, b, c, d) = (jtj.at(0).at(0), jtj.at(0).at(1), jtj.at(1).at(0), jtj.at(1).at(1));
            let det = &a * &d - &b * &c;
            let (g0, g1) = (jtr.get(0), jtr.get(1));
            let step = g.concat(
                &[
                    ((&d * &g0 - &b * &g1) / &det).reshape([1]),
                    ((&a * &g1 - &c * &g0) / &det).reshape([1]),
                ],
                0,
            );
            vec![&s[0] - step, &s[1] + 1.0]
        },
    );
    let program = g.finish([&out[0]]).unwrap();
    let xs: Vec<f64> = (0..20).map(|i| i as f64 * 0.25).collect();
    let ys: Vec<f64> = xs.iter().map(|x| 2.5 * (-0.7 * x).exp()).collect();
    let r = run(&program, &[&xs, &ys, &[2.0, 0.5]]);
    assert!(
        (r[0][0] - 2.5).abs() < 1e-12 && (r[0][1] - 0.7).abs() < 1e-12,
        "{:?}",
        r[0]
    );
}
