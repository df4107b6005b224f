//! Batched fitting: `B` independent problems sharing one model and one padded length, in one
//! executable per chunk of problems.
//!
//! # Design
//!
//! The lockstep program runs the solvers (`solve::lm`, `solve::trf`, written once for one problem
//! or a batch: `solve::lanes`) on the lanes of a batch: a leading batch axis on every state
//! variable (vectors `[B, n]`, scalars `[B]`, matrices `[B, n, n]`) and the small linear algebra
//! (Householder QR of `[J | f]`, Jacobi SVD) in its batched form (`linalg::batched`). Each
//! problem keeps its own trust radius, λ, iteration and evaluation counts and termination
//! status; every loop (outer iterations, trial steps, Newton iterations, Jacobi sweeps) runs
//! while *any* problem still needs it, and its body `select`s
//! per problem so that a problem that has finished that loop does not change. The model is
//! traced once for the whole chunk: `x [m]` (or `[B, m]`) and parameters as `[B, 1]` columns
//! ([`Params::from_columns`]), the Jacobian by forward mode with one tangent per parameter.
//! Results therefore follow each problem's own path, as `curve_fit` would (same nfev, nit and
//! status; values equal up to the last-bit differences between kernels, 1e-10 relative or
//! better in `tests/fit_batch.rs`, except for the Huber and Cauchy losses, whose Jacobian
//! scaling cancels and amplifies those differences to about 1e-8).
//!
//! The other program, [`BatchProgram::Sequential`], is an outer loop over the problems that
//! runs the unbatched solver on each in turn (the single-fit arithmetic, with no per-fit host
//! overhead but no vectorization across problems). [`BatchProgram::Auto`] picks it on the CPU,
//! where it is the faster of the two (XLA:CPU runs a fit's scalar control flow as compiled code,
//! while the lockstep program pays for every problem at every step until the slowest is done;
//! figures in `docs/kernels.md`),
//! and the lockstep program elsewhere (a GPU runs scalar control flow slowly, a batch of it
//! at once well).
//!
//! On the CPU the chunks of a batch run side by side, one core each, each on its own thread of
//! ours pinned to that core, on that core's own single-device client whose thread pools are
//! pinned there too (`runtime::cpu_workers`): with one client for all cores the kernel often
//! ran both chunks' pool threads on one core while the other idled. `NLSQ_PIN_THREADS=0` turns
//! this off: the chunks then run on the default client's devices, one per core (the executables
//! are portable; one device runs its executions one after another). `NLSQ_BATCH_THREADS=k` caps
//! the number of chunks run at once.
//!
//! The number of problems in a chunk is a runtime input, so one executable (compiled for a
//! capacity `C`) serves every chunk of up to `C` problems; unused slots are frozen from the
//! start. Programs are cached in memory by model fingerprint and shape.
//!
//! [`Batch::with_progress`] sets a callback called after each chunk (see [`super::progress`]).

use std::time::{Duration, Instant};

use ndarray::{s, ArrayView1, ArrayView2};

use super::execute::{run_timings, HostArg};
use super::outcome::curve_fit_result;
use super::program::{pack_row, pack_rows, summary_len, SolverArgs, Summary};
use super::programs::{fingerprint, PROGRAMS};
use super::progress::{Progress, ProgressFn, Tracker};
use super::residuals::{Residuals, Weights};
use super::statistics::DataSummary;
use super::units::Units;
use super::validate::single_start;
use super::validate::{check_all_finite, internal, invalid, plan, Plan, PlanOptions};
use super::{cache, memory, CurveFit, FitOptions};
use crate::error::{Error, Result};
use crate::graph::{Graph, Params, Program, Tensor, TensorType};
use crate::solve::{self, Config};
use crate::types::DType;

/// Default largest number of problems per execution.
pub const DEFAULT_BATCH_CHUNK: usize = 1024;

/// Target size of one chunk's `[J | f]` for the batch-polymorphic solver (chunk size chosen
/// automatically unless set with [`Batch::with_chunk`]).
const WORKING_SET_BYTES: usize = 4 << 20;
/// Smallest automatic chunk.
const MIN_AUTO_CHUNK: usize = 16;

/// The x values of a batch.
#[derive(Clone, Copy, Debug)]
pub enum BatchX<'a> {
    /// One x vector `[m]` shared by all problems.
    Shared(ArrayView1<'a, f64>),
    /// One row per problem `[B, m]`.
    PerProblem(ArrayView2<'a, f64>),
}

/// The data of a batch of problems (see [`curve_fit_batch`]).
#[derive(Clone)]
pub struct Batch<'a> {
    x: BatchX<'a>,
    y: ArrayView2<'a, f64>,
    p0: ArrayView2<'a, f64>,
    lengths: Option<Vec<usize>>,
    bounds: Option<(ArrayView2<'a, f64>, ArrayView2<'a, f64>)>,
    sigma: Option<ArrayView2<'a, f64>>,
    chunk: usize,
    chunk_set: bool,
    program: BatchProgram,
    progress: Option<ProgressFn<'a>>,
    /// Values of parameters held fixed `[B, k]`, after the `n` varying ones (`fit::parameters`).
    fixed: Option<ArrayView2<'a, f64>>,
}

impl std::fmt::Debug for Batch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("x", &self.x)
            .field("y", &self.y)
            .field("p0", &self.p0)
            .field("lengths", &self.lengths)
            .field("bounds", &self.bounds)
            .field("sigma", &self.sigma)
            .field("chunk", &self.chunk)
            .field("chunk_set", &self.chunk_set)
            .field("program", &self.program)
            .field("progress", &self.progress.map(|_| "callback"))
            .field("fixed", &self.fixed)
            .finish()
    }
}

/// Which program fits a batch (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BatchProgram {
    /// [`Sequential`](BatchProgram::Sequential) on the CPU, [`Lockstep`](BatchProgram::Lockstep)
    /// on other platforms (a GPU runs one problem's scalar control flow slowly but a whole
    /// batch of them at once).
    #[default]
    Auto,
    /// An outer loop over the problems, each solved by the single-problem solver: the
    /// arithmetic of `curve_fit` (up to the summation order over a differently padded length),
    /// with no per-fit host overhead.
    Sequential,
    /// All problems advance together through the batch-polymorphic solvers.
    Lockstep,
}

impl<'a> Batch<'a> {
    /// `B` problems with ydata `y [B, m]` and starting points `p0 [B, n]`, sharing `x [m]`.
    pub fn shared_x(x: ArrayView1<'a, f64>, y: ArrayView2<'a, f64>, p0: ArrayView2<'a, f64>) -> Self {
        Self::with_x(BatchX::Shared(x), y, p0)
    }

    /// `B` problems with their own `x [B, m]`.
    pub fn new(x: ArrayView2<'a, f64>, y: ArrayView2<'a, f64>, p0: ArrayView2<'a, f64>) -> Self {
        Self::with_x(BatchX::PerProblem(x), y, p0)
    }

    fn with_x(x: BatchX<'a>, y: ArrayView2<'a, f64>, p0: ArrayView2<'a, f64>) -> Self {
        Batch {
            x,
            y,
            p0,
            lengths: None,
            bounds: None,
            sigma: None,
            chunk: DEFAULT_BATCH_CHUNK,
            chunk_set: false,
            program: BatchProgram::Auto,
            progress: None,
            fixed: None,
        }
    }

    /// Problem `b`'s model has `n + k` parameters, the last `k` held fixed at `fixed[b]` (an
    /// input of the program: other values never recompile). For multistart fits of
    /// `fit::Parameters`.
    pub(super) fn with_fixed(mut self, fixed: ArrayView2<'a, f64>) -> Self {
        self.fixed = Some(fixed);
        self
    }

    /// Problem `b`'s fixed values (empty without any).
    fn fixed_row(&self, b: usize) -> Vec<f64> {
        self.fixed.map_or_else(Vec::new, |f| f.row(b).to_vec())
    }

    /// Ragged batch: problem `b` uses the first `lengths[b]` points of its rows.
    pub fn with_lengths(mut self, lengths: impl Into<Vec<usize>>) -> Self {
        self.lengths = Some(lengths.into());
        self
    }

    /// Per-problem bounds `[B, n]` each (overrides `FitOptions::bounds`).
    pub fn with_bounds(mut self, lower: ArrayView2<'a, f64>, upper: ArrayView2<'a, f64>) -> Self {
        self.bounds = Some((lower, upper));
        self
    }

    /// Per-problem standard deviations `[B, m]` (1-D sigma of each problem).
    pub fn with_sigma(mut self, sigma: ArrayView2<'a, f64>) -> Self {
        self.sigma = Some(sigma);
        self
    }

    /// Problems per execution; larger batches are split into several executions (results in
    /// order). Default: automatic, at most [`DEFAULT_BATCH_CHUNK`], and on the CPU at most an
    /// equal share per core (the chunks run side by side); for the lockstep program also fewer
    /// for long curves, so that one chunk's Jacobian stays about 4 MiB.
    pub fn with_chunk(mut self, chunk: usize) -> Self {
        self.chunk_set = true;
        self.chunk = chunk.max(1);
        self
    }

    /// Chooses the program (default [`BatchProgram::Auto`]).
    pub fn with_program(mut self, program: BatchProgram) -> Self {
        self.program = program;
        self
    }

    /// Sets a callback called after each chunk of the batch has finished, with the chunks and
    /// problems done so far, their totals and the time since [`curve_fit_batch`] was called.
    ///
    /// It is called on the thread that called [`curve_fit_batch`], once per chunk (one
    /// execution of the batch program, or a problem fitted alone in its own units), never two
    /// calls at once, with counts that rise by one chunk per call and end at the totals (once in
    /// all for a batch of one chunk; not at all when every problem is refused). The chunks do
    /// not wait for it. A callback that panics is not called again and changes no result (see
    /// [`super::progress`]).
    ///
    /// # Examples
    /// ```no_run
    /// use ndarray::{Array1, Array2};
    /// use nlsq::fit::batch::{curve_fit_batch, Batch};
    /// use nlsq::fit::{FitOptions, Progress};
    /// use nlsq::graph::{Params, Tensor};
    ///
    /// let x: Array1<f64> = Array1::linspace(0.0, 5.0, 100);
    /// let y = Array2::from_shape_fn((1000, 100), |(b, i)| (1.0 + b as f64 * 1e-3) * (-x[i]).exp());
    /// let p0 = Array2::from_elem((1000, 2), 1.0);
    /// let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp();
    /// let report = |p: &Progress| eprintln!("{}/{} chunks, {:.0} fits/s", p.chunks_done, p.chunks_total, p.rate());
    /// let batch = Batch::shared_x(x.view(), y.view(), p0.view()).with_progress(&report);
    /// let fits = curve_fit_batch(&model, &batch, &FitOptions::default())?;
    /// # Ok::<(), nlsq::Error>(())
    /// ```
    pub fn with_progress(mut self, callback: &'a (dyn Fn(&Progress) + Sync)) -> Self {
        self.progress = Some(callback);
        self
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.y.nrows()
    }

    /// True when there are no problems.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn x_row(&self, b: usize, len: usize) -> ArrayView1<'a, f64> {
        match self.x {
            BatchX::Shared(x) => x.slice_move(s![..len]),
            BatchX::PerProblem(x) => x.index_axis_move(ndarray::Axis(0), b).slice_move(s![..len]),
        }
    }
}

/// One validated problem of a batch.
struct Prepared {
    index: usize,
    m: usize,
    plan: Plan,
    weights: Option<Vec<f64>>,
    /// What the fit statistics need from the problem's `y` and sigma.
    summary: DataSummary,
}

/// Program shape of a batch chunk.
#[derive(Clone, Debug, PartialEq)]
struct BatchSpec {
    capacity: usize,
    m_pad: usize,
    n: usize,
    shared_x: bool,
    weighted: bool,
    config: Config,
    /// Parameters held fixed, a `fixed [capacity, k]` input.
    fixed: usize,
}

/// Fits every problem of `batch` with `model`, like calling [`curve_fit`](super::curve_fit)
/// on each (same options: method, loss, tolerances, `absolute_sigma`, shared bounds unless the
/// batch has its own), but in one execution per chunk of problems.
///
/// Returns one result per problem, in order: a problem with invalid input, or whose model is
/// not finite at its `p0`, gets the same error a single fit would, without affecting the
/// others. Batch-level problems (shape mismatches, a 2-D `sigma` in `options`, chunking
/// options) are an outer error.
///
/// A problem whose data or `p0` are in extreme units (beyond about 1e±90, where `curve_fit`
/// rescales: see [`curve_fit`](super::curve_fit)) is fitted alone by `curve_fit`, in its own
/// program, and gets that fit's result.
///
/// Differences from single fits: `result.jac` is `None`, and in a batch mixing
/// bounded and unbounded problems all run the bounded TRF code path. All problems must resolve
/// to the same method.
pub fn curve_fit_batch<M>(model: &M, batch: &Batch<'_>, options: &FitOptions) -> Result<Vec<Result<CurveFit>>>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let t0 = Instant::now();
    let nb = batch.len();
    let (m_all, n) = (batch.y.ncols(), batch.p0.ncols());
    if batch.p0.nrows() != nb {
        return Err(invalid("p0", format!("has {} rows but y has {nb}", batch.p0.nrows())));
    }
    match batch.x {
        BatchX::Shared(x) if x.len() != m_all => {
            return Err(invalid(
                "xdata",
                format!("has {} points but y rows have {m_all}", x.len()),
            ))
        }
        BatchX::PerProblem(x) if x.dim() != (nb, m_all) => {
            return Err(invalid(
                "xdata",
                format!("is {:?} but y is {:?}", x.dim(), batch.y.dim()),
            ))
        }
        _ => {}
    }
    if let Some(l) = &batch.lengths {
        if l.len() != nb {
            return Err(invalid("lengths", format!("has {} values for {nb} problems", l.len())));
        }
    }
    if let Some((lo, hi)) = &batch.bounds {
        if lo.dim() != (nb, n) || hi.dim() != (nb, n) {
            return Err(invalid("bounds", format!("must be [{nb}, {n}] each")));
        }
    }
    if let Some(f) = &batch.fixed {
        if f.nrows() != nb || f.iter().any(|v| !v.is_finite()) {
            return Err(invalid(
                "fixed",
                format!("must be [{nb}, k] and finite, got {:?}", f.dim()),
            ));
        }
    }
    if let Some(sg) = &batch.sigma {
        if sg.dim() != (nb, m_all) {
            return Err(invalid(
                "sigma",
                format!("is {:?} but y is {:?}", sg.dim(), batch.y.dim()),
            ));
        }
    }
    single_start(options, "1 for a batch (multistart is curve_fit's)")?;
    if options.sigma.is_some() {
        return Err(Error::InvalidOption {
            field: "sigma",
            value: "set".into(),
            constraint: "unset for a batch (use Batch::with_sigma)",
        });
    }

    // Per-problem validation, as a single fit would do it, on one thread: threads cost more than
    // they saved here (`docs/kernels.md`).
    let mut results: Vec<Option<Result<CurveFit>>> = (0..nb).map(|_| None).collect();
    let mut prepared: Vec<Prepared> = Vec::with_capacity(nb);
    // A problem in extreme units is fitted alone, in its own scaled units, as `curve_fit` would
    // (the batch program has no unit factors), after the batch's chunks.
    let mut alone: Vec<Prepared> = Vec::new();
    let shared_x_finite = matches!(batch.x, BatchX::Shared(x) if x.iter().all(|v| v.is_finite()));
    for (b, result) in results.iter_mut().enumerate() {
        match prepare_problem(batch, options, shared_x_finite, b) {
            Ok(p) if !p.units(batch).is_identity() => alone.push(p),
            Ok(p) => prepared.push(p),
            Err(e) => *result = Some(Err(e)),
        }
    }
    // Problems refused at validation have their result from the start.
    let settled = nb - prepared.len() - alone.len();

    let mut tracker = None;
    if !prepared.is_empty() {
        // Shared program configuration: bounded if any problem is.
        let bounded = prepared.iter().any(|p| p.plan.config.bounded);
        let method = prepared[0].plan.method;
        if prepared.iter().any(|p| p.plan.method != method) {
            return Err(Error::InvalidOption {
                field: "method",
                value: "mixed".into(),
                constraint: "one method for the whole batch (set it, or give all problems bounds or none)",
            });
        }
        let mut config = prepared[0].plan.config.clone();
        config.bounded = bounded;
        let rows = prepared.iter().map(|p| p.m.max(n + 1)).max().unwrap_or(n + 1);
        // A batch pads to a multiple of 8 rows only: a bucket could add half again as much work
        // to every problem, and a batch is usually fitted many times at one length.
        let m_pad = if options.bucket { rows.next_multiple_of(8) } else { rows };
        let client = crate::runtime::client()?;
        let on_cpu = client.platform_name() == "cpu";
        let polymorphic = match batch.program {
            BatchProgram::Auto => !on_cpu,
            BatchProgram::Sequential => false,
            BatchProgram::Lockstep => true,
        };
        let count = prepared.len();
        // On the CPU the chunks run on all cores at once, each core's on its own thread: on the
        // pinned per-core clients (`runtime::cpu_workers`), or where those are off on the default
        // client's devices, one per core (a device runs its executions one after another);
        // elsewhere one execution uses the whole device.
        let all_pinned = if on_cpu { crate::runtime::cpu_workers()? } else { &[] };
        let workers = if on_cpu {
            let slots = if all_pinned.is_empty() {
                client.devices().len()
            } else {
                all_pinned.len()
            };
            available_workers().min(slots).min(count).max(1)
        } else {
            1
        };
        let pinned = if workers >= 2 {
            &all_pinned[..all_pinned.len().min(workers)]
        } else {
            &[]
        };
        let mut capacity = count.div_ceil(workers).next_power_of_two().min(batch.chunk);
        if polymorphic && !batch.chunk_set {
            // All problems of a chunk advance together, each step streaming `[J | f]` of the
            // whole chunk: keep that within about 4 MiB so that it stays in cache.
            let per_problem = (n + 1) * m_pad * 8;
            let fit = (WORKING_SET_BYTES / per_problem).max(1);
            let fit = if fit.is_power_of_two() {
                fit
            } else {
                fit.next_power_of_two() / 2
            };
            capacity = capacity.min(fit.max(MIN_AUTO_CHUNK));
        }
        let spec = BatchSpec {
            capacity,
            m_pad,
            n,
            shared_x: matches!(batch.x, BatchX::Shared(_)),
            weighted: batch.sigma.is_some(),
            config,
            fixed: batch.fixed.map_or(0, |f| f.ncols()),
        };
        let fingerprint = batch_fingerprint(model, &spec, polymorphic)?;
        // A slot for every client that may run it: a later call with the same program may use
        // more of the cores (fewer problems per chunk, or `NLSQ_BATCH_THREADS`).
        let program = PROGRAMS.batch(fingerprint, 1 + all_pinned.len(), || {
            Ok(trace_batch(model, &spec, polymorphic)?.text)
        })?;
        let trace = t0.elapsed();
        // Slot 0 holds the default client's executable, slot 1 + k worker k's.
        let targets: Vec<(usize, &crate::pjrt::Client)> = if pinned.is_empty() {
            vec![(0, &client)]
        } else {
            pinned.iter().enumerate().map(|(k, w)| (1 + k, &w.client)).collect()
        };
        let (exes, compile) = program.for_clients(&targets)?;
        // Equal chunks of at most `capacity` problems, a multiple of `workers` of them when
        // there are enough problems, so that the cores finish together.
        let chunks = count.div_ceil(capacity).next_multiple_of(workers).min(count);
        let chunks: Vec<&[Prepared]> = prepared.chunks(count.div_ceil(chunks)).collect();
        let progress = tracker.insert(Tracker::new(
            batch.progress,
            chunks.len() + alone.len(),
            nb,
            settled,
            t0,
        ));
        let threads = workers.min(chunks.len());
        let pool = crate::runtime::cpu_worker_pool()?;
        let fits = progress.run(|notify| {
            // One thread per core, each running a contiguous run of chunks: the pinned workers'
            // long-lived threads, or else fresh threads on the default client's devices.
            let run = |worker: usize, i: usize| {
                let (exe, device) = if pinned.is_empty() {
                    (&exes[0], worker)
                } else {
                    (&exes[worker], 0)
                };
                let fits = run_chunk(
                    exe,
                    &spec,
                    batch,
                    chunks[i],
                    device,
                    options.absolute_sigma,
                    t0,
                    trace,
                    compile,
                );
                notify(chunks[i].len());
                fits
            };
            match pool {
                Some(pool) if !pinned.is_empty() => {
                    let per = chunks.len().div_ceil(threads);
                    pool.broadcast(|ctx| {
                        let w = ctx.index();
                        (w * per..((w + 1) * per).min(chunks.len()))
                            .map(|i| run(w, i))
                            .collect::<Vec<_>>()
                    })
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                }
                _ => parallel_map(chunks.len(), threads, run),
            }
        });
        for (chunk, fits) in chunks.iter().zip(fits) {
            for (p, f) in chunk.iter().zip(fits?) {
                results[p.index] = Some(f);
            }
        }
    }
    let progress = tracker.unwrap_or_else(|| Tracker::new(batch.progress, alone.len(), nb, settled, t0));
    for p in &alone {
        results[p.index] = Some(fit_alone(model, batch, options, p));
        progress.chunk_done(1);
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every problem has a result"))
        .collect())
}

/// The inputs of a batch program, in the order [`chunk_args`] passes them.
struct BatchInputs {
    /// `[m_pad]` shared, or `[capacity, m_pad]`.
    xs: Tensor,
    ys: Tensor,
    /// Per-point weights, when the batch has sigma.
    ws: Option<Tensor>,
    /// Packed [`SolverArgs`] rows `[capacity, 4n + 6]`.
    args: Tensor,
    /// Number of problems in the chunk (`i64 []`).
    count: Tensor,
    /// Fixed parameter values `[capacity, k]`, when there are any.
    fixed: Option<Tensor>,
}

impl BatchInputs {
    fn declare(g: &Graph, spec: &BatchSpec) -> BatchInputs {
        let (c, m_pad) = (spec.capacity as i64, spec.m_pad as i64);
        let x_dims = if spec.shared_x { vec![m_pad] } else { vec![c, m_pad] };
        BatchInputs {
            xs: g.parameter("x", DType::F64, x_dims),
            ys: g.parameter("y", DType::F64, [c, m_pad]),
            ws: spec.weighted.then(|| g.parameter("w", DType::F64, [c, m_pad])),
            args: SolverArgs::declare(g, &[c], spec.n as i64),
            count: g.parameter("count", DType::I64, []),
            fixed: (spec.fixed > 0).then(|| g.parameter("fixed", DType::F64, [c, spec.fixed as i64])),
        }
    }
}

/// The program of a chunk of a batch: the lockstep program ([`lockstep_rows`]) or the
/// sequential one ([`sequential_rows`]). Its one output holds a row per problem.
fn trace_batch<M>(model: &M, spec: &BatchSpec, lockstep: bool) -> Result<Program>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let g = Graph::new();
    let io = BatchInputs::declare(&g, spec);
    let rows = if lockstep {
        lockstep_rows(&g, model, spec, &io)?
    } else {
        sequential_rows(&g, model, spec, &io)?
    };
    g.finish([&rows])
}

/// The sequential program's rows: an outer loop over the problems, each solved by the
/// unbatched solver on its row of the inputs.
fn sequential_rows<M>(g: &Graph, model: &M, spec: &BatchSpec, io: &BatchInputs) -> Result<Tensor>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let (c, m_pad, n) = (spec.capacity as i64, spec.m_pad as i64, spec.n as i64);
    let x_ty = TensorType::new(DType::F64, [m_pad]);
    let k = spec.fixed as i64;
    let model_f = g.model_function_fixed("model", model, x_ty.clone(), n, k)?;
    // The Jacobian as forward mode makes it, one row per parameter (see `fun_jac` below).
    let model_fj = g.model_jac_t_function_fixed("model_jac", model, x_ty, n, k)?;
    // All outputs of a problem in one row (the summary, then the residuals): one buffer to
    // initialise, fill and read back (with one output each, the entry computation had ~20 small
    // kernels besides the loop; now 7).
    let row_len = packed_row_len(spec);
    let init = vec![g.scalar(DType::I64, 0.0), g.zeros(DType::F64, [c, row_len as i64])];
    let out = g.while_loop(
        &init,
        |st| st[0].lt(&io.count),
        |st| {
            let b = &st[0];
            let xt = if spec.shared_x { io.xs.clone() } else { io.xs.at(b) };
            let yt = io.ys.at(b);
            let wt = io.ws.as_ref().map(|w| w.at(b));
            let inputs = SolverArgs::decode(&io.args.at(b), n, None);
            let weights = wt.map_or(Weights::None, Weights::Diagonal);
            let data = Residuals::new(xt, yt, weights, &inputs.m_valid).with_fixed(io.fixed.as_ref().map(|f| f.at(b)));
            let fun = |p: &Tensor| data.fun(&model_f, p);
            // J is masked and weighted as Jᵀ [n, m] and transposed last: the factorization
            // transposes it back (XLA cancels the two), and nothing else reads J here, so the
            // [m, n] copy is never made.
            let fun_jac = |p: &Tensor| {
                let (f, jt) = data.fun_jac_t(&model_fj, p);
                (f, jt.t())
            };
            let problem = solve::Problem::new(&fun, &fun_jac, m_pad, n, solve::Lanes::one(g));
            let o = solve::solve(&problem, &inputs, &spec.config);
            vec![b + 1.0, st[1].set(b, &pack_row(&o))]
        },
    );
    Ok(out[1].clone())
}

/// Length of a problem's row in the output of a chunk: its summary, then its padded residuals.
fn packed_row_len(spec: &BatchSpec) -> usize {
    summary_len(spec.n) + spec.m_pad
}

impl Prepared {
    /// The units `curve_fit` would fit this problem in ([`Units`]).
    fn units(&self, batch: &Batch<'_>) -> Units {
        let y = batch.y.row(self.index);
        let largest = match &self.weights {
            None => y
                .iter()
                .take(self.m)
                .map(|v| v.abs())
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max),
            Some(w) => (y.iter().zip(w))
                .map(|(v, w)| (v * w).abs())
                .filter(|v| v.is_finite())
                .fold(0.0, f64::max),
        };
        let p0 = batch.p0.row(self.index).to_vec();
        Units::from_scales(largest, Some(&p0), p0.len())
    }
}

/// Problem `p` of `batch` fitted by `curve_fit` with its own bounds and sigma.
fn fit_alone<M>(model: &M, batch: &Batch<'_>, options: &FitOptions, p: &Prepared) -> Result<CurveFit>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let b = p.index;
    let mut own = options.clone();
    if let Some((lo, hi)) = &batch.bounds {
        own = own.with_bounds(lo.row(b).to_vec(), hi.row(b).to_vec());
    }
    if let Some(sg) = &batch.sigma {
        own = own.with_sigma(sg.row(b).slice(s![..p.m]).to_vec());
    }
    let p0 = batch.p0.row(b).to_vec();
    let y = batch.y.row(b).slice_move(s![..p.m]);
    let x = batch.x_row(b, p.m);
    super::fit_one(model, x.view().into(), y, Some(&p0), &own, &batch.fixed_row(b))
}

/// Problem `b` of `batch`, validated and planned as `curve_fit` would.
fn prepare_problem(batch: &Batch<'_>, options: &FitOptions, shared_x_finite: bool, b: usize) -> Result<Prepared> {
    let m_all = batch.y.ncols();
    let m = batch.lengths.as_ref().map_or(m_all, |l| l[b]);
    if m == 0 {
        return Err(invalid("ydata", "no data points"));
    }
    if m > m_all {
        return Err(invalid("lengths", format!("{m} is more than the {m_all} columns of y")));
    }
    let y = batch.y.row(b).slice_move(s![..m]);
    if options.check_finite {
        // A shared x found finite once needs no check per problem.
        if !shared_x_finite {
            check_all_finite("xdata", batch.x_row(b, m).iter().copied())?;
        }
        check_all_finite("ydata", y.iter().copied())?;
    }
    let p0 = batch.p0.row(b).to_vec();
    let own_bounds = batch
        .bounds
        .as_ref()
        .map(|(lo, hi)| (lo.row(b).to_vec(), hi.row(b).to_vec()));
    let mut plan_options = PlanOptions::from(options);
    if own_bounds.is_some() {
        plan_options.bounds = &own_bounds;
    }
    let plan = plan(p0, m, plan_options)?;
    let weights = match &batch.sigma {
        None => None,
        Some(sg) => {
            let mut w = Vec::with_capacity(m);
            for (i, &v) in sg.row(b).slice(s![..m]).iter().enumerate() {
                if !(v > 0.0) || !v.is_finite() {
                    return Err(invalid("sigma", format!("sigma[{i}] = {v}: must be finite and > 0")));
                }
                w.push(1.0 / v);
            }
            Some(w)
        }
    };
    let summary = DataSummary::diagonal(y.view(), weights.as_deref());
    Ok(Prepared {
        index: b,
        m,
        plan,
        weights,
        summary,
    })
}

/// `(0..count).map(|i| f(t, i))`, in order, with the indices split into `threads` contiguous
/// ranges that run side by side, `t` being the index of the range (and of its thread).
fn parallel_map<T: Send>(count: usize, threads: usize, f: impl Fn(usize, usize) -> T + Sync) -> Vec<T> {
    let threads = threads.min(count).max(1);
    if threads == 1 {
        return (0..count).map(|i| f(0, i)).collect();
    }
    let per = count.div_ceil(threads);
    std::thread::scope(|s| {
        let f = &f;
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(count))
                        .map(|i| f(t, i))
                        .collect::<Vec<T>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The inputs of the program for `chunk` (sequential and lockstep programs take the same).
fn chunk_args<'a>(spec: &BatchSpec, batch: &Batch<'a>, chunk: &[Prepared]) -> Vec<HostArg<'a>> {
    let (c, m_pad) = (spec.capacity, spec.m_pad);
    let k = chunk.len();
    // Slots past `k` repeat the first problem; the loop never reaches them.
    let slot = |i: usize| &chunk[if i < k { i } else { 0 }];
    let mut args = Vec::new();
    args.push(match batch.x {
        BatchX::Shared(x) => HostArg::Rows {
            rows: vec![x],
            len: m_pad,
            fill: None,
            dims: vec![m_pad as i64],
        },
        BatchX::PerProblem(_) => HostArg::Rows {
            rows: (0..c).map(|i| batch.x_row(slot(i).index, slot(i).m)).collect(),
            len: m_pad,
            fill: None,
            dims: vec![c as i64, m_pad as i64],
        },
    });
    let yrows = (0..c)
        .map(|i| {
            let p = slot(i);
            batch.y.index_axis_move(ndarray::Axis(0), p.index).slice_move(s![..p.m])
        })
        .collect();
    args.push(HostArg::Rows {
        rows: yrows,
        len: m_pad,
        fill: Some(0.0),
        dims: vec![c as i64, m_pad as i64],
    });
    if spec.weighted {
        let mut w = Vec::with_capacity(c * m_pad);
        for i in 0..c {
            let p = slot(i);
            w.extend_from_slice(p.weights.as_deref().unwrap_or(&[]));
            w.resize((i + 1) * m_pad, 0.0);
        }
        args.push(HostArg::F64(w, vec![c as i64, m_pad as i64]));
    }
    let mut packed = Vec::with_capacity(c * SolverArgs::packed_len(chunk[0].plan.n));
    for i in 0..c {
        slot(i).plan.args.pack_into(&mut packed);
    }
    let row = (packed.len() / c) as i64;
    args.push(HostArg::F64(packed, vec![c as i64, row]));
    args.push(HostArg::I64(k as i64));
    if spec.fixed > 0 {
        let mut fixed = Vec::with_capacity(c * spec.fixed);
        for i in 0..c {
            fixed.extend(batch.fixed_row(slot(i).index));
        }
        args.push(HostArg::F64(fixed, vec![c as i64, spec.fixed as i64]));
    }
    args
}

/// Uploads one chunk to device `device` of the client, runs it (after checking that it fits
/// the device's memory: `memory`), and reads the results of its problems.
#[allow(clippy::too_many_arguments)]
fn run_chunk(
    exe: &cache::CachedExecutable,
    spec: &BatchSpec,
    batch: &Batch<'_>,
    chunk: &[Prepared],
    device: usize,
    absolute_sigma: bool,
    t0: Instant,
    trace: Duration,
    compile: Duration,
) -> Result<Vec<Result<CurveFit>>> {
    let n = spec.n;
    let args = chunk_args(spec, batch, chunk);
    let t2 = Instant::now();
    let executable = &exe.executable;
    let client = executable.client().clone();
    let devices = client.devices();
    let device = devices
        .get(device)
        .ok_or_else(|| invalid("device", format!("no device {device}")))?;
    memory::check_capacity(executable, device, memory::BATCH_ADVICE)?;
    let buffers = args
        .into_iter()
        .map(|a| a.upload_to(&client, device))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<_> = buffers.iter().collect();
    memory::check_free(executable, device, memory::BATCH_ADVICE)?;
    let out = executable.execute_on(device, &refs)?.remove(0).to_vec::<f64>()?;
    let execute = t2.elapsed();
    let device = device.to_string();
    let (row_len, s_len) = (packed_row_len(spec), summary_len(n));
    if out.len() != spec.capacity * row_len {
        return Err(internal(
            "program outputs",
            format!("{} values, expected {} rows of {row_len}", out.len(), spec.capacity),
        ));
    }
    let fits = chunk
        .iter()
        .zip(out.chunks_exact(row_len))
        .map(|(p, row)| {
            let fun = row[s_len..s_len + p.m].to_vec();
            let (result, cov) = Summary::decode(&row[..s_len], n)?.into_result(
                Some(fun),
                None,
                &p.plan,
                exe.source,
                device.clone(),
                run_timings(trace, compile, execute, t0),
            )?;
            Ok(curve_fit_result(result, cov, p.m, n, absolute_sigma, Some(p.summary)))
        })
        .collect();
    Ok(fits)
}

/// The fingerprint of the batch program of `spec` for `model` ([`programs::fingerprint`]).
///
/// [`programs::fingerprint`]: super::programs::fingerprint
fn batch_fingerprint<M>(model: &M, spec: &BatchSpec, polymorphic: bool) -> Result<[u8; 32]>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let (c, m_pad, n) = (spec.capacity as i64, spec.m_pad as i64, spec.n as i64);
    let x_dims = if spec.shared_x { vec![m_pad] } else { vec![c, m_pad] };
    fingerprint(model, x_dims, vec![c, n + spec.fixed as i64], &(spec, polymorphic))
}

/// Number of chunks run at once on the CPU: the available cores (`NLSQ_BATCH_THREADS=k` sets it).
fn available_workers() -> usize {
    crate::settings::batch_threads().unwrap_or_else(crate::runtime::cores)
}

/// The lockstep program's rows: all problems advance together (`solve::solve` on the lanes
/// of a batch).
fn lockstep_rows<M>(g: &Graph, model: &M, spec: &BatchSpec, io: &BatchInputs) -> Result<Tensor>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let (c, m_pad, n) = (spec.capacity as i64, spec.m_pad as i64, spec.n as i64);
    let x_ty = io.xs.ty();
    let inputs = SolverArgs::decode(&io.args, n, Some(&io.count));

    let p_ty = TensorType::new(DType::F64, [c, n]);
    let k = spec.fixed as i64;
    // The model's parameters: the varying columns, then the fixed ones (an input `[c, k]`).
    let eval = |x: &Tensor, p: &Tensor, fixed: Option<&Tensor>| {
        let all = match fixed {
            Some(f) => g.concat(&[p.clone(), f.clone()], 1),
            None => p.clone(),
        };
        model(x, &Params::from_columns(&all)).broadcast_to([c, m_pad])
    };
    let mut args = vec![("x", x_ty), ("p", p_ty)];
    if k > 0 {
        args.push(("fixed", TensorType::new(DType::F64, [c, k])));
    }
    let model_f = g.function("model_batch", &args, |a| vec![eval(&a[0], &a[1], a.get(2))])?;
    let model_fj = g.checked_function("model_batch_jac", &args, |a| {
        let f = eval(&a[0], &a[1], a.get(2));
        let seeds = g.eye(DType::F64, n).broadcast_in_dim([n, c, n], &[0, 2]);
        let mut t = crate::graph::jvp(std::slice::from_ref(&f), &[(a[1].clone(), seeds)])?;
        Ok(vec![f, t.remove(0).transpose(&[1, 0, 2])])
    })?;
    let weights = io.ws.clone().map_or(Weights::None, Weights::Diagonal);
    let data = Residuals::new(io.xs.clone(), io.ys.clone(), weights, &inputs.m_valid).with_fixed(io.fixed.clone());
    let fun = |p: &Tensor| data.fun(&model_f, p);
    let fun_jac = |p: &Tensor| data.fun_jac_t(&model_fj, p);
    let problem = solve::Problem::new(&fun, &fun_jac, m_pad, n, solve::Lanes::batch(g, c));
    let out = solve::solve(&problem, &inputs, &spec.config);
    Ok(pack_rows(&out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// Fixed values per problem (the multistart fits of `fit::Parameters`): the lockstep and
    /// sequential programs agree with each other and with the model with the value written in.
    #[test]
    fn fixed_values_per_problem_in_both_programs() {
        let x: Vec<f64> = (0..60).map(|i| i as f64 * 0.08).collect();
        let cs = [0.1, 0.3, -0.2];
        let y = Array2::from_shape_fn((3, 60), |(b, i)| {
            2.0 * (-1.1 * x[i]).exp() + cs[b] + 0.01 * (i as f64).sin()
        });
        let p0 = Array2::from_elem((3, 2), 1.0);
        let fixed = Array2::from_shape_fn((3, 1), |(b, _)| cs[b]);
        let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
        let opts = FitOptions::default().with_ftol(1e-15).with_xtol(1e-15).with_gtol(1e-15);
        let run = |program| {
            let batch = Batch::shared_x(ArrayView1::from(&x), y.view(), p0.view())
                .with_fixed(fixed.view())
                .with_program(program);
            curve_fit_batch(&model, &batch, &opts).unwrap()
        };
        let (seq, lock) = (run(BatchProgram::Sequential), run(BatchProgram::Lockstep));
        for b in 0..3 {
            let c = cs[b];
            let literal = move |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + c;
            let want = crate::fit::curve_fit(&literal, &x, &y.row(b).to_vec(), Some(&[1.0, 1.0]), &opts).unwrap();
            for (what, fits) in [("sequential", &seq), ("lockstep", &lock)] {
                let got = fits[b].as_ref().unwrap();
                for j in 0..2 {
                    let (g, w) = (got.popt[j], want.popt[j]);
                    assert!((g - w).abs() <= 1e-10 * w.abs(), "{what} {b} popt[{j}]: {g} vs {w}");
                }
            }
        }
    }
}
