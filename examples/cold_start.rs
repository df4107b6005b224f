//! What a new process pays: loading the plugin, then its first fit (compiled, or loaded from
//! the disk cache when an earlier process compiled the same program).
//!
//! Run it twice: `cargo run --release --example cold_start` (the second run finds the
//! executable on disk). `NLSQ_CACHE_DIR` chooses the cache folder.

// mimalloc in place of malloc, as the nlsq binary links it: the timings in docs/performance.md
// were taken with it (the library leaves the allocator to the program).
use libmimalloc_sys as _;

use std::time::Instant;

use anyhow::Result;
use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Params, Tensor};

fn main() -> Result<()> {
    let t_process = Instant::now();
    let t0 = Instant::now();
    let client = nlsq::runtime::client()?;
    let load = t0.elapsed();
    let x: Vec<f64> = (0..1000).map(|i| 5.0 * i as f64 / 999.0).collect();
    let y: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &x)| 2.5 * (-1.3 * x).exp() + 0.5 + 0.05 * (((i as f64) * 12.9898).sin() * 43758.5453).fract())
        .collect();
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let t1 = Instant::now();
    let fit = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &FitOptions::default())?;
    let first = t1.elapsed();
    let t = fit.result.timings;
    println!(
        "plugin load + client: {:.1} ms; first fit: {:.1} ms (trace {:.1} ms, {} {:.1} ms, execute {:.2} ms); popt {:.6}; device {}",
        load.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        t.trace.as_secs_f64() * 1e3,
        fit.result.executable,
        t.compile.as_secs_f64() * 1e3,
        t.execute.as_secs_f64() * 1e3,
        fit.popt,
        client.platform_name()
    );
    println!("process so far: {:.1} ms", t_process.elapsed().as_secs_f64() * 1e3);
    Ok(())
}
