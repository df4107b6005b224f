//! Progress callbacks: once per chunk of a batch with monotone counts that end at the totals,
//! no change to any result, a panicking callback caught; multistart's totals.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ndarray::{Array1, Array2};
use nlsq::fit::batch::{curve_fit_batch, Batch, BatchProgram};
use nlsq::fit::{curve_fit, curve_fit_with_progress, CurveFit, FitOptions, Progress};
use nlsq::graph::{Params, Tensor};

fn exp_model(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

/// `nb` decays on a shared x; problem 3 has a NaN (refused at validation) and problem 7 is in
/// units of 1e120 (fitted alone, its own chunk).
fn dataset(nb: usize, m: usize) -> (Array1<f64>, Array2<f64>, Array2<f64>) {
    let x = Array1::from_iter((0..m).map(|i| 5.0 * i as f64 / m as f64));
    let mut y = Array2::zeros((nb, m));
    let mut p0 = Array2::zeros((nb, 3));
    for b in 0..nb {
        let (a, k, c) = (1.0 + 0.3 * b as f64, 0.5 + 0.17 * (b % 7) as f64, 0.1 * (b % 3) as f64);
        let unit = if b == 7 { 1e120 } else { 1.0 };
        for i in 0..m {
            let noise = 0.02 * (((i * 31 + b * 17) as f64 * 12.9898).sin() * 43758.5453).fract();
            y[[b, i]] = unit * (a * (-k * x[i]).exp() + c + noise);
        }
        p0.row_mut(b)
            .assign(&Array1::from(vec![unit * (1.0 + 0.05 * b as f64), 1.0, 0.0]));
    }
    if nb > 3 {
        y[[3, 10]] = f64::NAN;
    }
    (x, y, p0)
}

/// The same fits: status, nfev and nit exactly, popt and cost bit for bit (the same programs
/// on the same chunks); errors with the same message.
fn assert_same_results(a: &[nlsq::Result<CurveFit>], b: &[nlsq::Result<CurveFit>], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (a, b)) in a.iter().zip(b).enumerate() {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.result.status, b.result.status, "{what} {i}: status");
                assert_eq!(a.result.nfev, b.result.nfev, "{what} {i}: nfev");
                assert_eq!(a.result.nit, b.result.nit, "{what} {i}: nit");
                assert_eq!(a.popt, b.popt, "{what} {i}: popt");
                assert_eq!(a.result.cost, b.result.cost, "{what} {i}: cost");
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{what} {i}"),
            _ => panic!("{what} {i}: {:?} vs {:?}", a.is_ok(), b.is_ok()),
        }
    }
}

#[test]
fn a_split_batch_reports_each_chunk_once_with_monotone_counts_and_the_same_results() {
    let nb = 14;
    let (x, y, p0) = dataset(nb, 60);
    let opts = FitOptions::default();
    for program in [BatchProgram::Sequential, BatchProgram::Lockstep] {
        let batch = Batch::shared_x(x.view(), y.view(), p0.view())
            .with_chunk(4)
            .with_program(program);
        let plain = curve_fit_batch(&exp_model, &batch, &opts).unwrap();

        let seen: Mutex<Vec<Progress>> = Mutex::new(Vec::new());
        let record = |p: &Progress| seen.lock().unwrap().push(*p);
        let reported = curve_fit_batch(&exp_model, &batch.clone().with_progress(&record), &opts).unwrap();
        assert_same_results(&reported, &plain, &format!("{program:?}"));
        assert!(plain[3].is_err(), "problem 3 is refused");
        assert!(plain[7].is_ok(), "problem 7 is fitted alone");

        let seen = seen.into_inner().unwrap();
        let total = seen[0].chunks_total;
        // 12 problems in chunks of at most 4, and problem 7 alone.
        let least = 12usize.div_ceil(4) + 1;
        assert!(total >= least, "{program:?}: {total} chunks");
        assert_eq!(seen.len(), total, "{program:?}: one call per chunk: {seen:?}");
        let mut problems = 1; // the refused problem has its result from the start
        for (i, p) in seen.iter().enumerate() {
            assert_eq!(p.chunks_done, i + 1, "{program:?}: {seen:?}");
            assert_eq!((p.chunks_total, p.problems_total), (total, nb), "{program:?}: {seen:?}");
            let step = p.problems_done - problems;
            assert!((1..=4).contains(&step), "{program:?}: chunk of {step}: {seen:?}");
            problems = p.problems_done;
            assert!(i == 0 || p.elapsed >= seen[i - 1].elapsed, "{program:?}: {seen:?}");
        }
        let last = seen.last().unwrap();
        assert_eq!((last.chunks_done, last.problems_done), (total, nb), "{program:?}");
    }
}

#[test]
fn a_batch_of_one_chunk_reports_once() {
    let (x, y, p0) = dataset(1, 40);
    let calls = Mutex::new(Vec::new());
    let record = |p: &Progress| calls.lock().unwrap().push(*p);
    let batch = Batch::shared_x(x.view(), y.view(), p0.view()).with_progress(&record);
    let fits = curve_fit_batch(&exp_model, &batch, &FitOptions::default()).unwrap();
    assert!(fits[0].as_ref().unwrap().success());
    let calls = calls.into_inner().unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (
            calls[0].chunks_done,
            calls[0].chunks_total,
            calls[0].problems_done,
            calls[0].problems_total
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn a_panicking_callback_is_called_once_and_leaves_the_results_and_errors_intact() {
    let nb = 10;
    let (x, y, p0) = dataset(nb, 60);
    let opts = FitOptions::default();
    let batch = Batch::shared_x(x.view(), y.view(), p0.view()).with_chunk(2);
    let plain = curve_fit_batch(&exp_model, &batch, &opts).unwrap();
    let calls = AtomicUsize::new(0);
    let explode = |p: &Progress| {
        calls.fetch_add(1, Ordering::Relaxed);
        panic!("progress callback fails at chunk {}", p.chunks_done);
    };
    let reported = curve_fit_batch(&exp_model, &batch.clone().with_progress(&explode), &opts).unwrap();
    assert_same_results(&reported, &plain, "panicking callback");
    assert_eq!(calls.load(Ordering::Relaxed), 1, "not called again after its panic");
    // A batch-level error is the same error with a callback.
    let bad_p0 = Array2::from_elem((nb + 1, 3), 1.0);
    let bad = Batch::shared_x(x.view(), y.view(), bad_p0.view());
    let without = curve_fit_batch(&exp_model, &bad, &opts).unwrap_err().to_string();
    let with = curve_fit_batch(&exp_model, &bad.with_progress(&explode), &opts)
        .unwrap_err()
        .to_string();
    assert_eq!(with, without);
}

/// `1.7 sin(3.3 x) + 0.4` with a little noise: a decay fits it badly from every start, so the
/// probed starts' costs stay within 10x of the best and some continue after the probe.
fn sine_data() -> (Array1<f64>, Array1<f64>) {
    let x: Array1<f64> = Array1::linspace(0.0, 10.0, 200);
    let noise = |i: usize| 0.05 * ((i as f64 * 12.9898).sin() * 43758.5453).fract();
    let y = Array1::from_shape_fn(200, |i| 1.7 * (3.3 * x[i]).sin() + 0.4 + noise(i));
    (x, y)
}

/// Checks a multistart's reports: monotone counts and totals, the probe's totals first (start 0
/// and K − 1 starts), at most `MAX_CONTINUED` more problems, and done equal to total at the end.
fn assert_multistart_reports(seen: &[Progress], k: usize) {
    assert!(!seen.is_empty());
    assert_eq!(seen[0].problems_total, k, "{seen:?}");
    for w in seen.windows(2) {
        assert!(w[1].chunks_done > w[0].chunks_done, "{seen:?}");
        assert!(w[1].problems_done >= w[0].problems_done, "{seen:?}");
        assert!(w[1].chunks_total >= w[0].chunks_total, "{seen:?}");
        assert!(w[1].problems_total >= w[0].problems_total, "{seen:?}");
    }
    for p in seen {
        assert!(
            p.chunks_done <= p.chunks_total && p.problems_done <= p.problems_total,
            "{seen:?}"
        );
    }
    let last = seen.last().unwrap();
    assert_eq!(last.chunks_done, last.chunks_total, "{seen:?}");
    assert_eq!(last.problems_done, last.problems_total, "{seen:?}");
    assert!(
        last.problems_total <= k + nlsq::fit::multistart::MAX_CONTINUED,
        "{seen:?}"
    );
}

#[test]
fn multistart_reports_its_batches_with_the_right_totals_and_the_same_fit() {
    let (x, y) = sine_data();
    let p0 = [1.0, 1.0, 0.0];
    let k = 32;
    let opts = FitOptions::default().with_starts(k);
    let plain = curve_fit(&exp_model, &x, &y, Some(&p0), &opts).unwrap();
    let seen = Mutex::new(Vec::new());
    let record = |p: &Progress| seen.lock().unwrap().push(*p);
    let fit = curve_fit_with_progress(&exp_model, &x, &y, Some(&p0), &opts, &record).unwrap();
    assert_eq!(fit.popt, plain.popt);
    assert_eq!(fit.result.cost, plain.result.cost);
    assert_eq!(fit.starts.as_ref().unwrap().costs, plain.starts.as_ref().unwrap().costs);
    let seen = seen.into_inner().unwrap();
    // Start 0 and the screened starts that were probed.
    let probe_problems = 1 + nlsq::fit::multistart::probed(k);
    assert_multistart_reports(&seen, probe_problems);
    // Some starts continued after the probe: the totals grew by the continuation's chunks and
    // problems, after the probe's last report had reached its own totals.
    let last = seen.last().unwrap();
    assert!(last.problems_total > probe_problems, "a continuation ran: {seen:?}");
    let probe_end = seen.iter().rposition(|p| p.problems_total == probe_problems).unwrap();
    assert_eq!(seen[probe_end].problems_done, probe_problems, "{seen:?}");
    assert_eq!(seen[probe_end].chunks_done, seen[probe_end].chunks_total, "{seen:?}");
    assert!(last.chunks_total > seen[probe_end].chunks_total, "{seen:?}");

    // A panicking callback changes nothing either.
    let explode = |_: &Progress| panic!("multistart progress fails");
    let again = curve_fit_with_progress(&exp_model, &x, &y, Some(&p0), &opts, &explode).unwrap();
    assert_eq!(again.popt, plain.popt);
}

#[test]
fn multistart_on_2d_xdata_reports_each_start_and_one_start_reports_once() {
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
    let k = 5;
    let opts = FitOptions::default().with_starts(k);
    let seen = Mutex::new(Vec::new());
    let record = |p: &Progress| seen.lock().unwrap().push(*p);
    let fit = curve_fit_with_progress(&plane, &xy, &z, Some(&[1.0, 1.0, 1.0]), &opts, &record).unwrap();
    assert!(fit.result.cost < 1e-20);
    let seen = seen.into_inner().unwrap();
    assert_multistart_reports(&seen, k);
    // Each probed start is a fit of its own: one chunk each, with start 0 counted in the first.
    assert_eq!(seen[0].chunks_total, k, "{seen:?}");
    assert_eq!((seen[0].chunks_done, seen[0].problems_done), (2, 2), "{seen:?}");

    let once = Mutex::new(Vec::new());
    let record = |p: &Progress| once.lock().unwrap().push(*p);
    let one = FitOptions::default();
    curve_fit_with_progress(&plane, &xy, &z, Some(&[1.0, 1.0, 1.0]), &one, &record).unwrap();
    let once = once.into_inner().unwrap();
    assert_eq!(once.len(), 1);
    assert_eq!(
        (
            once[0].chunks_done,
            once[0].chunks_total,
            once[0].problems_done,
            once[0].problems_total
        ),
        (1, 1, 1, 1)
    );
}
