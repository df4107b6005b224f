//! Global fits (`fit::global::curve_fit_global`): several datasets, one model, shared and local
//! parameters. At tight tolerances a global fit equals the stacked least-squares problem
//! written out by hand (the same solver parameters, the datasets selected by an index row), for
//! LM and TRF, with bounds and sigma; with nothing shared it equals independent fits.

use nlsq::fit::global::{curve_fit_global, Dataset};
use nlsq::fit::{curve_fit, curve_fit_parameters, FitOptions, Parameter, Parameters};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;
use nlsq::Error;

/// Three decays `a_d exp(-1.3 x) + c_d` of 50, 80 and 120 points with a deterministic wiggle.
fn decays() -> Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    [(50usize, 1.0, 0.2), (80, 2.0, -0.1), (120, 3.5, 0.4)]
        .iter()
        .enumerate()
        .map(|(d, &(m, a, c))| {
            let x: Vec<f64> = (0..m).map(|i| i as f64 * 4.0 / m as f64).collect();
            let y = x
                .iter()
                .enumerate()
                .map(|(i, x)| a * (-1.3 * x).exp() + c + 0.01 * (((i + 17 * d) * 7919 % 101) as f64 / 50.0 - 1.0))
                .collect();
            let sigma = (0..m).map(|i| 0.01 * (1.0 + (i % 3) as f64)).collect();
            (x, y, sigma)
        })
        .collect()
}

fn tight() -> FitOptions {
    FitOptions::default().with_ftol(1e-15).with_xtol(1e-15).with_gtol(1e-15)
}

fn close(what: &str, got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want.abs().max(1e-300);
    assert!(err <= rel, "{what}: {got:e} vs {want:e} (relative {err:e} > {rel:e})");
}

type Model = dyn Fn(&Tensor, &Params) -> Tensor;

fn decay(x: &Tensor, p: &Params) -> Tensor {
    &p["a"] * (-&p["k"] * x).exp() + &p["c"]
}

fn params() -> Parameters {
    Parameters::new()
        .with(Parameter::new("a", 1.0))
        .with(Parameter::new("k", 1.0))
        .with(Parameter::new("c", 0.0))
}

#[test]
fn a_shared_rate_equals_the_stacked_problem_written_out() {
    let sets = decays();
    // The stacked problem by hand: x row 0 the variable, row 1 the dataset; p = [k, a0, c0, a1,
    // c1, a2, c2], the order of the global fit's solver parameters.
    let (mut xs, mut idx, mut ys, mut ss) = (vec![], vec![], vec![], vec![]);
    for (d, (x, y, s)) in sets.iter().enumerate() {
        xs.extend(x);
        idx.extend(std::iter::repeat(d as f64).take(x.len()));
        ys.extend(y);
        ss.extend(s);
    }
    let m = xs.len();
    let x2 = ndarray::Array2::from_shape_vec((2, m), [xs, idx].concat()).unwrap();
    let stacked = |x: &Tensor, p: &Params| {
        let (t, d) = (x.row(0), x.row(1));
        let pick = |q: usize| {
            let mut v = p[1 + 2 * 2 + q].clone();
            for k in (0..2).rev() {
                v = d.lt(k as f64 + 0.5).select(&p[1 + 2 * k + q], &v);
            }
            v
        };
        pick(0) * (-&p[0] * &t).exp() + pick(1)
    };
    for (method, bounded, weighted) in [
        (Method::Lm, false, false),
        (Method::Lm, false, true),
        (Method::Trf, true, false),
        (Method::Trf, true, true),
    ] {
        let what = format!("{method:?} bounded {bounded} weighted {weighted}");
        let mut ps = params();
        if bounded {
            ps.add(Parameter::new("k", 1.0).with_bounds(0.0, 5.0));
        }
        let data: Vec<Dataset> = sets
            .iter()
            .map(|(x, y, s)| {
                let d = Dataset::new(x, y);
                if weighted {
                    d.with_sigma(s)
                } else {
                    d
                }
            })
            .collect();
        let opts = tight().with_method(method);
        let fit = curve_fit_global(&decay, &data, &ps, &["k"], &opts).unwrap();
        assert_eq!(
            fit.names,
            ["k", "a[0]", "c[0]", "a[1]", "c[1]", "a[2]", "c[2]"],
            "{what}"
        );
        let mut want_opts = opts.clone();
        if bounded {
            let inf = f64::INFINITY;
            want_opts = want_opts.with_bounds([vec![0.0], vec![-inf; 6]].concat(), [vec![5.0], vec![inf; 6]].concat());
        }
        if weighted {
            want_opts = want_opts.with_sigma(ss.clone());
        }
        let p0 = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let want = curve_fit(&stacked, &x2, &ys, Some(&p0), &want_opts).unwrap();
        assert!(fit.fit.success(), "{what}: {}", fit.fit.result.message());
        for j in 0..7 {
            close(&format!("{what} popt[{j}]"), fit.fit.popt[j], want.popt[j], 1e-10);
            for l in 0..7 {
                let (g, w) = (fit.fit.pcov[[j, l]], want.pcov[[j, l]]);
                assert!(
                    (g - w).abs() <= 1e-9 * (fit.fit.pcov[[j, j]] * fit.fit.pcov[[l, l]]).sqrt(),
                    "{what} pcov[{j},{l}] {g} {w}"
                );
            }
        }
        assert_eq!(fit.fit.dof, m - 7);
        close(&format!("{what} k"), fit.value(1, "k").unwrap(), 1.3, 2e-2);
        for d in 0..3 {
            let k = fit.get(d, "k").unwrap();
            assert_eq!((k.value, k.stderr), (fit.fit.popt[0], Some(fit.fit.perr[0])), "{what}");
            assert_eq!(fit.value(d, "a"), Some(fit.fit.popt[1 + 2 * d]), "{what}");
        }
        assert!(fit.to_string().contains("dataset 2"));
    }
}

#[test]
fn nothing_shared_equals_independent_fits() {
    let sets = decays();
    let data: Vec<Dataset> = sets.iter().map(|(x, y, s)| Dataset::new(x, y).with_sigma(s)).collect();
    let opts = tight().with_absolute_sigma(true);
    let fit = curve_fit_global(&decay, &data, &params(), &[], &opts).unwrap();
    for (d, (x, y, s)) in sets.iter().enumerate() {
        let one = curve_fit_parameters(&decay, x, y, &params(), &opts.clone().with_sigma(s.clone())).unwrap();
        for name in ["a", "k", "c"] {
            let (g, w) = (fit.get(d, name).unwrap(), one.get(name).unwrap());
            // The combined problem stops by tests on all of it, each fit by its own: 1e-9.
            close(&format!("{d} {name}"), g.value, w.value, 1e-9);
            close(
                &format!("{d} {name} stderr"),
                g.stderr.unwrap(),
                w.stderr.unwrap(),
                1e-8,
            );
        }
    }
}

#[test]
fn fixed_tied_and_per_dataset_starts() {
    let sets = decays();
    // c tied to a/10 in each dataset, k fixed at its value: a program input, reused.
    let ps = |k: f64| {
        Parameters::new()
            .with(Parameter::new("a", 1.0))
            .with(Parameter::new("k", k).fixed())
            .with(Parameter::new("c", 0.0).tied("a/10"))
    };
    let data: Vec<Dataset> = sets.iter().map(|(x, y, _)| Dataset::new(x, y)).collect();
    let fit = curve_fit_global(&decay, &data, &ps(1.3), &[], &tight()).unwrap();
    assert_eq!(fit.names, ["a[0]", "a[1]", "a[2]"]);
    for d in 0..3 {
        let (a, c) = (fit.get(d, "a").unwrap(), fit.get(d, "c").unwrap());
        close("tie", c.value, a.value / 10.0, 1e-12);
        close("tie stderr", c.stderr.unwrap(), a.stderr.unwrap() / 10.0, 1e-6);
        assert_eq!(fit.get(d, "k").unwrap().stderr, None);
    }
    let again = curve_fit_global(&decay, &data, &ps(1.25), &[], &tight()).unwrap();
    assert_eq!(again.fit.result.executable, nlsq::fit::ExecutableSource::Memory);
    // Starting a dataset's local parameter elsewhere reaches the same minimum.
    let moved: Vec<Dataset> = data.iter().cloned().map(|d| d.with_start("a", 2.5)).collect();
    let other = curve_fit_global(&decay, &moved, &ps(1.3), &[], &tight()).unwrap();
    for j in 0..3 {
        close("start", other.fit.popt[j], fit.fit.popt[j], 1e-9);
    }
}

#[test]
fn bad_global_input_is_a_typed_error_naming_it() {
    let sets = decays();
    let data: Vec<Dataset> = sets.iter().map(|(x, y, _)| Dataset::new(x, y)).collect();
    let opts = FitOptions::default();
    let named = |r: nlsq::Result<nlsq::fit::GlobalFit>| match r {
        Err(Error::InvalidParameter { name, reason }) => format!("{name}: {reason}"),
        Err(e) => format!("other: {e}"),
        Ok(_) => "ok".into(),
    };
    let e = named(curve_fit_global(&decay, &data, &params(), &["rate"], &opts));
    assert!(e.starts_with("rate: listed as shared"), "{e}");
    let tied = params().with(Parameter::new("c", 0.0).tied("a"));
    let e = named(curve_fit_global(&decay, &data, &tied, &["c"], &opts));
    assert!(e.starts_with("c: tied to 'a'"), "{e}");
    let e = named(curve_fit_global(
        &decay,
        &[data[0].clone().with_start("k", 1.0)],
        &params(),
        &["k"],
        &opts,
    ));
    assert!(e.starts_with("k: start 1 for dataset 0: not a local"), "{e}");
    let short = [data[0].clone(), Dataset::new(&sets[0].0[..1], &sets[0].1[..1])];
    let e = named(curve_fit_global(&decay, &short, &params(), &["k"], &opts));
    assert!(
        e.contains("dataset 1 has 1 point, fewer than its 2 local parameters (a, c)"),
        "{e}"
    );
    let mixed = [data[0].clone().with_sigma(&sets[0].2), data[1].clone()];
    let e = named(curve_fit_global(&decay, &mixed, &params(), &["k"], &opts));
    assert!(e.contains("give every dataset sigma, or none"), "{e}");
    use nlsq::fit::global::{curve_fit_global_with, GlobalPath};
    let many: Vec<Dataset> = (0..40).map(|i| data[i % 3].clone()).collect();
    let e = named(curve_fit_global_with(
        &decay,
        &many,
        &params(),
        &["k"],
        &opts,
        GlobalPath::Dense,
    ));
    assert!(
        e.contains("make 81 solver parameters") && e.contains("at most 64"),
        "{e}"
    );
    // Automatically the Schur path, which takes no bounds, no shared-less or local-less fit.
    assert!(curve_fit_global(&decay, &many, &params(), &["k"], &opts)
        .unwrap()
        .fit
        .success());
    let bounded = params().with(Parameter::new("a", 1.0).with_bounds(0.0, 10.0));
    let e = named(curve_fit_global(&decay, &many, &bounded, &["k"], &opts));
    assert!(e.contains("lm without bounds"), "{e}");
    let e = named(curve_fit_global_with(
        &decay,
        &data,
        &params(),
        &[],
        &opts,
        GlobalPath::Schur,
    ));
    assert!(e.contains("at least one of each"), "{e}");
    let e = named(curve_fit_global(&decay, &[], &params(), &[], &opts));
    assert!(e.contains("no datasets"), "{e}");
    let e = named(curve_fit_global(
        &decay,
        &data,
        &params(),
        &["k"],
        &opts.clone().with_sigma(vec![1.0]),
    ));
    assert!(e.contains("sigma"), "{e}");
}

#[test]
fn the_schur_path_equals_the_dense_path() {
    use nlsq::fit::global::{curve_fit_global_with, GlobalPath};
    let sets = decays();
    for weighted in [false, true] {
        for fixed in [false, true] {
            let what = format!("weighted {weighted} fixed {fixed}");
            let data: Vec<Dataset> = sets
                .iter()
                .map(|(x, y, s)| {
                    if weighted {
                        Dataset::new(x, y).with_sigma(s)
                    } else {
                        Dataset::new(x, y)
                    }
                })
                .collect();
            // With c fixed, a tie b = a/2 (in a model that reads b) keeps two locals.
            let (ps, model): (Parameters, &Model) = if fixed {
                (
                    Parameters::new()
                        .with(Parameter::new("a", 1.0))
                        .with(Parameter::new("k", 1.0))
                        .with(Parameter::new("c", 0.1).fixed())
                        .with(Parameter::new("b", 0.0))
                        .with(Parameter::new("h", 0.0).tied("b/2")),
                    &|x: &Tensor, p: &Params| {
                        &p["a"] * (-&p["k"] * x).exp() + &p["c"] + &p["b"] * x * 0.01 + &p["h"] * 0.0
                    },
                )
            } else {
                (params(), &decay)
            };
            let dense = curve_fit_global_with(model, &data, &ps, &["k"], &tight(), GlobalPath::Dense).unwrap();
            let schur = curve_fit_global_with(model, &data, &ps, &["k"], &tight(), GlobalPath::Schur).unwrap();
            assert!(schur.fit.success(), "{what}: {}", schur.fit.result.message());
            assert_eq!(schur.names, dense.names);
            let n = dense.fit.popt.len();
            for j in 0..n {
                // Both stop by ftol = 1e-15, which pins a flat minimum only to about 1e-6 of a
                // standard error (the misfit with c fixed); where the minimum is sharp, to 1e-10.
                let (g, w, e) = (schur.fit.popt[j], dense.fit.popt[j], dense.fit.perr[j]);
                assert!(
                    (g - w).abs() <= (1e-10 * w.abs()).max(1e-6 * e),
                    "{what} popt[{j}]: {g:e} vs {w:e} (stderr {e:e})"
                );
                for l in 0..n {
                    let (g, w) = (schur.fit.pcov[[j, l]], dense.fit.pcov[[j, l]]);
                    let scale = (dense.fit.pcov[[j, j]] * dense.fit.pcov[[l, l]]).sqrt();
                    assert!((g - w).abs() <= 1e-9 * scale, "{what} pcov[{j},{l}]: {g} vs {w}");
                }
            }
            assert_eq!(schur.fit.dof, dense.fit.dof);
            close(
                &format!("{what} cost"),
                schur.fit.result.cost,
                dense.fit.result.cost,
                1e-12,
            );
            let (s, t) = (
                schur.fit.statistics.as_ref().unwrap(),
                dense.fit.statistics.as_ref().unwrap(),
            );
            close(&format!("{what} r2"), s.r_squared.unwrap(), t.r_squared.unwrap(), 1e-12);
            for d in 0..3 {
                for p in &dense.datasets[d] {
                    let q = schur.get(d, &p.name).unwrap();
                    let tol = (1e-10 * p.value.abs()).max(1e-6 * p.stderr.unwrap_or(0.0));
                    assert!(
                        (q.value - p.value).abs() <= tol,
                        "{what} {d} {}: {} vs {}",
                        p.name,
                        q.value,
                        p.value
                    );
                    assert_eq!(q.kind, p.kind);
                }
            }
        }
    }
}

#[test]
fn both_paths_name_bad_data_and_undetermined_parameters() {
    use nlsq::fit::global::{curve_fit_global_with, GlobalPath};
    let sets = decays();
    let mut nan = sets[1].1.clone();
    nan[3] = f64::NAN;
    let data = [Dataset::new(&sets[0].0, &sets[0].1), Dataset::new(&sets[1].0, &nan)];
    // c's column is zero: c[0] and c[1] are not determined, on both paths alone; with LM all
    // of pcov is inf.
    let blind = |x: &Tensor, p: &Params| &p["a"] * (-&p["k"] * x).exp() + &p["c"] * 0.0;
    let clean = [
        Dataset::new(&sets[0].0, &sets[0].1),
        Dataset::new(&sets[1].0, &sets[1].1),
    ];
    for path in [GlobalPath::Dense, GlobalPath::Schur] {
        match curve_fit_global_with(&decay, &data, &params(), &["k"], &FitOptions::default(), path) {
            Err(Error::InvalidInput { reason, .. }) => {
                assert!(reason.starts_with("dataset 1: y[3] is NaN"), "{reason}")
            }
            other => panic!("{path:?}: {other:?}"),
        }
        let fit = curve_fit_global_with(&blind, &clean, &params(), &["k"], &FitOptions::default(), path).unwrap();
        assert_eq!(fit.fit.result.not_determined, [2, 4], "{path:?}");
        assert!(fit.fit.perr.iter().all(|e| e.is_infinite()), "{path:?}");
        assert!(!fit.get(1, "c").unwrap().determined && fit.get(1, "a").unwrap().determined);
        // A pair of locals that trade off (a + c): both not determined in every dataset.
        let pair = |x: &Tensor, p: &Params| (&p["a"] + &p["c"]) * (-&p["k"] * x).exp();
        let fit = curve_fit_global_with(&pair, &clean, &params(), &["k"], &FitOptions::default(), path).unwrap();
        assert_eq!(fit.fit.result.not_determined, [1, 2, 3, 4], "{path:?}");
    }
}

#[test]
fn an_expression_model_takes_either_path() {
    use nlsq::fit::global::{curve_fit_global_with, GlobalPath};
    let sets = decays();
    let expr = nlsq::expr::Expr::parse("a*exp(-k*x) + c", &["x"]).unwrap();
    let model = expr.model();
    let ps = Parameters::from_names(expr.params(), &[1.0, 1.0, 0.0]);
    let data: Vec<Dataset> = sets.iter().map(|(x, y, _)| Dataset::new(x, y)).collect();
    let dense = curve_fit_global_with(&model, &data, &ps, &["k"], &tight(), GlobalPath::Dense).unwrap();
    let schur = curve_fit_global_with(&model, &data, &ps, &["k"], &tight(), GlobalPath::Schur).unwrap();
    let closure = curve_fit_global_with(&decay, &data, &params(), &["k"], &tight(), GlobalPath::Schur).unwrap();
    for j in 0..dense.fit.popt.len() {
        close(&format!("popt[{j}]"), schur.fit.popt[j], dense.fit.popt[j], 1e-10);
        assert_eq!(
            schur.fit.popt[j], closure.fit.popt[j],
            "the expression and the closure trace alike"
        );
    }
    // x_scale values are the dense path's only.
    let opts = tight().with_x_scale(nlsq::solve::XScale::Values(vec![1.0; 3]));
    assert!(matches!(
        curve_fit_global_with(&model, &data, &ps, &["k"], &opts, GlobalPath::Schur),
        Err(Error::InvalidOption { field: "x_scale", .. })
    ));
}
