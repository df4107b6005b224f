//! `least_squares` for general residuals against closed forms and against `curve_fit`.

mod common;

use ndarray::{Array1, ArrayViewD};
use nlsq::fit::{curve_fit, least_squares, FitOptions, LeastSquaresOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;

fn noise(i: usize) -> f64 {
    ((i as f64 * 12.9898).sin() * 43758.5453).fract() - 0.5
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-300)
}

#[test]
fn rosenbrock_residuals_reach_the_minimum_with_both_methods() {
    common::client();
    // r = [10 (x1 − x0²), 1 − x0]: the minimum is x = (1, 1) with zero cost; no data arrays.
    let fun = |p: &Params, _data: &[Tensor]| {
        let r0 = (&p[1] - &p[0] * &p[0]) * 10.0;
        let r1 = -&p[0] + 1.0;
        p[0].graph().concat(&[r0.reshape([1]), r1.reshape([1])], 0)
    };
    for method in [Method::Lm, Method::Trf] {
        let opts = LeastSquaresOptions::default().with_method(method).with_tol(1e-12);
        let fit = least_squares(&fun, &[-1.2, 1.0], &[], &opts).unwrap();
        let r = &fit.result;
        assert!(r.status.success(), "{method}: {:?}", r.status);
        for v in fit.popt.iter() {
            assert!((v - 1.0).abs() < 1e-8, "{method}: x = {}", fit.popt);
        }
        assert_eq!(fit.popt, r.x);
        assert!(r.cost < 1e-20, "{method}: cost {}", r.cost);
        // Jacobian at the solution: [[-20 x0, 10], [-1, 0]].
        let want = [[-20.0, 10.0], [-1.0, 0.0]];
        let jac = r.jac.as_ref().expect("least_squares returns J");
        for (i, row) in want.iter().enumerate() {
            for (j, w) in row.iter().enumerate() {
                assert!((jac[[i, j]] - w).abs() < 1e-6, "{method}: jac {jac}");
            }
        }
        // m = n: no degrees of freedom, so no scale for the covariance: inf, as curve_fit.
        assert!(fit.pcov.iter().all(|v| v.is_infinite()), "{method}: pcov {}", fit.pcov);
    }
}

#[test]
fn data_are_inputs_and_the_answer_and_covariance_equal_curve_fit() {
    common::client();
    let m = 300;
    let x: Vec<f64> = (0..m).map(|i| 4.0 * i as f64 / m as f64).collect();
    let y: Vec<f64> = (x.iter().enumerate())
        .map(|(i, &x)| 2.0 * (-0.8 * x).exp() + 0.3 + 0.02 * noise(i))
        .collect();
    let fun = |p: &Params, d: &[Tensor]| &p[0] * (-&p[1] * &d[0]).exp() + &p[2] - &d[1];
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let (xa, ya) = (Array1::from(x.clone()), Array1::from(y.clone()));
    for method in [Method::Lm, Method::Trf] {
        let opts = LeastSquaresOptions::default().with_method(method);
        let data: [ArrayViewD<'_, f64>; 2] = [xa.view().into_dyn(), ya.view().into_dyn()];
        let ls = least_squares(&fun, &[1.0, 1.0, 1.0], &data, &opts).unwrap();
        let cf = curve_fit(
            &model,
            &x,
            &y,
            Some(&[1.0, 1.0, 1.0]),
            &FitOptions::default().with_method(method),
        )
        .unwrap();
        assert!(ls.success());
        assert_eq!(ls.result.nfev, cf.result.nfev, "{method}");
        for (a, b) in ls.popt.iter().zip(cf.popt.iter()) {
            assert!(close(*a, *b, 1e-10), "{method}: {} vs {}", ls.popt, cf.popt);
        }
        assert!(close(ls.result.cost, cf.result.cost, 1e-12));
        // The same estimate s² (JᵀJ)⁻¹ as curve_fit, and perr its diagonal's root.
        for (a, b) in ls.pcov.iter().zip(cf.pcov.iter()) {
            assert!(close(*a, *b, 1e-7), "{method}: pcov {} vs {}", ls.pcov, cf.pcov);
        }
        for i in 0..3 {
            assert!(close(ls.perr[i], ls.pcov[[i, i]].sqrt(), 1e-14));
        }
        assert_eq!(ls.result.fun.as_ref().map(|f| f.len()), Some(m));
        // Other data of the same shapes reuse the executable and give their own answer.
        let y2: Vec<f64> = x.iter().map(|&x| 1.5 * (-0.5 * x).exp() - 0.1).collect();
        let ya2 = Array1::from(y2);
        let data2: [ArrayViewD<'_, f64>; 2] = [xa.view().into_dyn(), ya2.view().into_dyn()];
        let ls2 = least_squares(&fun, &[1.0, 1.0, 1.0], &data2, &opts).unwrap();
        assert_eq!(ls2.result.executable, nlsq::fit::ExecutableSource::Memory, "{method}");
        for (a, b) in ls2.popt.iter().zip([1.5, 0.5, -0.1]) {
            assert!((a - b).abs() < 1e-8, "{method}: {}", ls2.popt);
        }
    }
}

#[test]
fn absolute_sigma_residuals_give_curve_fits_absolute_covariance() {
    common::client();
    // Residuals already divided by known standard deviations: the covariance is (JᵀJ)⁻¹, as
    // curve_fit's with sigma and absolute_sigma, and without absolute_sigma it is rescaled.
    let m = 120;
    let x: Vec<f64> = (0..m).map(|i| i as f64 / 10.0).collect();
    let sigma: Vec<f64> = (0..m).map(|i| 0.05 + 0.01 * (i % 7) as f64).collect();
    let y: Vec<f64> = (x.iter().zip(&sigma).enumerate())
        .map(|(i, (&x, &s))| 0.7 * x + 1.2 + s * noise(i))
        .collect();
    let (xa, ya, sa) = (
        Array1::from(x.clone()),
        Array1::from(y.clone()),
        Array1::from(sigma.clone()),
    );
    let data: [ArrayViewD<'_, f64>; 3] = [xa.view().into_dyn(), ya.view().into_dyn(), sa.view().into_dyn()];
    let fun = |p: &Params, d: &[Tensor]| (&p[0] * &d[0] + &p[1] - &d[1]) / &d[2];
    let model = |x: &Tensor, p: &Params| &p[0] * x + &p[1];
    for absolute in [true, false] {
        let ls = least_squares(
            &fun,
            &[1.0, 0.0],
            &data,
            &LeastSquaresOptions::default().with_absolute_sigma(absolute),
        )
        .unwrap();
        let cf_opts = FitOptions::default()
            .with_sigma(sigma.clone())
            .with_absolute_sigma(absolute);
        let cf = curve_fit(&model, &x, &y, Some(&[1.0, 0.0]), &cf_opts).unwrap();
        for (a, b) in ls.pcov.iter().zip(cf.pcov.iter()) {
            assert!(close(*a, *b, 1e-8), "absolute {absolute}: {} vs {}", ls.pcov, cf.pcov);
        }
    }
    // Closed form for the absolute case: (JᵀJ)⁻¹ of J = [x/σ, 1/σ].
    let (mut sxx, mut sx, mut s1) = (0.0, 0.0, 0.0);
    for (&x, &s) in x.iter().zip(&sigma) {
        let w = 1.0 / (s * s);
        sxx += w * x * x;
        sx += w * x;
        s1 += w;
    }
    let det = sxx * s1 - sx * sx;
    let ls = least_squares(
        &fun,
        &[1.0, 0.0],
        &data,
        &LeastSquaresOptions::default().with_absolute_sigma(true),
    )
    .unwrap();
    assert!(close(ls.pcov[[0, 0]], s1 / det, 1e-9), "{}", ls.pcov);
    assert!(close(ls.pcov[[1, 1]], sxx / det, 1e-9), "{}", ls.pcov);
    assert!(close(ls.pcov[[0, 1]], -sx / det, 1e-9), "{}", ls.pcov);
}

#[test]
fn an_undetermined_parameter_is_marked_and_its_variance_is_inf() {
    common::client();
    // p[2] does not enter the residuals: the data cannot determine it.
    let x = Array1::from((0..50).map(|i| i as f64).collect::<Vec<_>>());
    let y = x.mapv(|x| 3.0 * x - 1.0);
    let data: [ArrayViewD<'_, f64>; 2] = [x.view().into_dyn(), y.view().into_dyn()];
    let fun = |p: &Params, d: &[Tensor]| &p[0] * &d[0] + &p[1] - &d[1] + &p[2] * 0.0;
    let fit = least_squares(&fun, &[1.0, 1.0, 1.0], &data, &LeastSquaresOptions::default()).unwrap();
    assert_eq!(fit.result.not_determined, vec![2], "{:?}", fit.result.status);
    assert!(fit.pcov[[2, 2]].is_infinite());
    assert!(
        (fit.popt[0] - 3.0).abs() < 1e-9 && (fit.popt[1] + 1.0).abs() < 1e-8,
        "{}",
        fit.popt
    );
}

#[test]
fn bounds_hold_and_bad_input_is_an_error() {
    common::client();
    let fun = |p: &Params, _d: &[Tensor]| {
        // Minimum at p = 3, outside the upper bound 2: the solution sits on the bound.
        (p.vector() - 3.0).reshape([1])
    };
    let opts = LeastSquaresOptions::default().with_bounds(vec![0.0], vec![2.0]);
    let fit = least_squares(&fun, &[1.0], &[], &opts).unwrap();
    assert!((fit.popt[0] - 2.0).abs() < 1e-8, "x = {}", fit.popt);
    assert_eq!(fit.result.active_mask[0], 1, "upper bound active");
    // A residual that is not a vector, no parameters, non-finite data and a start outside the
    // bounds are errors, not panics.
    let scalar = |p: &Params, _d: &[Tensor]| p.vector().sum();
    let default = LeastSquaresOptions::default();
    assert!(least_squares(&scalar, &[1.0], &[], &default).is_err());
    assert!(least_squares(&fun, &[], &[], &default).is_err());
    let bad = Array1::from(vec![1.0, f64::NAN]);
    assert!(least_squares(&fun, &[1.0], &[bad.view().into_dyn()], &default).is_err());
    assert!(least_squares(&fun, &[5.0], &[], &opts).is_err());
}
