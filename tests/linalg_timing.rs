//! Compile and execute times of the linear-algebra programs (not a pass/fail test).
//!
//! `cargo test --release --test linalg_timing -- --ignored --nocapture`; add
//! `XLA_FLAGS=--xla_dump_to=DIR` to inspect the kernels XLA made.

mod common;

use std::time::{Duration, Instant};

use common::client;
use nlsq::graph::{Graph, Tensor};
use nlsq::linalg;
use nlsq::DType;

fn time(name: &str, shape: &[i64], build: impl FnOnce(&Tensor) -> Vec<Tensor>) {
    let g = Graph::new();
    let a = g.parameter("a", DType::F64, shape);
    let outs = build(&a);
    let t0 = Instant::now();
    let text = g.finish(outs.iter()).unwrap().text;
    let trace = t0.elapsed();
    let c = client();
    let t0 = Instant::now();
    let exe = c.compile(&text).unwrap();
    let compile = t0.elapsed();
    let n: i64 = shape.iter().product();
    let data: Vec<f64> = (0..n).map(|i| ((i * 7919 % 1000) as f64 / 500.0) - 1.0).collect();
    let buf = c.buffer_from_host(&data, shape).unwrap();
    let mut best = Duration::MAX;
    for _ in 0..20 {
        let t0 = Instant::now();
        let out = exe.execute(&[&buf]).unwrap();
        let _ = out[0].to_vec::<f64>().unwrap();
        best = best.min(t0.elapsed());
    }
    eprintln!(
        "{name:<28} {shape:?}: {} lines, emit {trace:?}, compile {compile:?}, execute (best of 20) {best:?}",
        text.lines().count()
    );
}

#[test]
#[ignore = "timing report, run by hand"]
fn linalg_compile_and_execute_times() {
    let filter = std::env::var("LINALG_TIMING").unwrap_or_default();
    let want = |s: &str| filter.is_empty() || filter.split(',').any(|f| s.starts_with(f));
    for &n in &[4i64, 8, 16, 32, 64] {
        if want("svd") {
            time("jacobi_svd", &[n, n], |a| {
                let (u, s, v) = linalg::jacobi_svd(a);
                vec![u, s, v]
            });
        }
    }
    for &(m, k) in &[
        (1000i64, 4i64),
        (1000, 8),
        (1000, 12),
        (1000, 13),
        (80, 64),
        (100_000, 4),
    ] {
        if want("qr_r") {
            time("householder_qr_r", &[m, k], |a| vec![linalg::householder_qr_r(a)]);
        }
    }
    for &n in &[8i64, 64] {
        if want("tri") {
            time("solve_upper_triangular", &[n, n], |a| {
                vec![linalg::solve_upper_triangular(a, &a.col(0))]
            });
        }
        if want("chol") {
            time("cholesky", &[n, n], |a| vec![linalg::cholesky(&(a.dot(&a.t()) + 1.0))]);
        }
    }
}
