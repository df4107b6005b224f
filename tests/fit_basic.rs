//! End-to-end fits through the traced solver on the CPU plugin.

use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;

fn exp_model(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

fn noisy_exp(m: usize) -> (Vec<f64>, Vec<f64>) {
    // Deterministic pseudo-noise.
    let x: Vec<f64> = (0..m).map(|i| 4.0 * i as f64 / m as f64).collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, x)| 2.5 * (-1.3 * x).exp() + 0.5 + 0.01 * ((i as f64 * 12.9898).sin() * 43758.5453).fract())
        .collect();
    (x, y)
}

#[test]
fn exponential_fit_with_both_methods() {
    let (x, y) = noisy_exp(200);
    for method in [Method::Lm, Method::Trf] {
        let opts = FitOptions::default().with_method(method);
        let fit = curve_fit(&exp_model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
        println!("{method}: {fit}");
        assert!(fit.success(), "{}", fit.result);
        assert!((fit.popt[0] - 2.5).abs() < 0.02, "{}", fit.popt);
        assert!((fit.popt[1] - 1.3).abs() < 0.02, "{}", fit.popt);
        assert!((fit.popt[2] - 0.5).abs() < 0.02, "{}", fit.popt);
        assert!(fit.perr.iter().all(|e| e.is_finite() && *e > 0.0));
    }
}
