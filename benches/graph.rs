//! Graph builder benchmarks: tracing + JVP + emission of a ~100-op model (the per-shape
//! host cost before compiling), and the XLA compile time of that model's residual + Jacobian
//! program through the pinned CPU plugin.
//!
//! `cargo bench --bench graph -- --warm-up-time 1 --measurement-time 3`

// mimalloc in place of malloc, as the nlsq binary links it: the timings in docs/performance.md
// were taken with it (the library leaves the allocator to the program).
use libmimalloc_sys as _;

use criterion::{criterion_group, criterion_main, Criterion};
use nlsq::graph::{jacfwd_model, Graph, Params, Program, Tensor};
use nlsq::DType;

const PEAKS: usize = 4;

/// Four Gaussian peaks on a sloped baseline with a damped oscillation: 3 parameters per peak
/// plus 4, about 100 primal ops once traced.
fn model(x: &Tensor, p: &Params) -> Tensor {
    let mut f = &p[0] + &p[1] * x + (&p[2] * x).sin() * (-(&p[3] * x).abs()).exp();
    for k in 0..PEAKS {
        let (a, c, w) = (&p[4 + 3 * k], &p[5 + 3 * k], &p[6 + 3 * k]);
        let z = (x - c) / w;
        f = f + a * (-(&z * &z) * 0.5).exp() + a.tanh() * z.atan() * 1e-3;
    }
    f
}

fn n_params() -> usize {
    4 + 3 * PEAKS
}

/// Number of graph nodes the model alone traces to (parameters, slices and broadcasts
/// included).
fn primal_nodes(m: i64) -> usize {
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, [m]);
    let p = g.parameter("p", DType::F64, [n_params() as i64]);
    let before = g.num_nodes();
    nlsq::graph::eval_model(&model, &x, &p).unwrap();
    g.num_nodes() - before
}

/// Traces the model on symbolic x [m] and p [n], differentiates it, emits `(f, J)`.
fn build(m: i64) -> Program {
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, [m]);
    let p = g.parameter("p", DType::F64, [n_params() as i64]);
    let (f, jac) = jacfwd_model(&model, &x, &p).unwrap();
    g.finish([&f, &jac]).unwrap()
}

fn bench(c: &mut Criterion) {
    let (program, primal) = (build(1000), primal_nodes(1000));
    eprintln!(
        "model: {primal} primal nodes, {} parameters, program {} lines / {} bytes",
        n_params(),
        program.text.lines().count(),
        program.text.len()
    );
    c.bench_function("trace_jvp_emit_100op_model", |b| b.iter(|| build(1000)));

    let client = nlsq::runtime::client().expect("PJRT client");
    let mut group = c.benchmark_group("xla_compile");
    group.sample_size(10);
    group.bench_function("residual_jacobian_100op_model", |b| {
        b.iter(|| client.compile(&program.text).expect("compile"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
