//! A 2-D Gaussian over scattered (u, v) points: `xdata` is `[2, m]` and the model reads its
//! coordinates with `x.row(0)` and `x.row(1)`, like scipy's `curve_fit` with `xdata` of shape
//! `(2, M)`.
//!
//! `z = A exp(-((u - u0)² / (2 su²) + (v - v0)² / (2 sv²))) + z0` at 2,000 points drawn
//! uniformly over [-3, 3]², noise sd 0.02. Run with `cargo run --release --example surface_2d`.

use anyhow::Result;
use ndarray::Array2;
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

const NAMES: [&str; 6] = ["A", "u0", "v0", "su", "sv", "z0"];

fn surface(u: f64, v: f64, p: &[f64]) -> f64 {
    p[0] * (-((u - p[1]).powi(2) / (2.0 * p[3] * p[3]) + (v - p[2]).powi(2) / (2.0 * p[4] * p[4]))).exp() + p[5]
}

/// The traced model: `x` is `[2, m]`, one row per coordinate.
fn model(x: &Tensor, p: &Params) -> Tensor {
    let (u, v) = (x.row(0), x.row(1));
    let r2 = (&u - &p[1]).square() / (2.0 * p[3].square()) + (&v - &p[2]).square() / (2.0 * p[4].square());
    &p[0] * (-r2).exp() + &p[5]
}

fn main() -> Result<()> {
    let truth = [1.5, 0.4, -0.7, 0.8, 1.3, 0.1];
    let m = 2000;
    let mut rng = Rng(0x2D_5EED_1234);
    let mut x = Array2::<f64>::zeros((2, m));
    let mut z = Vec::with_capacity(m);
    for j in 0..m {
        let (u, v) = (6.0 * rng.uniform() - 3.0, 6.0 * rng.uniform() - 3.0);
        x[[0, j]] = u;
        x[[1, j]] = v;
        z.push(surface(u, v, &truth) + 0.02 * rng.normal());
    }

    let p0 = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
    let fit = curve_fit(&model, &x, &z, Some(&p0), &FitOptions::default())?;

    println!("2-D Gaussian z(u, v): {m} scattered points in [-3, 3]², noise sd 0.02, xdata [2, {m}]\n");
    println!(
        "{:<6}{:>9}{:>13}{:>11}{:>9}",
        "param", "true", "fitted", "std err", "z-score"
    );
    for i in 0..6 {
        let z = (fit.popt[i] - truth[i]) / fit.perr[i];
        println!(
            "{:<6}{:>9.4}{:>13.6}{:>11.6}{:>9.2}",
            NAMES[i], truth[i], fit.popt[i], fit.perr[i], z
        );
    }
    let dof = (m - 6) as f64;
    println!(
        "\nresidual sd {:.5} (noise 0.02)\n",
        (2.0 * fit.result.cost / dof).sqrt()
    );
    println!("{}", fit.result);
    Ok(())
}
