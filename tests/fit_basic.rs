//! End-to-end fits through the traced solver on the CPU plugin.

mod common;

use common::noisy_exp;
use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;

fn exp_model(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
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
