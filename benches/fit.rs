//! Warm fits (the executable is reused; the first call of each shape compiles or loads it from
//! disk and is not timed):
//!
//! - `warm_fit_exp3`: 3-parameter exponential decay at 1,000, 100,000 and 1,000,000 points,
//!   `curve_fit` with LM and TRF. `NLSQ_BENCH_SIZES=1000` (a comma-separated list) skips the
//!   big sizes.
//! - `warm_fit_double_gaussian`: two Gaussian peaks + linear background (8 parameters) at
//!   10,000 points, LM unbounded and TRF with bounds.
//! - `multistart`: the 1,000-point decay from p0 = (1, 1, 1), one start and 32 starts
//!   (`FitOptions::starts`), LM; the ratio of the two is the cost of multistart.
//! - `many_fits`: 1,000 datasets of 100 points through one reused `CurveFitter` (one
//!   iteration = all 1,000 fits; criterion's throughput line gives fits per second).
//!
//! Every timed call includes the host-to-device copies and blocks on the results' transfer
//! back to the host. `cargo bench --bench fit -- --warm-up-time 1 --measurement-time 3`.

// mimalloc in place of malloc, as the nlsq binary links it: the timings in docs/performance.md
// were taken with it (the library leaves the allocator to the program).
use libmimalloc_sys as _;

use std::time::Duration;

use criterion::{black_box, BenchmarkId, Criterion, SamplingMode, Throughput};
use ndarray::{Array2, ArrayView1};
use nlsq::fit::batch::{curve_fit_batch, Batch};
use nlsq::fit::{curve_fit, CurveFitter, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;

/// A small deterministic pseudo-random generator (xorshift64*) and Box–Muller normals.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

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

/// `a1 exp(-(x - c1)² / (2 w1²)) + a2 exp(-(x - c2)² / (2 w2²)) + b0 + b1 x`.
fn double_gaussian(x: &Tensor, p: &Params) -> Tensor {
    let peak = |a: &Tensor, c: &Tensor, w: &Tensor| a * (-(x - c).square() / (2.0 * w.square())).exp();
    peak(&p[0], &p[1], &p[2]) + peak(&p[3], &p[4], &p[5]) + &p[6] + &p[7] * x
}

fn double_gaussian_host(x: f64, p: &[f64]) -> f64 {
    let peak = |a: f64, c: f64, w: f64| a * (-(x - c).powi(2) / (2.0 * w * w)).exp();
    peak(p[0], p[1], p[2]) + peak(p[3], p[4], p[5]) + p[6] + p[7] * x
}

fn print_device() {
    let client = nlsq::runtime::client().expect("runtime");
    println!(
        "device: {} ({} {})",
        client.default_device().expect("device"),
        client.platform_name(),
        client.platform_version()
    );
}

fn warm_fits(c: &mut Criterion) {
    let mut g = c.benchmark_group("warm_fit_exp3");
    g.sampling_mode(SamplingMode::Flat);
    let sizes: Vec<usize> = std::env::var("NLSQ_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 100_000, 1_000_000]);
    for &m in &sizes {
        let (x, y) = data(m);
        g.sample_size(if m >= 500_000 { 10 } else { 20 });
        for method in [Method::Lm, Method::Trf] {
            let opts = FitOptions::default().with_method(method);
            let first = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).expect("fit");
            println!(
                "m={m} {method}: nfev {} njev {} nit {} executable {} in {:?}, status {}",
                first.result.nfev,
                first.result.njev,
                first.result.nit,
                first.result.executable,
                first.result.timings.compile,
                first.result.status
            );
            g.bench_with_input(BenchmarkId::new(method.to_string(), m), &m, |b, _| {
                b.iter(|| {
                    curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts)
                        .expect("fit")
                        .popt
                })
            });
        }
    }
    g.finish();
}

fn double_gaussian_fits(c: &mut Criterion) {
    let m = 10_000;
    let truth = [1.0, 3.2, 0.45, 0.6, 6.1, 0.9, 0.2, 0.03];
    let mut rng = Rng(0xD0_0B1E);
    let x: Vec<f64> = (0..m).map(|i| 10.0 * i as f64 / (m - 1) as f64).collect();
    let y: Vec<f64> = x
        .iter()
        .map(|&x| double_gaussian_host(x, &truth) + 0.05 * rng.normal())
        .collect();
    let p0 = [0.8, 3.0, 0.6, 0.8, 6.5, 0.6, 0.0, 0.0];
    let inf = f64::INFINITY;
    let bounded = FitOptions::default().with_bounds(
        vec![0.0, 0.0, 0.05, 0.0, 0.0, 0.05, -inf, -inf],
        vec![inf, 10.0, 5.0, inf, 10.0, 5.0, inf, inf],
    );
    let mut g = c.benchmark_group("warm_fit_double_gaussian");
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    for (name, opts) in [("lm", FitOptions::default()), ("trf_bounded", bounded)] {
        let first = curve_fit(&double_gaussian, &x, &y, Some(&p0), &opts).expect("fit");
        let max_err = first
            .popt
            .iter()
            .zip(&truth)
            .map(|(p, t)| (p - t).abs())
            .fold(0.0, f64::max);
        println!(
            "double gaussian m={m} {name}: nfev {} njev {} executable {} in {:?}, status {}, max |popt - truth| {max_err:.1e}",
            first.result.nfev, first.result.njev, first.result.executable, first.result.timings.compile, first.result.status
        );
        g.bench_with_input(BenchmarkId::new(name, m), &m, |b, _| {
            b.iter(|| curve_fit(&double_gaussian, &x, &y, Some(&p0), &opts).expect("fit").popt)
        });
    }
    g.finish();
}

fn many_fits(c: &mut Criterion) {
    const DATASETS: usize = 1000;
    const M: usize = 100;
    let mut rng = Rng(0x00C0_FFEE_1234_5678);
    let x: Vec<f64> = (0..M).map(|i| 4.0 * i as f64 / (M - 1) as f64).collect();
    let ys: Vec<Vec<f64>> = (0..DATASETS)
        .map(|_| {
            let t = [
                1.0 + 2.0 * rng.uniform(),
                0.5 + 1.5 * rng.uniform(),
                rng.uniform() - 0.5,
            ];
            x.iter()
                .map(|&x| t[0] * (-t[1] * x).exp() + t[2] + 0.02 * rng.normal())
                .collect()
        })
        .collect();
    let p0 = [1.0, 1.0, 0.0];
    let fitter = CurveFitter::builder(model)
        .capacity(M)
        .params(3)
        .build()
        .expect("fitter");
    let (source, load) = fitter.executable_source();
    println!(
        "many_fits: fitter executable {source} in {load:?}, capacity {} rows",
        fitter.capacity()
    );
    let mut g = c.benchmark_group("many_fits");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .throughput(Throughput::Elements(DATASETS as u64));
    g.bench_function(BenchmarkId::new("curve_fitter_lm", format!("{DATASETS}x{M}")), |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for y in &ys {
                sum += fitter.fit(&x, y, Some(&p0)).expect("fit").popt[1];
            }
            black_box(sum)
        })
    });
    g.finish();
}

/// Throughput of independent 1,000-point `curve_fit` calls from one thread and from two (the
/// same 64 fits in all, split between the threads).
fn multistart(c: &mut Criterion) {
    let (x, y) = data(1000);
    let mut g = c.benchmark_group("multistart");
    g.sampling_mode(SamplingMode::Flat).sample_size(20);
    for starts in [1usize, 32] {
        let opts = FitOptions::default().with_starts(starts);
        let first = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).expect("fit");
        if let Some(s) = &first.starts {
            let early = s.stopped_early.iter().filter(|&&e| e).count();
            println!("{starts} starts: {} reached the best, {early} stopped early", s.reached);
        }
        g.bench_function(BenchmarkId::new("exp3_lm_1000", format!("{starts}_starts")), |b| {
            b.iter(|| {
                curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts)
                    .expect("fit")
                    .popt
            })
        });
    }
    g.finish();
}

fn concurrent_fits(c: &mut Criterion) {
    const FITS: usize = 64;
    let (x, y) = data(1000);
    let opts = FitOptions::default();
    let fit = |i: usize| {
        let y: Vec<f64> = y.iter().map(|v| v * (1.0 + 0.01 * i as f64)).collect();
        curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts)
            .expect("fit")
            .popt[1]
    };
    let mut g = c.benchmark_group("concurrent_fits");
    g.sample_size(10).throughput(Throughput::Elements(FITS as u64));
    for threads in [1usize, 2] {
        g.bench_function(BenchmarkId::new("curve_fit_1000", format!("{threads}_threads")), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    let handles: Vec<_> = (0..threads)
                        .map(|t| s.spawn(move || (t..FITS).step_by(threads).map(fit).sum::<f64>()))
                        .collect();
                    black_box(handles.into_iter().map(|h| h.join().unwrap()).sum::<f64>())
                })
            })
        });
    }
    g.finish();
}

/// The global fit of issue 24's target: 1,000 decays `a_d exp(-k x) + c_d` of 100 points with
/// one shared rate (2,001 parameters, the Schur path) against the independent 1,000-curve batch
/// of the same data (3,000 parameters in 1,000 fits).
fn global_fit(c: &mut Criterion) {
    use nlsq::fit::global::{curve_fit_global, Dataset};
    use nlsq::fit::{Parameter, Parameters};
    const CURVES: usize = 1000;
    const M: usize = 100;
    let mut rng = Rng(0x5EED_0000_2024);
    let x: Vec<f64> = (0..M).map(|i| 5.0 * i as f64 / M as f64).collect();
    let mut ys = Array2::<f64>::zeros((CURVES, M));
    for b in 0..CURVES {
        let (a, c0) = (1.0 + 3.0 * rng.uniform(), rng.uniform() - 0.5);
        for (i, xi) in x.iter().enumerate() {
            ys[[b, i]] = a * (-1.3 * xi).exp() + c0 + 0.02 * rng.normal();
        }
    }
    let named = |x: &Tensor, p: &Params| &p["a"] * (-&p["k"] * x).exp() + &p["c"];
    let params = Parameters::new()
        .with(Parameter::new("a", 1.0))
        .with(Parameter::new("k", 1.0))
        .with(Parameter::new("c", 0.0));
    let rows: Vec<Vec<f64>> = ys.rows().into_iter().map(|r| r.to_vec()).collect();
    let data: Vec<Dataset> = rows.iter().map(|y| Dataset::new(&x, y)).collect();
    let opts = FitOptions::default();
    let fit = curve_fit_global(&named, &data, &params, &["k"], &opts).expect("global fit");
    println!(
        "global fit: {} parameters, status {}, nfev {}, k = {:.5} ± {:.5}",
        fit.fit.popt.len(),
        fit.fit.result.status.code(),
        fit.fit.result.nfev,
        fit.fit.popt[0],
        fit.fit.perr[0]
    );
    let p0 = Array2::from_elem((CURVES, 3), 1.0);
    let batch = Batch::shared_x(ArrayView1::from(&x), ys.view(), p0.view());
    let mut g = c.benchmark_group("global_fit");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.bench_function(BenchmarkId::new("decay", format!("{CURVES}x{M}_shared_rate")), |b| {
        b.iter(|| {
            curve_fit_global(&named, &data, &params, &["k"], &opts)
                .expect("global fit")
                .fit
                .popt[0]
        })
    });
    g.bench_function(
        BenchmarkId::new("decay", format!("{CURVES}x{M}_independent_batch")),
        |b| b.iter(|| curve_fit_batch(&model, &batch, &opts).expect("batch").len()),
    );
    g.finish();
}

fn main() {
    print_device();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    warm_fits(&mut c);
    double_gaussian_fits(&mut c);
    many_fits(&mut c);
    multistart(&mut c);
    concurrent_fits(&mut c);
    global_fit(&mut c);
    c.final_summary();
}
