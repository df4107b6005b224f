//! Multistart: `curve_fit` from `p0` and from `K − 1` more starts, the best fit reported with how
//! many starts reached it.
//!
//! **Starts.** Start 0 is the user's `p0` (or the default start of the bounds), fitted exactly as
//! with one start, so a multistart result is never worse than the single fit. Starts `1 … K−1`
//! come from an Owen-scrambled Sobol sequence (`sobol_burley`, seeded by
//! [`FitOptions::seed`], so results are reproducible), one pair of coordinates `(u, v)` per
//! parameter:
//!
//! * both bounds finite: `lb + u (ub − lb)`, uniform in the box (as MATLAB's
//!   `RandomStartPointSet` draws);
//! * one bound: `lb + s · 10^(4u − 2)` (or `ub − …`), with `s = |p0 − bound|` (1 when p0 sits on
//!   it): four decades of distance around p0's;
//! * unbounded: `p0 · 10^(4u − 2)` (`10^(4u−2)` when p0 is 0), with the sign flipped when
//!   `v < 1/4`: four decades around p0's magnitude, mostly with p0's sign. MATLAB instead draws
//!   unbounded components uniformly from `[−1000, 1000]` (its `ArtificialBound`), which ignores
//!   the parameter's units; a log-uniform spread around `p0` is unit-free, and a user's sign is
//!   usually right (a negative amplitude or rate is most often a wrong basin, see the tests).
//!
//! **Early stop.** A batch is as slow as its starts, and poor starts run to `max_nfev`. So:
//! 1. *Screen*: the cost at every extra start, all in one small program (the model traced once
//!    for a `[K, n]` batch of parameters); only the [`probed`] lowest go on. MATLAB's
//!    `GlobalSearch` does the same with its score function before starting local solvers.
//! 2. *Probe*: those run as one batch with a small budget ([`probe_nfev`] evaluations); the ones
//!    that converge within it are final.
//! 3. *Continue*: of the others, only the [`MAX_CONTINUED`] lowest whose cost is within
//!    [`CONTINUE_RATIO`] of the best cost seen so far go on from where they stopped, with the
//!    rest of the budget (a second batch).
//!
//! Starts screened out or not continued are *stopped early* (their cost is where they stopped)
//! and do not count as reaching the best. On the CPU a batch runs its problems side by side on
//! the cores.
//!
//! Starts run through [`curve_fit_batch`] for 1-D `xdata` with no or 1-D sigma (while `y`
//! repeated once per start stays below 2²⁴ values); otherwise (2-D `xdata`, a covariance sigma,
//! very long data) each start is a `curve_fit` of its own, one after the other.
//!
//! **Progress.** [`curve_fit_with_progress`](super::curve_fit_with_progress) reports the
//! chunks of both batches (or each start's own fit) to a callback, offset by what came before.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use ndarray::{Array1, Array2, ArrayView1};

use super::batch::{curve_fit_batch, Batch};
use super::progress::{Guarded, Progress, ProgressFn, Tracker};
use super::validate::{default_start, expand_bounds};
use super::{CurveFit, FitOptions, Sigma, XData};
use crate::error::Result;
use crate::graph::{Params, Tensor};

/// The most starts one fit takes (`FitOptions::starts`; more is an `InvalidOption`): their
/// points alone are `starts × n` values.
pub const MAX_STARTS: usize = 1 << 16;

/// Of the starts still running after the probe, at most this many continue (the lowest cost).
pub const MAX_CONTINUED: usize = 4;

/// A start still running after the probe continues only when its cost is at most this many
/// times the best cost seen so far.
pub const CONTINUE_RATIO: f64 = 10.0;

/// Two costs are the same minimum when within this relative difference.
pub const SAME_MINIMUM: f64 = 1e-8;

/// Of the `k − 1` extra starts, the lowest-cost this many (at least 8, a quarter of them, all
/// when fewer) are probed; the others stop at their start. See the module docs.
pub fn probed(k: usize) -> usize {
    let extra = k.saturating_sub(1);
    extra.min(8.max(extra.div_ceil(4)))
}

/// The evaluations every extra start gets before the early stop: `2 (n + 1)`, at most the
/// budget.
pub fn probe_nfev(n: usize, max_nfev: usize) -> usize {
    (2 * (n + 1)).min(max_nfev)
}

/// How a multistart fit went ([`CurveFit::starts`]).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StartsSummary {
    /// The starting points `[K, n]` (row 0: the user's p0).
    pub points: Array2<f64>,
    /// Final cost of each start (where an early-stopped start stopped; `inf` for a start that
    /// could not be fitted, e.g. not finite there).
    pub costs: Vec<f64>,
    /// Whether each start was stopped early (see the module docs).
    pub stopped_early: Vec<bool>,
    /// The start whose fit is returned.
    pub best: usize,
    /// How many starts reached the best cost (within [`SAME_MINIMUM`] relative), the best one
    /// included.
    pub reached: usize,
    /// Per parameter, the spread (largest minus smallest) of popt over the starts that reached
    /// the best cost: 0 when they all found the same point, large when the minimum is flat or
    /// several parameter sets give it.
    pub spread: Array1<f64>,
}

/// `curve_fit` with `options.starts` starts (`> 1`); see the module docs. `progress` gets the
/// progress of the batches (see `curve_fit_with_progress`). `fixed` are the values of
/// parameters held fixed, after the varying ones (`fit::parameters`; every start holds them).
pub(super) fn fit<'a, M>(
    model: &M,
    xdata: XData<'a>,
    ydata: ArrayView1<'a, f64>,
    p0: Option<&[f64]>,
    options: &FitOptions,
    progress: Option<&Guarded<'_>>,
    fixed: &[f64],
) -> Result<CurveFit>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let t0 = Instant::now();
    let k = options.starts;
    if k > MAX_STARTS {
        return Err(crate::Error::InvalidOption {
            field: "starts",
            value: k.to_string(),
            constraint: "at most 65,536 (multistart::MAX_STARTS)",
        });
    }
    let mut single = options.clone();
    single.starts = 1;
    // Start 0: exactly the single fit (its errors are the multistart's).
    let first = super::fit_one(model, xdata.clone(), ydata, p0, &single, fixed)?;
    let n = first.popt.len();
    let (lb, ub) = expand_bounds(&options.bounds, n)?;
    let origin: Vec<f64> = match p0 {
        Some(p) => p.to_vec(),
        None => lb.iter().zip(&ub).map(|(&l, &h)| default_start(l, h)).collect(),
    };
    let mut points = Array2::zeros((k, n));
    points.row_mut(0).assign(&Array1::from(origin.clone()));
    for s in 1..k {
        for j in 0..n {
            points[[s, j]] = start_value(s, j, origin[j], lb[j], ub[j], options.seed);
        }
    }
    let max_nfev = options.solver.max_nfev_or_default(n);
    let probe = probe_nfev(n, max_nfev);
    // Screening: the cost at every extra start, in one small program; only the lowest
    // `probed(k)` are probed (all of them where the screen does not apply).
    let mut initial = vec![f64::NAN; k];
    let mut order: Vec<usize> = (1..k).collect();
    // (A model the screen cannot take, e.g. one that is not elementwise in batched parameters,
    // only loses the screen: every start is probed.)
    let screened = screen(
        model,
        &xdata,
        ydata,
        options,
        &points.slice(ndarray::s![1.., ..]),
        fixed,
    )
    .ok()
    .flatten();
    if let Some(costs) = screened {
        for (s, c) in (1..k).zip(costs) {
            initial[s] = if c.is_nan() { f64::INFINITY } else { c };
        }
        order.sort_by(|&a, &b| initial[a].total_cmp(&initial[b]));
        order.truncate(probed(k));
    }
    let extra: Vec<Vec<f64>> = order.iter().map(|&s| points.row(s).to_vec()).collect();
    // A leg's progress, offset by the `(chunks, problems)` of the legs before it; the last report
    // made, whose totals give the next leg's offset.
    let last: Mutex<Option<Progress>> = Mutex::new(None);
    let report = |(chunks, problems): (usize, usize), p: &Progress| {
        let outer = Progress {
            chunks_done: chunks + p.chunks_done,
            chunks_total: chunks + p.chunks_total,
            problems_done: problems + p.problems_done,
            problems_total: problems + p.problems_total,
            elapsed: t0.elapsed(),
        };
        *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(outer);
        if let Some(g) = progress {
            g.call(&outer);
        }
    };
    // Start 0's fit is one chunk and one problem, reported with the probe's first chunk.
    let probe_progress = |p: &Progress| report((1, 1), p);
    let probe_callback: Option<ProgressFn<'_>> = progress.map(|_| &probe_progress as ProgressFn<'_>);
    let probed = run_starts(
        model,
        &xdata,
        ydata,
        &extra,
        &single.clone().with_max_nfev(probe),
        probe_callback,
        fixed,
    )?;

    let mut fits: Vec<Option<CurveFit>> = (0..k).map(|_| None).collect();
    fits[0] = Some(first);
    // Screened out: stopped at the start, with its cost there.
    let mut stopped_early = vec![k > 1; k];
    stopped_early[0] = false;
    for &s in &order {
        stopped_early[s] = false;
    }
    let mut running = Vec::new();
    for (&s, r) in order.iter().zip(probed) {
        match r {
            Ok(f) if !f.success() && f.result.nfev >= probe && probe < max_nfev => {
                running.push(s);
                fits[s] = Some(f);
            }
            Ok(f) => fits[s] = Some(f),
            Err(_) => {}
        }
    }
    let cost_of = |f: &Option<CurveFit>| f.as_ref().map_or(f64::INFINITY, |f| f.result.cost);
    let best_so_far = fits.iter().map(cost_of).fold(f64::INFINITY, f64::min);
    running.sort_by(|&a, &b| cost_of(&fits[a]).total_cmp(&cost_of(&fits[b])));
    let mut go_on = Vec::new();
    for (rank, &s) in running.iter().enumerate() {
        if rank < MAX_CONTINUED && cost_of(&fits[s]) <= CONTINUE_RATIO * best_so_far {
            go_on.push(s);
        } else {
            stopped_early[s] = true;
        }
    }
    if !go_on.is_empty() {
        let from: Vec<Vec<f64>> = go_on
            .iter()
            .map(|&s| fits[s].as_ref().map_or_else(Vec::new, |f| f.popt.to_vec()))
            .collect();
        let rest = single.clone().with_max_nfev(max_nfev - probe);
        let before = last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map_or(1, |p| p.chunks_total);
        let continue_progress = |p: &Progress| report((before, 1 + order.len()), p);
        let continue_callback: Option<ProgressFn<'_>> = progress.map(|_| &continue_progress as ProgressFn<'_>);
        let continued = run_starts(model, &xdata, ydata, &from, &rest, continue_callback, fixed)?;
        for (&s, r) in go_on.iter().zip(continued) {
            let (nfev, njev) = fits[s].as_ref().map_or((0, 0), |f| (f.result.nfev, f.result.njev));
            // (A continuation that fails keeps the probe's fit, where the start stopped.)
            let Ok(continued) = r else {
                stopped_early[s] = true;
                continue;
            };
            // The evaluations of both legs.
            let mut f = continued;
            f.result.nfev += nfev;
            f.result.njev += njev;
            fits[s] = Some(f);
        }
    }

    // No leg had a chunk to report (every probed start refused): start 0 and the refusals.
    let reported = last.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let (Some(g), None) = (progress, reported) {
        g.call(&Progress {
            chunks_done: 1,
            chunks_total: 1,
            problems_done: 1 + order.len(),
            problems_total: 1 + order.len(),
            elapsed: t0.elapsed(),
        });
    }

    let costs: Vec<f64> = (0..k)
        .map(|s| match &fits[s] {
            Some(f) => f.result.cost,
            None if stopped_early[s] && !initial[s].is_nan() => initial[s],
            None => f64::INFINITY,
        })
        .collect();
    // Among the starts with a fit (start 0 always has one); NaN sorts last.
    let best = (0..k)
        .filter(|&s| fits[s].is_some())
        .min_by(|&a, &b| costs[a].total_cmp(&costs[b]))
        .unwrap_or(0);
    let best_cost = costs[best];
    let same = |c: f64| c == best_cost || (c - best_cost).abs() <= SAME_MINIMUM * best_cost.abs();
    let reached: Vec<usize> = (0..k)
        .filter(|&s| s == best || (!stopped_early[s] && same(costs[s])))
        .collect();
    let mut spread = Array1::zeros(n);
    for j in 0..n {
        let vals = reached.iter().filter_map(|&s| fits[s].as_ref().map(|f| f.popt[j]));
        let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        spread[j] = if hi >= lo { hi - lo } else { 0.0 };
    }
    let Some(mut out) = fits.swap_remove(best) else {
        return Err(crate::Error::InvalidArgument {
            what: "multistart",
            reason: "no start could be fitted".into(),
        });
    };
    out.result.timings.total = t0.elapsed();
    out.starts = Some(StartsSummary {
        points,
        costs,
        stopped_early,
        best,
        reached: reached.len(),
        spread,
    });
    Ok(out)
}

/// The cost `½ Σ ((f(x, p) − y)/σ)²` at each row of `starts` `[K, n]`, all in one small program
/// (the model traced once with `[K, 1]` parameter columns, cached like the fit programs);
/// `None` where the batch path does not apply (2-D `xdata`, a covariance sigma, very long data).
fn screen<M>(
    model: &M,
    xdata: &XData<'_>,
    ydata: ArrayView1<'_, f64>,
    options: &FitOptions,
    starts: &ndarray::ArrayView2<'_, f64>,
    fixed: &[f64],
) -> Result<Option<Vec<f64>>>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let (k, n, m) = (starts.nrows(), starts.ncols(), ydata.len());
    let XData::D1(x) = xdata else { return Ok(None) };
    if k == 0 || matches!(options.sigma, Some(Sigma::Cov(_))) || k.checked_mul(m).map_or(true, |c| c > 1 << 24) {
        return Ok(None);
    }
    let m_pad = super::validate::bucket(m);
    // Padded rows repeat the first point with zero weight.
    let pad = |v: &mut Vec<f64>, fill: f64| v.resize(m_pad, fill);
    let mut xs = x.to_vec();
    pad(&mut xs, x[0]);
    let mut ys = ydata.to_vec();
    pad(&mut ys, 0.0);
    let mut ws: Vec<f64> = match &options.sigma {
        Some(Sigma::Std(s)) if s.len() == m => s.iter().map(|v| 1.0 / v).collect(),
        _ => vec![1.0; m],
    };
    pad(&mut ws, 0.0);
    let g = crate::graph::Graph::new();
    let xt = g.parameter("x", crate::DType::F64, [m_pad as i64]);
    let yt = g.parameter("y", crate::DType::F64, [m_pad as i64]);
    let wt = g.parameter("w", crate::DType::F64, [m_pad as i64]);
    let pt = g.parameter("p", crate::DType::F64, [k as i64, n as i64]);
    let ft = (!fixed.is_empty()).then(|| g.parameter("fixed", crate::DType::F64, [fixed.len() as i64]));
    let cost = g.try_with(|| {
        // Every start holds the fixed values: its columns after the varying ones.
        let all = match &ft {
            Some(f) => g.concat(
                &[
                    pt.clone(),
                    f.reshape([1, fixed.len() as i64])
                        .broadcast_to([k as i64, fixed.len() as i64]),
                ],
                1,
            ),
            None => pt.clone(),
        };
        let f = model(&xt, &Params::from_columns(&all)).broadcast_to([k as i64, m_pad as i64]);
        ((f - &yt) * &wt).square().reduce_sum(&[1]) * 0.5
    })?;
    let program = g.finish([&cost])?;
    let exe = super::cache::portable_executable(&program.text)?.executable;
    let client = exe.client().clone();
    let device = client.lease_device()?;
    let flat: Vec<f64> = starts.iter().copied().collect();
    let mut args = vec![
        client.buffer_from_host_on(&device, &xs, &[m_pad as i64])?,
        client.buffer_from_host_on(&device, &ys, &[m_pad as i64])?,
        client.buffer_from_host_on(&device, &ws, &[m_pad as i64])?,
        client.buffer_from_host_on(&device, &flat, &[k as i64, n as i64])?,
    ];
    if !fixed.is_empty() {
        args.push(client.buffer_from_host_on(&device, fixed, &[fixed.len() as i64])?);
    }
    let refs: Vec<_> = args.iter().collect();
    let out = exe.execute_on(&device, &refs)?;
    Ok(Some(out[0].to_vec::<f64>()?))
}

/// Start `s`'s value of parameter `j` (module docs).
fn start_value(s: usize, j: usize, p0: f64, lb: f64, ub: f64, seed: u32) -> f64 {
    // sobol_burley has 256 dimensions; more parameters reuse them with another seed.
    let dim = |d: usize| {
        let (d, round) = ((d % 256) as u32, (d / 256) as u32);
        f64::from(sobol_burley::sample(
            s as u32,
            d,
            seed.wrapping_add(round.wrapping_mul(0x9E37_79B9)),
        ))
    };
    let (u, v) = (dim(2 * j), dim(2 * j + 1));
    let decades = 10f64.powf(4.0 * u - 2.0);
    // (Written so that bounds near ±f64::MAX give finite starts.)
    let finite = |v: f64| v.clamp(-f64::MAX, f64::MAX);
    match (lb.is_finite(), ub.is_finite()) {
        (true, true) => finite((1.0 - u) * lb + u * ub).clamp(lb, ub),
        (true, false) => finite(lb + distance(p0 - lb) * decades),
        (false, true) => finite(ub - distance(ub - p0) * decades),
        (false, false) => {
            let magnitude = if p0 == 0.0 || !p0.is_finite() {
                decades
            } else {
                p0 * decades
            };
            finite(if v < 0.25 { -magnitude } else { magnitude })
        }
    }
}

/// `|d|`, or 1 when it is 0 or not finite.
fn distance(d: f64) -> f64 {
    if d.is_finite() && d != 0.0 {
        d.abs()
    } else {
        1.0
    }
}

/// Fits of `ydata` from each of `starts`, as one batch where the batch program can take the
/// problem, else one `curve_fit` per start, one after the other; `progress` is called after
/// each chunk of the batch (or each start's fit).
fn run_starts<'a, M>(
    model: &M,
    xdata: &XData<'a>,
    ydata: ArrayView1<'a, f64>,
    starts: &[Vec<f64>],
    options: &FitOptions,
    progress: Option<ProgressFn<'_>>,
    fixed: &[f64],
) -> Result<Vec<Result<CurveFit>>>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    let (b, m, n) = (starts.len(), ydata.len(), starts[0].len());
    let p0 = Array2::from_shape_fn((b, n), |(i, j)| starts[i][j]);
    // The batch holds y once per start: only while that stays small.
    let batchable = b.checked_mul(m).is_some_and(|c| c <= 1 << 24);
    if let (XData::D1(x), true) = (xdata, batchable) {
        if !matches!(options.sigma, Some(Sigma::Cov(_))) {
            let y = Array2::from_shape_fn((b, m), |(_, i)| ydata[i]);
            let sigma = match &options.sigma {
                Some(Sigma::Std(s)) if s.len() == m => Some(Array2::from_shape_fn((b, m), |(_, i)| s[i])),
                _ => None,
            };
            let mut own = options.clone();
            own.sigma = None;
            let fixed_rows = Array2::from_shape_fn((b, fixed.len()), |(_, j)| fixed[j]);
            let mut batch = Batch::shared_x(x.view(), y.view(), p0.view());
            if let Some(s) = &sigma {
                batch = batch.with_sigma(s.view());
            }
            if !fixed.is_empty() {
                batch = batch.with_fixed(fixed_rows.view());
            }
            if let Some(callback) = progress {
                batch = batch.with_progress(callback);
            }
            return curve_fit_batch(model, &batch, &own);
        }
    }
    // (One after the other: the model need not be `Sync`, so it cannot be shared by threads.)
    let tracker = Tracker::new(progress, starts.len(), starts.len(), 0, Instant::now());
    Ok(starts
        .iter()
        .map(|p| {
            let fit = super::fit_one(model, xdata.clone(), ydata, Some(p), options, fixed);
            tracker.chunk_done(1);
            fit
        })
        .collect())
}
