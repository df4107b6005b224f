//! Chunked (TSQR) Jacobian evaluation equals the whole-matrix evaluation.

use nlsq::expr::Expr;
use nlsq::fit::{curve_fit, CurveFit, FitOptions};
use nlsq::solve::{Loss, Method};

fn noise(i: usize) -> f64 {
    (((i as f64) * 12.9898).sin() * 43758.5453).fract() - 0.5
}

/// `m` points of `2.5 exp(-1.3 x) + 0.5` on [0, 5) with deterministic noise.
fn decay(m: usize) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..m).map(|i| 5.0 * i as f64 / m as f64).collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, &x)| 2.5 * (-1.3 * x).exp() + 0.5 + 0.05 * noise(i))
        .collect();
    (x, y)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

fn assert_same(a: &CurveFit, b: &CurveFit, what: &str) {
    assert_eq!(a.result.status, b.result.status, "{what}");
    assert_eq!(a.result.nfev, b.result.nfev, "{what}: nfev");
    assert_eq!(a.result.njev, b.result.njev, "{what}: njev");
    assert!(
        rel(a.result.cost, b.result.cost) < 1e-10,
        "{what}: cost {} vs {}",
        a.result.cost,
        b.result.cost
    );
    for (p, q) in a.popt.iter().zip(&b.popt) {
        assert!(rel(*p, *q) < 1e-10, "{what}: popt {} vs {}", a.popt, b.popt);
    }
    let scale = b.pcov.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (p, q) in a.pcov.iter().zip(&b.pcov) {
        assert!((p - q).abs() <= 1e-8 * scale, "{what}: pcov {} vs {}", a.pcov, b.pcov);
    }
    // Residuals and Jacobian at the solution, where both fits return them.
    if let (Some(fa), Some(fb), Some(ja), Some(jb)) = (&a.result.fun, &b.result.fun, &a.result.jac, &b.result.jac) {
        assert_eq!(fa.len(), fb.len(), "{what}: fun length");
        assert_eq!(ja.dim(), jb.dim(), "{what}: jac shape");
        let fs = fb.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (p, q) in fa.iter().zip(fb) {
            assert!((p - q).abs() <= 1e-8 * fs, "{what}: fun {p} vs {q}");
        }
        let js = jb.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (p, q) in ja.iter().zip(jb) {
            assert!((p - q).abs() <= 1e-8 * js, "{what}: jac {p} vs {q}");
        }
    }
}

#[test]
fn chunked_equals_whole_on_reference_problems() {
    // (name, model, true parameters, p0, options)
    type Case = (&'static str, &'static str, Vec<f64>, Vec<f64>, FitOptions);
    let cases: Vec<Case> = vec![
        (
            "exp lm",
            "a*exp(-k*x)+c",
            vec![2.5, 1.3, 0.5],
            vec![1.0, 1.0, 1.0],
            FitOptions::default().with_method(Method::Lm),
        ),
        (
            "exp trf",
            "a*exp(-k*x)+c",
            vec![2.5, 1.3, 0.5],
            vec![1.0, 1.0, 1.0],
            FitOptions::default().with_method(Method::Trf),
        ),
        (
            "gauss trf bounded soft_l1",
            "a*exp(-((x-mu)^2)/(2*s^2))+b",
            vec![3.0, 2.0, 0.4, 0.2],
            vec![1.0, 1.5, 1.0, 0.0],
            FitOptions::default()
                .with_bounds(vec![0.0, 0.0, 0.05, -1.0], vec![10.0, 5.0, 2.0, 1.0])
                .with_loss(Loss::SoftL1)
                .with_f_scale(0.1),
        ),
        (
            "rational lm",
            "(a+b*x)/(1+c*x)",
            vec![1.0, 2.0, 0.5],
            vec![1.0, 1.0, 1.0],
            FitOptions::default(),
        ),
    ];
    for (name, src, truth, p0, opts) in cases {
        let expr = Expr::parse(src, &["x"]).unwrap();
        let model = expr.model();
        let m = 3000;
        let x: Vec<f64> = (0..m).map(|i| 4.0 * i as f64 / m as f64).collect();
        let y: Vec<f64> = {
            // Evaluate the true curve with a plain host fit-free evaluation through nlsq itself is
            // not available; use the closed forms of the four models.
            x.iter()
                .enumerate()
                .map(|(i, &x)| {
                    let t = &truth;
                    let v = match name {
                        n if n.starts_with("exp") => t[0] * (-t[1] * x).exp() + t[2],
                        n if n.starts_with("gauss") => {
                            t[0] * (-((x - t[1]).powi(2)) / (2.0 * t[2] * t[2])).exp() + t[3]
                        }
                        _ => (t[0] + t[1] * x) / (1.0 + t[2] * x),
                    };
                    v + 0.02 * noise(i)
                        + if i % 97 == 0 && name.starts_with("gauss") {
                            1.0
                        } else {
                            0.0
                        }
                })
                .collect()
        };
        let sigma: Vec<f64> = (0..m).map(|i| 0.5 + 0.1 * (i % 5) as f64).collect();
        let base = opts.with_sigma(sigma);
        let whole = curve_fit(&model, &x, &y, Some(&p0), &base.clone().with_chunk_rows(0)).unwrap();
        let chunked = curve_fit(&model, &x, &y, Some(&p0), &base.clone().with_chunk_rows(512)).unwrap();
        assert!(whole.success(), "{name}: {}", whole.result);
        // Small chunked fits evaluate fun and jac once more at the solution to return them.
        assert_eq!(
            chunked.result.jac.as_ref().map(|j| j.nrows()),
            Some(m),
            "{name}: chunked fits of this size return J"
        );
        assert_eq!(chunked.result.fun.as_ref().map(|f| f.len()), Some(m));
        assert_eq!(whole.result.jac.as_ref().map(|j| j.nrows()), Some(m));
        assert_same(&chunked, &whole, name);
    }
}

#[test]
fn ill_conditioned_chunked_fit_equals_whole() {
    // A cubic on [10, 11]: its Jacobian columns 1, x, x², x³ are nearly parallel (condition
    // number ~1e7 after column scaling), so the chunked evaluation must take its Householder
    // TSQR pass instead of the Cholesky factor of the Gram matrix at every point.
    let expr = Expr::parse("a + b*x + c*x^2 + d*x^3", &["x"]).unwrap();
    let model = expr.model();
    let m = 6000;
    let x: Vec<f64> = (0..m).map(|i| 10.0 + i as f64 / m as f64).collect();
    let y: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &x)| 1.0 - 0.5 * x + 0.03 * x * x + 0.001 * x * x * x + 1e-3 * noise(i))
        .collect();
    for method in [Method::Lm, Method::Trf] {
        let opts = FitOptions::default().with_method(method);
        let p0 = [0.0, 0.0, 0.0, 0.0];
        let whole = curve_fit(&model, &x, &y, Some(&p0), &opts.clone().with_chunk_rows(0)).unwrap();
        let chunked = curve_fit(&model, &x, &y, Some(&p0), &opts.with_chunk_rows(1024)).unwrap();
        assert!(whole.success(), "{method}: {}", whole.result);
        assert_eq!(chunked.result.status, whole.result.status, "{method}");
        assert_eq!(chunked.result.nfev, whole.result.nfev, "{method}");
        // A linear model: both reach the least-squares solution, which the conditioning
        // determines only to about cond·ε relative.
        assert!(rel(chunked.result.cost, whole.result.cost) < 1e-9, "{method}");
        for (p, q) in chunked.popt.iter().zip(&whole.popt) {
            assert!(
                (p - q).abs() <= 1e-5 * q.abs().max(1.0),
                "{method}: {} vs {}",
                chunked.popt,
                whole.popt
            );
        }
        // The covariance is where a Gram-matrix factor would show: its error grows with cond²
        // (about 1e-2 here), a Householder factor's with cond.
        for (p, q) in chunked.pcov.iter().zip(&whole.pcov) {
            assert!(rel(*p, *q) < 1e-6, "{method}: pcov {} vs {}", chunked.pcov, whole.pcov);
        }
    }
}

#[test]
fn two_predictors_chunked() {
    let expr = Expr::parse("a*exp(-((u-b)^2+(v-c)^2)/d)", &["u", "v"]).unwrap();
    let model = expr.model();
    let m = 2048;
    let u: Vec<f64> = (0..m).map(|i| (i % 64) as f64 / 16.0).collect();
    let v: Vec<f64> = (0..m).map(|i| (i / 64) as f64 / 8.0).collect();
    let y: Vec<f64> = (0..m)
        .map(|i| 2.0 * (-((u[i] - 2.0).powi(2) + (v[i] - 1.5).powi(2)) / 0.8).exp() + 0.01 * noise(i))
        .collect();
    let x = ndarray::Array2::from_shape_vec((2, m), [u, v].concat()).unwrap();
    let p0 = [1.0, 1.8, 1.2, 1.0];
    let whole = curve_fit(&model, &x, &y, Some(&p0), &FitOptions::default().with_chunk_rows(0)).unwrap();
    let chunked = curve_fit(&model, &x, &y, Some(&p0), &FitOptions::default().with_chunk_rows(256)).unwrap();
    assert_same(&chunked, &whole, "gauss2d");
}

#[test]
fn automatic_chunking_at_large_m() {
    let m = 100_000;
    let (x, y) = decay(m);
    let expr = Expr::parse("a*exp(-k*x)+c", &["x"]).unwrap();
    let model = expr.model();
    for method in [Method::Lm, Method::Trf] {
        let auto = curve_fit(
            &model,
            &x,
            &y,
            Some(&[1.0, 1.0, 1.0]),
            &FitOptions::default().with_method(method),
        )
        .unwrap();
        assert!(
            auto.result.jac.is_none(),
            "{method}: 100k points chunk automatically, no J"
        );
        assert!(auto.result.fun.is_none());
        let whole = curve_fit(
            &model,
            &x,
            &y,
            Some(&[1.0, 1.0, 1.0]),
            &FitOptions::default().with_method(method).with_chunk_rows(0),
        )
        .unwrap();
        assert_same(&auto, &whole, &format!("{method} 100k"));
    }
}

#[test]
fn large_chunked_fits_stop_at_max_nfev_and_bounds_like_whole_ones() {
    // Above 65,536 rows the chunked solvers factor every trial point and evaluate x0 in an
    // evaluate-only first pass: the counts, statuses and results must still be the unchunked
    // fit's, also when max_nfev stops the solve after one, two or three evaluations, and with
    // bounds (TRF's reflective steps) and a robust loss.
    let m = 80_000;
    let (x, y) = decay(m);
    let expr = Expr::parse("a*exp(-k*x)+c", &["x"]).unwrap();
    let model = expr.model();
    let mut cases: Vec<(String, [f64; 3], FitOptions)> = Vec::new();
    for method in [Method::Lm, Method::Trf] {
        for max_nfev in [1, 2, 3] {
            let opts = FitOptions::default().with_method(method).with_max_nfev(max_nfev);
            cases.push((format!("{method} max_nfev {max_nfev}"), [1.0, 1.0, 1.0], opts));
        }
    }
    // k's lower bound is active at the solution (the data have k = 1.3).
    cases.push((
        "trf bounded huber".into(),
        [1.0, 2.0, 0.5],
        FitOptions::default()
            .with_bounds(vec![0.0, 1.35, 0.0], vec![10.0, 5.0, 1.0])
            .with_loss(Loss::Huber)
            .with_f_scale(0.1),
    ));
    for (name, p0, opts) in cases {
        let chunked = curve_fit(&model, &x, &y, Some(&p0), &opts).unwrap();
        assert!(chunked.result.jac.is_none(), "{name}: chunked automatically");
        let whole = curve_fit(&model, &x, &y, Some(&p0), &opts.clone().with_chunk_rows(0)).unwrap();
        assert_same(&chunked, &whole, &name);
    }
}

#[test]
fn mid_size_fits_chunk_automatically_and_return_fun_and_jac() {
    // 20,000 points: chunked by default (cache-sized blocks), yet fun and jac are returned,
    // equal to the unchunked fit's.
    let m = 20_000;
    assert!((nlsq::fit::AUTO_CHUNK_FROM..=nlsq::fit::MATERIALIZE_MAX_ROWS).contains(&m));
    let (x, y) = decay(m);
    let expr = Expr::parse("a*exp(-k*x)+c", &["x"]).unwrap();
    let model = expr.model();
    for method in [Method::Lm, Method::Trf] {
        let opts = FitOptions::default().with_method(method);
        let auto = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
        let whole = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts.with_chunk_rows(0)).unwrap();
        assert_eq!(auto.result.jac.as_ref().map(|j| j.nrows()), Some(m), "{method}");
        assert_eq!(auto.result.fun.as_ref().map(|f| f.len()), Some(m), "{method}");
        assert_same(&auto, &whole, &format!("{method} 20k"));
    }
}

#[test]
fn chunked_fitter_takes_smaller_datasets() {
    use nlsq::fit::CurveFitter;
    let expr = Expr::parse("a*exp(-k*x)+c", &["x"]).unwrap();
    let fitter = CurveFitter::builder(expr.model())
        .capacity(70_000)
        .params(3)
        .build()
        .unwrap();
    assert_eq!(fitter.capacity() % nlsq::fit::auto_chunk_rows(3), 0);
    assert!(fitter.capacity() >= 70_000);
    for m in [70_000usize, 20_000, 500] {
        let x: Vec<f64> = (0..m).map(|i| 5.0 * i as f64 / m as f64).collect();
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &x)| 1.5 * (-0.7 * x).exp() + 0.2 + 0.01 * noise(i))
            .collect();
        let a = fitter.fit(&x, &y, Some(&[1.0, 1.0, 1.0])).unwrap();
        let b = curve_fit(
            &expr.model(),
            &x,
            &y,
            Some(&[1.0, 1.0, 1.0]),
            &FitOptions::default().with_chunk_rows(0),
        )
        .unwrap();
        assert_same(&a, &b, &format!("fitter m={m}"));
    }
}
