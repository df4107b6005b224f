//! A global fit: three exponential decays measured at different lengths, with their own
//! amplitudes and offsets and one shared rate, fitted as one problem in one executable.
//! Run with `cargo run --release --example global_fit`.

use anyhow::Result;
use nlsq::fit::global::{curve_fit_global, Dataset};
use nlsq::fit::{FitOptions, Parameter, Parameters};
use nlsq::graph::{Params, Tensor};

/// A small deterministic generator (xorshift64*) and Box–Muller normals: the same numbers on
/// every run, no extra crates.
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
    // y_d = a_d exp(-k x) + c_d with k = 1.3 shared; noise sd 0.03.
    let truth = [(60, 1.0, 0.2), (150, 2.2, -0.1), (400, 3.5, 0.4)];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let curves: Vec<(Vec<f64>, Vec<f64>)> = truth
        .iter()
        .map(|&(m, a, c)| {
            let x: Vec<f64> = (0..m).map(|i| 5.0 * i as f64 / m as f64).collect();
            let y = x
                .iter()
                .map(|x| a * (-1.3 * x).exp() + c + 0.03 * rng.normal())
                .collect();
            (x, y)
        })
        .collect();

    let model = |x: &Tensor, p: &Params| &p["a"] * (-&p["k"] * x).exp() + &p["c"];
    let params = Parameters::new()
        .with(Parameter::new("a", 1.0))
        .with(Parameter::new("k", 1.0).with_bounds(0.0, 10.0))
        .with(Parameter::new("c", 0.0));
    let data: Vec<Dataset> = curves.iter().map(|(x, y)| Dataset::new(x, y)).collect();
    let fit = curve_fit_global(&model, &data, &params, &["k"], &FitOptions::default())?;

    let k = fit.get(0, "k").expect("k");
    println!(
        "shared   k = {:.5} ± {:.5}   (true 1.3)",
        k.value,
        k.stderr.unwrap_or(f64::NAN)
    );
    for (d, &(m, a, c)) in truth.iter().enumerate() {
        let (fa, fc) = (fit.get(d, "a").expect("a"), fit.get(d, "c").expect("c"));
        println!(
            "dataset {d} ({m:>3} points)  a = {:.5} ± {:.5} (true {a})   c = {:.5} ± {:.5} (true {c})",
            fa.value,
            fa.stderr.unwrap_or(f64::NAN),
            fc.value,
            fc.stderr.unwrap_or(f64::NAN)
        );
    }
    let r = &fit.fit.result;
    println!(
        "{} solver parameters, {} points; status {} ({}), cost {:.6e}, nfev {}",
        fit.fit.popt.len(),
        data.iter().map(Dataset::len).sum::<usize>(),
        r.status.code(),
        r.message(),
        r.cost,
        r.nfev
    );
    Ok(())
}
