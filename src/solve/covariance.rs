//! The covariance of the parameters at the solution, the Jacobian's numerical rank, and which
//! parameters the data do not determine: one helper for every solver, single or batched.
//!
//! All of it is computed from the SVD of the final triangle `R` (`RᵀR = JᵀJ`) with its columns
//! scaled to unit norm, `R C = U diag(s) Vᵀ` with `C = diag(1 / ‖R_j‖)` (a zero column keeps
//! scale 1). Scaling the columns makes every statement below independent of the units of each
//! parameter and of the data: multiplying parameter `j` by a constant, or `y` by a constant,
//! leaves `s` and `V` unchanged.
//!
//! * **Rank.** The singular values above `ε · max(m, n) · s₀` (scipy's cut-off, applied to the
//!   *scaled* matrix) count; the rest span the numerical null space `N`.
//! * **Not determined.** Parameter `j` is not determined when its component in `N` is larger
//!   than [`NULL_SPACE_TOL`]: `‖V[j, N]‖ > 1e-8` (row `j` of the null-space columns of `V`). In
//!   `a*x + b*x` the null space is `(1, -1)/√2`, so both `a` and `b` are; a parameter the model
//!   does not use has an exactly zero column, null vector `e_j`, and only it is.
//! * **Covariance.** The pseudo-inverse `(JᵀJ)⁺ = C V diag(1/s²) Vᵀ C` over the singular
//!   values kept. For a full-rank `J` this is the exact inverse of `JᵀJ`, as scipy's; unlike
//!   scipy's cut-off on the unscaled `J`, a well-determined parameter whose column is tiny only
//!   because of its units is never cut. What the host makes of a rank-deficient result
//!   (all `inf` for LM, `inf` rows for the parameters not determined with TRF) is decided in
//!   `fit`.
//!
//! The functions take a leading batch axis or none: `s [.., n]`, `V [.., n, n]`, scale
//! `[.., n]`, `m_valid [..]`.
//!
//! # References
//! - scipy.optimize.curve_fit (pseudo-inverse with threshold `eps * max(m, n) * s[0]`).
//! - G. H. Golub, C. F. Van Loan, "Matrix Computations", 4th ed., §5.4 (numerical rank) and
//!   §6.1 (column scaling of least-squares problems).

use crate::graph::Tensor;
use crate::types::DType;

/// A parameter whose component in the scaled Jacobian's null space exceeds this is reported
/// as not determined.
pub const NULL_SPACE_TOL: f64 = 1e-8;

/// What [`covariance`] computes, each with the same leading axes as its inputs.
pub(crate) struct Covariance {
    /// `(JᵀJ)⁺ [.., n, n]`, not yet scaled by the residual variance.
    pub cov: Tensor,
    /// Numerical rank of the column-scaled Jacobian (i64 `[..]`).
    pub rank: Tensor,
    /// Per parameter, the norm of its component in the numerical null space `[.., n]`.
    pub null_weight: Tensor,
}

/// `1 / ‖R_j‖` for each column of `r [.., k, n]` (1 for a zero column): `r` times it (along
/// the last axis) has unit columns.
pub(crate) fn unit_column_scale(r: &Tensor) -> Tensor {
    let rows = r.rank() as i64 - 2;
    let norms = r.square().reduce_sum(&[rows]).sqrt();
    norms.eq(0.0).select(1.0, &norms).recip()
}

/// Covariance, rank and null-space weights from the SVD `(s, v)` of `R · diag(col_scale)`.
///
/// `col_scale` is whatever scaling the solver applied before its SVD; the covariance is
/// unscaled with it, so it is right for any scaling, while the rank and the null space are the
/// ones the module describes only for [`unit_column_scale`] (which every solver uses on its
/// final pass).
pub(crate) fn covariance(s: &Tensor, v: &Tensor, col_scale: &Tensor, m_valid: &Tensor) -> Covariance {
    let dims = s.dims();
    let lead: Vec<i64> = dims[..dims.len() - 1].to_vec();
    let n = dims[dims.len() - 1];
    let last = lead.len() as i64;
    let with = |tail: &[i64]| [lead.as_slice(), tail].concat();

    let s0 = s.slice_axis(last, 0, 1);
    let threshold = m_valid.reshape(with(&[1])).max(n as f64) * f64::EPSILON * s0;
    let keep = s.gt(&threshold);
    let inv_s2 = keep.select(s.max(f64::MIN_POSITIVE).square().recip(), 0.0);
    // C V: row j of V scaled by col_scale[j].
    let w = v * col_scale.reshape(with(&[n, 1]));
    let weighted = &w * inv_s2.reshape(with(&[1, n]));
    let cov = if lead.is_empty() {
        weighted.dot(&w.t())
    } else {
        // A product and a reduction: XLA:CPU runs tiny batched matrix products one batch
        // element at a time, while this fuses into one loop.
        let (wi, wj) = (weighted.reshape(with(&[n, 1, n])), w.reshape(with(&[1, n, n])));
        (wi * wj).reduce_sum(&[last + 2])
    };
    let rank = keep.select(1.0, 0.0).reduce_sum(&[last]).convert(DType::I64);
    let null = keep.select(0.0, 1.0).reshape(with(&[1, n]));
    let null_weight = (v.square() * null).reduce_sum(&[last + 1]).sqrt();
    Covariance { cov, rank, null_weight }
}
