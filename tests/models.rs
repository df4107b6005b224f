//! Every built-in model (and two sums) recovers known parameters from seeded noisy data with
//! its automatic starting point, and the starting point alone is already close (a test of the
//! estimators, not only of the solver). The true curves are written here independently of the
//! templates in `src/models`, so a wrong formula fails too.

use std::f64::consts::{LN_2, PI};

use nlsq::fit::FitOptions;
use nlsq::models::parse;
use nlsq::solve::Method;

/// xorshift64* with Box–Muller normals: deterministic noise without a crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform on (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }
}

/// How the starting value of a parameter is checked against the truth.
#[derive(Clone, Copy)]
enum Near {
    /// Within a factor of 2 (same sign).
    Factor,
    /// Within this absolute distance.
    Abs(f64),
    /// Not checked (a phase).
    Any,
}

fn gauss(x: f64, a: f64, c: f64, s: f64) -> f64 {
    a / (s * (2.0 * PI).sqrt()) * (-(x - c).powi(2) / (2.0 * s * s)).exp()
}

fn lorentz(x: f64, a: f64, c: f64, s: f64) -> f64 {
    a / PI * s / ((x - c).powi(2) + s * s)
}

/// Points `lo..=hi`, the truth `f` plus noise of standard deviation `noise`, fitted with the
/// automatic start: success, every parameter within 5 standard errors and `rtol` of the truth,
/// and the start as `near` says.
#[allow(clippy::too_many_arguments)]
fn recovers(
    spec: &str,
    (lo, hi, m): (f64, f64, usize),
    truth: &[f64],
    f: impl Fn(f64, &[f64]) -> f64,
    noise: f64,
    seed: u64,
    rtol: f64,
    near: &[Near],
) {
    let model = parse(spec).unwrap();
    assert_eq!(model.param_names().len(), truth.len(), "{spec}");
    let mut rng = Rng(seed);
    let x: Vec<f64> = (0..m).map(|i| lo + (hi - lo) * i as f64 / (m - 1) as f64).collect();
    let y: Vec<f64> = x.iter().map(|&x| f(x, truth) + noise * rng.normal()).collect();
    let guess = model.guess(&x, &y).unwrap();
    for (i, (g, t)) in guess.iter().zip(truth).enumerate() {
        let ok = match near[i] {
            Near::Factor => *g / *t >= 0.5 && *g / *t <= 2.0,
            Near::Abs(d) => (g - t).abs() <= d,
            Near::Any => true,
        };
        assert!(
            ok,
            "{spec}: start of {} is {g}, truth {t} (start {guess:?})",
            model.param_names()[i]
        );
    }
    let fit = model.fit(&x, &y, &FitOptions::default()).unwrap();
    assert!(fit.success(), "{spec}: {}", fit.result);
    for (i, t) in truth.iter().enumerate() {
        let (p, e) = (fit.popt[i], fit.perr[i]);
        let name = &model.param_names()[i];
        assert!(e.is_finite() && e > 0.0, "{spec}: {name} has standard error {e}");
        assert!(
            (p - t).abs() < 5.0 * e && (p - t).abs() <= rtol * t.abs(),
            "{spec}: {name} = {p} ± {e}, truth {t} (rtol {rtol}); popt {}",
            fit.popt
        );
    }
}

use Near::{Abs, Any, Factor};

#[test]
fn gaussian_recovers_its_area_center_and_sigma() {
    recovers(
        "gaussian",
        (0.0, 10.0, 400),
        &[5.0, 4.2, 0.8],
        |x, p| gauss(x, p[0], p[1], p[2]),
        0.02,
        1,
        0.01,
        &[Factor, Abs(0.2), Factor],
    );
}

#[test]
fn lorentzian_recovers_its_parameters() {
    recovers(
        "lorentzian",
        (0.0, 10.0, 400),
        &[4.0, 5.5, 0.6],
        |x, p| lorentz(x, p[0], p[1], p[2]),
        0.02,
        2,
        0.02,
        &[Factor, Abs(0.2), Factor],
    );
}

#[test]
fn pseudo_voigt_recovers_its_parameters_and_fraction() {
    recovers(
        "pseudo_voigt",
        (0.0, 10.0, 500),
        &[6.0, 5.0, 0.7, 0.4],
        |x, p| {
            let sg = p[2] / (2.0 * LN_2).sqrt();
            (1.0 - p[3]) * gauss(x, p[0], p[1], sg) + p[3] * lorentz(x, p[0], p[1], p[2])
        },
        0.01,
        3,
        0.05,
        &[Factor, Abs(0.2), Factor, Factor],
    );
}

#[test]
fn exp_decay_recovers_amplitude_decay_and_offset() {
    recovers(
        "exp_decay",
        (0.0, 10.0, 300),
        &[3.0, 1.7, 0.4],
        |x, p| p[0] * (-x / p[1]).exp() + p[2],
        0.01,
        4,
        0.01,
        &[Factor, Factor, Factor],
    );
}

#[test]
fn exp_decay2_recovers_both_terms() {
    recovers(
        "exp_decay2",
        (0.0, 15.0, 600),
        &[3.0, 0.5, 1.5, 4.0, 0.2],
        |x, p| p[0] * (-x / p[1]).exp() + p[2] * (-x / p[3]).exp() + p[4],
        0.005,
        5,
        0.05,
        &[Factor, Factor, Factor, Factor, Factor],
    );
}

#[test]
fn logistic_recovers_its_step() {
    recovers(
        "logistic",
        (0.0, 10.0, 300),
        &[2.5, 4.0, 0.6],
        |x, p| p[0] / (1.0 + (-(x - p[1]) / p[2]).exp()),
        0.02,
        6,
        0.03,
        &[Factor, Abs(0.3), Factor],
    );
}

#[test]
fn hill_recovers_vmax_k_and_n() {
    recovers(
        "hill",
        (0.05, 10.0, 200),
        &[10.0, 2.0, 2.5],
        |x, p| p[0] * x.powf(p[2]) / (p[1].powf(p[2]) + x.powf(p[2])),
        0.05,
        7,
        0.03,
        &[Factor, Factor, Factor],
    );
}

#[test]
fn michaelis_menten_recovers_vmax_and_km() {
    recovers(
        "michaelis_menten",
        (0.1, 10.0, 100),
        &[5.0, 1.5],
        |x, p| p[0] * x / (p[1] + x),
        0.03,
        8,
        0.05,
        &[Factor, Factor],
    );
}

#[test]
fn power_law_recovers_amplitude_and_exponent() {
    recovers(
        "power_law",
        (0.5, 10.0, 200),
        &[2.0, 1.5],
        |x, p| p[0] * x.powf(p[1]),
        0.05,
        9,
        0.01,
        &[Factor, Factor],
    );
}

#[test]
fn polynomial_recovers_its_coefficients() {
    recovers(
        "polynomial(3)",
        (-3.0, 3.0, 200),
        &[1.0, -2.0, 0.5, 0.1],
        |x, p| p[0] + p[1] * x + p[2] * x * x + p[3] * x.powi(3),
        0.05,
        10,
        0.05,
        &[Factor, Factor, Factor, Factor],
    );
}

#[test]
fn damped_sine_recovers_frequency_phase_and_decay() {
    recovers(
        "damped_sine",
        (0.0, 10.0, 500),
        &[2.0, 3.0, 0.7, 5.0],
        |x, p| p[0] * (-x / p[3]).exp() * (p[1] * x + p[2]).sin(),
        0.02,
        11,
        0.03,
        &[Factor, Abs(0.3), Any, Factor],
    );
}

#[test]
fn linear_recovers_slope_and_intercept() {
    recovers(
        "linear",
        (0.0, 10.0, 100),
        &[0.7, -1.2],
        |x, p| p[0] * x + p[1],
        0.05,
        12,
        0.03,
        &[Factor, Factor],
    );
}

#[test]
fn constant_recovers_its_level() {
    recovers(
        "constant",
        (0.0, 1.0, 100),
        &[3.3],
        |_, p| p[0],
        0.1,
        13,
        0.02,
        &[Factor],
    );
}

#[test]
fn two_separated_gaussians_on_a_line_are_recovered_largest_first() {
    recovers(
        "gaussian+gaussian+linear",
        (0.0, 10.0, 500),
        &[4.0, 3.0, 0.4, 2.5, 7.0, 0.5, 0.1, 0.5],
        |x, p| gauss(x, p[0], p[1], p[2]) + gauss(x, p[3], p[4], p[5]) + p[6] * x + p[7],
        0.02,
        14,
        0.05,
        &[Factor, Abs(0.2), Factor, Factor, Abs(0.2), Factor, Abs(0.1), Abs(0.3)],
    );
}

#[test]
fn a_lorentzian_on_a_constant_is_recovered() {
    recovers(
        "lorentzian+constant",
        (0.0, 10.0, 400),
        &[3.0, 5.0, 0.5, 1.0],
        |x, p| lorentz(x, p[0], p[1], p[2]) + p[3],
        0.02,
        15,
        0.05,
        &[Factor, Abs(0.2), Factor, Factor],
    );
}

#[test]
fn the_users_bounds_replace_the_models_and_lm_drops_them() {
    let model = parse("gaussian").unwrap();
    let x: Vec<f64> = (0..200).map(|i| f64::from(i) * 0.05).collect();
    let mut rng = Rng(99);
    let y: Vec<f64> = x
        .iter()
        .map(|&x| gauss(x, 5.0, 4.0, 0.8) + 0.01 * rng.normal())
        .collect();
    // sigma held below its true value by the user's upper bound.
    let inf = f64::INFINITY;
    let capped = FitOptions::default().with_bounds(vec![-inf, -inf, 0.0], vec![inf, inf, 0.5]);
    let fit = model.fit(&x, &y, &capped).unwrap();
    assert!(fit.popt[2] <= 0.5 && fit.popt[2] > 0.49, "{}", fit.popt);
    // lm takes no bounds: the model's are left out, and the fit still recovers the peak.
    let lm = FitOptions::default().with_method(Method::Lm);
    assert!(model.options(&lm).bounds.is_none());
    let fit = model.fit(&x, &y, &lm).unwrap();
    assert!(fit.success() && (fit.popt[1] - 4.0).abs() < 0.01, "{}", fit.popt);
    // A start with one value replaced (the library's partial p0).
    let mut p0 = model.guess(&x, &y).unwrap();
    p0[1] = 3.5;
    let fit = model.fit_from(&x, &y, &p0, &FitOptions::default()).unwrap();
    assert!(fit.success() && (fit.popt[1] - 4.0).abs() < 0.01, "{}", fit.popt);
}

#[test]
fn a_guess_needs_matching_lengths_and_two_finite_points() {
    let model = parse("linear").unwrap();
    assert!(model.guess(&[1.0, 2.0], &[1.0]).is_err());
    assert!(model.guess(&[1.0, f64::NAN], &[1.0, 2.0]).is_err());
    assert!(model.guess(&[1.0, 2.0, 3.0], &[1.0, 2.0, f64::INFINITY]).is_ok());
}
