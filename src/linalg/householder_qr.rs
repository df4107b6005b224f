//! Householder QR of a tall matrix, one `while`-loop iteration per column.
//!
//! For `A ∈ ℝ^{m×k}`, `m ≥ k`, step `j` takes column `x = A[:, j]` restricted to rows `≥ j`.
//! With `σ = ‖x[j+1:]‖²` and `μ = ‖x[j:]‖ = √(x_j² + σ)` the Householder vector is
//! (Golub & Van Loan, Alg. 5.1.1, Parlett's choice)
//!
//! ```text
//!   v_j = x_j − μ              if x_j ≤ 0
//!   v_j = −σ / (x_j + μ)       if x_j > 0      (same value, no cancellation)
//!   v   = [0…0, v_j, x[j+1:]],   β = 2 / vᵀv   (β = 0 when vᵀv = 0)
//! ```
//!
//! so that `H = I − β v vᵀ` maps `x[j:]` to `+μ e_j`: **the diagonal of R is non-negative**,
//! with no sign fix-up. A zero column gives `v = 0, β = 0, H = I` and a zero diagonal entry
//! (no division by zero, no NaN). The columns right of `j` are updated as
//! `A ← A − v (β vᵀA)` (one matrix–vector product and one rank-1 update); column `j` becomes
//! `(R[:j, j], μ, 0, …, 0)`.
//!
//! **Layout.** The loop index `j` is traced, so each step works on the whole array with
//! row/column masks: graph size and compile time do not depend on `k`, for more flops than the
//! shrinking-block form (`≈ 4mk²` instead of `2mk² − 2k³/3`), whose many distinct shapes
//! compile slowly. The loop keeps `Aᵀ` (`k × m`) so that a column of `A` is a contiguous row,
//! which XLA:CPU sweeps faster than the row-major form (figures: `docs/kernels.md`).
//!
//! The thin `Q = H₀H₁⋯H_{k−1}[I_k; 0]` is accumulated backwards (G&VL §5.1.6) in a second
//! loop over the stored reflectors.
//!
//! Entries must stay within about `1e±150` so that `‖x‖²` neither overflows nor underflows
//! (the solver scales its Jacobian columns first).
//!
//! # References
//!
//! * G. H. Golub, C. F. Van Loan, *Matrix Computations*, 4th ed., 2013, §5.1.2–5.1.6, §5.2.2.
//! * B. N. Parlett, "Analysis of algorithms for reflections in bisectors", SIAM Review 13
//!   (1971) 197–208.

use crate::graph::Tensor;
use crate::linalg::{invalid, matrix_dims};
use crate::types::DType;

/// Householder vector of the column `x` restricted to rows `≥ j` (`j` traced): returns
/// `(μ, v, β)` with `v` zero above row `j`.
fn reflector_at(x: &Tensor, rows: &Tensor, j: &Tensor) -> (Tensor, Tensor, Tensor) {
    let below = rows.gt(j);
    let tail = below.select(x, 0.0);
    let sigma = (&tail * &tail).sum();
    let x0 = x.at(j);
    let mu = (&x0 * &x0 + &sigma).sqrt();
    let v0 = x0
        .gt(0.0)
        .select(-&sigma / (&x0 + &mu).max(f64::MIN_POSITIVE), &x0 - &mu);
    let vtv = &v0 * &v0 + &sigma;
    let beta = vtv.gt(0.0).select(2.0 / vtv.max(f64::MIN_POSITIVE), 0.0);
    let v = rows.eq(j).select(&v0, &tail);
    (mu, v, beta)
}

/// The column loop (see the module docs). Returns `R` and, if asked, `[reflectors as the columns of an
/// m × k array, their β's]` (else nothing).
fn factor_loop(a: &Tensor, m: i64, k: i64, keep_reflectors: bool) -> (Tensor, Vec<Tensor>) {
    let g = a.graph().clone();
    let rows = g.iota(DType::I64, [m], 0);
    let cols = g.iota(DType::I64, [k, 1], 0);
    // Work on Aᵀ (k × m) so that a column of A is a contiguous row.
    let mut init = vec![g.scalar(DType::I64, 0.0), a.t()];
    if keep_reflectors {
        init.push(g.zeros(DType::F64, [k, m]));
        init.push(g.zeros(DType::F64, [k]));
    }
    let out = g.while_loop(
        &init,
        |st| st[0].lt(k as f64),
        |st| {
            let (j, at) = (&st[0], &st[1]);
            let x = at.at(j);
            let (mu, v, beta) = reflector_at(&x, &rows, j);
            let w = at.dot(&(&v * &beta)); // β Aᵀv: [k]
                                           // Only the columns right of j change; column j becomes (R[:j, j], μ, 0, …).
            let w = cols.gt(j).select(w.reshape([k, 1]), 0.0);
            let col = rows.lt(j).select(&x, rows.eq(j).select(&mu, 0.0));
            let at = cols.eq(j).select(col.reshape([1, m]), at - w * v.reshape([1, m]));
            let mut next = vec![j + 1.0, at];
            if keep_reflectors {
                next.push(st[2].set(j, &v));
                next.push(st[3].set(j, &beta));
            }
            next
        },
    );
    let r = out[1].slice_axis(1, 0, k).t();
    (r, out[2..].to_vec())
}

fn check(a: &Tensor) -> Result<(i64, i64), String> {
    let (m, k) = matrix_dims(a)?;
    if k == 0 || m < k {
        return Err(format!("needs an m × k matrix with m ≥ k ≥ 1, got {}", a.ty()));
    }
    Ok((m, k))
}

/// The triangular factor `R` (`k × k`, upper triangular, `diag(R) ≥ 0`) of the QR
/// factorization `A = Q R` of an `m × k` matrix with `m ≥ k`, without forming `Q`.
///
/// `RᵀR = AᵀA`; for a column of zeros (or a column in the span of the previous ones, up to
/// rounding) the diagonal entry is `0` and nothing becomes NaN. See the
/// [module docs](self) for the algorithm and its cost.
///
/// # Errors
///
/// Records an error in the graph (returned by `Graph::finish`) when `a` is not an `f64`
/// matrix or has fewer rows than columns; the result is then a placeholder.
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let a = g.parameter("a", DType::F64, [10, 3]);
/// let r = nlsq::linalg::householder_qr_r(&a);
/// assert_eq!(r.dims(), vec![3, 3]);
/// assert!(g.finish([&r]).is_ok());
/// ```
pub fn householder_qr_r(a: &Tensor) -> Tensor {
    match check(a) {
        Err(reason) => {
            let (_, k) = super::placeholder_dims(a, 0);
            invalid(a, "householder_qr_r", reason, [k, k])
        }
        Ok((m, k)) => factor_loop(a, m, k, false).0,
    }
}

/// Rows per block that keep one `rows × k` f64 block within about 128 KiB (a core's L2 on
/// small machines), as a power of two between 256 and 4,096: 4,096 rows for `k = 4`.
pub fn cache_block_rows(k: usize) -> usize {
    let target = (16_384 / k.max(1)).clamp(256, 4_096);
    1 << target.ilog2()
}

/// [`householder_qr_r`] computed block by block (TSQR): the `R` of each `block`-row slice of `A`
/// stacked under the running `R`. Same `R` up to rounding (`diag(R) ≥ 0` makes it unique for a
/// full-rank `A`), but each reflection sweeps a block that stays in cache instead of the whole
/// matrix (faster for tall matrices: `docs/kernels.md`).
/// Falls back to [`householder_qr_r`] when `block` does not divide `m`, or `m <= block`.
///
/// # Errors
///
/// As [`householder_qr_r`].
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let a = g.parameter("a", DType::F64, [1024, 3]);
/// let r = nlsq::linalg::householder_qr_r_blocked(&a, 256);
/// assert_eq!(r.dims(), vec![3, 3]);
/// ```
pub fn householder_qr_r_blocked(a: &Tensor, block: usize) -> Tensor {
    let (m, k) = match check(a) {
        Ok(mk) => mk,
        Err(_) => return householder_qr_r(a),
    };
    let b = block as i64;
    if block == 0 || m <= b || m % b != 0 || b < k {
        return householder_qr_r(a);
    }
    let g = a.graph().clone();
    let out = g.while_loop(
        &[g.scalar(DType::I64, 0.0), g.zeros(DType::F64, [k, k])],
        |st| st[0].lt((m / b) as f64),
        |st| {
            let start = &st[0] * b as f64;
            let rows = a.dynamic_slice(&[start, g.scalar(DType::I64, 0.0)], &[b, k]);
            let stacked = g.concat(&[st[1].clone(), rows], 0);
            vec![&st[0] + 1.0, householder_qr_r(&stacked)]
        },
    );
    out[1].clone()
}

/// Thin QR factorization `A = Q R` of an `m × k` matrix, `m ≥ k`: `Q` is `m × k` with
/// orthonormal columns, `R` is `k × k` upper triangular with `diag(R) ≥ 0`.
///
/// `R` is the same tensor [`householder_qr_r`] returns. For rank-deficient `A`, `Q` still has
/// orthonormal columns (each Householder reflector is orthogonal, or the identity for a zero
/// column). Forming `Q` costs about as much again as the factorization.
///
/// # Errors
///
/// As [`householder_qr_r`]; both results are then placeholders.
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let a = g.parameter("a", DType::F64, [5, 2]);
/// let (q, r) = nlsq::linalg::householder_qr(&a);
/// assert_eq!((q.dims(), r.dims()), (vec![5, 2], vec![2, 2]));
/// ```
pub fn householder_qr(a: &Tensor) -> (Tensor, Tensor) {
    let (m, k) = match check(a) {
        Ok(mk) => mk,
        Err(reason) => {
            let (m, k) = super::placeholder_dims(a, 0);
            let q = invalid(a, "householder_qr", reason, [m, k]);
            let r = a.graph().poison(crate::graph::TensorType::new(DType::F64, [k, k]));
            return (q, r);
        }
    };
    householder_qr_loop(a, m, k)
}

/// [`householder_qr`]: factor, then accumulate `Q = H₀⋯H_{k−1}[I; 0]` backwards
/// on the whole `m × k` array (the reflector of step `j` is zero above row `j`).
fn householder_qr_loop(a: &Tensor, m: i64, k: i64) -> (Tensor, Tensor) {
    let g = a.graph().clone();
    let (r, refl) = factor_loop(a, m, k, true);
    let [vs, betas] = refl.as_slice() else {
        return (g.zeros(DType::F64, [m, k]), r);
    }; // never: requested
    let eye = g
        .iota(DType::I64, [m, k], 0)
        .eq(g.iota(DType::I64, [m, k], 1))
        .convert(DType::F64);
    let out = g.while_loop(
        &[g.scalar(DType::I64, (k - 1) as f64), eye],
        |st| st[0].ge(0.0),
        |st| {
            let (j, y) = (&st[0], &st[1]);
            let v = vs.at(j);
            let w = v.dot(y); // [k]
            let y = y - (&v * betas.at(j)).reshape([m, 1]) * w.reshape([1, k]);
            vec![j - 1.0, y]
        },
    );
    (out[1].clone(), r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;

    #[test]
    fn shapes_and_errors() {
        let g = Graph::new();
        let a = g.parameter("a", DType::F64, [6, 4]);
        let (q, r) = householder_qr(&a);
        assert_eq!(q.dims(), vec![6, 4]);
        assert_eq!(r.dims(), vec![4, 4]);
        assert!(g.finish([&q, &r]).is_ok());

        let g = Graph::new();
        let wide = g.parameter("a", DType::F64, [2, 3]);
        let r = householder_qr_r(&wide);
        assert_eq!(r.dims(), vec![3, 3]);
        let err = g.finish([&r]).unwrap_err().to_string();
        assert!(err.contains("m ≥ k"), "{err}");

        let g = Graph::new();
        let v = g.parameter("v", DType::F64, [3]);
        let err = g.try_with(|| householder_qr_r(&v)).unwrap_err().to_string();
        assert!(err.contains("rank 2"), "{err}");
    }
}
