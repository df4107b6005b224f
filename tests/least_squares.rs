//! `least_squares` for general residuals against closed forms and against `curve_fit`.

mod common;

use ndarray::{Array1, ArrayViewD};
use nlsq::fit::{curve_fit, least_squares, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;

fn noise(i: usize) -> f64 {
    ((i as f64 * 12.9898).sin() * 43758.5453).fract() - 0.5
}

#[test]
fn rosenbrock_residuals_reach_the_minimum_with_both_methods() {
    common::client();
    // r = [10 (x1 − x0²), 1 − x0]: the minimum is x = (1, 1) with zero cost; no data arrays.
    let fun = |p: &Tensor, _data: &[Tensor]| {
        let (x0, x1) = (p.at(0i64), p.at(1i64));
        let r0 = (&x1 - &x0 * &x0) * 10.0;
        let r1 = -&x0 + 1.0;
        p.graph().concat(&[r0.reshape([1]), r1.reshape([1])], 0)
    };
    for method in [Method::Lm, Method::Trf] {
        let opts = FitOptions::default().with_method(method).with_tol(1e-12);
        let r = least_squares(&fun, &[-1.2, 1.0], &[], &opts).unwrap();
        assert!(r.status.success(), "{method}: {:?}", r.status);
        for v in r.x.iter() {
            assert!((v - 1.0).abs() < 1e-8, "{method}: x = {}", r.x);
        }
        assert!(r.cost < 1e-20, "{method}: cost {}", r.cost);
        // Jacobian at the solution: [[-20 x0, 10], [-1, 0]].
        let want = [[-20.0, 10.0], [-1.0, 0.0]];
        let jac = r.jac.as_ref().expect("least_squares returns J");
        for (i, row) in want.iter().enumerate() {
            for (j, w) in row.iter().enumerate() {
                assert!((jac[[i, j]] - w).abs() < 1e-6, "{method}: jac {jac}");
            }
        }
    }
}

#[test]
fn data_are_inputs_and_the_answer_equals_curve_fit() {
    common::client();
    let m = 300;
    let x: Vec<f64> = (0..m).map(|i| 4.0 * i as f64 / m as f64).collect();
    let y: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &x)| 2.0 * (-0.8 * x).exp() + 0.3 + 0.02 * noise(i))
        .collect();
    let fun = |p: &Tensor, d: &[Tensor]| &p.at(0i64) * (-&p.at(1i64) * &d[0]).exp() + &p.at(2i64) - &d[1];
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let (xa, ya) = (Array1::from(x.clone()), Array1::from(y.clone()));
    for method in [Method::Lm, Method::Trf] {
        let opts = FitOptions::default().with_method(method);
        let data: [ArrayViewD<'_, f64>; 2] = [xa.view().into_dyn(), ya.view().into_dyn()];
        let ls = least_squares(&fun, &[1.0, 1.0, 1.0], &data, &opts).unwrap();
        let cf = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
        assert!(ls.status.success());
        assert_eq!(ls.nfev, cf.result.nfev, "{method}");
        for (a, b) in ls.x.iter().zip(cf.popt.iter()) {
            assert!((a - b).abs() <= 1e-10 * b.abs(), "{method}: {} vs {}", ls.x, cf.popt);
        }
        assert!((ls.cost - cf.result.cost).abs() <= 1e-12 * cf.result.cost);
        assert_eq!(ls.fun.as_ref().map(|f| f.len()), Some(m));
        // Other data of the same shapes reuse the executable and give their own answer.
        let y2: Vec<f64> = x.iter().map(|&x| 1.5 * (-0.5 * x).exp() - 0.1).collect();
        let ya2 = Array1::from(y2);
        let data2: [ArrayViewD<'_, f64>; 2] = [xa.view().into_dyn(), ya2.view().into_dyn()];
        let ls2 = least_squares(&fun, &[1.0, 1.0, 1.0], &data2, &opts).unwrap();
        for (a, b) in ls2.x.iter().zip([1.5, 0.5, -0.1]) {
            assert!((a - b).abs() < 1e-8, "{method}: {}", ls2.x);
        }
    }
}

#[test]
fn bounds_hold_and_bad_input_is_an_error() {
    common::client();
    let fun = |p: &Tensor, _d: &[Tensor]| {
        // Minimum at p = 3, outside the upper bound 2: the solution sits on the bound.
        (p - 3.0).reshape([1])
    };
    let opts = FitOptions::default().with_bounds(vec![0.0], vec![2.0]);
    let r = least_squares(&fun, &[1.0], &[], &opts).unwrap();
    assert!((r.x[0] - 2.0).abs() < 1e-8, "x = {}", r.x);
    assert_eq!(r.active_mask[0], 1, "upper bound active");
    // A residual that is not a vector, and sigma, are errors, not panics.
    let scalar = |p: &Tensor, _d: &[Tensor]| p.sum();
    assert!(least_squares(&scalar, &[1.0], &[], &FitOptions::default()).is_err());
    let sig = FitOptions::default().with_sigma(vec![1.0]);
    assert!(least_squares(&fun, &[1.0], &[], &sig).is_err());
}
