//! Throughput of independent fits on one thread and on two: each iteration runs 16 `curve_fit`
//! calls of a 3-parameter exponential decay on 1,000 points (LM, warm: the executable is
//! reused), all on the calling thread, or 8 on each of two threads. Fits lease the least busy
//! device of the client (one CPU device per core on the pinned plugin), so the two-thread line
//! should take about half the time of the one-thread line on two free cores; criterion's
//! throughput lines give fits per second. `cargo bench --bench concurrency`.

// mimalloc in place of malloc, as the nlsq binary links it.
use libmimalloc_sys as _;

use std::time::Duration;

use criterion::{black_box, Criterion, Throughput};
use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;

const FITS: usize = 16;

fn decay(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

/// One dataset per fit: the same decay with a different rate each.
fn datasets() -> Vec<(Vec<f64>, Vec<f64>)> {
    (0..FITS)
        .map(|k| {
            let x: Vec<f64> = (0..1000).map(|i| 5.0 * i as f64 / 999.0).collect();
            let rate = 1.0 + 0.05 * k as f64;
            let y = x
                .iter()
                .enumerate()
                .map(|(i, &x)| 2.5 * (-rate * x).exp() + 0.5 + 0.01 * ((i as f64 * 12.9898).sin() * 43758.5453).fract())
                .collect();
            (x, y)
        })
        .collect()
}

fn fit_all(sets: &[(Vec<f64>, Vec<f64>)], options: &FitOptions) {
    for (x, y) in sets {
        let fit = curve_fit(&decay, x, y, Some(&[1.0, 1.0, 0.0]), options).expect("fit");
        black_box(fit.popt[1]);
    }
}

fn concurrency(c: &mut Criterion) {
    let sets = datasets();
    let options = FitOptions::default().with_method(Method::Lm);
    fit_all(&sets, &options); // compiles (or loads) the one executable
    let mut g = c.benchmark_group("independent_fits_1000_points");
    g.throughput(Throughput::Elements(FITS as u64));
    g.bench_function("one_thread", |b| b.iter(|| fit_all(&sets, &options)));
    g.bench_function("two_threads", |b| {
        b.iter(|| {
            let (a, rest) = sets.split_at(FITS / 2);
            std::thread::scope(|s| {
                s.spawn(|| fit_all(a, &options));
                fit_all(rest, &options);
            });
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    concurrency(&mut c);
    c.final_summary();
}
