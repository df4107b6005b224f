//! Bad input gets a typed error, never a panic or an abort.

use ndarray::{arr2, Array2};
use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;
use nlsq::Error;

fn line(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * x + &p[1]
}

fn data() -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..10).map(f64::from).collect();
    let y = x.iter().map(|x| 2.0 * x + 1.0 + 0.01 * (x * 7.0).sin()).collect();
    (x, y)
}

fn input_error(r: nlsq::Result<nlsq::fit::CurveFit>, field: &str, needle: &str) {
    match r {
        Err(Error::InvalidInput { field: f, reason }) => {
            assert_eq!(f, field, "{reason}");
            assert!(reason.contains(needle), "{reason} should mention {needle}");
        }
        Err(other) => panic!("expected InvalidInput({field}), got {other}"),
        Ok(fit) => panic!("expected InvalidInput({field}), got a fit {}", fit.popt),
    }
}

#[test]
fn non_finite_inputs_are_rejected_when_check_finite() {
    let (x, y) = data();
    let o = FitOptions::default();
    let p0 = [1.0, 1.0];
    let mut bad = x.clone();
    bad[3] = f64::NAN;
    input_error(curve_fit(&line, &bad, &y, Some(&p0), &o), "xdata", "element 3");
    let mut bad = y.clone();
    bad[0] = f64::INFINITY;
    input_error(curve_fit(&line, &x, &bad, Some(&p0), &o), "ydata", "element 0");
    input_error(curve_fit(&line, &x, &y, Some(&[f64::NAN, 1.0]), &o), "p0", "element 0");
    let mut sigma = vec![1.0; 10];
    sigma[2] = f64::NAN;
    input_error(
        curve_fit(&line, &x, &y, Some(&p0), &o.clone().with_sigma(sigma)),
        "sigma",
        "sigma[2]",
    );
    // With check_finite off, NaN data are the caller's business (no error, no crash).
    let mut yn = y.clone();
    yn[4] = f64::NAN;
    let r = curve_fit(&line, &x, &yn, Some(&p0), &o.clone().with_check_finite(false));
    assert!(
        r.is_err() || r.as_ref().is_ok_and(|f| !f.popt[0].is_finite() || !f.success()),
        "NaN data must not report a clean success"
    );
}

#[test]
fn length_mismatches_are_rejected() {
    let (x, y) = data();
    let o = FitOptions::default();
    input_error(
        curve_fit(&line, &x[..9], &y, Some(&[1.0, 1.0]), &o),
        "xdata",
        "9 points",
    );
    input_error(
        curve_fit(&line, &x, &y, Some(&[1.0, 1.0]), &o.clone().with_sigma(vec![1.0; 3])),
        "sigma",
        "3 values",
    );
    input_error(
        curve_fit(
            &line,
            &x,
            &y,
            Some(&[1.0, 1.0]),
            &o.clone().with_sigma_cov(Array2::eye(3)),
        ),
        "sigma",
        "3x3",
    );
    input_error(
        curve_fit(&line, &[] as &[f64], &[] as &[f64], Some(&[1.0, 1.0]), &o),
        "ydata",
        "no data",
    );
    input_error(curve_fit(&line, &x, &y, None, &o), "p0", "n_params");
    input_error(
        curve_fit(&line, &x, &y, Some(&[1.0, 1.0]), &o.clone().with_n_params(3)),
        "p0",
        "n_params is 3",
    );
}

#[test]
fn fewer_points_than_parameters() {
    let x = [0.0, 1.0];
    let y = [1.0, 3.0];
    let quad = |x: &Tensor, p: &Params| &p[0] * x * x + &p[1] * x + &p[2];
    // lm needs m >= n, as in scipy.
    input_error(
        curve_fit(&quad, &x, &y, Some(&[1.0, 1.0, 1.0]), &FitOptions::default()),
        "ydata",
        "at least as many points",
    );
    // trf accepts it; the covariance cannot be estimated and is all inf.
    let fit = curve_fit(
        &quad,
        &x,
        &y,
        Some(&[1.0, 1.0, 1.0]),
        &FitOptions::default().with_method(Method::Trf),
    )
    .unwrap();
    assert!(fit.pcov.iter().all(|v| v.is_infinite()), "{}", fit.pcov);
    assert!(fit.result.cost < 1e-12, "an interpolating fit: {}", fit.result.cost);
}

#[test]
fn bounds_errors() {
    let (x, y) = data();
    let p0 = [1.0, 1.0];
    input_error(
        curve_fit(
            &line,
            &x,
            &y,
            Some(&p0),
            &FitOptions::default().with_bounds(vec![2.0, 0.0], vec![3.0, 5.0]),
        ),
        "p0",
        "outside its bounds",
    );
    input_error(
        curve_fit(
            &line,
            &x,
            &y,
            Some(&p0),
            &FitOptions::default().with_bounds(vec![0.0], vec![0.0]),
        ),
        "bounds",
        "strictly less",
    );
    input_error(
        curve_fit(
            &line,
            &x,
            &y,
            Some(&p0),
            &FitOptions::default().with_bounds(vec![0.0; 3], vec![9.0]),
        ),
        "bounds.lower",
        "3 values",
    );
    input_error(
        curve_fit(
            &line,
            &x,
            &y,
            Some(&p0),
            &FitOptions::default().with_bounds(vec![f64::NAN], vec![9.0]),
        ),
        "bounds",
        "NaN",
    );
    match curve_fit(
        &line,
        &x,
        &y,
        Some(&p0),
        &FitOptions::default()
            .with_bounds(vec![0.0], vec![9.0])
            .with_method(Method::Lm),
    ) {
        Err(Error::InvalidOption { field: "method", .. }) => {}
        other => panic!("lm with bounds must be an InvalidOption error, got {other:?}"),
    }
    // Infinite bounds are no bounds: lm is fine.
    let fit = curve_fit(
        &line,
        &x,
        &y,
        Some(&p0),
        &FitOptions::default().with_bounds(vec![f64::NEG_INFINITY], vec![f64::INFINITY]),
    );
    assert_eq!(fit.unwrap().result.method, Method::Lm);
}

#[test]
fn sigma_errors() {
    let (x, y) = data();
    let p0 = [1.0, 1.0];
    let mut s = vec![1.0; 10];
    s[5] = 0.0;
    input_error(
        curve_fit(&line, &x, &y, Some(&p0), &FitOptions::default().with_sigma(s)),
        "sigma",
        "sigma[5] = 0",
    );
    let mut s = vec![1.0; 10];
    s[1] = -2.0;
    input_error(
        curve_fit(&line, &x, &y, Some(&p0), &FitOptions::default().with_sigma(s)),
        "sigma",
        "sigma[1] = -2",
    );
    // Not positive definite / not symmetric 2-D sigma.
    let mut cov = Array2::<f64>::eye(10);
    cov[[0, 1]] = 2.0;
    cov[[1, 0]] = 2.0;
    input_error(
        curve_fit(&line, &x, &y, Some(&p0), &FitOptions::default().with_sigma_cov(cov)),
        "sigma",
        "positive definite",
    );
    let mut cov = Array2::<f64>::eye(10);
    cov[[0, 1]] = 0.5;
    input_error(
        curve_fit(&line, &x, &y, Some(&p0), &FitOptions::default().with_sigma_cov(cov)),
        "sigma",
        "symmetric",
    );
    let _ = arr2(&[[1.0]]);
}

#[test]
fn model_of_the_wrong_shape_is_a_trace_error() {
    let (x, y) = data();
    let bad = |x: &Tensor, p: &Params| (&p[0] * x).reshape([2, 5]);
    match curve_fit(
        &bad,
        &x,
        &y,
        Some(&[1.0, 1.0]),
        &FitOptions::default().with_bucket(false),
    ) {
        Err(e @ (Error::ShapeMismatch { .. } | Error::InvalidOp { .. })) => assert!(e.to_string().contains('['), "{e}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    // Using a parameter that does not exist.
    let too_many = |x: &Tensor, p: &Params| &p[0] * x + &p[5];
    assert!(matches!(
        curve_fit(&too_many, &x, &y, Some(&[1.0, 1.0]), &FitOptions::default()),
        Err(Error::InvalidOp { .. })
    ));
}

#[test]
fn model_not_finite_at_p0_is_an_error() {
    let (x, y) = data();
    let logm = |x: &Tensor, p: &Params| (&p[0] * x).ln() + &p[1];
    // p0[0] = -1 makes log of negatives (and log 0 at x = 0): NaN/inf at the start.
    for method in [Method::Lm, Method::Trf] {
        input_error(
            curve_fit(
                &logm,
                &x,
                &y,
                Some(&[-1.0, 1.0]),
                &FitOptions::default().with_method(method),
            ),
            "p0",
            "not finite",
        );
    }
}

#[test]
fn invalid_options_are_rejected() {
    let (x, y) = data();
    let o = FitOptions::default();
    for bad in [
        o.clone().with_tol(-1.0),
        o.clone().with_f_scale(0.0),
        o.clone().with_max_nfev(0),
    ] {
        assert!(matches!(
            curve_fit(&line, &x, &y, Some(&[1.0, 1.0]), &bad),
            Err(Error::InvalidOption { .. })
        ));
    }
    let huber_lm = o.clone().with_method(Method::Lm).with_loss(nlsq::solve::Loss::Huber);
    assert!(matches!(
        curve_fit(&line, &x, &y, Some(&[1.0, 1.0]), &huber_lm),
        Err(Error::InvalidOption { field: "loss", .. })
    ));
}

#[test]
fn sizes_a_user_can_type_are_typed_errors_or_work_never_a_hang_or_abort() {
    // Size helpers on extreme arguments return.
    assert_eq!(nlsq::fit::bucket(usize::MAX), usize::MAX);
    assert!(nlsq::fit::bucket(1 << 40) >= 1 << 40);
    assert!(nlsq::fit::auto_chunk_rows(usize::MAX) >= 256);
    // A fitter for more rows than any memory: an error, not a capacity-overflow panic.
    for m in [usize::MAX, usize::MAX / 2, 1 << 61] {
        match nlsq::fit::CurveFitter::builder(line).capacity(m).params(2).build() {
            Err(Error::InvalidInput { field: "m", reason }) => assert!(reason.contains("memory"), "{reason}"),
            Err(other) => panic!("m = {m}: {other}"),
            Ok(_) => panic!("m = {m}: a fitter"),
        }
    }
    // A chunk larger than the data is the data: the fit is the unchunked one's, without
    // allocating the chunk (2^40 rows would be 24 GB) or a negative dimension (usize::MAX).
    let (x, y) = data();
    let whole = curve_fit(
        &line,
        &x,
        &y,
        Some(&[1.0, 1.0]),
        &FitOptions::default().with_chunk_rows(0),
    )
    .unwrap();
    for rows in [1 << 40, usize::MAX] {
        let fit = curve_fit(
            &line,
            &x,
            &y,
            Some(&[1.0, 1.0]),
            &FitOptions::default().with_chunk_rows(rows),
        )
        .unwrap();
        for j in 0..2 {
            assert!(
                (fit.popt[j] - whole.popt[j]).abs() <= 1e-10 * whole.popt[j].abs(),
                "{rows}: {}",
                fit.popt
            );
        }
    }
}

#[test]
fn residuals_that_are_not_finite_because_of_the_data_blame_the_data_and_extreme_units_are_rescaled() {
    let (x, y) = data();
    let p0 = Some(&[1.0, 1.0][..]);
    let unchecked = FitOptions::default().with_check_finite(false);
    let mut y_nan = y.clone();
    y_nan[3] = f64::NAN;
    input_error(
        curve_fit(&line, &x, &y_nan, p0, &unchecked),
        "ydata",
        "ydata[3] = NaN is not finite",
    );
    let mut x_inf = x.clone();
    x_inf[5] = f64::INFINITY;
    input_error(curve_fit(&line, &x_inf, &y, p0, &unchecked), "xdata", "xdata[5] = inf");
    // Tiny sigma or huge y: curve_fit scales the residuals by a power of two and fits; a fitter
    // hands such a dataset to curve_fit and returns the same answer.
    let tiny = FitOptions::default().with_sigma(vec![1e-300; y.len()]);
    let plain = curve_fit(&line, &x, &y, p0, &FitOptions::default()).unwrap();
    let fit = curve_fit(&line, &x, &y, p0, &tiny).unwrap();
    assert!(
        (fit.popt[0] / plain.popt[0] - 1.0).abs() < 1e-12,
        "{} vs {}",
        fit.popt,
        plain.popt
    );
    let fitter = nlsq::fit::CurveFitter::builder(line)
        .capacity(x.len())
        .params(2)
        .options(tiny)
        .build()
        .unwrap();
    let via_fitter = fitter.fit(&x, &y, p0).unwrap();
    assert_eq!(via_fitter.popt, fit.popt);
    let y_big: Vec<f64> = y.iter().map(|v| v * 1e300).collect();
    let big_p0 = Some(&[1e300, 1e300][..]);
    let fit = curve_fit(&line, &x, &y_big, big_p0, &FitOptions::default()).unwrap();
    assert!(
        (fit.popt[0] / (plain.popt[0] * 1e300) - 1.0).abs() < 1e-10,
        "{}",
        fit.popt
    );
    let fitter = nlsq::fit::CurveFitter::builder(line)
        .capacity(x.len())
        .params(2)
        .build()
        .unwrap();
    let via_fitter = fitter.fit(&x, &y_big, big_p0).unwrap();
    assert_eq!(via_fitter.popt, fit.popt);
    // From a p0 1e300 off the data's scale the Jacobian is too small to compute with: curve_fit
    // and the fitter refuse p0 alike.
    let refused = "too small to compute with";
    input_error(curve_fit(&line, &x, &y_big, p0, &FitOptions::default()), "p0", refused);
    input_error(fitter.fit(&x, &y_big, p0), "p0", refused);
}

#[test]
fn a_fitter_given_a_p0_of_the_wrong_length_says_so() {
    let (x, y) = data();
    let fitter = nlsq::fit::CurveFitter::builder(line)
        .capacity(x.len())
        .params(2)
        .build()
        .unwrap();
    input_error(
        fitter.fit(&x, &y, Some(&[1.0, 1.0, 1.0])),
        "p0",
        "has 3 values but the fitter was built for 2",
    );
}

#[test]
fn options_of_a_fit_in_extreme_units_are_validated_like_any_other() {
    let (x, y) = data();
    let y_small: Vec<f64> = y.iter().map(|v| v * 1e-200).collect();
    let p0 = Some(&[1e-200, 1e-200][..]);
    let bad = FitOptions::default().with_x_scale(nlsq::solve::XScale::Values(vec![1.0, 2.0, 3.0]));
    match curve_fit(&line, &x, &y_small, p0, &bad) {
        Err(Error::InvalidOption { field: "x_scale", .. }) => {}
        other => panic!("{:?}", other.map(|f| f.popt)),
    }
    let good = FitOptions::default()
        .with_x_scale(nlsq::solve::XScale::Values(vec![1e-200, 1e-200]))
        .with_bounds(vec![0.0, -1e-190], vec![1e-190, 1e-190]);
    let fit = curve_fit(&line, &x, &y_small, p0, &good).unwrap();
    assert!(fit.success(), "{fit}");
    assert!((fit.popt[0] / 2e-200 - 1.0).abs() < 0.01, "{}", fit.popt);
}

#[test]
fn a_fitter_builder_without_capacity_or_parameters_says_which_is_missing() {
    let line = |x: &Tensor, p: &Params| &p[0] * x + &p[1];
    match nlsq::fit::CurveFitter::builder(line).params(2).build() {
        Err(Error::InvalidOption { field, .. }) => assert_eq!(field, "capacity"),
        other => panic!("expected a missing capacity, got {other:?}"),
    }
    match nlsq::fit::CurveFitter::builder(line).capacity(20).build() {
        Err(Error::InvalidOption { field, .. }) => assert_eq!(field, "n_params"),
        other => panic!("expected a missing parameter count, got {other:?}"),
    }
    // The options' n_params stands in for `params`; the fitter then fits.
    let fitter = nlsq::fit::CurveFitter::builder(line)
        .capacity(20)
        .options(FitOptions::default().with_n_params(2))
        .build()
        .unwrap();
    let x: Vec<f64> = (0..20).map(|i| i as f64).collect();
    let y: Vec<f64> = x.iter().map(|x| 3.0 * x - 1.0).collect();
    let fit = fitter.fit(&x, &y, None).unwrap();
    assert!(
        (fit.popt[0] - 3.0).abs() < 1e-9 && (fit.popt[1] + 1.0).abs() < 1e-9,
        "{}",
        fit.popt
    );
}

#[test]
fn each_tolerance_setter_changes_only_its_own_tolerance() {
    let o = FitOptions::default()
        .with_ftol(1e-3)
        .with_xtol(1e-4)
        .with_gtol(1e-5)
        .with_method(nlsq::Method::Trf);
    assert_eq!((o.solver.ftol, o.solver.xtol, o.solver.gtol), (1e-3, 1e-4, 1e-5));
    assert_eq!(o.solver.method, Some(nlsq::Method::Trf));
}
