//! Triangular solves and the Cholesky factorization, as `while` loops over rows/columns.
//!
//! **Back substitution** (G&VL Alg. 3.1.2) for `R X = B`, `R` upper triangular `n × n`, `B`
//! `n × k`: for `i = n−1, …, 0`
//!
//! ```text
//!   X[i, :] = (B[i, :] − R[i, :] X) / R[i, i]
//! ```
//!
//! where `X` starts at zero, so the rows of `X` not yet computed (`j ≤ i`) contribute nothing
//! and the product over the *whole* row is exact — the strictly lower part of `R` is never
//! used (it may hold anything finite). Forward substitution for lower-triangular `L` is the
//! mirror image. Both are backward stable; a zero diagonal entry gives `inf`/`NaN` in the
//! affected rows (no error: that is the system's answer).
//!
//! **Cholesky** (left-looking, G&VL Alg. 4.2.1): with `L` zero beyond the columns already
//! computed, column `j` is
//!
//! ```text
//!   v = A[:, j] − L L[j, :]ᵀ,   L[j:, j] = v[j:] / √v_j,   L[:j, j] = 0,
//! ```
//!
//! reading only the lower triangle of `A`. A pivot `v_j ≤ 0` means `A` is not (numerically)
//! positive definite: that column becomes NaN, and so does everything after it.
//!
//! Each loop iteration is a handful of small kernels (a dynamic row read, one
//! matrix–vector product, one dynamic update), so the cost is `O(n)` kernels, fine for the
//! `n ≤ 64` systems of the solvers, and the compile time does not grow with `n`.
//!
//! # References
//!
//! * G. H. Golub, C. F. Van Loan, *Matrix Computations*, 4th ed., 2013, §3.1.1–3.1.4, §4.2.
//! * N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM 2002,
//!   ch. 8 (triangular systems) and ch. 10 (Cholesky).

use crate::graph::Tensor;
use crate::linalg::{invalid, matrix_dims};
use crate::types::DType;

/// Validates a square `n × n` matrix and a right-hand side `[n]` or `[n, k]`; returns
/// `(n, k, b as [n, k], b was a vector)`.
fn check_system(a: &Tensor, b: &Tensor) -> Result<(i64, Tensor, bool), String> {
    let (n, n2) = matrix_dims(a)?;
    if n != n2 || n == 0 {
        return Err(format!("needs a non-empty square matrix, got {}", a.ty()));
    }
    let bt = b.ty();
    if bt.dtype != DType::F64 {
        return Err(format!("right-hand side must be f64, got {bt}"));
    }
    match bt.dims() {
        [r] if *r == n => Ok((n, b.reshape([n, 1]), true)),
        [r, _] if *r == n => Ok((n, b.clone(), false)),
        _ => Err(format!("right-hand side {bt} does not fit matrix {}", a.ty())),
    }
}

fn substitute(op: &'static str, a: &Tensor, b: &Tensor, upper: bool) -> Tensor {
    let (n, bm, vector) = match check_system(a, b) {
        Ok(x) => x,
        Err(reason) => return invalid(a, op, reason, b.dims().iter().map(|d| (*d).max(0)).collect::<Vec<_>>()),
    };
    let g = a.graph().clone();
    let k = bm.dims()[1];
    let start = if upper { n - 1 } else { 0 };
    let step = if upper { -1.0 } else { 1.0 };
    let init = [g.scalar(DType::I64, start as f64), g.zeros(DType::F64, [n, k])];
    let out = g.while_loop(
        &init,
        |st| st[0].ge(0.0).and(&st[0].lt(n as f64)),
        |st| {
            let (i, x) = (&st[0], &st[1]);
            let row = a.at(i); // [n]
            let diag = row.at(i);
            let xi = (bm.at(i) - row.dot(x)) / diag; // [k]
            vec![i + step, x.set(i, &xi)]
        },
    );
    let x = out[1].clone();
    if vector {
        x.reshape([n])
    } else {
        x
    }
}

/// Solves `R x = b` for upper-triangular `R` (`n × n`) by back substitution; `b` is `[n]`
/// (result `[n]`) or `[n, k]` (result `[n, k]`, all columns at once).
///
/// Only the upper triangle of `r` is read. A zero on the diagonal gives `inf`/`NaN` entries.
///
/// # Errors
///
/// Records an error in the graph when `r` is not a square `f64` matrix or `b` does not fit.
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let r = g.parameter("r", DType::F64, [3, 3]);
/// let b = g.parameter("b", DType::F64, [3]);
/// let x = nlsq::linalg::solve_upper_triangular(&r, &b);
/// assert_eq!(x.dims(), vec![3]);
/// ```
pub fn solve_upper_triangular(r: &Tensor, b: &Tensor) -> Tensor {
    substitute("solve_upper_triangular", r, b, true)
}

/// Solves `L x = b` for lower-triangular `L` (`n × n`) by forward substitution; `b` is `[n]`
/// or `[n, k]`. Only the lower triangle of `l` is read.
///
/// # Errors
///
/// As [`solve_upper_triangular`].
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let l = g.parameter("l", DType::F64, [3, 3]);
/// let b = g.parameter("b", DType::F64, [3, 2]);
/// assert_eq!(nlsq::linalg::solve_lower_triangular(&l, &b).dims(), vec![3, 2]);
/// ```
pub fn solve_lower_triangular(l: &Tensor, b: &Tensor) -> Tensor {
    substitute("solve_lower_triangular", l, b, false)
}

/// Lower-triangular Cholesky factor `L` of a symmetric positive definite `n × n` matrix,
/// `A = L Lᵀ`, with `diag(L) > 0` and zeros above the diagonal.
///
/// Only the lower triangle of `a` is read. If `a` is not numerically positive definite
/// (a pivot `≤ 0`), the columns from the first bad pivot on are NaN: test the result for
/// finiteness (e.g. `L[n−1, n−1]`, which is NaN exactly then) rather than expecting an
/// error.
///
/// # Errors
///
/// Records an error in the graph when `a` is not a square `f64` matrix.
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let a = g.parameter("a", DType::F64, [4, 4]);
/// assert_eq!(nlsq::linalg::cholesky(&a).dims(), vec![4, 4]);
/// ```
pub fn cholesky(a: &Tensor) -> Tensor {
    const OP: &str = "cholesky";
    let n = match matrix_dims(a) {
        Ok((n, n2)) if n == n2 && n > 0 => n,
        Ok(_) => {
            return invalid(
                a,
                OP,
                format!("needs a non-empty square matrix, got {}", a.ty()),
                a.dims(),
            )
        }
        Err(reason) => return invalid(a, OP, reason, [1, 1]),
    };
    if n <= CHOLESKY_UNROLL_MAX {
        return cholesky_unrolled(a, n);
    }
    let g = a.graph().clone();
    let rows = g.iota(DType::I64, [n], 0);
    let init = [g.scalar(DType::I64, 0.0), g.zeros(DType::F64, [n, n])];
    let out = g.while_loop(
        &init,
        |st| st[0].lt(n as f64),
        |st| {
            let (j, l) = (&st[0], &st[1]);
            let v = a.at_axis(1, j) - l.dot(&l.at(j)); // [n]
            let pivot = v.at(j);
            let ok = pivot.gt(0.0);
            let col = &v / ok.select(pivot.sqrt(), f64::NAN);
            let col = rows.ge(j).select(&col, 0.0);
            vec![j + 1.0, l.set_axis(1, j, &col)]
        },
    );
    out[1].clone()
}

/// Largest order for which [`cholesky`] is written out entry by entry (scalar code, no loop),
/// which XLA:CPU runs far faster than the column loop for small factors (`docs/kernels.md`).
const CHOLESKY_UNROLL_MAX: i64 = 6;

/// [`cholesky`] of a small `n × n` matrix as straight-line scalar code (`L_jj = √(a_jj − Σ_p
/// L_jp²)`, `L_ij = (a_ij − Σ_p L_ip L_jp) / L_jj`). A pivot `≤ 0` gives `L_jj = NaN`, and
/// with it NaN in every later column, as the loop does.
fn cholesky_unrolled(a: &Tensor, n: i64) -> Tensor {
    let g = a.graph().clone();
    let flat = a.reshape([n * n]);
    let nu = n as usize;
    let mut l: Vec<Vec<Tensor>> = Vec::with_capacity(nu); // l[i][j], j <= i
    for i in 0..nu {
        let entry = |j: usize| flat.at((i * nu + j) as i64);
        let mut row: Vec<Tensor> = Vec::with_capacity(i + 1);
        for (j, lj) in l.iter().enumerate() {
            let acc = row.iter().zip(lj).fold(entry(j), |acc, (lip, ljp)| acc - lip * ljp);
            row.push(acc / &lj[j]);
        }
        let acc = row.iter().fold(entry(i), |acc, lip| acc - lip.square());
        row.push(acc.gt(0.0).select(acc.sqrt(), f64::NAN));
        l.push(row);
    }
    let zero = g.constant(0.0).reshape([1]);
    let entries: Vec<Tensor> = (0..nu)
        .flat_map(|i| (0..nu).map(move |j| (i, j)))
        .map(|(i, j)| if j <= i { l[i][j].reshape([1]) } else { zero.clone() })
        .collect();
    g.concat(&entries, 0).reshape([n, n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;

    #[test]
    fn shapes_and_errors() {
        let g = Graph::new();
        let r = g.parameter("r", DType::F64, [3, 3]);
        let b = g.parameter("b", DType::F64, [4]);
        let err = g.try_with(|| solve_upper_triangular(&r, &b)).unwrap_err().to_string();
        assert!(err.contains("does not fit"), "{err}");
        let x = solve_lower_triangular(&r, &g.parameter("c", DType::F64, [3, 5]));
        assert_eq!(x.dims(), vec![3, 5]);
        let l = cholesky(&r);
        assert!(g.finish([&x, &l]).is_ok());

        let g = Graph::new();
        let a = g.parameter("a", DType::F64, [2, 3]);
        let err = g.try_with(|| cholesky(&a)).unwrap_err().to_string();
        assert!(err.contains("square"), "{err}");
    }
}
