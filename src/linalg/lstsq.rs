//! SVD of tall matrices, the pseudo-inverse, and scipy's covariance rule.
//!
//! For `J ∈ ℝ^{m×n}`, `m ≥ n`, with `J = Q R` (Householder) and `R = U_R diag(s) Vᵀ`
//! (Jacobi), `J = (Q U_R) diag(s) Vᵀ` is the thin SVD of `J`: the Jacobi sweeps then work on
//! `n`-long columns instead of `m`-long ones. From it
//!
//! ```text
//!   J⁺ = V diag(1/s_i for s_i > cut, else 0) Uᵀ
//!   (JᵀJ)⁺ = V diag(1/s_i² for s_i > cut, else 0) Vᵀ
//! ```
//!
//! The second is `curve_fit`'s covariance before scaling by the residual variance; scipy
//! drops the singular values `s_i ≤ ε · max(m, n) · s₀` ([`scipy_cutoff`]).
//!
//! # References
//!
//! * G. H. Golub, C. F. Van Loan, *Matrix Computations*, 4th ed., 2013, §5.5.4 (the
//!   pseudo-inverse), §8.6.3 (R-SVD).
//! * SciPy, `scipy.optimize.curve_fit` (`_minpack_py.py`): `pcov` from the SVD of the
//!   Jacobian with threshold `np.finfo(float).eps * max(jac.shape) * s[0]`.

use crate::graph::{Operand, Tensor, TensorType};
use crate::linalg::householder_qr::householder_qr;
use crate::linalg::jacobi_svd::jacobi_svd;
use crate::linalg::{invalid, matrix_dims, EPS};
use crate::types::DType;

/// Thin SVD `A = U diag(s) Vᵀ` of an `m × n` matrix with `m ≥ n`: Householder QR first when
/// `m > n`, then [`jacobi_svd`] of the `n × n` factor. `U` is `m × n`, `s` `[n]` descending,
/// `V` `n × n`. Zero singular values give zero columns of `U` (as in [`jacobi_svd`]).
///
/// # Errors
///
/// Records an error when `a` is not an `f64` matrix with `m ≥ n ≥ 1`.
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let a = g.parameter("a", DType::F64, [50, 3]);
/// let (u, s, v) = nlsq::linalg::svd(&a);
/// assert_eq!((u.dims(), s.dims(), v.dims()), (vec![50, 3], vec![3], vec![3, 3]));
/// ```
pub fn svd(a: &Tensor) -> (Tensor, Tensor, Tensor) {
    match matrix_dims(a) {
        Ok((m, n)) if m > n && n >= 1 => {
            let (q, r) = householder_qr(a);
            let (ur, s, v) = jacobi_svd(&r);
            (q.dot(&ur), s, v)
        }
        Ok((m, n)) if m == n && n >= 1 => jacobi_svd(a),
        Ok((m, n)) => {
            let reason = format!("needs m ≥ n ≥ 1, got {}", a.ty());
            let (m, n) = (m.max(0), n.max(0));
            let u = invalid(a, "svd", reason, [m, n]);
            let poison = |shape: Vec<i64>| a.graph().poison(TensorType::new(DType::F64, shape));
            (u, poison(vec![n]), poison(vec![n, n]))
        }
        Err(reason) => {
            let u = invalid(a, "svd", reason, [1, 1]);
            let poison = |shape: Vec<i64>| a.graph().poison(TensorType::new(DType::F64, shape));
            (u, poison(vec![1]), poison(vec![1, 1]))
        }
    }
}

/// scipy's cut-off for [`covariance_from_svd`]: `ε · max(m, n) · s₀`, with `s` sorted
/// descending (`s₀ = s[0]`). Returns an `f64` scalar.
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let s = g.parameter("s", DType::F64, [3]);
/// assert_eq!(nlsq::linalg::scipy_cutoff(&s, 100, 3).dims(), Vec::<i64>::new());
/// ```
pub fn scipy_cutoff(s: &Tensor, m: usize, n: usize) -> Tensor {
    s.slice(&[0], &[1]).reshape([]) * (EPS * m.max(n) as f64)
}

/// `(JᵀJ)⁺ = V diag(w) Vᵀ` with `w_i = 1/s_i²` for `s_i > threshold` and `0` otherwise,
/// from the SVD `J = U diag(s) Vᵀ` (`s: [n]`, `v: n × n`). With
/// `threshold = scipy_cutoff(s, m, n)` this is `curve_fit`'s unscaled `pcov`.
///
/// `threshold` is a number or an `f64` scalar tensor. The result is symmetric up to rounding.
///
/// # Errors
///
/// Records an error when `s` and `v` do not fit (`[n]` and `n × n`).
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let jac = g.parameter("jac", DType::F64, [100, 3]);
/// let (_, s, v) = nlsq::linalg::svd(&jac);
/// let cut = nlsq::linalg::scipy_cutoff(&s, 100, 3);
/// let pcov = nlsq::linalg::covariance_from_svd(&s, &v, &cut);
/// assert_eq!(pcov.dims(), vec![3, 3]);
/// ```
pub fn covariance_from_svd(s: &Tensor, v: &Tensor, threshold: impl Operand) -> Tensor {
    let n = match check_sv(s, v) {
        Ok(n) => n,
        Err(reason) => return invalid(v, "covariance_from_svd", reason, [1, 1]),
    };
    let keep = s.gt(threshold);
    let w = keep.select(keep.select(s, 1.0).square().recip(), 0.0);
    (v * w.reshape([1, n])).dot(&v.t())
}

/// Pseudo-inverse `V diag(1/s_i for s_i > threshold, else 0) Uᵀ` (`n × m`) from a thin SVD
/// `A = U diag(s) Vᵀ` (`u: m × n`, `s: [n]`, `v: n × n`).
///
/// # Errors
///
/// Records an error when the shapes do not fit.
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let a = g.parameter("a", DType::F64, [6, 2]);
/// let (u, s, v) = nlsq::linalg::svd(&a);
/// assert_eq!(nlsq::linalg::pinv_from_svd(&u, &s, &v, 1e-12).dims(), vec![2, 6]);
/// ```
pub fn pinv_from_svd(u: &Tensor, s: &Tensor, v: &Tensor, threshold: impl Operand) -> Tensor {
    const OP: &str = "pinv_from_svd";
    let n = match check_sv(s, v) {
        Ok(n) => n,
        Err(reason) => return invalid(v, OP, reason, [1, 1]),
    };
    match matrix_dims(u) {
        Ok((m, nu)) if nu == n && m >= 1 => {}
        _ => return invalid(u, OP, format!("U {} does not fit s {}", u.ty(), s.ty()), [n, 1]),
    }
    let keep = s.gt(threshold);
    let w = keep.select(keep.select(s, 1.0).recip(), 0.0);
    (v * w.reshape([1, n])).dot(&u.t())
}

/// Moore–Penrose pseudo-inverse (`n × m`) of an `m × n` matrix with `m ≥ n`, dropping the
/// singular values `s_i ≤ rcond · s₀` (numpy's `pinv` rule), via [`svd`].
///
/// # Errors
///
/// As [`svd`].
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let a = g.parameter("a", DType::F64, [4, 4]);
/// assert_eq!(nlsq::linalg::pinv(&a, 1e-15).dims(), vec![4, 4]);
/// ```
pub fn pinv(a: &Tensor, rcond: f64) -> Tensor {
    let (u, s, v) = svd(a);
    let cut = s.slice(&[0], &[1]).reshape([]) * rcond;
    pinv_from_svd(&u, &s, &v, &cut)
}

fn check_sv(s: &Tensor, v: &Tensor) -> Result<i64, String> {
    let (n, n2) = matrix_dims(v)?;
    let st = s.ty();
    if n != n2 || st.dims() != [n] || st.dtype != v.dtype() {
        return Err(format!("singular values {st} and V {} do not fit", v.ty()));
    }
    Ok(n)
}
