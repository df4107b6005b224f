//! Right answers or a clear refusal: parameters the data cannot determine, fits that do not
//! depend on the units of x and y, scipy's contract where nlsq departs from it.

mod common;

use common::noisy_exp;
use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::{Method, Status};

fn line(m: usize) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..m).map(|i| 0.5 + i as f64 / m as f64).collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, x)| 3.0 * x + 0.02 * ((i as f64 * 7.31).sin() * 1e4).fract())
        .collect();
    (x, y)
}

const METHODS: [Method; 2] = [Method::Lm, Method::Trf];

#[test]
fn a_sum_of_two_identical_terms_determines_neither_parameter() {
    let (x, y) = line(50);
    let model = |x: &Tensor, p: &Params| &p[0] * x + &p[1] * x;
    for method in METHODS {
        let opts = FitOptions::default().with_method(method);
        let fit = curve_fit(&model, &x, &y, Some(&[1.0, 1.0]), &opts).unwrap();
        assert_eq!(fit.result.rank, 1, "{method}: {fit}");
        assert_eq!(fit.result.not_determined, vec![0, 1], "{method}: {fit}");
        // The sum is determined: the fit itself is right.
        assert!((fit.popt[0] + fit.popt[1] - 3.0).abs() < 0.01, "{method}: {}", fit.popt);
        assert!(fit.perr.iter().all(|e| e.is_infinite()), "{method}: {}", fit.perr);
        assert!(fit.pcov.iter().all(|v| v.is_infinite()), "{method}: {}", fit.pcov);
        let report = fit.to_string();
        assert!(report.contains("not determined"), "{report}");
        assert!(
            report.contains("warning: the data do not determine p[0], p[1]"),
            "{report}"
        );
    }
}

#[test]
fn a_product_of_parameters_determines_neither() {
    let (x, y) = line(50);
    let model = |x: &Tensor, p: &Params| &p[0] * &p[1] * x;
    for method in METHODS {
        let opts = FitOptions::default().with_method(method);
        let fit = curve_fit(&model, &x, &y, Some(&[1.0, 2.0]), &opts).unwrap();
        assert_eq!(fit.result.rank, 1, "{method}: {fit}");
        assert_eq!(fit.result.not_determined, vec![0, 1], "{method}: {fit}");
        assert!((fit.popt[0] * fit.popt[1] - 3.0).abs() < 0.01, "{method}: {}", fit.popt);
        assert!(fit.perr.iter().all(|e| e.is_infinite()), "{method}: {}", fit.perr);
    }
}

#[test]
fn an_unused_parameter_is_not_determined_and_the_others_are() {
    let (x, y) = noisy_exp(200);
    // p0 has four entries; the model reads three.
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    for method in METHODS {
        let opts = FitOptions::default().with_method(method);
        let full = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
        let fit = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0, 1.0]), &opts).unwrap();
        assert!(fit.success(), "{method}: {fit}");
        assert_eq!(fit.result.rank, 3, "{method}: {fit}");
        assert_eq!(fit.result.not_determined, vec![3], "{method}: {fit}");
        assert_eq!(fit.popt[3], 1.0, "{method}: an unused parameter stays where it started");
        for j in 0..3 {
            assert!(
                (fit.popt[j] / full.popt[j] - 1.0).abs() < 1e-6,
                "{method}: {} vs {}",
                fit.popt,
                full.popt
            );
        }
        if method == Method::Lm {
            // scipy's lm: all inf for a zero column.
            assert!(fit.pcov.iter().all(|v| v.is_infinite()), "{}", fit.pcov);
        } else {
            // trf: the pseudo-inverse for the determined block, inf for the rest.
            {
                for i in 0..4 {
                    for j in 0..4 {
                        let v = fit.pcov[[i, j]];
                        if i == 3 || j == 3 {
                            assert!(v.is_infinite(), "pcov[{i},{j}] = {v}");
                        } else {
                            let r = full.pcov[[i, j]];
                            assert!((v - r).abs() <= 1e-6 * r.abs().max(1e-300), "pcov[{i},{j}] {v} vs {r}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn zero_degrees_of_freedom_give_an_infinite_covariance() {
    let x = [0.0, 1.0];
    let y = [1.0, 3.0];
    let model = |x: &Tensor, p: &Params| &p[0] + &p[1] * x;
    for method in METHODS {
        let opts = FitOptions::default().with_method(method);
        let fit = curve_fit(&model, &x, &y, Some(&[0.0, 0.0]), &opts).unwrap();
        assert!(fit.result.not_determined.is_empty(), "{method}: {fit}");
        assert!(fit.pcov.iter().all(|v| v.is_infinite()), "{method}: {}", fit.pcov);
        let abs = curve_fit(
            &model,
            &x,
            &y,
            Some(&[0.0, 0.0]),
            &opts.clone().with_absolute_sigma(true),
        )
        .unwrap();
        assert!(abs.pcov.iter().all(|v| v.is_finite()), "{method}: {}", abs.pcov);
    }
}

/// The decay fitted to `y * 10^ky` on `x * 10^kx`, its parameters mapped back to the unscaled
/// problem's units.
fn scaled_fit(method: Method, ky: i32, kx: i32) -> (Vec<f64>, Vec<f64>, Status) {
    let (x, y) = noisy_exp(200);
    let (sy, sx) = (10f64.powi(ky), 10f64.powi(kx));
    let x: Vec<f64> = x.iter().map(|v| v * sx).collect();
    let y: Vec<f64> = y.iter().map(|v| v * sy).collect();
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let opts = FitOptions::default().with_method(method);
    let fit = curve_fit(&model, &x, &y, Some(&[sy, 1.0 / sx, sy]), &opts).unwrap();
    assert!(fit.result.not_determined.is_empty(), "{method} 1e{ky} 1e{kx}: {fit}");
    let back = [1.0 / sy, sx, 1.0 / sy];
    let popt = (0..3).map(|j| fit.popt[j] * back[j]).collect();
    let perr = (0..3).map(|j| fit.perr[j] * back[j]).collect();
    (popt, perr, fit.result.status)
}

fn assert_close(what: &str, a: &[f64], b: &[f64], rtol: f64) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= rtol * y.abs(), "{what}: {a:?} vs {b:?}");
    }
}

#[test]
fn a_fit_does_not_depend_on_the_units_of_y_or_x() {
    for method in METHODS {
        let (popt, perr, status) = scaled_fit(method, 0, 0);
        assert!(status.success(), "{method}: {status:?}");
        for k in (-300..=300).step_by(50) {
            let cases = [(k, 0), (0, k)];
            for (ky, kx) in cases {
                let (p, e, s) = scaled_fit(method, ky, kx);
                let what = format!("{method}, y x 1e{ky}, x x 1e{kx}");
                assert_eq!(s, status, "{what}");
                assert_close(&format!("{what}: popt"), &p, &popt, 1e-8);
                assert_close(&format!("{what}: perr"), &e, &perr, 1e-8);
            }
        }
    }
}

#[test]
fn no_p0_with_bounds_starts_inside_them() {
    let (x, y) = noisy_exp(200);
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    // k in [2, 4] starts at 3 (the midpoint), a >= 2 at 3, c free at 1, as scipy's curve_fit.
    let opts = FitOptions::default().with_n_params(3).with_bounds(
        vec![2.0, 0.0, f64::NEG_INFINITY],
        vec![f64::INFINITY, 4.0, f64::INFINITY],
    );
    let fit = curve_fit(&model, &x, &y, None, &opts).unwrap();
    assert!(fit.success(), "{fit}");
    assert!((fit.popt[1] - 1.3).abs() < 0.02, "{}", fit.popt);
}

#[test]
fn lm_refuses_tolerances_below_machine_epsilon() {
    let (x, y) = noisy_exp(50);
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let mut opts = FitOptions::default().with_method(Method::Lm);
    opts.solver.gtol = 1e-17;
    let e = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("gtol") && e.contains("machine epsilon"), "{e}");
    // trf takes them, as scipy's least_squares does.
    let trf = opts.clone().with_method(Method::Trf);
    assert!(curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &trf).is_ok());
}

#[test]
fn a_robust_loss_without_a_method_uses_trf_and_lm_says_why_not() {
    let (x, y) = noisy_exp(100);
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let opts = FitOptions::default().with_loss(nlsq::solve::Loss::SoftL1);
    let fit = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
    assert_eq!(fit.result.method, Method::Trf);
    assert!(fit.success(), "{fit}");
    let lm = opts.with_method(Method::Lm);
    let e = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &lm)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a robust loss needs method trf"), "{e}");
}

#[test]
fn bounds_far_away_act_as_no_bounds() {
    let (x, y) = noisy_exp(200);
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let p0 = Some(&[1.0, 1.0, 1.0][..]);
    let free = curve_fit(&model, &x, &y, p0, &FitOptions::default().with_method(Method::Trf)).unwrap();
    assert!(free.success(), "{free}");
    // scipy's trf converges in 6 evaluations with ±1e308; nlsq stalled at p0 (status 0), and
    // [0, 1e100] ended at a wrong k with success.
    for (lo, hi) in [(-1e308, 1e308), (-f64::MAX, f64::MAX), (0.0, 1e100), (-1e6, 1e6)] {
        let opts = FitOptions::default().with_bounds(vec![lo], vec![hi]);
        let fit = curve_fit(&model, &x, &y, p0, &opts).unwrap();
        assert!(fit.success(), "[{lo:e}, {hi:e}]: {fit}");
        assert_close(
            &format!("[{lo:e}, {hi:e}]"),
            &fit.popt.to_vec(),
            &free.popt.to_vec(),
            1e-8,
        );
    }
}

#[test]
fn a_bounded_fit_does_not_depend_on_the_units_of_y_or_x() {
    // An active bound: c <= 0.3 (the free fit has c = 0.5), k in [0, 10]. `(sy, sx)` scale y
    // and x; `tol` sets ftol = xtol = gtol. Returns popt in the unscaled units, the status, the
    // cost history in the unscaled units.
    let fit = |sy: f64, sx: f64, tol: f64| {
        let (x, y) = noisy_exp(200);
        let x: Vec<f64> = x.iter().map(|v| v * sx).collect();
        let y: Vec<f64> = y.iter().map(|v| v * sy).collect();
        let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
        let opts = FitOptions::default()
            .with_bounds(vec![0.0, 0.0, -sy], vec![10.0 * sy, 10.0 / sx, 0.3 * sy])
            .with_tol(tol);
        let f = curve_fit(&model, &x, &y, Some(&[sy, 1.0 / sx, 0.0]), &opts).unwrap();
        let back = [1.0 / sy, sx, 1.0 / sy];
        let popt: Vec<f64> = (0..3).map(|j| f.popt[j] * back[j]).collect();
        let history: Vec<f64> = f.result.history.iter().map(|c| c / sy / sy).collect();
        (popt, f.result.status, history)
    };
    // Scales by powers of two are exact: the whole path is the same, bit for bit.
    let (popt, status, history) = fit(1.0, 1.0, 1e-8);
    assert!(status.success(), "{status:?}");
    for k in [-332, -166, 166, 332] {
        let s = 2f64.powi(k);
        for (sy, sx) in [(s, 1.0), (1.0, s)] {
            let (p, st, h) = fit(sy, sx, 1e-8);
            assert_eq!(
                (p.clone(), st, h.clone()),
                (popt.clone(), status, history.clone()),
                "y x {sy:e}, x x {sx:e}"
            );
        }
    }
    // Decimal scales round the data, which can flip a choice of the bounded step (reflected,
    // Cauchy or constrained) along the way; converged fits agree.
    let (popt, _, _) = fit(1.0, 1.0, 1e-14);
    for k in [-100, -50, 50, 100] {
        let s = 10f64.powi(k);
        for (sy, sx) in [(s, 1.0), (1.0, s)] {
            let (p, st, _) = fit(sy, sx, 1e-14);
            assert!(st.success(), "y x {sy:e}, x x {sx:e}: {st:?}");
            assert_close(&format!("y x {sy:e}, x x {sx:e}"), &p, &popt, 1e-8);
        }
    }
}

#[test]
fn a_fitter_and_a_batch_in_extreme_units_give_curve_fits_answer() {
    use ndarray::{Array1, Array2};
    use nlsq::fit::batch::{curve_fit_batch, Batch, BatchProgram};
    use nlsq::fit::CurveFitter;
    let (x, y) = noisy_exp(200);
    let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    let opts = FitOptions::default();
    let fitter = CurveFitter::builder(model).capacity(200).params(3).build().unwrap();
    let plain = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
    for ky in [-200, 200] {
        let s = 10f64.powi(ky);
        let ys: Vec<f64> = y.iter().map(|v| v * s).collect();
        let p0 = [s, 1.0, s];
        let want = curve_fit(&model, &x, &ys, Some(&p0), &opts).unwrap();
        let what = format!("y x 1e{ky}");
        // The scaled fit is the unscaled one, in other units.
        let back: Vec<f64> = want
            .perr
            .iter()
            .zip([1.0 / s, 1.0, 1.0 / s])
            .map(|(e, c)| e * c)
            .collect();
        assert_close(
            &format!("{what}: curve_fit perr"),
            &back,
            plain.perr.as_slice().unwrap(),
            1e-8,
        );
        let got = fitter.fit(&x, &ys, Some(&p0)).unwrap();
        assert_eq!(got.popt, want.popt, "{what}: CurveFitter");
        assert_eq!(got.perr, want.perr, "{what}: CurveFitter");
        // A batch of an ordinary problem, the extreme one, and the ordinary one again.
        let y2 = Array2::from_shape_fn((3, 200), |(b, i)| if b == 1 { ys[i] } else { y[i] });
        let p2 = Array2::from_shape_fn((3, 3), |(b, j)| if b == 1 { p0[j] } else { 1.0 });
        let xa = Array1::from(x.clone());
        for program in [BatchProgram::Sequential, BatchProgram::Lockstep] {
            let batch = Batch::shared_x(xa.view(), y2.view(), p2.view()).with_program(program);
            let fits = curve_fit_batch(&model, &batch, &opts).unwrap();
            let fits: Vec<_> = fits.into_iter().map(Result::unwrap).collect();
            assert_eq!(fits[1].popt, want.popt, "{what}: batch {program:?}");
            assert_eq!(fits[1].perr, want.perr, "{what}: batch {program:?}");
            for b in [0, 2] {
                assert_close(
                    &format!("{what}: batch {program:?} popt"),
                    fits[b].popt.as_slice().unwrap(),
                    plain.popt.as_slice().unwrap(),
                    1e-10,
                );
                assert_close(
                    &format!("{what}: batch {program:?} perr"),
                    fits[b].perr.as_slice().unwrap(),
                    plain.perr.as_slice().unwrap(),
                    1e-8,
                );
            }
        }
    }
}

/// Data in large or small units fitted from a start of the wrong scale (p0 = 1, what a user who
/// gives none gets). Whatever the units, the fit converges to the unscaled fit's answer in the
/// data's units, or refuses p0 with a typed error, or ends without success; it never returns p0,
/// or anything else, with success. Within 100 orders of magnitude a line always converges, and
/// so does the decay `a e^{-b x} + c` on data below its start (where the Jacobian scaling
/// remembers b's column norm at p0, proportional to a: `common::reopen_stale`); from data 1e25
/// and more above its start the decay runs out of evaluations (status 0). scipy 1.17 returns p0
/// with success for the line from y·1e30 on.
#[test]
fn a_start_far_off_the_datas_scale_converges_or_says_it_did_not() {
    let (x, y) = line(40);
    let model = |x: &Tensor, p: &Params| &p[0] * x + &p[1];
    let (xe, ye) = noisy_exp(200);
    let decay = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
    for method in METHODS {
        let opts = FitOptions::default().with_method(method);
        let plain = curve_fit(&model, &x, &y, Some(&[1.0, 1.0]), &opts).unwrap();
        let plain_decay = curve_fit(&decay, &xe, &ye, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
        for k in (-300..=300).step_by(25) {
            let s = 10f64.powi(k);
            let ys: Vec<f64> = y.iter().map(|v| v * s).collect();
            let yes: Vec<f64> = ye.iter().map(|v| v * s).collect();
            let mut fits = vec![(
                curve_fit(&model, &x, &ys, Some(&[1.0, 1.0]), &opts),
                &plain,
                vec![s, s],
                k.abs() <= 100,
            )];
            let fit = curve_fit(&decay, &xe, &yes, Some(&[1.0, 1.0, 1.0]), &opts);
            fits.push((fit, &plain_decay, vec![s, 1.0, s], (-100..=0).contains(&k)));
            for (i, (fit, plain, units, must_converge)) in fits.into_iter().enumerate() {
                let what = format!("{method}, {} fitted to y x 1e{k} from p0 = 1", ["line", "decay"][i]);
                match fit {
                    Ok(fit) if fit.result.status.success() => {
                        // Two converged fits from different starts agree to far below the
                        // parameters' standard errors (and relative to them: b of the line is
                        // near 0).
                        for (j, u) in units.iter().enumerate() {
                            let d = (fit.popt[j] / u - plain.popt[j]).abs();
                            assert!(d <= 1e-4 * plain.perr[j], "{what}: popt {} vs {}", fit.popt, plain.popt);
                        }
                        let back: Vec<f64> = fit.perr.iter().zip(&units).map(|(p, u)| p / u).collect();
                        assert_close(&format!("{what}: perr"), &back, plain.perr.as_slice().unwrap(), 1e-6);
                    }
                    Ok(fit) => assert!(!must_converge, "{what}: {}", fit.result.status),
                    Err(nlsq::Error::InvalidInput { field: "p0", reason }) => {
                        assert!(!must_converge, "{what}: refused: {reason}");
                        assert!(reason.contains("p0"), "{what}: {reason}");
                    }
                    Err(e) => panic!("{what}: {e}"),
                }
            }
        }
    }
}
