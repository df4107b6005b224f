//! Quickstart: fit a 3-parameter exponential decay to 1,000 noisy points.
//!
//! The model is ordinary Rust over traced tensors; nlsq traces it and the whole solver into
//! one XLA program, compiles it once per shape (the first run of a shape pays that), and runs
//! the fit as one execution. Run with `cargo run --release --example quickstart`.

use anyhow::Result;
use nlsq::fit::{curve_fit, FitOptions};
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

fn main() -> Result<()> {
    // y = a * exp(-k * x) + c with a = 2.5, k = 1.3, c = 0.5, noise sd 0.05.
    let (a, k, c) = (2.5, 1.3, 0.5);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let x: Vec<f64> = (0..1000).map(|i| 5.0 * i as f64 / 999.0).collect();
    let y: Vec<f64> = x
        .iter()
        .map(|&x| a * (-k * x).exp() + c + 0.05 * rng.normal())
        .collect();

    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let options = FitOptions::default();

    let fit = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &options)?;
    println!("y = a * exp(-k * x) + c, 1,000 points, true a = {a}, k = {k}, c = {c}\n");
    for (name, (value, err)) in ["a", "k", "c"].iter().zip(fit.popt.iter().zip(&fit.perr)) {
        println!("  {name} = {value:>12.6} ± {err:.6}");
    }
    println!("\n{}\n", fit.result);

    // The same shape again: the executable is reused, only the execution is paid.
    let y2: Vec<f64> = x
        .iter()
        .map(|&x| 1.7 * (-0.4 * x).exp() - 0.2 + 0.05 * rng.normal())
        .collect();
    let again = curve_fit(&model, &x, &y2, Some(&[1.0, 1.0, 1.0]), &options)?;
    println!(
        "second dataset (same shape): popt = {:.6}, {}",
        again.popt,
        again.result.brief_report()
    );
    println!(
        "executable: {}, compile {:.3?}, execute {:.3?}",
        again.result.executable, again.result.timings.compile, again.result.timings.execute
    );
    Ok(())
}
