//! The solvers, written as graph code: the whole iteration of a fit is one `stablehlo.while`.
//!
//! The `trf` module implements the Trust Region Reflective method of Branch, Coleman & Li (1999) as
//! scipy's `least_squares(method='trf', tr_solver='exact')` does, for bounded and unbounded
//! problems and robust losses. The `lm` module implements Levenberg–Marquardt as in MINPACK's `lmder`
//! (Moré 1978), with the Levenberg–Marquardt parameter found from an SVD instead of a pivoted
//! QR (the same secular equation, solved the same way).
//!
//! Per accepted point both solvers evaluate residuals `f` and the Jacobian `J` once (forward
//! mode, all `n` tangents at once), factor `[J | f]` into the small triangle `R` and `Qᵀf`
//! (the Cholesky factor of its Gram matrix where that is accurate and cheaper, the Householder
//! QR otherwise), and do everything else on `n × n` matrices: an `m`-sized pass per Jacobian
//! and one per trial residual evaluation, nothing more. The final covariance comes from the SVD
//! of the last `R`.
//!
//! # References
//! - M. A. Branch, T. F. Coleman, Y. Li, SIAM J. Sci. Comput. 21 (1999) 1–23.
//! - J. J. Moré, "The Levenberg–Marquardt algorithm: implementation and theory", Numerical
//!   Analysis, Lecture Notes in Mathematics 630, 1978, 105–116.
//! - scipy.optimize.least_squares and curve_fit documentation.

pub(crate) mod common;
pub(crate) mod covariance;
pub(crate) mod evaluate;
pub(crate) mod lanes;
pub(crate) mod lm;
pub mod loss;
pub mod options;
mod outer;
pub(crate) mod schur;
pub mod termination;
pub(crate) mod trf;

pub(crate) use lanes::Lanes;
pub use options::{Loss, Method, SolverOptions, XScale};
pub use termination::Status;

use crate::graph::Tensor;
pub(crate) use evaluate::{carried, evaluate, Carried, Chunks, Factored, TrialFactors};

/// The residual function of a problem, as graph code of the parameter vector `p [n]`, or of a
/// batch of problems solved in lockstep (`p [B, n]`; see [`lanes`]).
pub(crate) struct Problem<'a> {
    /// `p -> f [m]`: weighted residuals, zero on padding rows (a batch: `f [B, m]`).
    pub fun: &'a dyn Fn(&Tensor) -> Tensor,
    /// `p -> (f [m], J [m, n])` (a batch: `(f [B, m], Jᵀ [B, n, m])`, the Jacobian transposed,
    /// as forward mode makes it).
    pub fun_jac: &'a dyn Fn(&Tensor) -> (Tensor, Tensor),
    /// Static number of residual rows (at least `n + 1`; extra rows are zero padding).
    pub m: i64,
    /// Number of parameters.
    pub n: i64,
    /// Chunked Jacobian evaluation (large `m`), or `None` to evaluate `J [m, n]` whole (always
    /// `None` for a batch).
    pub chunks: Option<Chunks<'a>>,
    /// One problem, or a batch.
    pub lanes: Lanes,
}

impl<'a> Problem<'a> {
    /// A problem of `m` rows and `n` parameters on `lanes`, its Jacobian evaluated whole.
    pub(crate) fn new(
        fun: &'a dyn Fn(&Tensor) -> Tensor,
        fun_jac: &'a dyn Fn(&Tensor) -> (Tensor, Tensor),
        m: i64,
        n: i64,
        lanes: Lanes,
    ) -> Self {
        Problem {
            fun,
            fun_jac,
            m,
            n,
            chunks: None,
            lanes,
        }
    }

    /// Rows of the residual output (`m`, or 1 when chunked).
    pub(crate) fn f_rows(&self) -> i64 {
        if self.chunks.is_some() {
            1
        } else {
            self.m
        }
    }

    /// Rows of the Jacobian output (`m`, or 1 when chunked or batched: not kept).
    pub(crate) fn jac_rows(&self) -> i64 {
        if self.lanes.batch_size().is_some() {
            1
        } else {
            self.f_rows()
        }
    }
}

/// Traced inputs of a solve (program parameters, so one executable serves all values). For a
/// batch, `x0`, `lb`, `ub` are `[B, n]` and `m_valid` is `[B]`; `x_scale` and the scalars are
/// shared.
pub(crate) struct Inputs {
    /// Starting point `[n]` (strictly inside the bounds for TRF).
    pub x0: Tensor,
    /// Lower bounds `[n]` (`-inf` for none).
    pub lb: Tensor,
    /// Upper bounds `[n]` (`inf` for none).
    pub ub: Tensor,
    /// Fixed variable scales `[n]` (ignored with Jacobian scaling).
    pub x_scale: Tensor,
    /// Scalar tolerances.
    pub ftol: Tensor,
    /// See `ftol`.
    pub xtol: Tensor,
    /// See `ftol`.
    pub gtol: Tensor,
    /// Loss scale (scalar).
    pub f_scale: Tensor,
    /// Maximum residual evaluations (i64 scalar).
    pub max_nfev: Tensor,
    /// Number of real (unpadded) residuals, f64 scalar.
    pub m_valid: Tensor,
    /// For a batch, which lanes hold a problem (bool `[B]`; the others are done from the
    /// start); `None` for one problem.
    pub active: Option<Tensor>,
}

impl Inputs {
    /// The lanes done from the start: the unused slots of a batch (none for one problem).
    pub(crate) fn done_at_start(&self, lanes: &Lanes) -> Tensor {
        match &self.active {
            Some(active) => active.not(),
            None => lanes.flag(false),
        }
    }
}

/// Static choices that shape the program.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Config {
    /// Algorithm.
    pub method: Method,
    pub loss: Loss,
    pub jac_scale: bool,
    pub bounded: bool,
    /// Length of the cost history (entry 0 is the initial cost, entry k the cost after outer
    /// iteration k; later iterations overwrite the last entry).
    pub history: i64,
}

/// Traced outputs of a solve.
pub(crate) struct Outputs {
    pub x: Tensor,
    pub cost: Tensor,
    pub fun: Tensor,
    pub jac: Tensor,
    pub grad: Tensor,
    pub optimality: Tensor,
    pub active_mask: Tensor,
    pub nfev: Tensor,
    pub njev: Tensor,
    pub nit: Tensor,
    pub status: Tensor,
    pub history: Tensor,
    pub initial_cost: Tensor,
    /// `(JᵀJ)⁺` of the final Jacobian, not yet scaled by the residual variance
    /// ([`covariance`]).
    pub cov: Tensor,
    /// Numerical rank of the final Jacobian with unit columns (i64).
    pub rank: Tensor,
    /// Per parameter, its component in that Jacobian's numerical null space `[n]`.
    pub null_weight: Tensor,
}

/// Builds the solve for `config.method`.
pub(crate) fn solve(problem: &Problem<'_>, inputs: &Inputs, config: &Config) -> Outputs {
    match config.method {
        Method::Trf => trf::solve(problem, inputs, config),
        Method::Lm => lm::solve(problem, inputs, config),
    }
}
