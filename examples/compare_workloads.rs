//! The nlsq side of `scripts/compare.py`: runs one workload on data files written by the
//! script (raw little-endian f64) and prints one JSON line with its timings.
//!
//! ```text
//! compare_workloads warm  X.bin Y.bin METHOD REPEATS   # median of warm fits (executable reused)
//! compare_workloads first X.bin Y.bin METHOD           # the first fit of this process
//! compare_workloads lengths DIR COUNT METHOD           # DIR/len_{i}_x.bin, len_{i}_y.bin, i < COUNT
//! compare_workloads batch X.bin Y.bin METHOD REPEATS B  # B curves: shared x [m], y [B, m] (row-major)
//! ```
//!
//! `warm` also times the same fits through a reused `CurveFitter`. `COMPARE_BATCH_PROGRAM=
//! sequential|lockstep` chooses the batch program (default: automatic). `COMPARE_CHUNK_ROWS=c` forces
//! the chunk size of the Jacobian evaluation (`0`: never chunk), and `COMPARE_MAX_NFEV=k` caps the
//! evaluations per fit, for experiments (per-fit against per-evaluation costs).

// mimalloc in place of malloc, as the nlsq binary links it: the timings in docs/performance.md
// were taken with it (the library leaves the allocator to the program).
use libmimalloc_sys as _;

use std::time::Instant;

use anyhow::{bail, Context, Result};
use nlsq::fit::batch::BatchProgram;
use nlsq::fit::{curve_fit, CurveFitter, ExecutableSource, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;

fn read_f64(path: &str) -> Result<Vec<f64>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    if bytes.len() % 8 != 0 {
        bail!("{path}: size {} is not a multiple of 8", bytes.len());
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

fn model(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let method: Method = args.get(3).map(String::as_str).unwrap_or("lm").parse()?;
    let mut opts = FitOptions::default().with_method(method);
    // For experiments: force a chunk size (0 = never chunk).
    if let Some(rows) = std::env::var("COMPARE_CHUNK_ROWS").ok().and_then(|v| v.parse().ok()) {
        opts = opts.with_chunk_rows(rows);
    }
    if let Some(v) = std::env::var("COMPARE_MAX_NFEV").ok().and_then(|v| v.parse().ok()) {
        opts = opts.with_max_nfev(v);
    }
    let p0 = [1.0, 1.0, 1.0];
    let t_load = Instant::now();
    let client = nlsq::runtime::client()?;
    let load_s = t_load.elapsed().as_secs_f64();
    match args.first().map(String::as_str) {
        Some("warm") => {
            let (x, y) = (read_f64(&args[1])?, read_f64(&args[2])?);
            let repeats: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(20);
            let first = curve_fit(&model, &x, &y, Some(&p0), &opts)?;
            let mut times = Vec::new();
            let mut exec = Vec::new();
            for _ in 0..repeats {
                let t = Instant::now();
                let f = curve_fit(&model, &x, &y, Some(&p0), &opts)?;
                times.push(t.elapsed().as_secs_f64());
                exec.push(f.result.timings.execute.as_secs_f64());
            }
            // The same fits through a reused `CurveFitter` (no per-call model fingerprint).
            let fitter = CurveFitter::builder(model)
                .capacity(x.len())
                .params(3)
                .options(opts.clone())
                .build()?;
            let mut fitter_times = Vec::new();
            for _ in 0..repeats {
                let t = Instant::now();
                let f = fitter.fit(&x, &y, Some(&p0))?;
                fitter_times.push(t.elapsed().as_secs_f64());
                if f.result.cost != first.result.cost {
                    bail!(
                        "CurveFitter and curve_fit disagree: cost {} vs {}",
                        f.result.cost,
                        first.result.cost
                    );
                }
            }
            println!(
                "{}",
                serde_json::json!({
                    "workload": "warm", "m": x.len(), "method": method.to_string(),
                    "median_s": median(times), "execute_median_s": median(exec),
                    "fitter_median_s": median(fitter_times),
                    "nfev": first.result.nfev, "njev": first.result.njev, "status": first.result.status.code(),
                    "popt": first.popt.to_vec(), "cost": first.result.cost,
                    "first_compile_s": first.result.timings.compile.as_secs_f64(),
                    "first_source": first.result.executable.to_string(),
                    "device": client.default_device()?.to_string(),
                })
            );
        }
        Some("first") => {
            let (x, y) = (read_f64(&args[1])?, read_f64(&args[2])?);
            let t = Instant::now();
            let f = curve_fit(&model, &x, &y, Some(&p0), &opts)?;
            println!(
                "{}",
                serde_json::json!({
                    "workload": "first", "m": x.len(), "method": method.to_string(),
                    "plugin_load_s": load_s, "first_fit_s": t.elapsed().as_secs_f64(),
                    "trace_s": f.result.timings.trace.as_secs_f64(), "compile_or_load_s": f.result.timings.compile.as_secs_f64(),
                    "execute_s": f.result.timings.execute.as_secs_f64(), "source": f.result.executable.to_string(),
                    "popt": f.popt.to_vec(),
                })
            );
        }
        Some("lengths") => {
            let count: usize = args[2].parse()?;
            let t = Instant::now();
            let mut compiled = 0;
            let mut from_disk = 0;
            let mut popts = Vec::new();
            for i in 0..count {
                let x = read_f64(&format!("{}/len_{i}_x.bin", args[1]))?;
                let y = read_f64(&format!("{}/len_{i}_y.bin", args[1]))?;
                let f = curve_fit(&model, &x, &y, Some(&p0), &opts)?;
                match f.result.executable {
                    ExecutableSource::Compiled => compiled += 1,
                    ExecutableSource::Disk => from_disk += 1,
                    _ => {}
                }
                popts.push(f.popt.to_vec());
            }
            println!(
                "{}",
                serde_json::json!({
                    "workload": "lengths", "count": count, "method": method.to_string(),
                    "total_s": t.elapsed().as_secs_f64(), "compiled": compiled, "loaded_from_disk": from_disk,
                    "popts": popts,
                })
            );
        }
        Some("batch") => {
            let (x, y) = (read_f64(&args[1])?, read_f64(&args[2])?);
            let repeats: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(3);
            let nb: usize = args.get(5).map(|s| s.parse()).transpose()?.unwrap_or(1000);
            let m = x.len();
            if y.len() != nb * m {
                bail!("y has {} values, expected {nb} x {m}", y.len());
            }
            let x = ndarray::Array1::from(x);
            let y = ndarray::Array2::from_shape_vec((nb, m), y)?;
            let p0 = ndarray::Array2::from_shape_fn((nb, 3), |(_, j)| p0[j]);
            let mut batch = nlsq::fit::batch::Batch::shared_x(x.view(), y.view(), p0.view());
            if let Some(c) = args.get(6) {
                batch = batch.with_chunk(c.parse()?);
            }
            batch = batch.with_program(match std::env::var("COMPARE_BATCH_PROGRAM").as_deref() {
                Ok("sequential") => BatchProgram::Sequential,
                Ok("lockstep") => BatchProgram::Lockstep,
                _ => BatchProgram::Auto,
            });
            let t = Instant::now();
            let first = nlsq::fit::batch::curve_fit_batch(&model, &batch, &opts)?;
            let first_s = t.elapsed().as_secs_f64();
            let mut times = Vec::new();
            let mut last = first;
            for _ in 0..repeats {
                let t = Instant::now();
                let fits = nlsq::fit::batch::curve_fit_batch(&model, &batch, &opts)?;
                times.push(t.elapsed().as_secs_f64());
                // The previous call's results are freed outside the timed call (about 0.4 ms for
                // 1,000 results), as the scipy loop's results are never freed inside its timing.
                last = fits;
            }
            let ok = last
                .iter()
                .filter(|f| f.as_ref().map(|f| f.success()).unwrap_or(false))
                .count();
            let popts: Vec<Vec<f64>> = last
                .iter()
                .map(|f| f.as_ref().map(|f| f.popt.to_vec()).unwrap_or_default())
                .collect();
            let nfev: usize = last
                .iter()
                .map(|f| f.as_ref().map(|f| f.result.nfev).unwrap_or(0))
                .sum();
            println!(
                "{}",
                serde_json::json!({
                    "workload": "batch", "m": m, "count": nb, "method": method.to_string(),
                    "first_s": first_s, "times_s": times.clone(),
                    "median_s": if times.is_empty() { first_s } else { median(times) },
                    "converged": ok, "total_nfev": nfev, "popts": popts,
                    "execute_s": last.iter().find_map(|f| f.as_ref().ok()).map(|f| f.result.timings.execute.as_secs_f64()),
                    "max_nit": last.iter().map(|f| f.as_ref().map(|f| f.result.nit).unwrap_or(0)).max(),
                })
            );
        }
        _ => bail!("usage: compare_workloads warm|first|lengths|batch ..."),
    }
    Ok(())
}
