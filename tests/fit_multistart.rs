//! Multistart (`FitOptions::starts`): the best of several starts, how many reached it, and the
//! early stop of losing starts.

use ndarray::{Array1, Array2};
use nlsq::fit::batch::{curve_fit_batch, Batch};
use nlsq::fit::{curve_fit, CurveFitter, FitOptions};
use nlsq::graph::{Params, Tensor};

/// `a sin(w x) + c` on [0, 10] with w = 3.3 and a little deterministic noise: from w = 1 the
/// fit stops in a local minimum.
fn sine_data() -> (Array1<f64>, Array1<f64>) {
    let x: Array1<f64> = Array1::linspace(0.0, 10.0, 200);
    let noise = |i: usize| 0.05 * ((i as f64 * 12.9898).sin() * 43758.5453).fract();
    let y = Array1::from_shape_fn(200, |i| 1.7 * (3.3 * x[i]).sin() + 0.4 + noise(i));
    (x, y)
}

fn sine(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (&p[1] * x).sin() + &p[2]
}

#[test]
fn starts_find_the_global_minimum_a_single_start_misses_and_say_how_many_reached_it() {
    let (x, y) = sine_data();
    let p0 = [1.0, 1.0, 0.0];
    let bounds = FitOptions::default().with_bounds(vec![-10.0, 0.5, -10.0], vec![10.0, 6.0, 10.0]);
    let single = curve_fit(&sine, &x, &y, Some(&p0), &bounds).unwrap();
    assert!(single.starts.is_none());
    assert!(
        single.result.cost > 1.0,
        "the single start should miss: cost {}",
        single.result.cost
    );

    let opts = bounds.clone().with_starts(32);
    let fit = curve_fit(&sine, &x, &y, Some(&p0), &opts).unwrap();
    let s = fit.starts.as_ref().unwrap();
    assert!(fit.success());
    assert!(fit.result.cost < 0.1, "cost {}", fit.result.cost);
    for (got, want) in fit.popt.iter().zip([1.7, 3.3, 0.4]) {
        assert!((got - want).abs() < 0.02, "popt {} vs {want}", got);
    }
    assert_eq!(s.points.dim(), (32, 3));
    assert_eq!(s.points.row(0).to_vec(), p0.to_vec());
    assert!(
        s.points.rows().into_iter().skip(1).all(|r| r[1] >= 0.5 && r[1] <= 6.0),
        "starts inside the bounds"
    );
    assert_eq!(s.costs.len(), 32);
    assert_eq!(s.costs[s.best], fit.result.cost);
    assert!(s.reached >= 2 && s.reached < 32, "reached {}: {:?}", s.reached, s.costs);
    // Reaching the same minimum is reaching the same point here.
    assert!(s.spread.iter().all(|v| *v < 1e-6), "spread {}", s.spread);
    // Losing starts stopped early; start 0 (the user's p0) never is.
    assert!(
        !s.stopped_early[0] && s.stopped_early.iter().any(|&e| e),
        "{:?}",
        s.stopped_early
    );
    // Screening: the starts with the highest cost at their start point were not probed; they
    // are stopped early with that cost (computed here on the host).
    let host_cost = |p: &[f64]| {
        0.5 * x
            .iter()
            .zip(&y)
            .map(|(xi, yi)| (p[0] * (p[1] * xi).sin() + p[2] - yi).powi(2))
            .sum::<f64>()
    };
    let mut by_cost: Vec<(f64, usize)> = (1..32).map(|i| (host_cost(&s.points.row(i).to_vec()), i)).collect();
    by_cost.sort_by(|a, b| a.0.total_cmp(&b.0));
    let probed = nlsq::fit::multistart::probed(32);
    assert_eq!(probed, 8);
    for &(c, i) in &by_cost[probed..] {
        assert!(s.stopped_early[i], "start {i} (cost {c}) was screened out");
        assert!((s.costs[i] - c).abs() <= 1e-12 * c, "start {i}: {} vs {c}", s.costs[i]);
    }
    // The statistics are the best fit's.
    assert_eq!(fit.statistics.as_ref().unwrap().dof, 197);

    // Reproducible: the same seed gives the same starts and result; another seed other starts.
    let again = curve_fit(&sine, &x, &y, Some(&p0), &opts).unwrap();
    assert_eq!(again.popt, fit.popt);
    assert_eq!(again.starts.as_ref().unwrap().points, s.points);
    let other = curve_fit(&sine, &x, &y, Some(&p0), &opts.clone().with_seed(7)).unwrap();
    assert_ne!(other.starts.as_ref().unwrap().points, s.points);
}

#[test]
fn puromycin_from_one_one_reaches_the_minimum_and_counts_the_starts_that_did() {
    let conc = Array1::from(vec![
        0.02, 0.02, 0.06, 0.06, 0.11, 0.11, 0.22, 0.22, 0.56, 0.56, 1.10, 1.10,
    ]);
    let rate = Array1::from(vec![
        76.0, 47.0, 97.0, 107.0, 123.0, 139.0, 159.0, 152.0, 191.0, 201.0, 207.0, 200.0,
    ]);
    let mm = |x: &Tensor, p: &Params| &p[0] * x / (&p[1] + x);
    // R's nls: Vm 212.7, K 0.06412; cost 0.5 · 1195.449.
    let check = |fit: &nlsq::fit::CurveFit| {
        assert!(
            (fit.popt[0] - 212.68).abs() < 0.01 && (fit.popt[1] - 0.06412).abs() < 1e-5,
            "{}",
            fit.popt
        );
        assert!((fit.result.cost - 597.7244).abs() < 1e-3);
        let s = fit.starts.as_ref().unwrap();
        let same = (0..s.costs.len())
            .filter(|&i| !s.stopped_early[i] && (s.costs[i] - fit.result.cost).abs() <= 1e-8 * fit.result.cost)
            .count();
        assert_eq!(s.reached, same);
        s.reached
    };
    // Unbounded: starts over four decades around (1, 1), far below Vm ~ 200; after the probe they
    // are all far above the user's start's cost and stop early.
    let fit = curve_fit(
        &mm,
        &conc,
        &rate,
        Some(&[1.0, 1.0]),
        &FitOptions::default().with_starts(16),
    )
    .unwrap();
    assert!(check(&fit) >= 1);
    // In a box, uniform starts: several reach the minimum.
    let boxed = FitOptions::default()
        .with_bounds(vec![0.0, 0.0], vec![1000.0, 10.0])
        .with_starts(16);
    let fit = curve_fit(&mm, &conc, &rate, Some(&[1.0, 1.0]), &boxed).unwrap();
    let reached = check(&fit);
    assert!(
        reached >= 2,
        "reached {reached} of 16: {:?}",
        fit.starts.as_ref().unwrap().costs
    );
}

#[test]
fn unbounded_starts_spread_over_decades_around_p0_and_2d_xdata_fits_each_start() {
    // 2-D xdata (x, y coordinates): each start is a curve_fit of its own.
    let m = 60;
    let xy = Array2::from_shape_fn((2, m), |(r, i)| {
        if r == 0 {
            (i % 10) as f64 * 0.3
        } else {
            (i / 10) as f64 * 0.4
        }
    });
    let z = Array1::from_shape_fn(m, |i| 2.0 * (-0.8 * xy[[0, i]]).exp() + 0.5 * xy[[1, i]]);
    let plane = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x.row(0)).exp() + &p[2] * x.row(1);
    let opts = FitOptions::default().with_starts(5);
    let fit = curve_fit(&plane, &xy, &z, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
    let s = fit.starts.as_ref().unwrap();
    assert!(fit.result.cost < 1e-20, "cost {}", fit.result.cost);
    for r in s.points.rows().into_iter().skip(1) {
        for &v in r.iter() {
            // Four decades around |p0| = 1, either sign.
            assert!(
                v.abs() >= 0.01 * (1.0 - 1e-6) && v.abs() <= 100.0 * (1.0 + 1e-6),
                "start {v}"
            );
        }
    }
    assert!(
        s.points.iter().any(|&v| v < 0.0),
        "some starts flip the sign: {}",
        s.points
    );
}

#[test]
fn zero_starts_and_multistart_fitters_or_batches_are_typed_errors() {
    let (x, y) = sine_data();
    for k in [0, usize::MAX, nlsq::fit::multistart::MAX_STARTS + 1] {
        let opts = FitOptions::default().with_starts(k);
        let e = curve_fit(&sine, &x, &y, Some(&[1.0, 1.0, 0.0]), &opts).unwrap_err();
        assert!(
            matches!(e, nlsq::Error::InvalidOption { field: "starts", .. }),
            "{k}: {e}"
        );
    }
    let e = CurveFitter::builder(sine)
        .capacity(200)
        .params(3)
        .options(FitOptions::default().with_starts(4))
        .build()
        .err()
        .unwrap();
    assert!(matches!(e, nlsq::Error::InvalidOption { field: "starts", .. }), "{e}");
    let ys = Array2::from_shape_fn((2, 200), |(_, i)| y[i]);
    let p0 = Array2::from_elem((2, 3), 1.0);
    let e = curve_fit_batch(
        &sine,
        &Batch::shared_x(x.view(), ys.view(), p0.view()),
        &FitOptions::default().with_starts(3),
    )
    .unwrap_err();
    assert!(matches!(e, nlsq::Error::InvalidOption { field: "starts", .. }), "{e}");
}
