//! The triangle `R` (and `Qᵀf`) of `[J | f]` for the solvers: from the Cholesky factor of the
//! Gram matrix `[J | f]ᵀ[J | f]` where that is accurate and cheaper (few parameters, columns
//! far from dependent), from the Householder QR otherwise.
//!
//! Accuracy: Cholesky's relative error in `R_jj²` is about `ε / (R_jj² / ‖J_j‖²)`, so the
//! triangle is taken from it only when every pivot keeps at least [`GRAM_MIN_PIVOT`] of its
//! column's squared norm (about 1e-11 relative). The kernel choices were measured on XLA:CPU
//! (`docs/kernels.md`; `cargo bench --bench linalg`).

use super::{cache_block_rows, cholesky, householder_qr_r_blocked};
use crate::graph::Tensor;
use crate::types::DType;

/// True when every element is finite (the sum of squares is finite).
fn all_finite(v: &Tensor) -> Tensor {
    v.square().sum().abs().le(f64::MAX)
}

/// `R [n, n]` and `Qᵀf [n]` of the Householder QR of `[J | f]` (`J [m, n]`, `f [m]`, `n < m`,
/// `diag(R) ≥ 0`; blocked TSQR when `J` is taller than a cache block).
pub fn augmented_qr(jac: &Tensor, f: &Tensor) -> (Tensor, Tensor) {
    let (m, n) = (jac.dims()[0], jac.dims()[1]);
    let aug = jac.graph().concat(&[jac.clone(), f.reshape([m, 1])], 1);
    let r_aug = householder_qr_r_blocked(&aug, cache_block_rows(n as usize + 1));
    (
        r_aug.slice(&[0, 0], &[n, n]),
        r_aug.slice(&[0, n], &[n, n + 1]).reshape([n]),
    )
}

/// Largest parameter count for which [`factor_residuals`] forms the Gram matrix: one reduction
/// over the rows per pair of columns of `[J | f]`, `(n + 1)(n + 2) / 2` of them: beyond 4
/// parameters they cost as much as the QR (`docs/performance.md`, "Factorizations").
pub const GRAM_MAX_PARAMS: i64 = 4;

/// Largest row count for which [`factor_residuals`] forms the Gram matrix (each of its sums
/// adds the rows one after another, so its rounding grows with the row count; the chunked
/// evaluation sums chunk by chunk instead).
pub const GRAM_MAX_ROWS: i64 = 2_048;

/// `R [n, n]` and `Qᵀf [n]` of `[J | f]` for the solvers' evaluation of an unchunked problem.
///
/// For a few parameters and rows ([`GRAM_MAX_PARAMS`], [`GRAM_MAX_ROWS`]) the triangle comes from
/// the Cholesky factor of the Gram matrix `[J | f]ᵀ[J | f]` when every column is far enough from
/// the span of the columns before it ([`GRAM_MIN_PIVOT`]), as in the chunked evaluation; otherwise,
/// and for larger problems, from the Householder QR ([`augmented_qr`]), which then runs in a loop
/// of one step (zero steps when the Gram triangle is kept): faster than the QR where it applies
/// (`docs/kernels.md`, `cargo bench --bench linalg`).
pub fn factor_residuals(jac: &Tensor, f: &Tensor) -> (Tensor, Tensor) {
    let (m, n) = (jac.dims()[0], jac.dims()[1]);
    if n > GRAM_MAX_PARAMS || m > GRAM_MAX_ROWS {
        return augmented_qr(jac, f);
    }
    let g = jac.graph().clone();
    // `[J | f]ᵀ` (k × m), computed once: see `column_gram`.
    let at = g.concat(&[jac.t(), f.reshape([1, m])], 0).barrier();
    let (r_fast, qtf_fast, fast) = gram_triangle(&column_gram(&at), n);
    let steps = fast.select(g.scalar(DType::I64, 0.0), g.scalar(DType::I64, 1.0));
    // `[J | f]ᵀ` travels through the loop state (no copy: nothing reads it after the loop), and
    // comes out of a step changed as far as XLA can tell (zeroed on a step number that never
    // comes): a factorization of loop-invariant values would be hoisted out of the loop, and
    // always run.
    let out = g.while_loop(
        &[g.scalar(DType::I64, 0.0), r_fast, qtf_fast, at],
        |st| st[0].lt(&steps),
        |st| {
            let aug = st[3].t();
            let r_aug = householder_qr_r_blocked(&aug, cache_block_rows(n as usize + 1));
            let r = r_aug.slice(&[0, 0], &[n, n]);
            let qtf = r_aug.slice(&[0, n], &[n, n + 1]).reshape([n]);
            let never = st[0].lt(0.0);
            vec![&st[0] + 1.0, r, qtf, never.select(0.0, &st[3])]
        },
    );
    (out[1].clone(), out[2].clone())
}

/// The Gram matrix `[J | f]ᵀ[J | f]` (`(n + 1) × (n + 1)`): the products of the row pairs
/// `i <= j` of `[J | f]ᵀ` (gathered into one `(k(k+1)/2) × m` array) summed along the rows, then
/// spread into the symmetric matrix. XLA:CPU runs these sums as tight loops, faster than a `dot`
/// of the transposed matrix with itself or a broadcast product reduced over the rows, and in a
/// smaller program than one sum per pair (`docs/kernels.md`). `[J | f]ᵀ` passes an optimization
/// barrier first: XLA would otherwise fuse the model's evaluation into the products and compute
/// it once per pair.
fn column_gram(at: &Tensor) -> Tensor {
    let k = at.dims()[0];
    let g = at.graph().clone();
    // The pairs i <= j in row-major order; pair (i, j) is number i·k − i(i−1)/2 + (j − i).
    let pairs: Vec<(i64, i64)> = (0..k).flat_map(|i| (i..k).map(move |j| (i, j))).collect();
    let number = |i: i64, j: i64| {
        let (i, j) = (i.min(j), i.max(j));
        (i * k - i * (i - 1) / 2 + (j - i)) as f64
    };
    let index = |v: Vec<f64>| {
        let len = v.len() as i64;
        g.constant_array_of(DType::I64, &v, [len])
    };
    let left = index(pairs.iter().map(|p| p.0 as f64).collect());
    let right = index(pairs.iter().map(|p| p.1 as f64).collect());
    let sums = (at.take(0, &left) * at.take(0, &right)).reduce_sum(&[1]);
    // Unpacked by a product with a one-hot matrix (exact) rather than a gather, which XLA
    // would turn into selects copied into every consumer of the matrix.
    let npairs = pairs.len();
    let mut spread = vec![0.0; (k * k) as usize * npairs];
    for e in 0..k * k {
        spread[e as usize * npairs + number(e / k, e % k) as usize] = 1.0;
    }
    let spread = g.constant_array_of(DType::F64, &spread, [k * k, npairs as i64]);
    spread.dot(&sums).reshape([k, k])
}

/// The Cholesky triangle `(R, Qᵀf)` of the Gram matrix `[J | f]ᵀ[J | f]` (`(n+1) × (n+1)`), and
/// whether it may stand for the QR's triangle ([`GRAM_MIN_PIVOT`], all finite).
pub fn gram_triangle(gram: &Tensor, n: i64) -> (Tensor, Tensor, Tensor) {
    let l = cholesky(gram);
    let r_fast = l.slice(&[0, 0], &[n, n]).t();
    let qtf_fast = l.slice(&[n, 0], &[n + 1, n]).reshape([n]);
    let col_sq = diagonal(gram).slice(&[0], &[n]);
    let pivot_sq = diagonal(&r_fast).square();
    let kept = pivot_sq.ge(&(&col_sq * GRAM_MIN_PIVOT)).and(&col_sq.gt(0.0));
    let fast = kept
        .select(0.0, 1.0)
        .reduce_max(&[0])
        .eq(0.0)
        .and(&all_finite(&r_fast.reshape([n * n])))
        .and(&all_finite(&qtf_fast));
    (r_fast, qtf_fast, fast)
}

/// The chunked evaluation takes the Cholesky factor of the Gram matrix of `[J | f]` as its
/// triangle only when every pivot keeps at least this fraction of its column's squared norm
/// (`R_jj² >= 1e-4 ‖J_j‖²`: each column at least 1% of its length away from the span of the
/// columns before it). Cholesky's relative error in `R_jj²` is about `ε / (R_jj² / ‖J_j‖²)`,
/// so the accepted triangles are accurate to about 1e-11 relative.
pub const GRAM_MIN_PIVOT: f64 = 1e-4;

/// Diagonal of a square matrix, as a vector.
fn diagonal(a: &Tensor) -> Tensor {
    let n = a.dims()[0];
    let g = a.graph();
    let eye = g.iota(DType::I64, [n, n], 0).eq(g.iota(DType::I64, [n, n], 1));
    eye.select(a, 0.0).reduce_sum(&[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;
    use crate::test_util::{columns, max_rel, triangle_invariants};

    /// `factor_residuals` of `[J | f]` (columns `col(j, x)`, `f = sin 3x + 0.3`, 1,000 rows) against
    /// the Householder QR: `(R, Qᵀf)` relative differences, or of `(RᵀR, Rᵀ Qᵀf)` with
    /// `invariants`.
    fn gram_vs_householder(col: impl Fn(usize, f64) -> f64, n: i64, invariants: bool) -> (f64, f64) {
        let m = 1000i64;
        let (jt, f) = columns(m, n, col);
        let g = Graph::new();
        let jt_in = g.parameter("jt", DType::F64, [n, m]);
        let f_in = g.parameter("f", DType::F64, [m]);
        let (ra, qa) = factor_residuals(&jt_in.t(), &f_in);
        let (rb, qb) = augmented_qr(&jt_in.t(), &f_in);
        let ((ra, qa), (rb, qb)) = if invariants {
            (triangle_invariants(ra, qa), triangle_invariants(rb, qb))
        } else {
            ((ra, qa), (rb, qb))
        };
        let inputs = [(jt.as_slice(), vec![n, m]), (f.as_slice(), vec![m])];
        let out = crate::test_util::prepare(&g, &[ra, qa, rb, qb], &inputs).run();
        (max_rel(&out[0], &out[2]), max_rel(&out[1], &out[3]))
    }

    #[test]
    fn unchunked_gram_triangle_matches_householder() {
        let exp_model = |j: usize, x: f64| match j {
            0 => (-1.3 * x).exp(),
            1 => -2.5 * x * (-1.3 * x).exp(),
            _ => 1.0,
        };
        let (r, qtf) = gram_vs_householder(exp_model, 3, false);
        assert!(r < 1e-13 && qtf < 1e-13, "R {r:e}, Qᵀf {qtf:e}");
        // Nearly dependent columns (cond ≈ 1e8) take the Householder QR: the same numbers.
        let close = |j: usize, x: f64| match j {
            0 => x,
            1 => x + 1e-7 * (5.0 * x).sin(),
            _ => 1.0,
        };
        assert_eq!(gram_vs_householder(close, 3, false), (0.0, 0.0));
        // A zero column (rank deficient) too, with no NaN.
        assert_eq!(
            gram_vs_householder(|j, x| if j == 1 { 0.0 } else { x.powi(j as i32) }, 3, true),
            (0.0, 0.0)
        );
        // More parameters than GRAM_MAX_PARAMS: always the Householder QR.
        assert_eq!(
            gram_vs_householder(|j, x| (x * (j + 1) as f64).cos(), 6, false),
            (0.0, 0.0)
        );
    }
}
