//! Golden test of the emitted StableHLO text for one small model: an exponential decay
//! outlined as `@decay_jac` (residuals and Jacobian) and called from `@main`, plus a reduction
//! and a loop. The text is the compile-cache key, so it must be byte-for-byte stable; it is
//! also what people read when debugging, so review `tests/golden/exp_decay.mlir` when it
//! changes. Refresh with `UPDATE_GOLDEN=1 cargo test --test graph_golden`.

use std::path::PathBuf;

use nlsq::graph::{Graph, Params, Program, Tensor, TensorType};
use nlsq::DType;

fn decay(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

/// `@main(x, y, p0)`: residuals, Jacobian and cost at p0, and a 3-step loop that damps p0.
fn build() -> Program {
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, [4]);
    let y = g.parameter("y", DType::F64, [4]);
    let p0 = g.parameter("p0", DType::F64, [3]);
    let model = g
        .model_jac_function("decay_jac", &decay, TensorType::new(DType::F64, [4]), 3)
        .unwrap();
    let fj = model.call(&[&x, &p0]);
    let resid = &fj[0] - &y;
    let cost = resid.square().sum() * 0.5;
    let damped = g.while_loop(
        &[p0.clone(), g.scalar(DType::I32, 0.0)],
        |s| s[1].lt(3),
        |s| vec![&s[0] * 0.5, &s[1] + 1.0],
    );
    g.finish([&resid, &fj[1], &cost, &damped[0]]).unwrap()
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/exp_decay.mlir")
}

#[test]
fn emitted_text_matches_golden_file() {
    let text = build().text;
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    assert!(
        text == want,
        "emitted text differs from {} (run with UPDATE_GOLDEN=1 to refresh, then review):\n{text}",
        path.display()
    );
}

#[test]
fn emission_is_deterministic_and_deduplicated() {
    assert_eq!(build().text, build().text);
    // Equal subexpressions and constants are built once.
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, [3]);
    let a = (&x * 2.0).exp() + 1.0;
    let b = (&x * 2.0).exp() + 1.0;
    let c = &a * &b;
    let text = g.finish([&c]).unwrap().text;
    assert_eq!(text.matches("stablehlo.exponential").count(), 1, "{text}");
    assert_eq!(text.matches("dense<2.0>").count(), 1, "{text}");
    // Dead code is not emitted.
    let _unused = x.sin();
    assert!(!g.finish([&c]).unwrap().text.contains("stablehlo.sine"));
}

#[test]
fn golden_program_compiles_and_runs() {
    let program = build();
    let client = nlsq::runtime::client().expect("PJRT client");
    let exe = client
        .compile(&program.text)
        .unwrap_or_else(|e| panic!("{e}\n{}", program.text));
    let xs = [0.0, 1.0, 2.0, 3.0];
    let ys = [3.0, 2.0, 1.5, 1.2];
    let p = [2.0, 0.5, 1.0];
    let b = |d: &[f64], dims: &[i64]| client.buffer_from_host(d, dims).unwrap();
    let outs = exe.execute(&[&b(&xs, &[4]), &b(&ys, &[4]), &b(&p, &[3])]).unwrap();
    let r = outs[0].to_vec::<f64>().unwrap();
    let jac = outs[1].to_vec::<f64>().unwrap();
    let cost = outs[2].to_vec::<f64>().unwrap()[0];
    let damped = outs[3].to_vec::<f64>().unwrap();
    let mut want_cost = 0.0;
    for i in 0..4 {
        let e = (-p[1] * xs[i]).exp();
        let f = p[0] * e + p[2];
        assert!((r[i] - (f - ys[i])).abs() < 1e-15);
        assert!((jac[3 * i] - e).abs() < 1e-15);
        assert!((jac[3 * i + 1] - (-p[0] * xs[i] * e)).abs() < 1e-15);
        assert_eq!(jac[3 * i + 2], 1.0);
        want_cost += 0.5 * (f - ys[i]).powi(2);
    }
    assert!((cost - want_cost).abs() < 1e-15);
    assert_eq!(damped, vec![0.25, 0.0625, 0.125]);
}
