//! The solvers, written as graph code: the whole iteration of a fit is one `stablehlo.while`.
//!
//! The `trf` module implements the Trust Region Reflective method of Branch, Coleman & Li (1999) as
//! scipy's `least_squares(method='trf', tr_solver='exact')` does, for bounded and unbounded
//! problems and robust losses. The `lm` module implements Levenberg–Marquardt as in MINPACK's `lmder`
//! (Moré 1978), with the Levenberg–Marquardt parameter found from an SVD instead of a pivoted
//! QR (the same secular equation, solved the same way).
//!
//! Per accepted point both solvers evaluate residuals `f` and the Jacobian `J` once (forward
//! mode, all `n` tangents at once), factor `[J | f]` with a Householder QR into the small
//! triangle `R` and `Qᵀf`, and do everything else on `n × n` matrices: an `m`-sized pass per
//! Jacobian and one per trial residual evaluation, nothing more. The final covariance comes
//! from the SVD of the last `R`.
//!
//! # References
//! - M. A. Branch, T. F. Coleman, Y. Li, SIAM J. Sci. Comput. 21 (1999) 1–23.
//! - J. J. Moré, "The Levenberg–Marquardt algorithm: implementation and theory", Numerical
//!   Analysis, Lecture Notes in Mathematics 630, 1978, 105–116.
//! - scipy.optimize.least_squares and curve_fit documentation.

pub(crate) mod common;
pub(crate) mod lm;
pub(crate) mod lm_batch;
pub mod loss;
pub mod options;
pub mod termination;
pub(crate) mod trf;
pub(crate) mod trf_batch;

pub use options::{Loss, Method, SolverOptions, XScale};
pub use termination::Status;

use crate::graph::Tensor;

/// Chunked evaluation of the Jacobian for large `m`: the data are walked in `count` chunks of
/// `size` rows inside the graph, and the triangle of `[J | f]` is accumulated chunk by chunk
/// (TSQR: the QR of the running `R` stacked on the chunk's rows), so `J` is never materialised.
pub(crate) struct Chunks<'a> {
    /// Rows per chunk.
    pub size: i64,
    /// Number of chunks (`size * count = m`).
    pub count: i64,
    /// `(p, first_row) -> (f_chunk [size], J_chunk [size, n])`, weighted and masked like `fun_jac`.
    pub fun_jac: &'a dyn Fn(&Tensor, &Tensor) -> (Tensor, Tensor),
}

/// The residual function of a problem, as graph code of the parameter vector `p [n]`.
pub(crate) struct Problem<'a> {
    /// `p -> f [m]`: weighted residuals, zero on padding rows.
    pub fun: &'a dyn Fn(&Tensor) -> Tensor,
    /// `p -> (f [m], J [m, n])`.
    pub fun_jac: &'a dyn Fn(&Tensor) -> (Tensor, Tensor),
    /// Static number of residual rows (at least `n + 1`; extra rows are zero padding).
    pub m: i64,
    /// Number of parameters.
    pub n: i64,
    /// Chunked Jacobian evaluation (large `m`), or `None` to evaluate `J [m, n]` whole.
    pub chunks: Option<Chunks<'a>>,
}

/// Residuals, Jacobian and factorization at one point.
pub(crate) struct Evaluation {
    /// Residuals `[m]` (before the robust loss), or a `[1]` placeholder when chunked.
    pub f: Tensor,
    /// The loss-scaled Jacobian `[m, n]`, or a `[1, n]` placeholder when chunked.
    pub jac: Tensor,
    /// Triangle `R [n, n]` of the loss-scaled Jacobian.
    pub r: Tensor,
    /// `Qᵀ f_scaled [n]`.
    pub qtf: Tensor,
    /// Cost `0.5 Σ rho(f²)`.
    pub cost: Tensor,
    /// True when residuals, cost and `R` are finite.
    pub finite: Tensor,
}

/// Evaluates residuals and Jacobian at `x` and factors them (whole or chunked).
pub(crate) fn evaluate(pb: &Problem<'_>, x: &Tensor, loss: Loss, f_scale: &Tensor) -> Evaluation {
    use common::{all_finite, is_finite};
    let n = pb.n;
    let Some(chunks) = &pb.chunks else {
        let (f, j) = (pb.fun_jac)(x);
        let (fs, js, cost) = loss::scale_for_loss(loss, &f, &j, f_scale);
        let (r, qtf) = factor(&js, &fs);
        let finite = all_finite(&f)
            .and(&all_finite(&r.reshape([n * n])))
            .and(&is_finite(&cost));
        return Evaluation {
            f,
            jac: js,
            r,
            qtf,
            cost,
            finite,
        };
    };
    let g = x.graph().clone();
    let k = n + 1;
    let size = chunks.size;
    // One pass over the data: each chunk's rows of [J | f] (loss-scaled) are folded into the
    // running triangle and its cost is added up; neither J nor f is kept.
    let out = g.while_loop(
        &[
            g.scalar(crate::DType::I64, 0.0),
            g.zeros(crate::DType::F64, [k, k]),
            g.constant(0.0),
        ],
        |st| st[0].lt(chunks.count as f64),
        |st| {
            let start = &st[0] * size as f64;
            let (fc, jc) = (chunks.fun_jac)(x, &start);
            let (fs, js, cost) = loss::scale_for_loss(loss, &fc, &jc, f_scale);
            let a = g.concat(&[st[1].clone(), g.concat(&[js, fs.reshape([size, 1])], 1)], 0);
            vec![&st[0] + 1.0, crate::linalg::householder_qr_r(&a), &st[2] + cost]
        },
    );
    let r_aug = &out[1];
    let cost = out[2].clone();
    let r = r_aug.slice(&[0, 0], &[n, n]);
    let qtf = r_aug.slice(&[0, n], &[n, n + 1]).reshape([n]);
    let finite = is_finite(&cost).and(&all_finite(&r_aug.reshape([k * k])));
    Evaluation {
        f: g.zeros(crate::DType::F64, [1]),
        jac: g.zeros(crate::DType::F64, [1, n]),
        r,
        qtf,
        cost,
        finite,
    }
}

impl Problem<'_> {
    /// Rows of the Jacobian and residual outputs (`m`, or 1 when chunked).
    pub(crate) fn jac_rows(&self) -> i64 {
        if self.chunks.is_some() {
            1
        } else {
            self.m
        }
    }
}

/// Traced inputs of a solve (program parameters, so one executable serves all values).
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
    /// `(JᵀJ)⁺` of the final Jacobian (scipy's cut-off), not yet scaled by the residual variance.
    pub cov: Tensor,
    /// Numerical rank of the final Jacobian under that cut-off (i64).
    pub rank: Tensor,
}

/// `R [n, n]` and `Qᵀf [n]` of the Householder QR of `[J | f]` (blocked TSQR when `J` is taller
/// than a cache block).
pub(crate) fn factor(jac: &Tensor, f: &Tensor) -> (Tensor, Tensor) {
    let (m, n) = (jac.dims()[0], jac.dims()[1]);
    let aug = jac.graph().concat(&[jac.clone(), f.reshape([m, 1])], 1);
    let block = crate::linalg::cache_block_rows(n as usize + 1);
    let r_aug = crate::linalg::householder_qr_r_blocked(&aug, block);
    let r = r_aug.slice(&[0, 0], &[n, n]);
    let qtf = r_aug.slice(&[0, n], &[n, n + 1]).reshape([n]);
    (r, qtf)
}

/// scipy curve_fit's covariance `V diag(1/s²) Vᵀ` over singular values above
/// `eps * max(m, n) * s[0]`, from the SVD of the final Jacobian (`s`, `V`); and the rank.
pub(crate) fn covariance_from(s: &Tensor, v: &Tensor, m_valid: &Tensor) -> (Tensor, Tensor) {
    let n = s.dims()[0];
    let threshold = f64::EPSILON * m_valid.max(n as f64) * s.at(0);
    let keep = s.gt(&threshold);
    let inv_s2 = keep.select(s.max(f64::MIN_POSITIVE).square().recip(), 0.0);
    let cov = (v * &inv_s2).dot(&v.t());
    let rank = keep.select(1.0, 0.0).sum().convert(crate::DType::I64);
    (cov, rank)
}

/// Builds the solve for `config.method`.
pub(crate) fn solve(problem: &Problem<'_>, inputs: &Inputs, config: &Config) -> Outputs {
    match config.method {
        Method::Trf => trf::solve(problem, inputs, config),
        Method::Lm => lm::solve(problem, inputs, config),
    }
}
