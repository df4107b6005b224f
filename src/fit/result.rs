//! Results: scipy's fields, Ceres-style summaries, timings.

use std::fmt;
use std::time::Duration;

use ndarray::{Array1, Array2};

use super::FitStatistics;
use crate::solve::{Loss, Method, Status};

/// How the executable of a fit was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExecutableSource {
    /// Compiled by XLA for this call.
    Compiled,
    /// Reused from the in-process cache (or, for another client of the same plugin, loaded
    /// from the copy this process already holds).
    Memory,
    /// Loaded from the persistent cache on disk (compiled by an earlier process).
    Disk,
}

impl fmt::Display for ExecutableSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExecutableSource::Compiled => "compiled",
            ExecutableSource::Memory => "memory",
            ExecutableSource::Disk => "disk",
        })
    }
}

/// Where the time of a fit went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    /// Loading the PJRT plugin and creating the client, when this call was the first use of the
    /// runtime in the process (zero afterwards). Not part of `total`.
    pub runtime: Duration,
    /// Tracing the model and solver and emitting StableHLO.
    pub trace: Duration,
    /// Compiling, loading from disk, or fetching from memory the executable (see
    /// [`FitResult::executable`]).
    pub compile: Duration,
    /// Copying inputs, executing, and reading the results back.
    pub execute: Duration,
    /// Everything, from the call to the result.
    pub total: Duration,
}

/// The optimizer's result: scipy `OptimizeResult` fields plus Ceres-style summary data.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FitResult {
    /// Solution `[n]`.
    pub x: Array1<f64>,
    /// Final cost `0.5 * sum(rho(f²))`.
    pub cost: f64,
    /// Residuals at the solution `[m]`, `model(x, p) - y` (weighted by sigma, before the robust
    /// loss); `None` for a chunked fit too large to return them
    /// ([`crate::fit::MATERIALIZE_MAX_ROWS`]).
    pub fun: Option<Array1<f64>>,
    /// Jacobian of the (loss-scaled) residuals at the solution `[m, n]`; `None` where `fun` is,
    /// and for the fits of a batch.
    pub jac: Option<Array2<f64>>,
    /// Gradient of the cost at the solution `[n]`.
    pub grad: Array1<f64>,
    /// First-order optimality measure (scaled gradient max-norm for TRF, `‖g‖_inf` for LM).
    pub optimality: f64,
    /// -1 / 0 / 1 per parameter: at its lower bound, free, at its upper bound.
    pub active_mask: Array1<i64>,
    /// Residual evaluations.
    pub nfev: usize,
    /// Jacobian evaluations.
    pub njev: usize,
    /// Outer iterations.
    pub nit: usize,
    /// Termination status.
    pub status: Status,
    /// Cost before the first step.
    pub initial_cost: f64,
    /// Cost after each outer iteration (entry 0: initial), at most the history length.
    pub history: Vec<f64>,
    /// Numerical rank of the final Jacobian with its columns scaled to unit norm: the singular
    /// values above `ε · max(m, n) · s₀` (scipy's cut-off, applied to the scaled matrix, so that
    /// it does not depend on the units of the parameters or the data).
    pub rank: usize,
    /// Indices of the parameters the data do not determine (ascending; empty when `rank == n`):
    /// those with a component above [`crate::fit::NULL_SPACE_TOL`] in the numerical null space
    /// of that scaled Jacobian. Their values are one point of a set of equally good fits, and
    /// their variances in `pcov` are `inf`.
    pub not_determined: Vec<usize>,
    /// The method used.
    pub method: Method,
    /// The loss used.
    pub loss: Loss,
    /// Where the time went.
    pub timings: Timings,
    /// How the executable was obtained.
    pub executable: ExecutableSource,
    /// The device that ran the fit.
    pub device: String,
}

impl FitResult {
    /// True when a tolerance was met (`status > 0`).
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// scipy's message for the status.
    pub fn message(&self) -> &'static str {
        self.status.message()
    }

    /// One line: method, costs, evaluations, status, time.
    pub fn brief_report(&self) -> String {
        format!(
            "{}: cost {:.6e} -> {:.6e}, nfev {}, njev {}, {} ({:?})",
            self.method,
            self.initial_cost,
            self.cost,
            self.nfev,
            self.njev,
            self.status.message(),
            self.timings.total
        )
    }
}

impl fmt::Display for FitResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Solver summary ({}, loss {}, on {})",
            self.method, self.loss, self.device
        )?;
        writeln!(f, "{:<24}{:>14.6e}", "Initial cost", self.initial_cost)?;
        writeln!(f, "{:<24}{:>14.6e}", "Final cost", self.cost)?;
        writeln!(f, "{:<24}{:>14.3e}", "Optimality", self.optimality)?;
        writeln!(f, "{:<24}{:>14}", "Iterations", self.nit)?;
        writeln!(f, "{:<24}{:>14}", "Residual evaluations", self.nfev)?;
        writeln!(f, "{:<24}{:>14}", "Jacobian evaluations", self.njev)?;
        writeln!(f, "{:<24}{:>14}", "Jacobian rank", self.rank)?;
        if !self.timings.runtime.is_zero() {
            writeln!(f, "{:<24}{:>14.3?}", "Runtime load", self.timings.runtime)?;
        }
        writeln!(f, "{:<24}{:>14.3?}", "Trace time", self.timings.trace)?;
        writeln!(
            f,
            "{:<24}{:>14.3?}  ({})",
            "Compile time", self.timings.compile, self.executable
        )?;
        writeln!(f, "{:<24}{:>14.3?}", "Execute time", self.timings.execute)?;
        writeln!(f, "{:<24}{:>14.3?}", "Total time", self.timings.total)?;
        write!(
            f,
            "Termination: {} (status {})",
            self.status.message(),
            self.status.code()
        )
    }
}

/// Result of [`crate::fit::curve_fit`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CurveFit {
    /// Optimal parameters.
    pub popt: Array1<f64>,
    /// Estimated covariance of `popt` (all `inf` when it cannot be estimated, e.g. `m <= n`).
    pub pcov: Array2<f64>,
    /// One standard deviation errors, `sqrt(diag(pcov))`.
    pub perr: Array1<f64>,
    /// Degrees of freedom: data points minus varying parameters (0 when there are no more
    /// points than parameters).
    pub dof: usize,
    /// Goodness-of-fit statistics (χ², R², AIC, BIC, ...); `None` only for a fit with a robust
    /// loss too large to return its residuals ([`crate::fit::MATERIALIZE_MAX_ROWS`]).
    pub statistics: Option<FitStatistics>,
    /// How the starts of a multistart fit went (`FitOptions::starts > 1`); `None` otherwise.
    pub starts: Option<super::multistart::StartsSummary>,
    /// `absolute_sigma`: the variance of the data is known, not estimated (the intervals then
    /// use the normal quantile).
    pub(crate) known_variance: bool,
    /// The full optimizer result.
    pub result: FitResult,
}

impl CurveFit {
    /// True when the solver met a tolerance.
    pub fn success(&self) -> bool {
        self.result.success()
    }

    /// Two-sided confidence intervals `[n, 2]` (lower, upper) of the parameters at `level`
    /// (e.g. 0.95): `popt ± q · perr`, with `q` the `(1 + level)/2` quantile of Student's t
    /// with [`CurveFit::dof`] degrees of freedom, or of the standard normal with
    /// `absolute_sigma` (see [`crate::fit::statistics`]). A parameter the data do not
    /// determine gets `(-inf, inf)`. A `level` outside (0, 1) is an
    /// [`Error::InvalidOption`](crate::Error::InvalidOption).
    ///
    /// These are the linearised (Wald) intervals of scipy, R's `confint.default` and lmfit's
    /// standard errors; for strongly nonlinear parameters profile-likelihood intervals can be
    /// markedly asymmetric.
    pub fn confidence_intervals(&self, level: f64) -> crate::Result<Array2<f64>> {
        let q = super::statistics::interval_quantile(level, self.dof, self.known_variance)?;
        let n = self.popt.len();
        let mut out = Array2::zeros((n, 2));
        for j in 0..n {
            let half = if self.perr[j].is_finite() {
                q * self.perr[j]
            } else {
                f64::INFINITY
            };
            out[[j, 0]] = self.popt[j] - half;
            out[[j, 1]] = self.popt[j] + half;
        }
        Ok(out)
    }

    /// The correlation matrix of the parameters, `pcov[i, j] / (perr[i] perr[j])`: 1 on the
    /// diagonal, `NaN` in the rows and columns of parameters without a finite, nonzero error.
    pub fn correlation(&self) -> Array2<f64> {
        let n = self.popt.len();
        Array2::from_shape_fn((n, n), |(i, j)| {
            // One order of the divisions for both triangles, so the matrix is symmetric.
            let (i, j) = (i.min(j), i.max(j));
            let (a, b) = (self.perr[i], self.perr[j]);
            if !(a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0) {
                f64::NAN
            } else if i == j {
                1.0
            } else {
                (self.pcov[[i, j]] / a / b).clamp(-1.0, 1.0)
            }
        })
    }

    /// One warning line naming the parameters the data do not determine
    /// ([`FitResult::not_determined`]), each named by `name(index)`; `None` when every
    /// parameter is determined.
    ///
    /// # Examples
    /// A fit of `a*x + b*x` says `warning: the data do not determine p[0], p[1] (Jacobian rank 1
    /// of 2): ...`.
    pub fn not_determined_warning(&self, name: impl Fn(usize) -> String) -> Option<String> {
        let nd = &self.result.not_determined;
        if nd.is_empty() {
            return None;
        }
        let names: Vec<String> = nd.iter().map(|&i| name(i)).collect();
        Some(format!(
            "warning: the data do not determine {} (Jacobian rank {} of {}): their values are one of many \
             equally good fits and their variances are inf; fix or remove parameters, or add data",
            names.join(", "),
            self.result.rank,
            self.popt.len()
        ))
    }
}

impl fmt::Display for CurveFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<10}{:>22}{:>22}", "param", "value", "std error")?;
        for (i, (p, e)) in self.popt.iter().zip(self.perr.iter()).enumerate() {
            if self.result.not_determined.contains(&i) {
                writeln!(f, "{:<10}{:>22.12e}{:>22}", format!("p[{i}]"), p, "not determined")?;
            } else {
                writeln!(f, "{:<10}{:>22.12e}{:>22.6e}", format!("p[{i}]"), p, e)?;
            }
        }
        if let Some(warning) = self.not_determined_warning(|i| format!("p[{i}]")) {
            writeln!(f, "{warning}")?;
        }
        if let Some(s) = &self.statistics {
            writeln!(f, "{s}")?;
        }
        write!(f, "{}", self.result)
    }
}
