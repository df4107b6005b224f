//! `curve_fit` and `least_squares`: validation, the traced program, execution, results.
//!
//! A fit traces the model (as private `func.func`s for the residuals and for residuals plus
//! Jacobian) and the whole solver loop into one StableHLO program whose inputs are the data,
//! the starting point, the bounds and the tolerances; compiles it once per shape (cached in
//! memory for the life of the process); and runs it with one `Execute`. Everything the caller
//! gets back (solution, cost, residuals, Jacobian, gradient, counts, status, cost history, and
//! the unscaled covariance) comes back from that one execution.
//!
//! Input validation happens on the host before anything is traced: bad input is an
//! [`Error`], never a panic or an XLA abort.
//!
//! The stages live in their own modules: `validate` (checks and the plan of a fit), `trace`
//! (model and solver as one program), `program` (the packed inputs and outputs of every fit
//! program), `residuals` (masked, weighted residuals), `programs` (traced programs by model
//! fingerprint), `execute` (host arrays and the one `Execute`), `memory` (the program's memory
//! needs against the device's), `outcome` (results and the errors of a fit that could not
//! start), `units` (fits in extreme units); this module holds the entry points.

// `!(v > 0.0)` is deliberate throughout: it is true for NaN, which must be rejected too.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod batch;
pub mod cache;
mod execute;
pub mod global;
mod least_squares;
mod memory;
pub mod multistart;
pub mod options;
mod outcome;
pub mod parameters;
mod predict;
mod program;
mod programs;
pub mod progress;
mod residuals;
pub mod result;
mod schur;
pub mod statistics;
mod trace;
mod units;
mod validate;

use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView1};

pub use crate::solve::covariance::NULL_SPACE_TOL;
pub use cache::{CacheKey, ExecutableCache};
pub use global::{curve_fit_global, GlobalFit};
pub use least_squares::least_squares;
pub use multistart::StartsSummary;
pub use options::{FitOptions, LeastSquaresOptions, Sigma, XData};
pub use parameters::{curve_fit_parameters, FittedParameter, Parameter, ParameterFit, ParameterKind, Parameters};
pub use predict::{predict, Prediction};
pub use progress::{Progress, ProgressFn};
pub use result::{CurveFit, ExecutableSource, FitResult, Timings};
pub use statistics::FitStatistics;

use crate::error::{Error, Result};
use crate::graph::{Params, Tensor};
use execute::run_curve;
use outcome::explain_nonfinite;
use programs::PROGRAMS;
use trace::trace_curve;
use units::Units;
pub use validate::{auto_chunk_rows, bucket, default_start, AUTO_CHUNK_FROM, MATERIALIZE_MAX_ROWS};
use validate::{expand_bounds, host_zeros, invalid, prepare, single_start, CurveSpec};

/// The constraint a `CurveFitter` given more than one start reports.
const FITTER_STARTS: &str = "1 for a CurveFitter (multistart is curve_fit's)";

/// Length of the in-graph cost history.
pub const HISTORY_LEN: i64 = 128;

/// [`curve_fit`] with a progress callback: for a multistart fit ([`FitOptions::starts`] `> 1`)
/// it is called after each chunk of the starts' batches, as
/// [`Batch::with_progress`](batch::Batch::with_progress) is for a batch; for one start it is
/// called once, after a fit that returned `Ok` (1 of 1 chunk and problem).
///
/// In a multistart fit the chunks are the executions (start 0's own fit, the probe batch's
/// chunks, the continuation batch's) and the problems the fits they run (start 0, the
/// [`multistart::probed`]`(K)` starts that pass the screen, then the continued ones again). The first call comes after the probe's first
/// chunk and counts start 0's fit with it. The totals are those known at the time of the
/// call: during the probe, start 0 and the probe; they grow by the continuation's chunks and
/// starts when it is planned (which starts continue depends on the probe's costs). Counts and
/// totals never decrease, and the last call has done equal to total. Calls are made on this
/// thread, one at a time; a callback that panics is not called again and changes no result
/// ([`progress`]).
///
/// The callback is an argument, not a [`FitOptions`] field: `FitOptions` is plain data,
/// `Clone + Debug + PartialEq` by value, and a closure is none of these (a field would need an
/// `Arc<dyn Fn + Send + Sync + 'static>` compared by address). As an argument it may borrow
/// from the caller (no `'static`, no `Arc`), and no other entry point (a batch, a
/// `CurveFitter`, `least_squares`) has an option it would silently ignore.
///
/// # Errors
/// Those of [`curve_fit`].
///
/// # Examples
/// ```no_run
/// use nlsq::fit::{curve_fit_with_progress, FitOptions, Progress};
/// use nlsq::graph::{Params, Tensor};
///
/// let x: Vec<f64> = (0..200).map(|i| i as f64 * 0.05).collect();
/// let y: Vec<f64> = x.iter().map(|x| 1.7 * (3.3 * x).sin()).collect();
/// let model = |x: &Tensor, p: &Params| &p[0] * (&p[1] * x).sin();
/// let report = |p: &Progress| eprintln!("{}/{} chunks", p.chunks_done, p.chunks_total);
/// let opts = FitOptions::default().with_starts(32);
/// let fit = curve_fit_with_progress(&model, &x, &y, Some(&[1.0, 1.0]), &opts, &report)?;
/// # Ok::<(), nlsq::Error>(())
/// ```
pub fn curve_fit_with_progress<'a, M>(
    model: &M,
    xdata: impl Into<XData<'a>>,
    ydata: impl Into<ArrayView1<'a, f64>>,
    p0: Option<&[f64]>,
    options: &FitOptions,
    callback: &(dyn Fn(&Progress) + Sync),
) -> Result<CurveFit>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let guarded = progress::Guarded::new(Some(callback));
    if options.starts > 1 {
        return multistart::fit(model, xdata.into(), ydata.into(), p0, options, Some(&guarded), &[]);
    }
    let t0 = Instant::now();
    let fit = curve_fit(model, xdata, ydata, p0, options)?;
    guarded.call(&Progress {
        chunks_done: 1,
        chunks_total: 1,
        problems_done: 1,
        problems_total: 1,
        elapsed: t0.elapsed(),
    });
    Ok(fit)
}

/// Fits `model(x, p)` to `ydata`, like `scipy.optimize.curve_fit`.
///
/// `model` is ordinary Rust over traced tensors: `x` is `[m]` (or `[k, m]` for
/// multi-dimensional `xdata`; `x.row(i)` is coordinate `i`) and `p[i]` are the parameters.
/// `p0 = None` starts from [`default_start`] of each parameter's bounds (all ones without
/// bounds) and needs [`FitOptions::n_params`]. The method defaults to `lm` without bounds and
/// `trf` with bounds or a robust loss.
///
/// Every call traces the model (about a millisecond or two); the compiled executable comes from
/// the cache when the same program was compiled before, in this process or (through the disk
/// cache) an earlier one. The number of points is padded up to a [`bucket`], so most lengths
/// reuse an executable. To fit many datasets of one shape, build a [`CurveFitter`] once.
///
/// # Errors
/// [`Error::InvalidInput`] / [`Error::InvalidOption`] for bad input (NaN or infinite data when
/// `check_finite`, length mismatches, too few points for `lm`, `p0` outside the bounds,
/// `lower >= upper`, `sigma <= 0`, a covariance `sigma` that is not positive definite, `lm`
/// with bounds, a model that is not finite at `p0`); trace errors naming the op and shapes
/// for a model of the wrong shape; runtime errors from PJRT.
///
/// # Examples
/// ```no_run
/// use nlsq::fit::{curve_fit, FitOptions};
/// use nlsq::graph::{Params, Tensor};
///
/// let x: Vec<f64> = (0..50).map(|i| i as f64 * 0.1).collect();
/// let y: Vec<f64> = x.iter().map(|x| 2.5 * (-1.3 * x).exp() + 0.5).collect();
/// let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
/// let fit = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &FitOptions::default())?;
/// assert!((fit.popt[1] - 1.3).abs() < 1e-8);
/// # Ok::<(), nlsq::Error>(())
/// ```
pub fn curve_fit<'a, M>(
    model: &M,
    xdata: impl Into<XData<'a>>,
    ydata: impl Into<ArrayView1<'a, f64>>,
    p0: Option<&[f64]>,
    options: &FitOptions,
) -> Result<CurveFit>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    match options.starts {
        0 => {
            return Err(Error::InvalidOption {
                field: "starts",
                value: "0".into(),
                constraint: ">= 1 (1: p0 only)",
            })
        }
        1 => {}
        _ => return multistart::fit(model, xdata.into(), ydata.into(), p0, options, None, &[]),
    }
    fit_one(model, xdata.into(), ydata.into(), p0, options, &[])
}

/// One fit of `model` from `p0` (one start). `fixed` are the values of parameters held fixed:
/// the model then has `p0.len() + fixed.len()` parameters, the varying ones first, and the
/// fixed values are an input of the program, not constants in it (`fit::parameters`).
pub(super) fn fit_one<'a, M>(
    model: &M,
    xdata_in: XData<'a>,
    ydata_in: ArrayView1<'a, f64>,
    p0: Option<&[f64]>,
    options: &FitOptions,
    fixed: &[f64],
) -> Result<CurveFit>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    // The runtime (plugin and client) is loaded once per process; its cost is reported apart.
    let t_runtime = Instant::now();
    crate::runtime::client()?;
    let runtime = t_runtime.elapsed();
    let t0 = Instant::now();
    let explain = |e| explain_nonfinite(e, &xdata_in, ydata_in, options);
    // Views with this call's lifetime, so that scaled data can stand in for them.
    let xdata = match &xdata_in {
        XData::D1(x) => XData::D1(x.view()),
        XData::D2(x) => XData::D2(x.view()),
    };
    let ydata = ydata_in.view();
    // Data or parameters in extreme units are fitted in units scaled by exact powers of two
    // (see `Units`), and the results are scaled back.
    let units = Units::of(ydata, p0, options);
    let (scaled_y, scaled_options, scaled_p0);
    let (ydata, options, p0) = if units.is_identity() {
        (ydata, options, p0)
    } else {
        scaled_y = ydata.mapv(|v| v * units.residual);
        scaled_options = units.scale_options(options)?;
        scaled_p0 = p0.map(|p| p.iter().zip(&units.params).map(|(v, c)| v / c).collect::<Vec<f64>>());
        (scaled_y.view(), &scaled_options, scaled_p0.as_deref())
    };
    let scaled_model = |x: &Tensor, p: &Params| units.model(model, x, p);
    let model = &scaled_model;
    let mut data = prepare(&xdata, ydata, p0, options, None)?;
    if !fixed.is_empty() {
        // Before the packed solver arguments, the last input (`trace_curve` declares it so).
        data.spec.fixed = fixed.len();
        let at = data.args.len() - 1;
        data.args
            .insert(at, execute::HostArg::F64(fixed.to_vec(), vec![fixed.len() as i64]));
    }
    // The solver part of the program is a function of the spec alone, so the model's own
    // emitted text (cheap to trace) plus the spec identifies the whole program: a repeated
    // call skips tracing the solver.
    let fingerprint = model_fingerprint(model, &data.spec)?;
    if let Some(exe) = PROGRAMS.executable(&fingerprint) {
        let trace = t0.elapsed();
        let exe = cache::CachedExecutable {
            source: ExecutableSource::Memory,
            load_time: Duration::ZERO,
            ..exe
        };
        let mut fit = run_curve(&exe, data, t0, trace, Duration::ZERO, &units).map_err(explain)?;
        fit.result.timings.runtime = runtime;
        return Ok(fit);
    }
    let program = trace_curve(model, &data.spec)?;
    let trace = t0.elapsed();
    let exe = cache::portable_executable(&program.text)?;
    let compile = exe.load_time;
    PROGRAMS.insert_executable(fingerprint, exe.clone());
    let mut fit = run_curve(&exe, data, t0, trace, compile, &units).map_err(explain)?;
    fit.result.timings.runtime = runtime;
    Ok(fit)
}

/// The fingerprint of the program of `spec` for `model` ([`programs::fingerprint`]).
fn model_fingerprint<M>(model: &M, spec: &CurveSpec) -> Result<[u8; 32]>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let x_dims: Vec<i64> = match spec.x_rows {
        None => vec![spec.m_pad as i64],
        Some(k) => vec![k as i64, spec.m_pad as i64],
    };
    programs::fingerprint(model, x_dims, vec![(spec.n + spec.fixed) as i64], spec)
}

/// The program shape of a `curve_fit` of `m` points and `n` parameters (`x_rows` coordinates per
/// point, `None` for 1-D `xdata`) with `options`, derived from a placeholder dataset of that
/// size: what [`CurveFitter`] builds and what [`warm_up`] compiles.
fn probe_spec(x_rows: Option<usize>, m: usize, n: usize, options: &FitOptions) -> Result<CurveSpec> {
    // Validate the options and derive the program shape from a placeholder dataset of the
    // right size (values never reach the solver: only the shape is traced).
    let mut probe_options = options.clone();
    probe_options.sigma = match &options.sigma {
        Some(Sigma::Cov(_)) => {
            let mut eye = host_zeros(m.checked_mul(m), "m")?;
            eye.iter_mut().step_by(m + 1).for_each(|v| *v = 1.0);
            Some(Sigma::Cov(
                Array2::from_shape_vec((m, m), eye).map_err(|e| invalid("m", e.to_string()))?,
            ))
        }
        Some(Sigma::Std(_)) => {
            let mut ones = host_zeros(Some(m), "m")?;
            ones.fill(1.0);
            Some(Sigma::Std(ones))
        }
        None => None,
    };
    probe_options.check_finite = false;
    let (lb, ub) = expand_bounds(&options.bounds, n)?;
    let probe_p0: Vec<f64> = lb.iter().zip(&ub).map(|(&l, &h)| default_start(l, h)).collect();
    let xs = host_zeros(m.checked_mul(x_rows.unwrap_or(1)), "m")?;
    let ys = host_zeros(Some(m), "m")?;
    let x2;
    let xd = match x_rows {
        None => XData::D1(ArrayView1::from(xs.as_slice())),
        Some(k) => {
            x2 = Array2::from_shape_vec((k, m), xs.clone()).map_err(|e| invalid("xdata", e.to_string()))?;
            XData::D2(x2.view())
        }
    };
    let data = prepare(
        &xd,
        ArrayView1::from(ys.as_slice()),
        Some(&probe_p0),
        &probe_options,
        None,
    )?;
    Ok(data.spec)
}

/// What [`warm_up`] did for one program.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmUp {
    /// The lengths (of those asked for) this program fits.
    pub lengths: Vec<usize>,
    /// Its rows (the lengths are padded up to them, see [`bucket`]).
    pub rows: usize,
    /// Where its executable came from: compiled now, or already in the memory or disk cache.
    pub source: ExecutableSource,
    /// How long compiling (or loading) it took.
    pub time: Duration,
}

/// Compiles ahead the programs `curve_fit` needs for data of each of `lengths` points, `n`
/// parameters and `x_rows` coordinates per point (`None` for 1-D `xdata`) with `options`, so
/// that later fits (in this process, or in another one through the disk cache) only execute:
/// for build steps and container images (`nlsq compile` on the command line). Lengths that
/// share a program (a [`bucket`]) compile it once; several programs compile side by side, one
/// thread per core. The programs are the ones a fit compiles on first use, so the fits are bit
/// for bit the same. Data in extreme units (beyond 1e±90, see `curve_fit`) use programs of
/// their own, which this does not build. `options.sigma` only tells 1-D from 2-D sigma (its
/// values are not used).
///
/// # Errors
/// As [`CurveFitter`]'s builder for each length (bad options, a length of 0), and runtime or
/// compile errors.
///
/// # Examples
/// ```no_run
/// use nlsq::fit::{warm_up, FitOptions};
/// use nlsq::graph::{Params, Tensor};
///
/// let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
/// for w in warm_up(&model, &[100, 1000, 10_000], 3, None, &FitOptions::default())? {
///     println!("{} rows for {:?}: {} in {:?}", w.rows, w.lengths, w.source, w.time);
/// }
/// # Ok::<(), nlsq::Error>(())
/// ```
pub fn warm_up<M>(
    model: &M,
    lengths: &[usize],
    n: usize,
    x_rows: Option<usize>,
    options: &FitOptions,
) -> Result<Vec<WarmUp>>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    crate::runtime::client()?;
    if n == 0 || x_rows == Some(0) || lengths.contains(&0) {
        return Err(invalid(
            "shape",
            format!("compiling ahead needs lengths >= 1, n >= 1 and x_rows >= 1 (got lengths {lengths:?}, n {n}, x_rows {x_rows:?})"),
        ));
    }
    single_start(
        options,
        "1 (this compiles the one-start programs; a multistart's batch programs compile on first use)",
    )?;
    // One entry per distinct program, in the order of first use.
    let mut programs: Vec<(CurveSpec, Vec<usize>)> = Vec::new();
    for &m in lengths {
        let spec = probe_spec(x_rows, m, n, options)?;
        match programs.iter_mut().find(|(s, _)| *s == spec) {
            Some((_, ls)) => ls.push(m),
            None => programs.push((spec, vec![m])),
        }
    }
    // Tracing needs the model (not `Sync`): here, in order. Compiling needs only the text.
    let mut jobs = Vec::new();
    let mut out = Vec::with_capacity(programs.len());
    for (spec, ls) in programs {
        let fingerprint = model_fingerprint(model, &spec)?;
        let rows = spec.m_pad;
        if PROGRAMS.executable(&fingerprint).is_some() {
            out.push(WarmUp {
                lengths: ls,
                rows,
                source: ExecutableSource::Memory,
                time: Duration::ZERO,
            });
            continue;
        }
        let text = trace_curve(model, &spec)?.text;
        jobs.push((fingerprint, text, ls, rows));
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .clamp(1, jobs.len().max(1));
    let per = jobs.len().div_ceil(threads).max(1);
    let compiled: Vec<Result<WarmUp>> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(fingerprint, text, ls, rows)| {
                            let exe = cache::portable_executable(text)?;
                            PROGRAMS.insert_executable(*fingerprint, exe.clone());
                            Ok(WarmUp {
                                lengths: ls.clone(),
                                rows: *rows,
                                source: exe.source,
                                time: exe.load_time,
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(Error::InvalidArgument {
                        what: "warm_up",
                        reason: "a compile thread panicked".into(),
                    })]
                })
            })
            .collect()
    });
    for w in compiled {
        out.push(w?);
    }
    Ok(out)
}

/// A `curve_fit` compiled once for a model and a shape, reused for many datasets.
///
/// Built for `capacity` rows (padded up to a [`bucket`] unless `options.bucket` is off), it
/// fits any dataset with up to that many points (and at least `n + 1` rows after padding):
/// only the execution is paid per fit. Data, `p0`, bounds values, tolerances, `max_nfev`,
/// `f_scale` and `sigma` values may change from call to call through [`CurveFitter::fit_with`];
/// what shapes the program (method, loss, whether there are bounds, 1-D vs 2-D sigma, the
/// kind of `x_scale`, the number of parameters and of `x` rows) must stay as built.
///
/// # Examples
/// ```no_run
/// use nlsq::fit::{CurveFitter, FitOptions};
/// use nlsq::graph::{Params, Tensor};
///
/// let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
/// let fitter = CurveFitter::builder(model).capacity(100).params(3).build()?;
/// let x: Vec<f64> = (0..100).map(|i| i as f64 * 0.05).collect();
/// for k in [0.5, 1.0, 2.0] {
///     let y: Vec<f64> = x.iter().map(|x| 2.0 * (-k * x).exp() + 0.1).collect();
///     let fit = fitter.fit(&x, &y, Some(&[1.0, 1.0, 0.0]))?;
///     assert!((fit.popt[1] - k).abs() < 1e-6);
/// }
/// # Ok::<(), nlsq::Error>(())
/// ```
pub struct CurveFitter<M> {
    model: M,
    spec: CurveSpec,
    options: FitOptions,
    exe: cache::CachedExecutable,
    trace: Duration,
}

/// Builds a [`CurveFitter`]: `CurveFitter::builder(model).capacity(m).params(n).build()`.
#[must_use = "a builder does nothing until `build` is called"]
pub struct CurveFitterBuilder<M> {
    model: M,
    capacity: Option<usize>,
    n_params: Option<usize>,
    x_rows: Option<usize>,
    options: FitOptions,
}

impl<M> CurveFitterBuilder<M>
where
    M: Fn(&Tensor, &Params) -> Tensor,
{
    /// The most points a dataset may have (the program is built for this many rows, padded up
    /// to a [`bucket`] unless `options.bucket` is off). Required.
    pub fn capacity(mut self, points: usize) -> Self {
        self.capacity = Some(points);
        self
    }

    /// The number of parameters. Required, unless the options give [`FitOptions::n_params`].
    pub fn params(mut self, n: usize) -> Self {
        self.n_params = Some(n);
        self
    }

    /// The number of coordinates per point, for `xdata` of shape `[k, m]` (default: 1-D
    /// `xdata`).
    pub fn x_rows(mut self, k: usize) -> Self {
        self.x_rows = Some(k);
        self
    }

    /// The fit options (default [`FitOptions::default`]).
    pub fn options(mut self, options: FitOptions) -> Self {
        self.options = options;
        self
    }

    /// Traces and compiles (or loads from the caches) the fitter's program.
    ///
    /// # Errors
    /// A capacity or parameter count that is not set, invalid options, trace errors of the
    /// model, compile errors.
    pub fn build(self) -> Result<CurveFitter<M>> {
        let unset = |field: &'static str, how: &'static str| Error::InvalidOption {
            field,
            value: "unset".into(),
            constraint: how,
        };
        let m = self
            .capacity
            .ok_or_else(|| unset("capacity", "set with CurveFitterBuilder::capacity"))?;
        let n = self
            .n_params
            .or(self.options.n_params)
            .ok_or_else(|| unset("n_params", "set with CurveFitterBuilder::params"))?;
        CurveFitter::new(self.model, self.x_rows, m, n, self.options)
    }
}

impl<M> std::fmt::Debug for CurveFitter<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveFitter")
            .field("rows", &self.spec.m_pad)
            .field("n", &self.spec.n)
            .field("method", &self.spec.config.method)
            .field("executable", &self.exe.source)
            .finish()
    }
}

impl<M> CurveFitter<M>
where
    M: Fn(&Tensor, &Params) -> Tensor,
{
    /// A builder of a fitter for `model`: set the point capacity and the number of parameters,
    /// then [`CurveFitterBuilder::build`].
    pub fn builder(model: M) -> CurveFitterBuilder<M> {
        CurveFitterBuilder {
            model,
            capacity: None,
            n_params: None,
            x_rows: None,
            options: FitOptions::default(),
        }
    }

    /// Traces and compiles (or loads from the caches) the program for `n` parameters, `m`
    /// points, and `x_rows` coordinates per point (`None` for 1-D `xdata`).
    fn new(model: M, x_rows: Option<usize>, m: usize, n: usize, options: FitOptions) -> Result<Self> {
        let t0 = Instant::now();
        single_start(&options, FITTER_STARTS)?;
        if m == 0 || n == 0 || x_rows == Some(0) {
            return Err(invalid(
                "shape",
                format!("a fitter needs m >= 1, n >= 1 and x_rows >= 1 (got m {m}, n {n}, x_rows {x_rows:?})"),
            ));
        }
        let spec = probe_spec(x_rows, m, n, &options)?;
        let program = trace_curve(&model, &spec)?;
        let trace = t0.elapsed();
        let exe = cache::portable_executable(&program.text)?;
        Ok(CurveFitter {
            model,
            spec,
            options,
            exe,
            trace,
        })
    }

    /// Rows of the compiled program (the most points one fit can take).
    pub fn capacity(&self) -> usize {
        self.spec.m_pad
    }

    /// How the executable was obtained when the fitter was built, and how long that took.
    pub fn executable_source(&self) -> (ExecutableSource, Duration) {
        (self.exe.source, self.exe.load_time)
    }

    /// Time spent tracing when the fitter was built.
    pub fn trace_time(&self) -> Duration {
        self.trace
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Fits one dataset with the fitter's options.
    ///
    /// # Errors
    /// As [`curve_fit`], plus [`Error::InvalidInput`] when the data do not fit the shape.
    pub fn fit<'a>(
        &self,
        xdata: impl Into<XData<'a>>,
        ydata: impl Into<ArrayView1<'a, f64>>,
        p0: Option<&[f64]>,
    ) -> Result<CurveFit> {
        self.fit_with(xdata, ydata, p0, &self.options)
    }

    /// This fitter's model at new points with the parameters of `fit` and its confidence and
    /// prediction bands: [`predict`] with the model the fitter was built for.
    ///
    /// # Errors
    /// As [`predict`].
    pub fn predict<'a>(
        &self,
        xdata: impl Into<XData<'a>>,
        fit: &CurveFit,
        level: f64,
        sigma: Option<&[f64]>,
    ) -> Result<Prediction> {
        predict(&self.model, xdata, fit, level, sigma)
    }

    /// Fits one dataset with other option values (same program shape).
    ///
    /// # Errors
    /// As [`CurveFitter::fit`], plus [`Error::InvalidOption`] when the options would need a
    /// different program.
    pub fn fit_with<'a>(
        &self,
        xdata: impl Into<XData<'a>>,
        ydata: impl Into<ArrayView1<'a, f64>>,
        p0: Option<&[f64]>,
        options: &FitOptions,
    ) -> Result<CurveFit> {
        let t0 = Instant::now();
        single_start(options, FITTER_STARTS)?;
        if let Some(p) = p0.filter(|p| p.len() != self.spec.n) {
            return Err(invalid(
                "p0",
                format!(
                    "has {} values but the fitter was built for {} parameters",
                    p.len(),
                    self.spec.n
                ),
            ));
        }
        let (xdata, ydata) = (xdata.into(), ydata.into());
        let data = prepare(&xdata, ydata, p0, options, Some((self.spec.m_pad, self.spec.chunk)))?;
        if data.spec != self.spec {
            return Err(Error::InvalidOption {
                field: "options",
                value: format!("{:?}", data.spec.config),
                constraint: "the shape the fitter was built for (build another CurveFitter)",
            });
        }
        if !Units::of(ydata, p0, options).is_identity() {
            // Data or parameters in extreme units need the unit factors inside the program: the
            // general path builds (once per units, then from the caches) and runs that one.
            return curve_fit(&self.model, xdata, ydata, p0, options);
        }
        run_curve(
            &self.exe,
            data,
            t0,
            Duration::ZERO,
            Duration::ZERO,
            &Units::identity(self.spec.n),
        )
        .map_err(|e| explain_nonfinite(e, &xdata, ydata, options))
    }
}
