//! Warm fits (executable reused): 3-parameter exponential decay at 1,000, 100,000 and
//! 1,000,000 points with LM and TRF. The first call compiles; criterion times later calls.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;

fn data(m: usize) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..m).map(|i| 5.0 * i as f64 / (m - 1) as f64).collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, &x)| 2.5 * (-1.3 * x).exp() + 0.5 + 0.05 * (((i as f64) * 12.9898).sin() * 43758.5453).fract())
        .collect();
    (x, y)
}

fn model(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

fn warm_fits(c: &mut Criterion) {
    let client = nlsq::runtime::client().expect("runtime");
    println!("device: {}", client.default_device().expect("device"));
    let mut g = c.benchmark_group("warm_fit_exp3");
    g.sample_size(20);
    let sizes: Vec<usize> = std::env::var("NLSQ_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000]);
    for &m in &sizes {
        let (x, y) = data(m);
        for method in [Method::Lm, Method::Trf] {
            let opts = FitOptions::default().with_method(method);
            let first = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).expect("fit");
            println!(
                "m={m} {method}: nfev {} njev {} nit {} compile {:?} status {}",
                first.result.nfev, first.result.njev, first.result.nit, first.result.timings.compile, first.result.status
            );
            g.bench_with_input(BenchmarkId::new(method.to_string(), m), &m, |b, _| {
                b.iter(|| curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).expect("fit").popt)
            });
        }
    }
    g.finish();
}

criterion_group!(benches, warm_fits);
criterion_main!(benches);
