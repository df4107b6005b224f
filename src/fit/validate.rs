//! Validation and planning: everything about a fit that is checked or decided on the host
//! before anything is traced (bounds, starting point, options, padding and chunking, the
//! solver's host inputs).

// `!(v > 0.0)` is deliberate throughout: it is true for NaN, which must be rejected too.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use ndarray::{Array2, ArrayView1};

use super::execute::HostArg;
use super::program::SolverArgs;
use super::statistics::DataSummary;
use super::{FitOptions, LeastSquaresOptions, Sigma, XData, HISTORY_LEN};
use crate::error::{Error, Result};
use crate::solve::{Config, Loss, Method, SolverOptions};

/// An [`Error::Internal`] of a fit program's outputs.
pub(super) fn internal(what: &'static str, detail: impl Into<String>) -> Error {
    Error::Internal {
        what,
        detail: detail.into(),
    }
}

pub(super) fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidInput {
        field,
        reason: reason.into(),
    }
}

pub(super) fn check_all_finite(field: &'static str, v: impl IntoIterator<Item = f64>) -> Result<()> {
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
pub(super) fn expand_bounds(bounds: &Option<(Vec<f64>, Vec<f64>)>, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
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
pub(super) fn strictly_feasible(x: &mut [f64], lb: &[f64], ub: &[f64]) {
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
pub(super) fn whitening(cov: &Array2<f64>) -> Result<Array2<f64>> {
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

/// Everything about a fit that does not depend on the traced program.
pub(super) struct Plan {
    pub(super) n: usize,
    pub(super) m: usize,
    pub(super) method: Method,
    pub(super) loss: Loss,
    pub(super) config: Config,
    pub(super) args: SolverArgs,
}

/// What [`plan`] reads of the options of a fit: the same fields of [`FitOptions`] and
/// [`LeastSquaresOptions`].
pub(super) struct PlanOptions<'o> {
    pub(super) bounds: &'o Option<(Vec<f64>, Vec<f64>)>,
    pub(super) check_finite: bool,
    pub(super) solver: &'o SolverOptions,
}

impl<'o> From<&'o FitOptions> for PlanOptions<'o> {
    fn from(o: &'o FitOptions) -> Self {
        PlanOptions {
            bounds: &o.bounds,
            check_finite: o.check_finite,
            solver: &o.solver,
        }
    }
}

impl<'o> From<&'o LeastSquaresOptions> for PlanOptions<'o> {
    fn from(o: &'o LeastSquaresOptions) -> Self {
        PlanOptions {
            bounds: &o.bounds,
            check_finite: o.check_finite,
            solver: &o.solver,
        }
    }
}

pub(super) fn plan<'o>(p0: Vec<f64>, m: usize, options: impl Into<PlanOptions<'o>>) -> Result<Plan> {
    let options = options.into();
    let n = p0.len();
    if n == 0 {
        return Err(invalid("p0", "there must be at least one parameter"));
    }
    let solver = options.solver;
    solver.validate(n)?;
    if options.check_finite {
        check_all_finite("p0", p0.iter().copied())?;
    } else if p0.iter().any(|v| !v.is_finite()) {
        return Err(invalid("p0", "the starting point must be finite"));
    }
    let (lb, ub) = expand_bounds(options.bounds, n)?;
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

/// An [`Error::InvalidOption`] on `starts` unless `options` has one start (`constraint` says
/// where more are not taken).
pub(super) fn single_start(options: &FitOptions, constraint: &'static str) -> Result<()> {
    if options.starts == 1 {
        return Ok(());
    }
    Err(Error::InvalidOption {
        field: "starts",
        value: options.starts.to_string(),
        constraint,
    })
}

/// `len` zeros, or a typed error when `len` overflowed (`None`) or cannot be allocated (checked
/// with `try_reserve` before anything is written, instead of an abort).
pub(super) fn host_zeros(len: Option<usize>, field: &'static str) -> Result<Vec<f64>> {
    let too_large = |len: String| invalid(field, format!("{len} values do not fit in this process's memory"));
    let len = len.ok_or_else(|| too_large("more than 2^64".into()))?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_large(len.to_string()))?;
    v.resize(len, 0.0);
    Ok(v)
}

/// What shapes the traced program of a `curve_fit` (everything else is an input).
#[derive(Clone, Debug, PartialEq)]
pub(super) struct CurveSpec {
    /// `None` for `xdata [m]`, `Some(k)` for `[k, m]`.
    pub(super) x_rows: Option<usize>,
    pub(super) m_pad: usize,
    pub(super) n: usize,
    pub(super) config: Config,
    pub(super) cov_sigma: bool,
    /// Residuals are weighted by `1 / sigma` (a `w` input); without it, no weight array is
    /// passed and padding rows are masked by their index.
    pub(super) weighted: bool,
    /// Rows per chunk of the Jacobian evaluation, when chunked.
    pub(super) chunk: Option<usize>,
    /// A chunked program evaluates the residuals and Jacobian once more at the solution, in
    /// full, to return them (when they are small enough: [`MATERIALIZE_MAX_ROWS`]).
    pub(super) materialize: bool,
    /// Parameters held fixed, a `fixed [k]` input after `n` varying ones (see
    /// `fit::parameters`); 0 for a fit in which all vary.
    pub(super) fixed: usize,
}

/// A chunked fit returns `fun` and `jac` (one extra evaluation at the solution) when it has at
/// most this many rows (where automatic chunking used to start, so every fit that returned them
/// before still does); above, neither: evaluating and copying them would be a sizeable part of
/// such a fit (`docs/kernels.md`).
pub const MATERIALIZE_MAX_ROWS: usize = 65_536;

/// Rows per chunk when chunking is automatic, for `n` parameters: a block `[J | f]ᵀ` of about
/// 32 KiB (a core's L1 data cache), as a power of two between 256 and 4,096 rows: 1,024 rows for
/// 3 parameters (the measurements behind it: `docs/kernels.md`).
pub fn auto_chunk_rows(n: usize) -> usize {
    let target = (4_096 / n.saturating_add(1)).clamp(256, 4_096);
    1 << target.ilog2()
}

/// Point count from which chunking is automatic. A chunked evaluation (Gram pass over cache-sized
/// blocks) beats the Householder QR of the whole Jacobian from about a thousand points on
/// (`docs/kernels.md`); smaller fits, the NIST-sized ones among them, keep the
/// Householder QR of the whole Jacobian. Fits up to [`MATERIALIZE_MAX_ROWS`] still return
/// `fun` and `jac`, and are padded to their shape bucket.
pub const AUTO_CHUNK_FROM: usize = 2_048;

/// Validated, padded host data of one `curve_fit` call.
pub(super) struct CurveData<'a> {
    pub(super) spec: CurveSpec,
    pub(super) plan: Plan,
    pub(super) m: usize,
    pub(super) args: Vec<HostArg<'a>>,
    pub(super) absolute_sigma: bool,
    /// What the fit statistics need from `y` and sigma.
    pub(super) summary: DataSummary,
}

/// Validates the inputs and lays them out for a program with `m_pad` rows (`None`: choose).
/// `fixed`: the rows and chunking of an existing program (a [`CurveFitter`]'s), or `None` to
/// choose them from the data.
pub(super) fn prepare<'a>(
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
    let mut summary = DataSummary::diagonal(ydata, None);
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
            summary = DataSummary::diagonal(ydata, Some(&weights));
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
            summary = DataSummary::whitened(ydata, &inv);
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
        fixed: 0,
    };
    Ok(CurveData {
        spec,
        plan,
        m,
        args,
        absolute_sigma: options.absolute_sigma,
        summary,
    })
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

impl Plan {
    pub(super) fn args_clone_into(&self, args: &mut Vec<HostArg<'_>>) {
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
