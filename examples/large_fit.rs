//! A fit of one large dataset: `cargo run --release --example large_fit -- 20000000`.
//!
//! The Jacobian is evaluated in chunks inside the program (TSQR), so memory stays a small
//! multiple of the input arrays; run it under `/usr/bin/time -v` to see the peak.

// mimalloc in place of malloc, as the nlsq binary links it: the timings in docs/performance.md
// were taken with it (the library leaves the allocator to the program).
use libmimalloc_sys as _;

use std::time::Instant;

use anyhow::Result;
use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;

fn main() -> Result<()> {
    let m: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let method: Method = std::env::args().nth(2).unwrap_or_else(|| "lm".into()).parse()?;
    let x: Vec<f64> = (0..m).map(|i| 5.0 * i as f64 / m as f64).collect();
    let y: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            2.5 * (-1.3 * x).exp() + 0.5 + 0.05 * ((((i as f64) * 12.9898).sin() * 43758.5453).fract() - 0.5)
        })
        .collect();
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let t = Instant::now();
    let fit = curve_fit(
        &model,
        &x,
        &y,
        Some(&[1.0, 1.0, 1.0]),
        &FitOptions::default().with_method(method),
    )?;
    println!("m = {m}, {method}: popt {:.6} in {:.3?}", fit.popt, t.elapsed());
    println!("{}", fit.result.brief_report());
    println!(
        "trace {:?}, compile/load {:?} ({}), execute {:?}; input arrays {:.0} MB",
        fit.result.timings.trace,
        fit.result.timings.compile,
        fit.result.executable,
        fit.result.timings.execute,
        (16 * m) as f64 / 1e6
    );
    Ok(())
}
