//! Named, fixed and tied parameters (`fit::Parameters`, `curve_fit_parameters`): a fit with a
//! parameter fixed equals the fit of the model with that value written in as a literal, a tie
//! equals the model written with one parameter for both, a new fixed value reuses the
//! executable, and the solver, `dof` and statistics count only the varying parameters.

use nlsq::fit::{curve_fit, curve_fit_parameters, ExecutableSource, FitOptions, Parameter, ParameterKind, Parameters};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;
use nlsq::Error;

/// A decay `2.5 exp(-1.3 x) + 0.4` with a deterministic wiggle as noise, `m` points.
fn decay(m: usize) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..m).map(|i| i as f64 * 5.0 / m as f64).collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, x)| 2.5 * (-1.3 * x).exp() + 0.4 + 0.01 * ((i * 7919 % 101) as f64 / 50.0 - 1.0))
        .collect();
    (x, y)
}

fn tight() -> FitOptions {
    FitOptions::default().with_ftol(1e-15).with_xtol(1e-15).with_gtol(1e-15)
}

fn close(what: &str, got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want.abs().max(1e-300);
    assert!(err <= rel, "{what}: {got:e} vs {want:e} (relative {err:e} > {rel:e})");
}

fn decay_params(c: f64) -> Parameters {
    Parameters::new()
        .with(Parameter::new("a", 1.0))
        .with(Parameter::new("k", 1.0))
        .with(Parameter::new("c", c).fixed())
}

#[test]
fn a_fixed_parameter_fits_as_the_literal_would() {
    let named = |x: &Tensor, p: &Params| &p["a"] * (-&p["k"] * x).exp() + &p["c"];
    // 200 points: the Householder path; 5,000: chunked (and materialised); both methods.
    for (m, method, bounded) in [
        (200, Method::Lm, false),
        (200, Method::Trf, true),
        (5_000, Method::Lm, false),
        (5_000, Method::Trf, true),
    ] {
        let (x, y) = decay(m);
        for c in [0.3, 0.45] {
            let mut params = decay_params(c);
            if bounded {
                params.add(Parameter::new("k", 1.0).with_bounds(0.0, 10.0));
            }
            let opts = tight().with_method(method);
            let fit = curve_fit_parameters(&named, &x, &y, &params, &opts).unwrap();
            let literal = move |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + c;
            let lit_opts = if bounded {
                opts.clone()
                    .with_bounds(vec![f64::NEG_INFINITY, 0.0], vec![f64::INFINITY, 10.0])
            } else {
                opts.clone()
            };
            let want = curve_fit(&literal, &x, &y, Some(&[1.0, 1.0]), &lit_opts).unwrap();
            let what = format!("m {m} {method:?} c {c}");
            assert!(fit.fit.success(), "{what}: {}", fit.fit.result.message());
            assert_eq!(
                fit.fit.popt.len(),
                2,
                "{what}: the solver sees the varying parameters only"
            );
            for j in 0..2 {
                close(&format!("{what} popt[{j}]"), fit.fit.popt[j], want.popt[j], 1e-10);
                for l in 0..2 {
                    close(
                        &format!("{what} pcov[{j},{l}]"),
                        fit.fit.pcov[[j, l]],
                        want.pcov[[j, l]],
                        1e-9,
                    );
                }
            }
            assert_eq!(fit.fit.result.nfev, want.result.nfev, "{what}");
            assert_eq!(fit.fit.dof, m - 2, "{what}: dof counts the varying parameters");
            let (s, t) = (fit.fit.statistics.as_ref().unwrap(), want.statistics.as_ref().unwrap());
            close(&format!("{what} aic"), s.aic, t.aic, 1e-9);
            close(&format!("{what} r2"), s.r_squared.unwrap(), t.r_squared.unwrap(), 1e-12);
            let cp = fit.get("c").unwrap();
            assert_eq!((cp.value, cp.stderr, &cp.kind), (c, None, &ParameterKind::Fixed));
            assert_eq!(fit.value("k"), Some(fit.fit.popt[1]));
            assert_eq!(fit.covariance[[2, 2]], 0.0);
            assert_eq!(fit.correlation("a", "c"), None);
            close(
                &format!("{what} corr"),
                fit.correlation("a", "k").unwrap(),
                want.correlation()[[0, 1]],
                1e-9,
            );
        }
    }
}

#[test]
fn a_new_fixed_value_reuses_the_executable() {
    let model = |x: &Tensor, p: &Params| &p["a"] * (-&p["k"] * x).exp() + &p["c"];
    let (x, y) = decay(300);
    let opts = tight();
    let first = curve_fit_parameters(&model, &x, &y, &decay_params(0.123), &opts).unwrap();
    let again = curve_fit_parameters(&model, &x, &y, &decay_params(0.456), &opts).unwrap();
    assert_eq!(
        again.fit.result.executable,
        ExecutableSource::Memory,
        "a fixed value is an input"
    );
    assert_ne!(first.fit.popt[0], again.fit.popt[0], "the new value is used");
    // Fixing another parameter is another program.
    let other = Parameters::new()
        .with(Parameter::new("a", 2.5).fixed())
        .with(Parameter::new("k", 1.0))
        .with(Parameter::new("c", 0.1));
    let fit = curve_fit_parameters(&model, &x, &y, &other, &opts).unwrap();
    assert_ne!(fit.fit.result.executable, ExecutableSource::Memory);
    assert_eq!(fit.fit.popt.len(), 2);
}

#[test]
fn a_tie_fits_as_one_shared_parameter() {
    // Two Gaussians of one width, written once with w2 tied to w1 and once with one width.
    let x: Vec<f64> = (0..400).map(|i| -5.0 + i as f64 * 0.025).collect();
    let y: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let g = |a: f64, c: f64| a * (-(x - c) * (x - c) / (2.0 * 0.7 * 0.7)).exp();
            g(1.0, -1.5) + g(0.6, 1.2) + 0.01 * ((i * 613 % 97) as f64 / 48.0 - 1.0)
        })
        .collect();
    let gauss = |x: &Tensor, a: &Tensor, c: &Tensor, w: &Tensor| {
        let d = x - c;
        a * (-(&d * &d) / (w * w * 2.0)).exp()
    };
    let tied = |x: &Tensor, p: &Params| gauss(x, &p["a1"], &p["c1"], &p["w1"]) + gauss(x, &p["a2"], &p["c2"], &p["w2"]);
    let shared = |x: &Tensor, p: &Params| gauss(x, &p[0], &p[1], &p[2]) + gauss(x, &p[3], &p[4], &p[2]);
    let params = Parameters::new()
        .with(Parameter::new("a1", 0.8))
        .with(Parameter::new("c1", -1.0))
        .with(Parameter::new("w1", 1.0))
        .with(Parameter::new("a2", 0.5))
        .with(Parameter::new("c2", 1.0))
        .with(Parameter::new("w2", 99.0).tied("w1"));
    let fit = curve_fit_parameters(&tied, &x, &y, &params, &tight()).unwrap();
    let want = curve_fit(&shared, &x, &y, Some(&[0.8, -1.0, 1.0, 0.5, 1.0]), &tight()).unwrap();
    assert_eq!(fit.fit.popt.len(), 5);
    for j in 0..5 {
        close(&format!("popt[{j}]"), fit.fit.popt[j], want.popt[j], 1e-10);
        close(&format!("perr[{j}]"), fit.fit.perr[j], want.perr[j], 1e-9);
    }
    let (w1, w2) = (fit.get("w1").unwrap(), fit.get("w2").unwrap());
    assert_eq!(w2.kind, ParameterKind::Tied("w1".into()));
    assert_eq!(w2.value, w1.value);
    close("w2 stderr", w2.stderr.unwrap(), w1.stderr.unwrap(), 1e-9);
    close("corr(w1, w2)", fit.correlation("w1", "w2").unwrap(), 1.0, 1e-9);
    assert_eq!(fit.fit.dof, 400 - 5);
}

#[test]
fn a_tie_of_an_expression_propagates_its_error() {
    // y = a x + b x² with b tied to 2a + c, c fixed: one varying parameter.
    let x: Vec<f64> = (1..=60).map(|i| i as f64 * 0.1).collect();
    let y: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, x)| 0.7 * x + (2.0 * 0.7 + 0.1) * x * x + 0.02 * ((i * 37 % 11) as f64 - 5.0))
        .collect();
    let model = |x: &Tensor, p: &Params| &p["a"] * x + &p["b"] * x * x;
    let params = Parameters::new()
        .with(Parameter::new("a", 1.0))
        .with(Parameter::new("b", 0.0).tied("2*a + c"))
        .with(Parameter::new("c", 0.1).fixed());
    let fit = curve_fit_parameters(&model, &x, &y, &params, &tight()).unwrap();
    let literal = |x: &Tensor, p: &Params| &p[0] * x + (&p[0] * 2.0 + 0.1) * x * x;
    let want = curve_fit(&literal, &x, &y, Some(&[1.0]), &tight()).unwrap();
    close("a", fit.value("a").unwrap(), want.popt[0], 1e-10);
    close("b", fit.value("b").unwrap(), 2.0 * want.popt[0] + 0.1, 1e-12);
    close(
        "b stderr",
        fit.get("b").unwrap().stderr.unwrap(),
        2.0 * want.perr[0],
        1e-7,
    );
    close("cov(a, b)", fit.covariance[[0, 1]], 2.0 * want.pcov[[0, 0]], 1e-7);
    let ci = fit.confidence_intervals(0.95).unwrap();
    assert!(ci[2].is_none() && ci[0].is_some());
    assert_eq!(fit.values().len(), 3);
}

#[test]
fn names_and_positions_are_one_parameter_list() {
    let (x, y) = decay(100);
    let by_name = |x: &Tensor, p: &Params| &p["a"] * (-&p["k"] * x).exp() + &p["c"];
    let by_pos = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let params = Parameters::from_names(&["a", "k", "c"], &[1.0, 1.0, 1.0]);
    let a = curve_fit_parameters(&by_name, &x, &y, &params, &tight()).unwrap();
    let b = curve_fit_parameters(&by_pos, &x, &y, &params, &tight()).unwrap();
    assert_eq!(a.fit.popt, b.fit.popt);
    let plain = curve_fit(&by_pos, &x, &y, Some(&[1.0, 1.0, 1.0]), &tight()).unwrap();
    assert_eq!(a.fit.popt, plain.popt);
    // An expression model's parameters are its names.
    let expr = nlsq::expr::Expr::parse("a*exp(-k*x) + c", &["x"]).unwrap();
    let model = expr.model();
    let params = Parameters::from_names(expr.params(), &[1.0, 1.0]).with(Parameter::new("c", 0.4).fixed());
    let e = curve_fit_parameters(&model, &x, &y, &params, &tight()).unwrap();
    assert_eq!(e.fit.popt.len(), 2);
    assert!(e.to_string().contains("fixed"), "{e}");
}

#[test]
fn an_unknown_name_in_the_model_is_a_trace_error() {
    let (x, y) = decay(50);
    let model = |x: &Tensor, p: &Params| &p["a"] * (-&p["rate"] * x).exp();
    let params = Parameters::from_names(&["a", "k"], &[1.0, 1.0]);
    match curve_fit_parameters(&model, &x, &y, &params, &tight()) {
        Err(Error::InvalidOp { reason, .. }) => {
            assert!(reason.contains("'rate'") && reason.contains("a, k"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // By name without Parameters.
    match curve_fit(&model, &x, &y, Some(&[1.0, 1.0]), &tight()) {
        Err(Error::InvalidOp { reason, .. }) => assert!(reason.contains("positional"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn undetermined_parameters_reach_their_ties_and_fixing_one_cures_it() {
    let x: Vec<f64> = (0..40).map(|i| i as f64 * 0.25).collect();
    let y: Vec<f64> = x.iter().map(|x| 3.0 * x + 1.0).collect();
    let model = |x: &Tensor, p: &Params| &p["a"] * x + &p["b"] * x + &p["c"];
    let params =
        Parameters::from_names(&["a", "b", "c"], &[1.0, 1.0, 0.0]).with(Parameter::new("d", 0.0).tied("a + c"));
    let fit = curve_fit_parameters(&model, &x, &y, &params, &tight()).unwrap();
    let (a, c, d) = (fit.get("a").unwrap(), fit.get("c").unwrap(), fit.get("d").unwrap());
    assert!(!a.determined && c.determined && !d.determined);
    assert_eq!(d.stderr, Some(f64::INFINITY));
    let warning = fit.not_determined_warning().unwrap();
    assert!(warning.contains("a, b"), "{warning}");
    let fixed = params.clone().with(Parameter::new("b", 0.0).fixed());
    let fit = curve_fit_parameters(&model, &x, &y, &fixed, &tight()).unwrap();
    assert!(fit.params.iter().all(|p| p.determined), "{fit}");
    close("a", fit.value("a").unwrap(), 3.0, 1e-12);
    assert!(fit.get("d").unwrap().stderr.unwrap().is_finite());
}

#[test]
fn fixed_parameters_in_extreme_units() {
    // y in units of 1e200: the fit rescales; the fixed value stays in the caller's units.
    let (x, y) = decay(200);
    let big: Vec<f64> = y.iter().map(|v| v * 1e200).collect();
    let model = |x: &Tensor, p: &Params| &p["a"] * (-&p["k"] * x).exp() + &p["c"];
    let params = Parameters::new()
        .with(Parameter::new("a", 1e200))
        .with(Parameter::new("k", 1.0))
        .with(Parameter::new("c", 0.4e200).fixed());
    let fit = curve_fit_parameters(&model, &x, &big, &params, &tight()).unwrap();
    let small = curve_fit_parameters(&model, &x, &y, &decay_params(0.4), &tight()).unwrap();
    close("a", fit.value("a").unwrap(), small.value("a").unwrap() * 1e200, 1e-9);
    close("k", fit.value("k").unwrap(), small.value("k").unwrap(), 1e-9);
}

#[test]
fn options_that_parameters_replace_are_refused() {
    let (x, y) = decay(50);
    let model = |x: &Tensor, p: &Params| &p["a"] * (-&p["k"] * x).exp() + &p["c"];
    let opts = FitOptions::default().with_bounds(vec![0.0], vec![10.0]);
    assert!(matches!(
        curve_fit_parameters(&model, &x, &y, &decay_params(0.4), &opts),
        Err(Error::InvalidOption { field: "bounds", .. })
    ));
    // Multistart with ties is fine.
    let tied = Parameters::from_names(&["a", "k"], &[1.0, 1.0]).with(Parameter::new("c", 0.0).tied("a/10"));
    let fit = curve_fit_parameters(&model, &x, &y, &tied, &FitOptions::default().with_starts(4)).unwrap();
    assert!(fit.fit.starts.is_some());
    let bad = Parameters::new()
        .with(Parameter::new("a", 1.0))
        .with(Parameter::new("k", 0.0).tied("k"));
    assert!(matches!(
        curve_fit_parameters(&model, &x, &y, &bad, &FitOptions::default()),
        Err(Error::InvalidParameter { ref name, .. }) if name == "k"
    ));
}

#[test]
fn multistart_holds_the_fixed_parameters() {
    // From a poor start, 16 starts of the varying parameters with c held: the multistart fit of
    // the model with c written as a literal (the same starts: they depend on p0, the bounds and
    // the seed of the two varying parameters).
    let (x, y) = decay(400);
    let named = |x: &Tensor, p: &Params| &p["a"] * (-&p["k"] * x).exp() + &p["c"];
    let literal = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + 0.4;
    for method in [Method::Lm, Method::Trf] {
        let opts = tight().with_method(method).with_starts(16);
        let params = Parameters::new()
            .with(Parameter::new("a", -3.0))
            .with(Parameter::new("k", 20.0))
            .with(Parameter::new("c", 0.4).fixed());
        let fit = curve_fit_parameters(&named, &x, &y, &params, &opts).unwrap();
        let want = curve_fit(&literal, &x, &y, Some(&[-3.0, 20.0]), &opts).unwrap();
        let (s, t) = (fit.fit.starts.as_ref().unwrap(), want.starts.as_ref().unwrap());
        assert_eq!(s.costs.len(), 16);
        assert_eq!((s.best, s.reached), (t.best, t.reached), "{method:?}");
        for j in 0..2 {
            close(&format!("{method:?} popt[{j}]"), fit.fit.popt[j], want.popt[j], 1e-10);
        }
        assert_eq!(fit.value("c"), Some(0.4));
        assert!(fit.fit.success(), "{method:?}");
    }
}
