//! One reusable `CurveFitter` over 1,000 datasets of 100 points each.
//!
//! Each dataset is an exponential decay `a exp(-k x) + c` with its own true parameters (a in
//! [1, 3], k in [0.5, 2], c in [-0.5, 0.5]) and noise sd 0.02. The fitter traces and compiles
//! (or loads from the disk cache) its program once; each fit is then one execution. The same
//! 1,000 fits through plain `curve_fit` re-trace the model every call (the compiled executable
//! is still reused, found by a fingerprint of the model), which shows what the fitter saves.
//! Run with `cargo run --release --example many_fits`.

// mimalloc in place of malloc, as the nlsq binary links it: the timings in docs/performance.md
// were taken with it (the library leaves the allocator to the program).
use libmimalloc_sys as _;

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use nlsq::fit::{curve_fit, CurveFit, CurveFitter, FitOptions};
use nlsq::graph::{Params, Tensor};

/// A small deterministic pseudo-random generator (xorshift64*) and Box–Muller normals, so the
/// example needs no extra crates and prints the same numbers every run.
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

fn model(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Counts of parameters within 3 standard errors of the truth, and the largest |z|.
fn recovery(fits: &[CurveFit], truths: &[[f64; 3]]) -> (usize, usize, f64) {
    let (mut within, mut total, mut worst) = (0, 0, 0.0f64);
    for (f, t) in fits.iter().zip(truths) {
        for (i, truth) in t.iter().enumerate() {
            let z = ((f.popt[i] - truth) / f.perr[i]).abs();
            within += usize::from(z <= 3.0);
            total += 1;
            worst = worst.max(z);
        }
    }
    (within, total, worst)
}

fn main() -> Result<()> {
    const DATASETS: usize = 1000;
    const M: usize = 100;
    let mut rng = Rng(0x00C0_FFEE_1234_5678);
    let x: Vec<f64> = (0..M).map(|i| 4.0 * i as f64 / (M - 1) as f64).collect();
    let mut truths = Vec::with_capacity(DATASETS);
    let mut ys = Vec::with_capacity(DATASETS);
    for _ in 0..DATASETS {
        let t = [
            1.0 + 2.0 * rng.uniform(),
            0.5 + 1.5 * rng.uniform(),
            rng.uniform() - 0.5,
        ];
        ys.push(
            x.iter()
                .map(|&x| t[0] * (-t[1] * x).exp() + t[2] + 0.02 * rng.normal())
                .collect::<Vec<f64>>(),
        );
        truths.push(t);
    }
    let p0 = [1.0, 1.0, 0.0];
    let options = FitOptions::default();
    println!("{DATASETS} datasets of {M} points, y = a exp(-k x) + c, noise sd 0.02, method lm\n");

    // The plugin and its client are loaded once per process (on first use); do it up front
    // so that the fitter's figures below are its own.
    let t_client = Instant::now();
    let client = nlsq::runtime::client()?;
    println!(
        "plugin + client: {:.1} ms, device {}",
        t_client.elapsed().as_secs_f64() * 1e3,
        client.default_device()?
    );

    // One fitter: trace and compile (or load) once.
    let t_build = Instant::now();
    let fitter = CurveFitter::builder(model)
        .capacity(M)
        .params(3)
        .options(options.clone())
        .build()?;
    let build = t_build.elapsed();
    let (source, load) = fitter.executable_source();
    println!(
        "CurveFitter build: {:.1} ms (trace {:.1} ms, executable {source} in {:.1} ms), capacity {} rows",
        build.as_secs_f64() * 1e3,
        fitter.trace_time().as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e3,
        fitter.capacity()
    );
    let mut fitted = Vec::with_capacity(DATASETS);
    let mut times = Vec::with_capacity(DATASETS);
    let t_all = Instant::now();
    for y in &ys {
        let t = Instant::now();
        fitted.push(fitter.fit(&x, y, Some(&p0))?);
        times.push(t.elapsed());
    }
    let total = t_all.elapsed();
    println!(
        "fitter.fit x {DATASETS}: total {:.1} ms, median {:.3} ms per fit (execute {:.3} ms), {:.0} fits/s",
        total.as_secs_f64() * 1e3,
        median(times).as_secs_f64() * 1e3,
        median(fitted.iter().map(|f| f.result.timings.execute).collect()).as_secs_f64() * 1e3,
        DATASETS as f64 / total.as_secs_f64()
    );

    let converged = fitted.iter().filter(|f| f.success()).count();
    let (within, count, worst) = recovery(&fitted, &truths);
    let nfev: usize = fitted.iter().map(|f| f.result.nfev).sum();
    println!(
        "recovery: {converged}/{DATASETS} converged, {within}/{count} parameters within 3 standard errors of the truth \
         ({:.1}%, 99.7% expected), largest |z| {worst:.2}, mean nfev {:.1}",
        100.0 * within as f64 / count as f64,
        nfev as f64 / DATASETS as f64
    );
    ensure!(converged == DATASETS, "{} fits did not converge", DATASETS - converged);
    ensure!(within as f64 >= 0.98 * count as f64, "too few parameters recovered");

    // The same fits through curve_fit: a trace per call, executable from the cache.
    let mut plain = Vec::with_capacity(DATASETS);
    let mut times = Vec::with_capacity(DATASETS);
    let mut trace = Vec::with_capacity(DATASETS);
    let t_all = Instant::now();
    for y in &ys {
        let t = Instant::now();
        let f = curve_fit(&model, &x, y, Some(&p0), &options)?;
        times.push(t.elapsed());
        trace.push(f.result.timings.trace);
        plain.push(f);
    }
    let total_plain = t_all.elapsed();
    println!(
        "curve_fit   x {DATASETS}: total {:.1} ms, median {:.3} ms per fit (execute {:.3} ms, validation + model fingerprint {:.3} ms), executable from {}",
        total_plain.as_secs_f64() * 1e3,
        median(times).as_secs_f64() * 1e3,
        median(plain.iter().map(|f| f.result.timings.execute).collect()).as_secs_f64() * 1e3,
        median(trace).as_secs_f64() * 1e3,
        plain[0].result.executable
    );
    let max_diff = fitted
        .iter()
        .zip(&plain)
        .flat_map(|(a, b)| a.popt.iter().zip(b.popt.iter()).map(|(p, q)| (p - q).abs()))
        .fold(0.0, f64::max);
    println!(
        "same results: max |popt(fitter) - popt(curve_fit)| = {max_diff:.1e}; the fitter is {:.1}x faster over the batch",
        total_plain.as_secs_f64() / total.as_secs_f64()
    );

    println!("\nfirst three datasets (true -> fitted ± error):");
    for (t, f) in truths.iter().zip(&fitted).take(3) {
        println!(
            "  a {:.3} -> {:.3} ± {:.3}   k {:.3} -> {:.3} ± {:.3}   c {:+.3} -> {:+.3} ± {:.3}",
            t[0], f.popt[0], f.perr[0], t[1], f.popt[1], f.perr[1], t[2], f.popt[2], f.perr[2]
        );
    }
    Ok(())
}
