//! The kernel choices of the solvers' factorizations on XLA:CPU, measured as whole programs.
//!
//! * `triangle_104x4`: the triangle of one unchunked `[J | f]` (104 × 4, the 3-parameter decay)
//!   by the Householder QR and by the guarded Gram + Cholesky route the solvers take for few
//!   parameters (`linalg::gram::factor_residuals`), 2,000 calls in one `while` loop on inputs
//!   that change each step (time per program / 2,000 = time per call).
//! * `chunked_pass_2^20`: one pass over 2²⁰ points in 1,024-row chunks, as one `curve_fit` with
//!   `max_nfev = 1` (residuals and Jacobian at p0 only): a well-conditioned model takes the Gram
//!   pass alone, a model with two nearly dependent columns the Gram pass and then the
//!   Householder TSQR pass.
//!
//! `cargo bench --bench linalg -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Graph, Params, Tensor};
use nlsq::linalg::gram::{augmented_qr, factor_residuals};
use nlsq::solve::Method;
use nlsq::DType;

const CALLS: i64 = 2_000;

fn triangle_program(gram: bool) -> String {
    let (m, n) = (104i64, 3i64);
    let g = Graph::new();
    let j_in = g.parameter("j", DType::F64, [m, n]);
    let f_in = g.parameter("f", DType::F64, [m]);
    let out = g.while_loop(
        &[g.scalar(DType::I64, 0.0), g.constant(0.0)],
        |st| st[0].lt(CALLS as f64),
        |st| {
            // Inputs that change each step, so that nothing is hoisted out of the loop.
            let (j, f) = (&j_in + &st[1] * 1e-300, &f_in + &st[1] * 1e-300);
            let (r, qtf) = if gram {
                factor_residuals(&j, &f)
            } else {
                augmented_qr(&j, &f)
            };
            vec![&st[0] + 1.0, &st[1] + (r.reshape([n * n]).sum() + qtf.sum()) * 1e-300]
        },
    );
    g.finish([&out[1]]).expect("trace").text
}

fn bench(c: &mut Criterion) {
    let client = nlsq::runtime::client().expect("PJRT client");
    let m = 104usize;
    let xs: Vec<f64> = (0..m).map(|i| 5.0 * i as f64 / m as f64).collect();
    let jac: Vec<f64> = xs
        .iter()
        .flat_map(|&x| [(-1.3 * x).exp(), -2.5 * x * (-1.3 * x).exp(), 1.0])
        .collect();
    let f: Vec<f64> = xs.iter().map(|x| (3.0 * x).sin()).collect();
    let j_buf = client.buffer_from_host(&jac, &[m as i64, 3]).expect("upload");
    let f_buf = client.buffer_from_host(&f, &[m as i64]).expect("upload");
    let mut group = c.benchmark_group("triangle_104x4");
    for (name, gram) in [("householder", false), ("gram", true)] {
        let exe = client.compile(&triangle_program(gram)).expect("compile");
        group.bench_function(name, |b| {
            b.iter(|| {
                exe.execute(&[&j_buf, &f_buf]).expect("execute")[0]
                    .to_vec::<f64>()
                    .expect("read")
            })
        });
    }
    group.finish();

    let m = 1usize << 20;
    let x: Vec<f64> = (0..m).map(|i| 5.0 * i as f64 / m as f64).collect();
    let y: Vec<f64> = x.iter().map(|x| 2.5 * (-1.3 * x).exp() + 0.5).collect();
    let well = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    // Columns x and x + 1e-7 sin 5x: cond ≈ 1e8, so the Gram triangle is refused.
    let close = |x: &Tensor, p: &Params| &p[0] * x + &p[1] * (x + (x * 5.0).sin() * 1e-7) + &p[2];
    let opts = FitOptions::default()
        .with_method(Method::Lm)
        .with_chunk_rows(1024)
        .with_max_nfev(1);
    let mut group = c.benchmark_group("chunked_pass_2^20");
    group.sample_size(10);
    group.bench_function("gram", |b| {
        b.iter(|| curve_fit(&well, &x, &y, Some(&[2.0, 1.0, 0.4]), &opts).expect("fit"))
    });
    group.bench_function("gram_then_tsqr", |b| {
        b.iter(|| curve_fit(&close, &x, &y, Some(&[2.0, 1.0, 0.4]), &opts).expect("fit"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
