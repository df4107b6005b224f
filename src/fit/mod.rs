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

// `!(v > 0.0)` is deliberate throughout: it is true for NaN, which must be rejected too.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod batch;
pub mod cache;
pub mod options;
mod program;
mod programs;
mod residuals;
pub mod result;

use std::time::{Duration, Instant};

use ndarray::{Array1, Array2, ArrayView1, ArrayViewD};

pub use crate::solve::covariance::NULL_SPACE_TOL;
pub use cache::{CacheKey, ExecutableCache};
pub use options::{FitOptions, Sigma, XData};
pub use result::{CurveFit, ExecutableSource, FitResult, Timings};

use crate::error::{Error, Result};
use crate::graph::{jacfwd, Graph, Params, Program, Tensor, TensorType};
use crate::solve::termination::NONFINITE_START;
use crate::solve::{self, Config, Loss, Method, Status};
use crate::types::DType;
use program::{solve_once, SolverArgs, Summary};
use residuals::{Residuals, Weights};

/// Length of the in-graph cost history.
pub const HISTORY_LEN: i64 = 128;

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        field,
        reason: reason.into(),
    }
}

fn check_all_finite(field: &'static str, v: impl IntoIterator<Item = f64>) -> Result<()> {
    for (i, x) in v.into_iter().enumerate() {
        if !x.is_finite() {
            return Err(invalid(
                field,
                format!("element {i} is {x} (set check_finite = false to allow it)"),
            ));
        }
    }
    Ok(())
}

/// Bounds expanded to `n` values, validated.
fn expand_bounds(bounds: &Option<(Vec<f64>, Vec<f64>)>, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let Some((lo, hi)) = bounds else {
        return Ok((vec![f64::NEG_INFINITY; n], vec![f64::INFINITY; n]));
    };
    let expand = |v: &Vec<f64>, field| -> Result<Vec<f64>> {
        match v.len() {
            1 => Ok(vec![v[0]; n]),
            l if l == n => Ok(v.clone()),
            l => Err(invalid(
                field,
                format!("has {l} values, expected 1 or {n} (one per parameter)"),
            )),
        }
    };
    let (lo, hi) = (expand(lo, "bounds.lower")?, expand(hi, "bounds.upper")?);
    for i in 0..n {
        if lo[i].is_nan() || hi[i].is_nan() {
            return Err(invalid("bounds", format!("bound {i} is NaN")));
        }
        if lo[i] >= hi[i] {
            return Err(invalid(
                "bounds",
                format!(
                    "lower bound {i} ({}) must be strictly less than upper bound ({})",
                    lo[i], hi[i]
                ),
            ));
        }
    }
    Ok((lo, hi))
}

/// scipy's `make_strictly_feasible(x0, lb, ub)` with `rstep = 1e-10`.
fn strictly_feasible(x: &mut [f64], lb: &[f64], ub: &[f64]) {
    for i in 0..x.len() {
        if x[i] <= lb[i] {
            x[i] = lb[i] + 1e-10 * lb[i].abs().max(1.0);
        } else if x[i] >= ub[i] {
            x[i] = ub[i] - 1e-10 * ub[i].abs().max(1.0);
        }
        if x[i] < lb[i] || x[i] > ub[i] {
            x[i] = 0.5 * (lb[i] + ub[i]);
        }
    }
}

/// Cholesky factor `L` of a symmetric positive-definite matrix, and `L⁻¹`.
fn whitening(cov: &Array2<f64>) -> Result<Array2<f64>> {
    let m = cov.nrows();
    let mut l = Array2::<f64>::zeros((m, m));
    for j in 0..m {
        for i in 0..j {
            if (cov[[i, j]] - cov[[j, i]]).abs()
                > 1e-12 * (cov[[i, j]].abs() + cov[[j, i]].abs()).max(f64::MIN_POSITIVE)
            {
                return Err(invalid(
                    "sigma",
                    format!("covariance matrix is not symmetric at ({i}, {j})"),
                ));
            }
        }
        let mut d = cov[[j, j]];
        for k in 0..j {
            d -= l[[j, k]] * l[[j, k]];
        }
        if !(d > 0.0) || !d.is_finite() {
            return Err(invalid("sigma", "covariance matrix is not positive definite"));
        }
        let djj = d.sqrt();
        l[[j, j]] = djj;
        for i in j + 1..m {
            let mut s = cov[[i, j]];
            for k in 0..j {
                s -= l[[i, k]] * l[[j, k]];
            }
            l[[i, j]] = s / djj;
        }
    }
    // Invert the lower triangle column by column (forward substitution on the identity).
    let mut inv = Array2::<f64>::zeros((m, m));
    for c in 0..m {
        for i in c..m {
            let mut s = if i == c { 1.0 } else { 0.0 };
            for k in c..i {
                s -= l[[i, k]] * inv[[k, c]];
            }
            inv[[i, c]] = s / l[[i, i]];
        }
    }
    Ok(inv)
}

/// A host array handed to the executable.
enum HostArg<'a> {
    /// An owned array and its dimensions.
    F64(Vec<f64>, Vec<i64>),
    /// An i64 scalar.
    I64(i64),
    /// Borrowed rows (row-major `[rows, len]`, or `[len]` for one row with `dims` of rank 1),
    /// each padded to `len` with `fill` or, when `fill` is `None`, with its first value. Copied
    /// only when padding or layout requires it, one array at a time.
    Rows {
        rows: Vec<ArrayView1<'a, f64>>,
        len: usize,
        fill: Option<f64>,
        dims: Vec<i64>,
    },
}

impl HostArg<'_> {
    fn upload(self, client: &crate::pjrt::Client) -> Result<crate::pjrt::Buffer> {
        self.upload_to(client, &client.default_device()?)
    }

    /// [`HostArg::upload`] to a chosen device of `client`.
    fn upload_to(self, client: &crate::pjrt::Client, device: &crate::pjrt::Device<'_>) -> Result<crate::pjrt::Buffer> {
        match self {
            HostArg::F64(v, dims) => client.buffer_from_host_on(device, &v, &dims),
            HostArg::I64(v) => client.buffer_from_host_on(device, &[v], &[]),
            HostArg::Rows { rows, len, fill, dims } => {
                if let [row] = rows.as_slice() {
                    if row.len() == len {
                        if let Some(slice) = row.as_slice() {
                            return client.buffer_from_host_on(device, slice, &dims);
                        }
                    }
                }
                // The padded copy is lent to the device, not copied again (CPU plugin).
                let mut v = crate::pjrt::HostVec::filled(rows.len() * len, 0.0);
                for (row, out) in rows.iter().zip(v.as_mut_slice().chunks_exact_mut(len.max(1))) {
                    let pad = fill.unwrap_or_else(|| row.first().copied().unwrap_or(0.0));
                    for (o, &x) in out.iter_mut().zip(row.iter()) {
                        *o = x;
                    }
                    out[row.len()..].fill(pad);
                }
                client.buffer_from_host_vec_on(device, v, &dims)
            }
        }
    }
}

impl Summary {
    /// The result this summary describes, with the residuals `fun` and the Jacobian `jac` of
    /// the valid rows, and the unscaled covariance `[n, n]`. A solve that found its start not
    /// finite, or an unknown status, is an error.
    fn into_result(
        self,
        fun: Vec<f64>,
        jac: Array2<f64>,
        plan: &Plan,
        executable: ExecutableSource,
        device: String,
        timings: Timings,
    ) -> Result<(FitResult, Array2<f64>)> {
        if self.status == NONFINITE_START {
            return Err(invalid("p0", NOT_FINITE_AT_P0));
        }
        let status = Status::from_code(self.status)
            .ok_or_else(|| invalid("status", format!("solver ended with unknown status {}", self.status)))?;
        let n = self.x.len();
        let cov = Array2::from_shape_vec((n, n), self.cov).map_err(|e| invalid("cov", e.to_string()))?;
        let history = self
            .history
            .into_iter()
            .take((self.nit as usize + 1).min(HISTORY_LEN as usize))
            .collect();
        let result = FitResult {
            x: Array1::from(self.x),
            cost: self.cost,
            fun: Array1::from(fun),
            jac,
            grad: Array1::from(self.grad),
            optimality: self.optimality,
            active_mask: Array1::from(self.active_mask),
            nfev: self.nfev as usize,
            njev: self.njev as usize,
            nit: self.nit as usize,
            status,
            initial_cost: self.initial_cost,
            history,
            rank: self.rank as usize,
            not_determined: not_determined(&self.null_weight),
            method: plan.method,
            loss: plan.loss,
            timings,
            executable,
            device,
        };
        Ok((result, cov))
    }
}

/// Everything about a fit that does not depend on the traced program.
struct Plan {
    n: usize,
    m: usize,
    method: Method,
    loss: Loss,
    config: Config,
    args: SolverArgs,
}

fn plan(p0: Vec<f64>, m: usize, options: &FitOptions) -> Result<Plan> {
    let n = p0.len();
    if n == 0 {
        return Err(invalid("p0", "there must be at least one parameter"));
    }
    let solver = &options.solver;
    solver.validate(n)?;
    if options.check_finite {
        check_all_finite("p0", p0.iter().copied())?;
    } else if p0.iter().any(|v| !v.is_finite()) {
        return Err(invalid("p0", "the starting point must be finite"));
    }
    let (lb, ub) = expand_bounds(&options.bounds, n)?;
    let bounded = lb.iter().any(|v| v.is_finite()) || ub.iter().any(|v| v.is_finite());
    // Like curve_fit: lm without bounds, trf with them; and trf for a robust loss, which lm
    // does not support.
    let robust = solver.loss != Loss::Linear;
    let method = solver
        .method
        .unwrap_or(if bounded || robust { Method::Trf } else { Method::Lm });
    if method == Method::Lm {
        for (field, v) in [("ftol", solver.ftol), ("xtol", solver.xtol), ("gtol", solver.gtol)] {
            if v < f64::EPSILON {
                return Err(Error::InvalidOption {
                    field,
                    value: v.to_string(),
                    constraint:
                        ">= machine epsilon (2.2e-16) with method lm (as scipy's least_squares), or use method trf",
                });
            }
        }
        if bounded {
            return Err(Error::InvalidOption {
                field: "method",
                value: "lm".into(),
                constraint: "trf when bounds are given (lm does not support bounds)",
            });
        }
        if m < n {
            return Err(invalid(
                "ydata",
                format!("method lm needs at least as many points ({m}) as parameters ({n}); use trf"),
            ));
        }
        // (lm with a robust loss only comes from an explicit method, which `validate` refused.)
    }
    for i in 0..n {
        if p0[i] < lb[i] || p0[i] > ub[i] {
            return Err(invalid(
                "p0",
                format!("p0[{i}] = {} is outside its bounds [{}, {}]", p0[i], lb[i], ub[i]),
            ));
        }
    }
    let mut x0 = p0;
    if method == Method::Trf {
        strictly_feasible(&mut x0, &lb, &ub);
    }
    let x_scale = solver.x_scale_values(method, n);
    let config = Config {
        method,
        loss: solver.loss,
        jac_scale: x_scale.is_none(),
        bounded,
        history: HISTORY_LEN,
    };
    let args = SolverArgs {
        p0: x0,
        lb,
        ub,
        x_scale: x_scale.unwrap_or_else(|| vec![1.0; n]),
        ftol: solver.ftol,
        xtol: solver.xtol,
        gtol: solver.gtol,
        f_scale: solver.f_scale,
        // Saturating: a budget of 2^63 or more is no budget (and would wrap to a negative one).
        max_nfev: i64::try_from(solver.max_nfev_or_default(n)).unwrap_or(i64::MAX),
        m_valid: m as f64,
    };
    Ok(Plan {
        n,
        m,
        method,
        loss: solver.loss,
        config,
        args,
    })
}

/// Runs the program and reads its results.
fn execute(
    exe: &cache::CachedExecutable,
    args: Vec<HostArg<'_>>,
    plan: &Plan,
    t0: Instant,
    trace: Duration,
    compile: Duration,
) -> Result<(FitResult, Array2<f64>)> {
    let (source, exe) = (exe.source, &exe.executable);
    let t2 = Instant::now();
    let client = exe.client().clone();
    // Each host array is dropped as soon as it is on the device, to keep the peak low.
    let buffers = args
        .into_iter()
        .map(|a| a.upload(&client))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<_> = buffers.iter().collect();
    let out = exe.execute(&refs)?;
    let summary = Summary::decode(&out[0].to_vec::<f64>()?, plan.n)?;
    let (n, m_pad) = (plan.n, out[1].dims()?[0] as usize);
    // A chunked program returns one-row placeholders (real outputs have m_pad >= n + 1 >= 2 rows).
    let chunked = m_pad == 1;
    let mut fun = out[1].to_vec::<f64>()?;
    let jac = out[2].to_vec::<f64>()?;
    let execute = t2.elapsed();
    let m = plan.m;
    if chunked {
        // The residual vector was never materialised.
        fun.clear();
    } else {
        fun.truncate(m);
    }
    let jac_rows = jac.len() / n.max(1);
    let mut jac = Array2::from_shape_vec((jac_rows, n), jac).map_err(|e| invalid("jac", e.to_string()))?;
    if chunked {
        // Chunked: the Jacobian was never materialised.
        jac = Array2::zeros((0, n));
    } else if m < m_pad {
        jac = jac.slice(ndarray::s![..m, ..]).to_owned();
    }
    let device = client.default_device().map(|d| d.to_string()).unwrap_or_default();
    summary.into_result(fun, jac, plan, source, device, run_timings(trace, compile, execute, t0))
}

/// The timings of a run that started at `t0` and ends now.
fn run_timings(trace: Duration, compile: Duration, execute: Duration, t0: Instant) -> Timings {
    Timings {
        trace,
        compile,
        execute,
        total: t0.elapsed(),
        ..Timings::default()
    }
}

/// The bucket ladder for the number of residual rows: the smallest of `16·2^k` and
/// `24·2^k` (k >= 0) that holds `rows`. Consecutive buckets differ by at most 1.5×, so padding
/// costs at most a third of the work, and lengths from 100 to 10,000 share 14 executables.
pub fn bucket(rows: usize) -> usize {
    let mut b = 16usize;
    loop {
        if rows <= b {
            return b;
        }
        if rows <= b / 2 * 3 {
            return b / 2 * 3;
        }
        match b.checked_mul(2) {
            Some(next) => b = next,
            // No bucket above: the rows themselves (no program can have that many anyway).
            None => return rows,
        }
    }
}

/// `len` zeros, or a typed error when `len` overflowed (`None`) or cannot be allocated (checked
/// with `try_reserve` before anything is written, instead of an abort).
fn host_zeros(len: Option<usize>, field: &'static str) -> Result<Vec<f64>> {
    let too_large = |len: String| invalid(field, format!("{len} values do not fit in this process's memory"));
    let len = len.ok_or_else(|| too_large("more than 2^64".into()))?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_large(len.to_string()))?;
    v.resize(len, 0.0);
    Ok(v)
}

/// What shapes the traced program of a `curve_fit` (everything else is an input).
#[derive(Clone, Debug, PartialEq)]
struct CurveSpec {
    /// `None` for `xdata [m]`, `Some(k)` for `[k, m]`.
    x_rows: Option<usize>,
    m_pad: usize,
    n: usize,
    config: Config,
    cov_sigma: bool,
    /// Residuals are weighted by `1 / sigma` (a `w` input); without it, no weight array is
    /// passed and padding rows are masked by their index.
    weighted: bool,
    /// Rows per chunk of the Jacobian evaluation, when chunked.
    chunk: Option<usize>,
    /// A chunked program evaluates the residuals and Jacobian once more at the solution, in
    /// full, to return them (when they are small enough: [`MATERIALIZE_MAX_ROWS`]).
    materialize: bool,
}

/// A chunked fit returns `fun` and `jac` (one extra evaluation at the solution) when it has at
/// most this many rows (where automatic chunking used to start, so every fit that returned them
/// before still does); above, neither. Evaluating and copying them would cost about 1 ms at
/// 100,000 points, 15% of such a fit.
pub const MATERIALIZE_MAX_ROWS: usize = 65_536;

/// Rows per chunk when chunking is automatic, for `n` parameters: a block `[J | f]ᵀ` of about
/// 32 KiB (a core's L1 data cache), as a power of two between 256 and 4,096 rows: 1,024 rows for
/// 3 parameters. Measured with `COMPARE_CHUNK_ROWS=c compare_workloads warm` (lm, 3
/// parameters, Gram pass): 256-1,024 rows 2.9-3.3 ms at 100,000 points and 37-43 ms at
/// 1,000,000; 2,048 rows 3.3-3.5 / 42 ms; 4,096 rows 3.8 / 49 ms; 8,192 rows 4.6 / 53 ms.
pub fn auto_chunk_rows(n: usize) -> usize {
    let target = (4_096 / n.saturating_add(1)).clamp(256, 4_096);
    1 << target.ilog2()
}
/// Point count from which chunking is automatic. A chunked evaluation (Gram pass over cache-sized
/// blocks) beats the Householder QR of the whole Jacobian from about a thousand points on
/// (warm lm fits, 3 parameters, `COMPARE_CHUNK_ROWS=c compare_workloads warm`, chunked against
/// not: 1,000 points 0.15-0.20 -> 0.10-0.15 ms, 2,000 points 0.23-0.33 -> 0.14-0.17 ms, 8,000
/// points 0.74-0.83 -> 0.34-0.36 ms); smaller fits, the NIST-sized ones among them, keep the
/// Householder QR of the whole Jacobian. Fits up to [`MATERIALIZE_MAX_ROWS`] still return
/// `fun` and `jac`, and are padded to their shape bucket.
pub const AUTO_CHUNK_FROM: usize = 2_048;

/// Validated, padded host data of one `curve_fit` call.
struct CurveData<'a> {
    spec: CurveSpec,
    plan: Plan,
    m: usize,
    args: Vec<HostArg<'a>>,
    absolute_sigma: bool,
}

/// Validates the inputs and lays them out for a program with `m_pad` rows (`None`: choose).
/// `fixed`: the rows and chunking of an existing program (a [`CurveFitter`]'s), or `None` to
/// choose them from the data.
fn prepare<'a>(
    xdata: &XData<'a>,
    ydata: ArrayView1<'a, f64>,
    p0: Option<&[f64]>,
    options: &FitOptions,
    fixed: Option<(usize, Option<usize>)>,
) -> Result<CurveData<'a>> {
    let m = ydata.len();
    if xdata.len() != m {
        return Err(invalid(
            "xdata",
            format!("has {} points but ydata has {m}", xdata.len()),
        ));
    }
    if m == 0 {
        return Err(invalid("ydata", "no data points"));
    }
    if let XData::D2(x) = xdata {
        if x.nrows() == 0 {
            return Err(invalid("xdata", "a [k, m] xdata needs k >= 1 rows"));
        }
    }
    let p0: Vec<f64> = match (p0, options.n_params) {
        (Some(p), Some(n)) if p.len() != n => {
            return Err(invalid("p0", format!("has {} values but n_params is {n}", p.len())))
        }
        (Some(p), _) => p.to_vec(),
        (None, Some(n)) => {
            let (lo, hi) = expand_bounds(&options.bounds, n)?;
            lo.iter().zip(&hi).map(|(&l, &h)| default_start(l, h)).collect()
        }
        (None, None) => {
            return Err(invalid(
                "p0",
                "give p0, or the number of parameters with FitOptions::with_n_params",
            ))
        }
    };
    if options.check_finite {
        match xdata {
            XData::D1(x) => check_all_finite("xdata", x.iter().copied())?,
            XData::D2(x) => check_all_finite("xdata", x.iter().copied())?,
        }
        check_all_finite("ydata", ydata.iter().copied())?;
    }
    let plan = plan(p0, m, options)?;
    let n = plan.n;
    let rows = m.max(n + 1);
    let cov_sigma = matches!(options.sigma, Some(Sigma::Cov(_)));
    let chunk = match (fixed, options.chunk_rows) {
        (Some((_, chunk)), _) => chunk,
        (None, Some(0)) => None,
        // A chunk larger than the data is the data (rounded up to a power of two, so that
        // lengths near each other share a program), not a padding of the data to the chunk.
        (None, Some(c)) => Some(c.min(rows.checked_next_power_of_two().unwrap_or(rows))),
        (None, None) if rows >= AUTO_CHUNK_FROM && !cov_sigma => Some(auto_chunk_rows(n)),
        (None, None) => None,
    };
    if chunk.is_some() && cov_sigma {
        return Err(Error::InvalidOption {
            field: "chunk_rows",
            value: format!("{chunk:?}"),
            constraint: "0 (no chunking) with a 2-D sigma",
        });
    }
    let m_pad = match fixed.map(|f| f.0) {
        Some(cap) if cap < rows => {
            return Err(invalid(
                "ydata",
                format!(
                    "{m} points (with {n} parameters) do not fit a fitter built for {} rows",
                    cap
                ),
            ))
        }
        Some(cap) => cap,
        // Large chunked fits pad to a multiple of the chunk only: a bucket could add half again
        // as much memory and work. Mid-sized ones pad to their bucket (then to the chunk), so
        // that varying lengths share executables as unchunked fits do.
        None => match chunk {
            Some(c) if options.bucket && rows <= MATERIALIZE_MAX_ROWS => bucket(rows).div_ceil(c) * c,
            Some(c) => rows.div_ceil(c) * c,
            None if options.bucket => bucket(rows),
            None => rows,
        },
    };
    if let Some(c) = chunk {
        if m_pad % c != 0 {
            return Err(invalid(
                "ydata",
                format!("{m_pad} rows are not a multiple of the chunk size {c}"),
            ));
        }
    }

    // Host data, padded to m_pad rows with zero weight (x repeats its first point so the model
    // stays finite there; the rows are masked out anyway).
    let mut weights: Vec<f64> = Vec::new();
    let mut whiten: Option<Vec<f64>> = None;
    match &options.sigma {
        None => {}
        Some(Sigma::Std(s)) => {
            if s.len() != m {
                return Err(invalid("sigma", format!("has {} values but ydata has {m}", s.len())));
            }
            weights = Vec::with_capacity(m_pad);
            for (i, &v) in s.iter().enumerate() {
                if !(v > 0.0) || !v.is_finite() {
                    return Err(invalid("sigma", format!("sigma[{i}] = {v}: must be finite and > 0")));
                }
                weights.push(1.0 / v);
            }
            weights.resize(m_pad, 0.0);
        }
        Some(Sigma::Cov(c)) => {
            if c.dim() != (m, m) {
                return Err(invalid(
                    "sigma",
                    format!("covariance is {}x{}, expected {m}x{m}", c.nrows(), c.ncols()),
                ));
            }
            if options.check_finite {
                check_all_finite("sigma", c.iter().copied())?;
            }
            let inv = whitening(c)?;
            let mut w = host_zeros(m_pad.checked_mul(m_pad), "sigma")?;
            for i in 0..m {
                for j in 0..=i {
                    w[i * m_pad + j] = inv[[i, j]];
                }
            }
            whiten = Some(w);
        }
    }
    let (x_arg, x_rows) = match xdata {
        XData::D1(x) => (
            HostArg::Rows {
                rows: vec![*x],
                len: m_pad,
                fill: None,
                dims: vec![m_pad as i64],
            },
            None,
        ),
        XData::D2(x) => {
            let k = x.nrows();
            let rows = (0..k).map(|r| (*x).index_axis_move(ndarray::Axis(0), r)).collect();
            (
                HostArg::Rows {
                    rows,
                    len: m_pad,
                    fill: None,
                    dims: vec![k as i64, m_pad as i64],
                },
                Some(k),
            )
        }
    };
    let y_arg = HostArg::Rows {
        rows: vec![ydata],
        len: m_pad,
        fill: Some(0.0),
        dims: vec![m_pad as i64],
    };
    let mut args = vec![x_arg, y_arg];
    if matches!(options.sigma, Some(Sigma::Std(_))) {
        args.push(HostArg::F64(weights, vec![m_pad as i64]));
    }
    if let Some(w) = whiten {
        args.push(HostArg::F64(w, vec![m_pad as i64, m_pad as i64]));
    }
    plan.args_clone_into(&mut args);
    let weighted = matches!(options.sigma, Some(Sigma::Std(_)));
    let spec = CurveSpec {
        x_rows,
        m_pad,
        n,
        config: plan.config.clone(),
        cov_sigma,
        weighted,
        chunk,
        materialize: chunk.is_some() && m_pad <= MATERIALIZE_MAX_ROWS,
    };
    Ok(CurveData {
        spec,
        plan,
        m,
        args,
        absolute_sigma: options.absolute_sigma,
    })
}

/// Traces model and solver into the program of `spec`.
fn trace_curve<M>(model: &M, spec: &CurveSpec) -> Result<Program>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let (m_pad, n) = (spec.m_pad as i64, spec.n as i64);
    let x_dims: Vec<i64> = match spec.x_rows {
        None => vec![m_pad],
        Some(k) => vec![k as i64, m_pad],
    };
    let g = Graph::new();
    let x_ty = TensorType::new(DType::F64, x_dims.clone());
    let xt = g.parameter("x", DType::F64, x_dims);
    let yt = g.parameter("y", DType::F64, [m_pad]);
    let wt = spec.weighted.then(|| g.parameter("w", DType::F64, [m_pad]));
    let wmat = spec
        .cov_sigma
        .then(|| g.parameter("whiten", DType::F64, [m_pad, m_pad]));
    let model_f = g.model_function("model", model, x_ty.clone(), n)?;
    // The Jacobian as forward mode makes it, one row per parameter (see `fun_jac` below).
    let model_fj = g.model_jac_t_function("model_jac", model, x_ty, n)?;
    // Chunked Jacobian: the model and its Jacobian traced for one chunk of rows.
    let chunk_fj = match spec.chunk {
        Some(c) => {
            let c_dims: Vec<i64> = match spec.x_rows {
                None => vec![c as i64],
                Some(k) => vec![k as i64, c as i64],
            };
            Some((
                c as i64,
                g.model_jac_t_function("model_jac_chunk", model, TensorType::new(DType::F64, c_dims), n)?,
            ))
        }
        None => None,
    };
    let jac_rows = if spec.chunk.is_some() && !spec.materialize {
        1
    } else {
        m_pad
    };
    let outs = solve_once(&g, n, jac_rows, |inputs| {
        let weights = match (&wmat, &wt) {
            (Some(w), _) => Weights::Whiten(w.clone()),
            (None, Some(w)) => Weights::Diagonal(w.clone()),
            (None, None) => Weights::None,
        };
        let data = Residuals::new(xt.clone(), yt.clone(), weights, &inputs.m_valid);
        let fun = |p: &Tensor| data.fun(&model_f, p);
        // J is masked and weighted as Jᵀ [n, m] and transposed last: the factorization of
        // `[J | f]` transposes it back (XLA cancels the two), so J [m, n] itself is only made
        // where the fit returns it.
        let fun_jac = |p: &Tensor| {
            let (f, jt) = data.fun_jac_t(&model_fj, p);
            (f, jt.t())
        };
        let fun_jac_chunk = |p: &Tensor, start: &Tensor| {
            let (c, fj) = chunk_fj.as_ref().expect("chunked");
            data.rows(start, *c).fun_jac_t(fj, p)
        };
        let chunks = chunk_fj.as_ref().map(|(c, _)| solve::Chunks {
            size: *c,
            count: m_pad / *c,
            fun_jac: &fun_jac_chunk,
            // Large fits only: at 4,000-20,000 points it measured no faster (warm lm, A/B).
            factor_trials: !spec.materialize,
        });
        let problem = solve::Problem {
            fun: &fun,
            fun_jac: &fun_jac,
            m: m_pad,
            n,
            chunks,
            lanes: solve::Lanes::one(&g),
        };
        let mut out = solve::solve(&problem, inputs, &spec.config);
        if spec.chunk.is_some() && spec.materialize {
            // The chunked solve never held `fun` and `jac`: evaluate them once at the solution
            // (the Jacobian loss-scaled, as an unchunked fit returns it).
            let (f, j) = fun_jac(&out.x);
            let (_, js, _) = solve::loss::scale_for_loss(spec.config.loss, &f, &j, &inputs.f_scale);
            out.fun = f;
            out.jac = js;
        }
        out
    });
    g.finish(outs.iter())
}

/// The starting value of a parameter given no `p0`, from its bounds (scipy's `curve_fit`): 1
/// without bounds, the midpoint of two finite bounds, `lower + 1` or `upper - 1` with one. The
/// library (`p0 = None`) and the `nlsq` command use this one rule.
///
/// # Examples
/// ```
/// use nlsq::fit::default_start;
/// assert_eq!(default_start(f64::NEG_INFINITY, f64::INFINITY), 1.0);
/// assert_eq!(default_start(2.0, 4.0), 3.0);
/// assert_eq!(default_start(5.0, f64::INFINITY), 6.0);
/// assert_eq!(default_start(f64::NEG_INFINITY, -3.0), -4.0);
/// ```
pub fn default_start(lower: f64, upper: f64) -> f64 {
    match (lower.is_finite(), upper.is_finite()) {
        // Halves first: the sum of two large bounds may overflow.
        (true, true) => 0.5 * lower + 0.5 * upper,
        (true, false) => lower + 1.0,
        (false, true) => upper - 1.0,
        (false, false) => 1.0,
    }
}

/// The reason of the error for residuals that are not finite at the start.
const NOT_FINITE_AT_P0: &str = "the residuals (or the Jacobian) are not finite at the initial point";

/// Residuals that are not finite at p0 are blamed on p0 (or the model) unless the data explain
/// them: values that are not finite (with `check_finite` off), or data so large, or sigma so
/// small, that the squared residuals overflow. Other errors pass unchanged. Runs only after
/// the failure, so a fit pays nothing for it.
fn explain_nonfinite(e: Error, xdata: &XData<'_>, ydata: ArrayView1<'_, f64>, options: &FitOptions) -> Error {
    if !matches!(&e, Error::InvalidInput { field: "p0", reason } if reason == NOT_FINITE_AT_P0) {
        return e;
    }
    fn first_bad<'v>(mut v: impl Iterator<Item = &'v f64>) -> Option<usize> {
        v.position(|v| !v.is_finite())
    }
    let x_bad = match xdata {
        XData::D1(x) => first_bad(x.iter()),
        XData::D2(x) => first_bad(x.iter()),
    };
    let sigma: Vec<f64> = match &options.sigma {
        Some(Sigma::Std(s)) => s.clone(),
        Some(Sigma::Cov(c)) => c.diag().iter().map(|v| v.sqrt()).collect(),
        None => Vec::new(),
    };
    let not_finite = |field, i: usize, v: f64| {
        invalid(
            field,
            format!("{field}[{i}] = {v} is not finite (check_finite is off), so the residuals are not either"),
        )
    };
    if let Some(i) = first_bad(ydata.iter()) {
        return not_finite("ydata", i, ydata[i]);
    }
    if let Some(i) = x_bad {
        let v = match xdata {
            XData::D1(x) => x[i],
            XData::D2(x) => x.iter().nth(i).copied().unwrap_or(f64::NAN),
        };
        return not_finite("xdata", i, v);
    }
    if let Some(i) = first_bad(sigma.iter()) {
        return not_finite("sigma", i, sigma[i]);
    }
    // Squares of residuals above ~1e154 overflow (their sum over m points sooner).
    let limit = 1e150 / (ydata.len() as f64).sqrt();
    let weighted = ydata
        .iter()
        .enumerate()
        .map(|(i, y)| y.abs() / sigma.get(i).copied().unwrap_or(1.0))
        .fold(0.0, f64::max);
    if weighted > limit {
        let what = if sigma.is_empty() { "|ydata|" } else { "|ydata| / sigma" };
        return invalid(
            if sigma.is_empty() { "ydata" } else { "sigma" },
            format!(
                "{what} reaches {weighted:.3e}: the squared residuals overflow; rescale the data \
                 (a fit does not depend on the units of y)"
            ),
        );
    }
    e
}

/// Runs a prepared fit on an executable and applies scipy's covariance rules; the program
/// fitted in `units`, the result is in the caller's.
fn run_curve(
    exe: &cache::CachedExecutable,
    data: CurveData<'_>,
    t0: Instant,
    trace: Duration,
    compile: Duration,
    units: &Units,
) -> Result<CurveFit> {
    let (m, n, absolute_sigma) = (data.m, data.plan.n, data.absolute_sigma);
    let (result, cov) = execute(exe, data.args, &data.plan, t0, trace, compile)?;
    let mut fit = curve_fit_result(result, cov, m, n, absolute_sigma);
    if !units.is_identity() {
        units.unscale(&mut fit, absolute_sigma);
    }
    Ok(fit)
}

/// Exact powers of two by which `curve_fit` rescales a problem in extreme units: the residuals
/// by `residual` (from the largest `|y / sigma|`) and parameter `j` by `params[j]` (from
/// `|p0_j|`, in the scaled problem `p_j = params[j] · p'_j`), each 1 while its scale is within
/// 2^±300 (about 1e±90). The factors are constants of the traced program: a fit in such units
/// compiles its own program (once per units). The scaled fit is the unscaled one's, bit for bit
/// where nothing under- or overflows, while otherwise squared residuals or Jacobian columns of
/// data around 1e-150 fall below the smallest normal double (and around 1e200 overflow).
struct Units {
    residual: f64,
    params: Vec<f64>,
}

impl Units {
    /// No rescaling of `n` parameters.
    fn identity(n: usize) -> Units {
        Units {
            residual: 1.0,
            params: vec![1.0; n],
        }
    }

    /// A power of two near `1 / scale` when `scale` is beyond 2^±300, else 1. The exponent is a
    /// multiple of 64 (so datasets in the same units share one program: the factor is a
    /// constant of it), at most 960 either way.
    fn factor(scale: f64) -> f64 {
        if !(scale.is_finite() && scale > 0.0) {
            return 1.0;
        }
        let e = scale.log2();
        if e.abs() < 300.0 {
            return 1.0;
        }
        let e = ((e / 64.0).round() * 64.0).clamp(-960.0, 960.0);
        2f64.powi(-(e as i32))
    }

    fn of(ydata: ArrayView1<'_, f64>, p0: Option<&[f64]>, options: &FitOptions) -> Units {
        let sigma = |i: usize| match &options.sigma {
            Some(Sigma::Std(s)) => s.get(i).copied().unwrap_or(1.0),
            Some(Sigma::Cov(c)) if i < c.nrows() => c[[i, i]].sqrt(),
            _ => 1.0,
        };
        let largest = ydata
            .iter()
            .enumerate()
            .map(|(i, y)| (y / sigma(i)).abs())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let n = p0.map(<[f64]>::len).or(options.n_params).unwrap_or(0);
        let params = match p0 {
            Some(p) => p.iter().map(|v| 1.0 / Self::factor(v.abs())).collect(),
            None => vec![1.0; n],
        };
        Units {
            residual: Self::factor(largest),
            params,
        }
    }

    fn is_identity(&self) -> bool {
        self.residual == 1.0 && self.params.iter().all(|&c| c == 1.0)
    }

    /// `options` for the scaled problem: bounds and `x_scale` in the scaled parameters,
    /// `f_scale` in the scaled residuals.
    fn scale_options(&self, options: &FitOptions) -> Result<FitOptions> {
        let mut o = options.clone().with_f_scale(options.solver.f_scale * self.residual);
        if options.bounds.is_some() {
            let (lo, hi) = expand_bounds(&options.bounds, self.params.len())?;
            let per = |b: Vec<f64>| -> Vec<f64> { b.iter().zip(&self.params).map(|(v, c)| v / c).collect() };
            o.bounds = Some((per(lo), per(hi)));
        }
        // (Values of the wrong length are left for `validate` to refuse.)
        let n = self.params.len();
        if let Some(crate::solve::XScale::Values(v)) = &options.solver.x_scale {
            if v.len() != 1 && v.len() != n {
                return Ok(o);
            }
            let v: Vec<f64> = (0..n)
                .map(|j| v[if v.len() == 1 { 0 } else { j }] / self.params[j])
                .collect();
            o.solver.x_scale = Some(crate::solve::XScale::Values(v));
        }
        Ok(o)
    }

    /// The model of the scaled problem, traced: `residual · model(x, params ∘ p')`.
    fn model<M>(&self, model: &M, x: &Tensor, p: &Params) -> Tensor
    where
        M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        let f = if self.params.iter().all(|&c| c == 1.0) {
            model(x, p)
        } else {
            let v = p.vector();
            let c = v
                .graph()
                .constant_array_of(DType::F64, &self.params, [self.params.len() as i64]);
            model(x, &Params::new(&(v * c)))
        };
        if self.residual == 1.0 {
            f
        } else {
            f * self.residual
        }
    }

    /// A fit of the scaled problem in the caller's units. The covariance is scaled from the
    /// scaled problem's `pcov` (where the residual unit cancels unless `absolute_sigma`), never
    /// through the unscaled `(JᵀJ)⁺`, which alone may overflow.
    fn unscale(&self, fit: &mut CurveFit, absolute_sigma: bool) {
        // Divided by u twice, never by u² (which overflows for u = 2^±997).
        let (u, c) = (self.residual, &self.params);
        let by_u2 = |v: f64| v / u / u;
        let r = &mut fit.result;
        r.x.iter_mut().zip(c).for_each(|(x, c)| *x *= c);
        r.cost = by_u2(r.cost);
        r.initial_cost = by_u2(r.initial_cost);
        r.history.iter_mut().for_each(|h| *h = by_u2(*h));
        // g = Jᵀf: the scaled one is u² c_j g_j.
        r.grad.iter_mut().zip(c).for_each(|(g, c)| *g = by_u2(*g) / c);
        r.optimality = match r.method {
            // ‖g‖_inf, from the gradient in the caller's units.
            Method::Lm => r.grad.iter().fold(0.0, |a: f64, g| a.max(g.abs())),
            // ‖g v‖_inf with v a distance in parameter units: u² times the caller's.
            _ => by_u2(r.optimality),
        };
        r.fun.mapv_inplace(|f| f / u);
        for (j, mut col) in r.jac.columns_mut().into_iter().enumerate() {
            col.mapv_inplace(|v| v / u / c[j]);
        }
        fit.popt = r.x.clone();
        // (JᵀJ)⁺ scales as 1 / (u² cᵢ cⱼ), the residual variance as u². The errors scale from
        // the scaled errors: a variance of a parameter around 1e-300 is below any double
        // (pcov holds 0 there) while its error is not.
        let ua = if absolute_sigma { u } else { 1.0 };
        for ((i, j), v) in fit.pcov.indexed_iter_mut() {
            *v = *v * c[i] * ua * c[j] * ua;
        }
        fit.perr.iter_mut().zip(c).for_each(|(e, c)| *e = *e * c * ua);
    }
}

/// The parameters whose null-space weight (see [`solve::covariance`]) exceeds
/// [`NULL_SPACE_TOL`], in ascending order.
fn not_determined(null_weight: &[f64]) -> Vec<usize> {
    // A NaN weight (a Jacobian that is not finite) cannot vouch for its parameter either.
    (0..null_weight.len())
        .filter(|&j| !(null_weight[j] <= NULL_SPACE_TOL))
        .collect()
}

/// scipy's `pcov` from the unscaled `(JᵀJ)⁺`: scaled by the residual variance `2 cost / (m -
/// rank)` unless `absolute_sigma`; all inf when there are no degrees of freedom left (and not
/// absolute) or when it holds a NaN. A rank-deficient Jacobian (some parameter not determined)
/// gives an all-inf `pcov` with LM (scipy's answer where scipy has one), and with TRF the
/// pseudo-inverse with `inf` in the rows and columns of the parameters not determined. For a
/// full-rank Jacobian `m - rank` is scipy's `m - n`; for a rank-deficient one the directions the
/// data do not determine take no degree of freedom (a parameter the model does not use leaves
/// the others' errors as in the fit without it).
pub(crate) fn curve_fit_result(
    result: FitResult,
    cov: Array2<f64>,
    m: usize,
    n: usize,
    absolute_sigma: bool,
) -> CurveFit {
    let mut pcov = cov;
    if !absolute_sigma {
        let dof = m.saturating_sub(result.rank.min(n));
        if dof > 0 && m > n {
            let s_sq = 2.0 * result.cost / dof as f64;
            pcov.mapv_inplace(|v| v * s_sq);
        } else {
            pcov.fill(f64::INFINITY);
        }
    }
    if pcov.iter().any(|v| v.is_nan()) || (result.method == Method::Lm && !result.not_determined.is_empty()) {
        pcov.fill(f64::INFINITY);
    }
    for &j in &result.not_determined {
        pcov.row_mut(j).fill(f64::INFINITY);
        pcov.column_mut(j).fill(f64::INFINITY);
    }
    let perr = pcov.diag().mapv(|v| v.sqrt());
    CurveFit {
        popt: result.x.clone(),
        pcov,
        perr,
        result,
    }
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
    // The runtime (plugin and client) is loaded once per process; its cost is reported apart.
    let t_runtime = Instant::now();
    crate::runtime::client()?;
    let runtime = t_runtime.elapsed();
    let t0 = Instant::now();
    let (xdata_in, ydata_in): (XData<'a>, ArrayView1<'a, f64>) = (xdata.into(), ydata.into());
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
    let data = prepare(&xdata, ydata, p0, options, None)?;
    // The solver part of the program is a function of the spec alone, so the model's own
    // emitted text (cheap to trace) plus the spec identifies the whole program: a repeated
    // call skips tracing the solver.
    let fingerprint = model_fingerprint(model, &data.spec)?;
    if let Some(exe) = PROGRAMS.get(&fingerprint) {
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
    let exe = cache::executable(&program.text)?;
    let compile = exe.load_time;
    PROGRAMS.insert(fingerprint, exe.clone());
    let mut fit = run_curve(&exe, data, t0, trace, compile, &units).map_err(explain)?;
    fit.result.timings.runtime = runtime;
    Ok(fit)
}

/// Executables of single fits by model fingerprint.
static PROGRAMS: programs::Programs<cache::CachedExecutable> = programs::Programs::new(256);

/// The fingerprint of the program of `spec` for `model` ([`programs::fingerprint`]).
fn model_fingerprint<M>(model: &M, spec: &CurveSpec) -> Result<[u8; 32]>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let x_dims: Vec<i64> = match spec.x_rows {
        None => vec![spec.m_pad as i64],
        Some(k) => vec![k as i64, spec.m_pad as i64],
    };
    programs::fingerprint(model, x_dims, vec![spec.n as i64], spec)
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
/// let fitter = CurveFitter::new(model, None, 100, 3, FitOptions::default())?;
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
    /// Traces and compiles (or loads from the caches) the program for `n` parameters, `m`
    /// points, and `x_rows` coordinates per point (`None` for 1-D `xdata`).
    ///
    /// # Errors
    /// Invalid options, trace errors of the model, compile errors.
    pub fn new(model: M, x_rows: Option<usize>, m: usize, n: usize, options: FitOptions) -> Result<Self> {
        let t0 = Instant::now();
        if m == 0 || n == 0 || x_rows == Some(0) {
            return Err(invalid(
                "shape",
                format!("a fitter needs m >= 1, n >= 1 and x_rows >= 1 (got m {m}, n {n}, x_rows {x_rows:?})"),
            ));
        }
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
        let spec = data.spec;
        let program = trace_curve(&model, &spec)?;
        let trace = t0.elapsed();
        let exe = cache::executable(&program.text)?;
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

impl Plan {
    fn args_clone_into(&self, args: &mut Vec<HostArg<'_>>) {
        let a = &self.args;
        SolverArgs {
            p0: a.p0.clone(),
            lb: a.lb.clone(),
            ub: a.ub.clone(),
            x_scale: a.x_scale.clone(),
            ftol: a.ftol,
            xtol: a.xtol,
            gtol: a.gtol,
            f_scale: a.f_scale,
            max_nfev: a.max_nfev,
            m_valid: a.m_valid,
        }
        .push(args);
    }
}

/// Minimizes `0.5 * sum(rho(f(p, data)²))` for general residuals, like
/// `scipy.optimize.least_squares`.
///
/// `fun(p, data)` maps the parameter vector `[n]` and the traced data arrays (program inputs,
/// never constants: one executable serves every dataset of the same shapes) to residuals
/// `[m]`. The Jacobian comes from forward-mode autodiff. `options.sigma` must be `None`;
/// bounds, method, loss and tolerances apply as in `curve_fit`.
///
/// # Errors
/// As [`curve_fit`]; residuals that are not a vector are a trace error.
pub fn least_squares<F>(fun: &F, x0: &[f64], data: &[ArrayViewD<'_, f64>], options: &FitOptions) -> Result<FitResult>
where
    F: Fn(&Tensor, &[Tensor]) -> Tensor + ?Sized,
{
    let t0 = Instant::now();
    if options.sigma.is_some() {
        return Err(Error::InvalidOption {
            field: "sigma",
            value: "set".into(),
            constraint: "None for least_squares (weigh the residuals in fun)",
        });
    }
    if options.check_finite {
        for d in data {
            check_all_finite("data", d.iter().copied())?;
        }
    }
    let n = x0.len() as i64;
    // Trace once to learn m.
    let probe = Graph::new();
    let pp = probe.parameter("p", DType::F64, [n.max(1)]);
    let pd: Vec<Tensor> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            probe.parameter(
                &format!("data{i}"),
                DType::F64,
                d.shape().iter().map(|&s| s as i64).collect::<Vec<_>>(),
            )
        })
        .collect();
    let r = probe.try_with(|| fun(&pp, &pd))?;
    if r.rank() != 1 {
        return Err(Error::InvalidOp {
            op: "least_squares",
            reason: format!("residuals must be a vector, got shape {}", r.shape()),
        });
    }
    let m = r.dims()[0] as usize;
    if m == 0 {
        return Err(invalid("fun", "returns no residuals"));
    }
    let plan = plan(x0.to_vec(), m, options)?;
    let m_pad = m.max(plan.n + 1) as i64;
    let pad = m_pad - m as i64;

    let g = Graph::new();
    let dts: Vec<Tensor> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            g.parameter(
                &format!("data{i}"),
                DType::F64,
                d.shape().iter().map(|&s| s as i64).collect::<Vec<_>>(),
            )
        })
        .collect();
    let mut fn_inputs: Vec<(String, TensorType)> = vec![("p".into(), TensorType::new(DType::F64, [n]))];
    fn_inputs.extend(dts.iter().enumerate().map(|(i, d)| (format!("data{i}"), d.ty())));
    let fn_inputs_ref: Vec<(&str, TensorType)> = fn_inputs.iter().map(|(s, t)| (s.as_str(), t.clone())).collect();
    let pad_rows = |t: Tensor| {
        if pad == 0 {
            t
        } else {
            let mut dims = t.dims();
            dims[0] = pad;
            g.concat(&[t.clone(), g.zeros(DType::F64, dims)], 0)
        }
    };
    let f_fn = g.function("residuals", &fn_inputs_ref, |a| vec![pad_rows(fun(&a[0], &a[1..]))])?;
    let mut jac_err = None;
    let fj_fn = g.function("residuals_jac", &fn_inputs_ref, |a| {
        let r = fun(&a[0], &a[1..]);
        match jacfwd(&r, &a[0]) {
            Ok(j) => vec![pad_rows(r), pad_rows(j)],
            Err(e) => {
                jac_err = Some(e);
                Vec::new()
            }
        }
    })?;
    if let Some(e) = jac_err {
        return Err(e);
    }
    let call_args = |p: &Tensor| -> Vec<Tensor> { std::iter::once(p.clone()).chain(dts.iter().cloned()).collect() };
    let fun_g = |p: &Tensor| {
        let a = call_args(p);
        let refs: Vec<&Tensor> = a.iter().collect();
        f_fn.call(&refs).remove(0)
    };
    let fun_jac_g = |p: &Tensor| {
        let a = call_args(p);
        let refs: Vec<&Tensor> = a.iter().collect();
        let mut v = fj_fn.call(&refs);
        let j = v.pop().expect("two results");
        (v.pop().expect("two results"), j)
    };
    let problem = solve::Problem {
        fun: &fun_g,
        fun_jac: &fun_jac_g,
        m: m_pad,
        n,
        chunks: None,
        lanes: solve::Lanes::one(&g),
    };
    let outs = solve_once(&g, n, m_pad, |inputs| solve::solve(&problem, inputs, &plan.config));
    let program = g.finish(outs.iter())?;
    let trace = t0.elapsed();
    let mut args: Vec<HostArg> = data
        .iter()
        .map(|d| {
            HostArg::F64(
                d.iter().copied().collect(),
                d.shape().iter().map(|&s| s as i64).collect(),
            )
        })
        .collect();
    plan.args_clone_into(&mut args);
    let exe = cache::executable(&program.text)?;
    let compile = exe.load_time;
    let (result, _cov) = execute(&exe, args, &plan, t0, trace, compile)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitening_inverts_the_cholesky_factor() {
        let c = ndarray::arr2(&[[4.0, 2.0, 0.0], [2.0, 5.0, 1.0], [0.0, 1.0, 3.0]]);
        let w = whitening(&c).unwrap();
        // w c wᵀ = I
        let prod = w.dot(&c).dot(&w.t());
        for i in 0..3 {
            for j in 0..3 {
                assert!((prod[[i, j]] - if i == j { 1.0 } else { 0.0 }).abs() < 1e-14, "{prod}");
            }
        }
        assert!(whitening(&ndarray::arr2(&[[1.0, 2.0], [2.0, 1.0]])).is_err());
        assert!(whitening(&ndarray::arr2(&[[1.0, 0.5], [0.0, 1.0]])).is_err());
    }

    #[test]
    fn bounds_are_expanded_and_checked() {
        let (lo, hi) = expand_bounds(&Some((vec![0.0], vec![1.0, 2.0])), 2).unwrap();
        assert_eq!((lo, hi), (vec![0.0, 0.0], vec![1.0, 2.0]));
        assert!(expand_bounds(&Some((vec![1.0], vec![1.0])), 1).is_err());
        assert!(expand_bounds(&Some((vec![0.0; 3], vec![1.0])), 2).is_err());
    }

    #[test]
    fn strictly_feasible_moves_points_off_bounds() {
        let mut x = vec![0.0, 2.0, 0.5];
        strictly_feasible(&mut x, &[0.0, 0.0, 0.0], &[1.0, 2.0, 1.0]);
        assert!(x[0] > 0.0 && x[1] < 2.0 && x[2] == 0.5);
    }
}
