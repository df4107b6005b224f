//! Two Gaussian peaks on a linear background (8 parameters), with bounds and a robust loss.
//!
//! 600 points with noise sd 0.05, and 24 of them replaced by outliers (spikes of +0.6 to +2.4,
//! the kind a detector glitch or a cosmic ray leaves). The same bounded TRF fit is run twice:
//! with `soft_l1` loss and `f_scale = 0.1` (residuals much larger than 0.1 count roughly
//! linearly, not quadratically), and with the ordinary squared loss. The robust fit stays close
//! to the true curve; the squared loss lets the spikes pull the background and the amplitudes
//! up. Run with `cargo run --release --example gaussian_peaks`.

use anyhow::Result;
use nlsq::fit::{curve_fit, CurveFit, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Loss;

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

const NAMES: [&str; 8] = ["a1", "c1", "w1", "a2", "c2", "w2", "b0", "b1"];

/// `a1 exp(-(x - c1)² / (2 w1²)) + a2 exp(-(x - c2)² / (2 w2²)) + b0 + b1 x` on the host.
fn curve(x: f64, p: &[f64]) -> f64 {
    let peak = |a: f64, c: f64, w: f64| a * (-(x - c).powi(2) / (2.0 * w * w)).exp();
    peak(p[0], p[1], p[2]) + peak(p[3], p[4], p[5]) + p[6] + p[7] * x
}

/// The same function, traced.
fn model(x: &Tensor, p: &Params) -> Tensor {
    let peak = |a: &Tensor, c: &Tensor, w: &Tensor| a * (-(x - c).square() / (2.0 * w.square())).exp();
    peak(&p[0], &p[1], &p[2]) + peak(&p[3], &p[4], &p[5]) + &p[6] + &p[7] * x
}

/// Root-mean-square distance between the fitted and the true curve over the grid.
fn curve_rms(x: &[f64], fitted: &[f64], truth: &[f64]) -> f64 {
    (x.iter()
        .map(|&x| (curve(x, fitted) - curve(x, truth)).powi(2))
        .sum::<f64>()
        / x.len() as f64)
        .sqrt()
}

fn main() -> Result<()> {
    let truth = [1.0, 3.2, 0.45, 0.6, 6.1, 0.9, 0.2, 0.03];
    let mut rng = Rng(0x005E_ED0F_9EA4);
    let m = 600;
    let x: Vec<f64> = (0..m).map(|i| 10.0 * i as f64 / (m - 1) as f64).collect();
    let mut y: Vec<f64> = x.iter().map(|&x| curve(x, &truth) + 0.05 * rng.normal()).collect();
    // Every 25th point becomes a positive spike.
    let outliers: Vec<usize> = (0..m).filter(|i| i % 25 == 12).collect();
    for &i in &outliers {
        y[i] += 0.6 + 1.8 * rng.uniform();
    }

    // Amplitudes >= 0, centres inside the window, widths in (0.05, 5]; background free.
    let inf = f64::INFINITY;
    let lower = vec![0.0, 0.0, 0.05, 0.0, 0.0, 0.05, -inf, -inf];
    let upper = vec![inf, 10.0, 5.0, inf, 10.0, 5.0, inf, inf];
    let p0 = [0.8, 3.0, 0.6, 0.8, 6.5, 0.6, 0.0, 0.0];
    let bounded = FitOptions::default().with_bounds(lower, upper);

    let robust = curve_fit(
        &model,
        &x,
        &y,
        Some(&p0),
        &bounded.clone().with_loss(Loss::SoftL1).with_f_scale(0.1),
    )?;
    let linear = curve_fit(&model, &x, &y, Some(&p0), &bounded)?;

    println!(
        "Two Gaussian peaks + linear background: {m} points, noise sd 0.05, {} outliers (+0.6 to +2.4)",
        outliers.len()
    );
    println!("Bounded TRF: amplitudes >= 0, centres in [0, 10], widths in [0.05, 5]\n");
    println!(
        "{:<6}{:>9}   {:>22}   {:>22}",
        "param", "true", "soft_l1, f_scale 0.1", "linear loss"
    );
    for i in 0..8 {
        let cell = |f: &CurveFit| format!("{:.4} ± {:.4}", f.popt[i], f.perr[i]);
        println!(
            "{:<6}{:>9.4}   {:>22}   {:>22}",
            NAMES[i],
            truth[i],
            cell(&robust),
            cell(&linear)
        );
    }
    let report = |name: &str, f: &CurveFit| {
        let p = f.popt.to_vec();
        let worst = (0..8)
            .map(|i| ((p[i] - truth[i]) / f.perr[i]).abs())
            .fold(0.0, f64::max);
        println!(
            "{name:<8} RMS(fitted - true curve) {:.4}, largest |fitted - true| / error {:>6.1}, {}",
            curve_rms(&x, &p, &truth),
            worst,
            f.result.brief_report()
        );
    };
    println!();
    report("soft_l1", &robust);
    report("linear", &linear);
    println!("\n{}", robust.result);
    Ok(())
}
