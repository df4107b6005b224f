//! One-sided (Hestenes) Jacobi SVD with the Brent–Luk parallel ordering.
//!
//! One-sided Jacobi orthogonalises the *columns* of `G = A V` by plane rotations applied from
//! the right, accumulating them in `V`. For a pair of columns `(p, q)` with
//! `α = ‖g_p‖², β = ‖g_q‖², γ = g_pᵀg_q`, the rotation
//!
//! ```text
//!   ζ = (β − α) / (2γ),   t = sign(ζ) / (|ζ| + √(1 + ζ²)),   c = 1/√(1 + t²),   s = c t
//!   g_p ← c g_p − s g_q,   g_q ← s g_p + c g_q            (the same on the columns of V)
//! ```
//!
//! makes `g_pᵀg_q = 0` (`t` is the smaller root of `t² + 2ζt − 1 = 0`, so `|θ| ≤ π/4`). A
//! pair is rotated only when its cosine `|γ| / (‖g_p‖‖g_q‖)` exceeds `tol` (default
//! `max(m, n)·ε`). When a whole sweep rotates nothing, `G` has orthogonal columns and
//!
//! ```text
//!   A = G Vᵀ = U diag(s) Vᵀ,   s_i = ‖g_i‖,   u_i = g_i / s_i.
//! ```
//!
//! **Parallel ordering.** With `n` even, the columns sit in two rows of `h = n/2` slots,
//! `top = G[:, :h]`, `bottom = G[:, h:]`, and slot `i` of the top pairs with slot `i` of the
//! bottom: a *round* applies all `h` disjoint rotations at once as whole-matrix elementwise
//! ops on `[G; V]` (stacked, so one update serves both). Between rounds the columns move as
//! in the circle method of a round-robin tournament — the first top slot stays, the others
//! rotate one step around the circle:
//!
//! ```text
//!   top ← [t₀, b₀, t₁, …, t_{h−2}],   bottom ← [b₁, …, b_{h−1}, t_{h−1}]
//! ```
//!
//! so every pair meets exactly once in `n − 1` rounds (one sweep). The move is a fixed
//! concatenation of static slices. Odd `n` gets one zero column appended; it never rotates
//! (its `γ` is 0) and is dropped after sorting.
//!
//! All rounds run inside one `stablehlo.while`, four rounds per loop iteration (fewer loop
//! steps; a larger body to compile). Since *any* `n − 1` consecutive rounds meet every pair
//! once, the loop stops after `n − 1` consecutive rounds without a rotation, or after
//! `max_sweeps · (n − 1)` rounds. Convergence is quadratic once the columns are nearly
//! orthogonal; random matrices need 6–10 sweeps. The matrix is first divided by
//! `max |a_ij|` (so squared norms cannot overflow; `s` is multiplied back), and pairs whose
//! norm product is below `1e-135` of that stay unrotated (numerically zero columns; this keeps
//! every intermediate clear of underflow).
//!
//! Cost on XLA:CPU: about 6 kernels per round (compile and execute times: `docs/kernels.md`).
//! Finally the singular values are sorted descending by a rank computation (`n × n`
//! comparisons), applied as products with the one-hot permutation matrix (exact: one term
//! per output, the others are zeros). A gather here would be rewritten by XLA into chains of
//! selects copied into every consumer, a larger program that loads more slowly
//! (`docs/kernels.md`).
//!
//! Accuracy: `A − U S Vᵀ` and `VᵀV − I` are `O(ε · sweeps)`; singular values are accurate to
//! `O(ε)·s₀`, and Jacobi is often far more accurate for the small ones (Demmel–Veselić).
//! Any finite scale works (tested at `1e±200`).
//!
//! # References
//!
//! * M. R. Hestenes, "Inversion of matrices by biorthogonalization and related results",
//!   J. SIAM 6 (1958) 51–90.
//! * R. P. Brent, F. T. Luk, "The solution of singular-value and symmetric eigenvalue
//!   problems on multiprocessor arrays", SIAM J. Sci. Stat. Comput. 6 (1985) 69–84.
//! * J. Demmel, K. Veselić, "Jacobi's method is more accurate than QR", SIAM J. Matrix
//!   Anal. Appl. 13 (1992) 1204–1245.
//! * G. H. Golub, C. F. Van Loan, *Matrix Computations*, 4th ed., 2013, §8.6.3–8.6.4.

use crate::graph::{Graph, Tensor};
use crate::linalg::{invalid, matrix_dims, EPS};
use crate::types::DType;

/// `α·β` below which a pair counts as numerically zero (after scaling to max |a_ij| = 1).
const TINY_PAIR: f64 = 1e-270;

/// Rounds per `while`-loop iteration (fewer loop steps vs. a larger loop body to compile).
const UNROLL_ROUNDS: i64 = 1;

/// Options of [`jacobi_svd_with`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct JacobiOptions {
    /// Stop after this many sweeps even if not converged. Default `30`.
    pub max_sweeps: i64,
    /// Rotate a pair only when `|g_pᵀg_q| > tol·‖g_p‖‖g_q‖`; stop after `n − 1` consecutive
    /// rounds (a sweep's worth) with no rotation. `None` (default) means `max(m, n)·ε`.
    pub tol: Option<f64>,
}

impl Default for JacobiOptions {
    fn default() -> Self {
        JacobiOptions {
            max_sweeps: 30,
            tol: None,
        }
    }
}

impl JacobiOptions {
    /// Sets [`JacobiOptions::max_sweeps`].
    pub fn with_max_sweeps(mut self, max_sweeps: i64) -> Self {
        self.max_sweeps = max_sweeps;
        self
    }

    /// Sets [`JacobiOptions::tol`].
    pub fn with_tol(mut self, tol: f64) -> Self {
        self.tol = Some(tol);
        self
    }
}

/// The result of [`jacobi_svd_with`]: `A = U diag(s) Vᵀ` plus convergence diagnostics.
#[derive(Clone, Debug)]
pub struct JacobiSvd {
    /// `m × n`, columns `g_i / s_i`; a column whose singular value is exactly zero is zero.
    pub u: Tensor,
    /// `[n]`, non-negative, descending.
    pub s: Tensor,
    /// `n × n`, orthogonal.
    pub v: Tensor,
    /// `i64` scalar: rounds run divided by `n − 1`, rounded up (includes the final sweep
    /// that confirms convergence; `max_sweeps` or one more when the cap was hit, as a loop
    /// step runs up to four rounds).
    pub sweeps: Tensor,
    /// `f64` scalar: the largest cosine `|g_pᵀg_q|/(‖g_p‖‖g_q‖)` among the pairs rotated in
    /// the last loop step (up to four rounds): tiny (usually `0`) when converged, large when
    /// the sweep cap stopped the loop.
    pub off: Tensor,
}

/// One round: rotates the `h` slot pairs of `w = [G; V]` (G = the first `m` rows) and moves
/// the columns to the next pairing. Returns the new `w` and the round's largest squared
/// cosine among the pairs it rotated (`0`: no rotation).
///
/// Written so that no expensive intermediate (divide, square root) has several users
/// outside one kernel, which lets XLA fuse the rotation parameters into the update: with
/// `d = β − α`, `e = 2γ`, `r = √(d² + e²)`, the rotation of the module docs is
/// `t = sgn(d)·e / (|d| + r)`, so `c = D/√(D² + N²)`, `s = N/√(D² + N²)` with `N = sgn(d)·e`,
/// `D = |d| + r` (and `N = 0, D = 1` for a pair that does not rotate).
pub(crate) fn round(g: &Graph, w: &Tensor, m: i64, np: i64, tol: f64) -> (Tensor, Tensor) {
    // `w` may carry leading batch axes (`[B, m + np, np]`): each matrix rotates on its own.
    let lead = w.dims()[..w.rank() - 2].to_vec();
    let (rows, cols) = (lead.len() as i64, lead.len() as i64 + 1);
    let with = |tail: &[i64]| [lead.as_slice(), tail].concat();
    let h = np / 2;
    let top = w.slice_axis(rows, 0, m);
    let (p, q) = (top.slice_axis(cols, 0, h), top.slice_axis(cols, h, np));
    // α, β, γ for all pairs in one reduction.
    let stacked = g.concat(
        &[
            (&p * &p).reshape(with(&[m, 1, h])),
            (&q * &q).reshape(with(&[m, 1, h])),
            (&p * &q).reshape(with(&[m, 1, h])),
        ],
        cols,
    );
    let sums = stacked.reduce_sum(&[rows]); // [.., 3, h]
    let (alpha, beta, gamma) = (
        sums.index_axis(rows, 0),
        sums.index_axis(rows, 1),
        sums.index_axis(rows, 2),
    );
    let ab = &alpha * &beta;
    let g2 = gamma.square();
    // Pairs with ‖g_p‖‖g_q‖ < 1e-135 (numerically zero columns: the matrix is scaled to
    // max |a_ij| = 1) do not rotate, so that nothing below can underflow: a rotated pair has
    // e² ≥ 4 tol² · 1e-270 ≫ 1e-308.
    let rotate = g2.gt(&ab * (tol * tol)).and(&ab.gt(TINY_PAIR));
    let (d, e) = (&beta - &alpha, &gamma * 2.0);
    let num = rotate.select(d.ge(0.0).select(&e, -&e), 0.0);
    let den = rotate.select(d.abs() + (d.square() + e.square()).sqrt(), 1.0);
    let inv = (den.square() + num.square()).rsqrt();
    let (c, s) = (
        (&den * &inv).reshape(with(&[1, h])),
        (&num * &inv).reshape(with(&[1, h])),
    );
    let cos2 = rotate.select(&g2 / ab.max(f64::MIN_POSITIVE), 0.0).reduce_max(&[rows]);
    let (wp, wq) = (w.slice_axis(cols, 0, h), w.slice_axis(cols, h, np));
    let np_ = &wp * &c - &wq * &s;
    let nq_ = &wp * &s + &wq * &c;
    let next = if h == 1 {
        g.concat(&[np_, nq_], cols)
    } else {
        let mut parts = vec![np_.slice_axis(cols, 0, 1), nq_.slice_axis(cols, 0, 1)];
        if h > 2 {
            parts.push(np_.slice_axis(cols, 1, h - 1));
        }
        parts.push(nq_.slice_axis(cols, 1, h));
        parts.push(np_.slice_axis(cols, h - 1, h));
        g.concat(&parts, cols)
    };
    (next, cos2)
}

/// Singular value decomposition `A = U diag(s) Vᵀ` by one-sided Jacobi with default
/// [`JacobiOptions`]. Returns `(U, s, V)`.
///
/// `A` is `m × n` (typically square and small, e.g. the `R` of a QR factorization; any
/// `m ≥ 1`, `n ≥ 1` works, with `U` then `m × n`). `s` is `[n]`, non-negative and sorted
/// descending; `V` is `n × n` orthogonal; `U`'s columns are orthonormal for the non-zero
/// singular values, and a column of `U` whose singular value is exactly `0` is **zero**
/// (for tiny non-zero `s_i` the column has unit norm but is orthogonal to the others only to
/// about `ε·s₀/s_i`). See the [module docs](self) for the algorithm.
///
/// # Errors
///
/// Records an error in the graph when `a` is not an `f64` matrix (results are placeholders).
///
/// # Examples
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let a = g.parameter("a", DType::F64, [4, 4]);
/// let (u, s, v) = nlsq::linalg::jacobi_svd(&a);
/// assert_eq!((u.dims(), s.dims(), v.dims()), (vec![4, 4], vec![4], vec![4, 4]));
/// assert!(g.finish([&u, &s, &v]).unwrap().text.contains("stablehlo.while"));
/// ```
pub fn jacobi_svd(a: &Tensor) -> (Tensor, Tensor, Tensor) {
    let r = jacobi_svd_with(a, &JacobiOptions::default());
    (r.u, r.s, r.v)
}

/// [`jacobi_svd`] with explicit options, also returning the sweep count and the final
/// off-diagonal measure.
///
/// # Errors
///
/// As [`jacobi_svd`]; also when `max_sweeps < 1` or `tol` is negative or not finite.
pub fn jacobi_svd_with(a: &Tensor, opts: &JacobiOptions) -> JacobiSvd {
    const OP: &str = "jacobi_svd";
    let g = a.graph().clone();
    let checked = matrix_dims(a).and_then(|(m, n)| {
        if m < 1 || n < 1 {
            Err(format!("needs a non-empty matrix, got {}", a.ty()))
        } else if opts.max_sweeps < 1 {
            Err(format!("max_sweeps must be >= 1, got {}", opts.max_sweeps))
        } else if opts.tol.is_some_and(|t| !(t.is_finite() && t >= 0.0)) {
            Err(format!("tol must be finite and >= 0, got {:?}", opts.tol))
        } else {
            Ok((m, n))
        }
    });
    let (m, n) = match checked {
        Ok(mn) => mn,
        Err(reason) => {
            let (m, n) = super::placeholder_dims(a, 1);
            let u = invalid(a, OP, reason, [m, n]);
            let poison = |shape: Vec<i64>, dt| g.poison(crate::graph::TensorType::new(dt, shape));
            return JacobiSvd {
                u,
                s: poison(vec![n], DType::F64),
                v: poison(vec![n, n], DType::F64),
                sweeps: poison(vec![], DType::I64),
                off: poison(vec![], DType::F64),
            };
        }
    };
    let padded = n % 2 == 1;
    let np = n + i64::from(padded);
    let tol = opts.tol.unwrap_or(m.max(n) as f64 * EPS);
    // Scale to max |a_ij| = 1 so that squared column norms cannot overflow; s scales back.
    let amax = a.abs().reduce_max(&[0, 1]);
    let scale = amax.gt(0.0).select(&amax, 1.0);
    let a1 = a / &scale;
    let g0 = if padded {
        g.concat(&[a1, g.zeros(DType::F64, [m, 1])], 1)
    } else {
        a1
    };
    let w0 = g.concat(&[g0, g.eye(DType::F64, np)], 0); // (m + np) × np

    // Any `np − 1` consecutive rounds meet every pair once, so the loop stops after that many
    // consecutive rounds without a rotation (`quiet`), whatever round a loop step starts at.
    let rounds_per_sweep = np - 1;
    let per_iter = rounds_per_sweep.min(UNROLL_ROUNDS);
    let i64s = |v: f64| g.scalar(DType::I64, v);
    let init = [w0, i64s(0.0), i64s(0.0), g.constant(0.0)];
    let max_rounds = (opts.max_sweeps.saturating_mul(rounds_per_sweep)) as f64;
    let out = g.while_loop(
        &init,
        |st| st[1].lt(max_rounds).and(&st[2].lt(rounds_per_sweep as f64)),
        |st| {
            let (mut w, mut rounds, mut quiet) = (st[0].clone(), st[1].clone(), st[2].clone());
            let mut off = g.constant(0.0);
            for _ in 0..per_iter {
                let (next, cos2) = round(&g, &w, m, np, tol);
                w = next;
                quiet = cos2.gt(0.0).select(0.0, &quiet + 1.0);
                rounds += 1.0;
                off = off.max(&cos2);
            }
            vec![w, rounds, quiet, off]
        },
    );
    let sweeps = (&out[1] + (rounds_per_sweep - 1) as f64) / rounds_per_sweep as f64;
    let off = out[3].sqrt();
    let w = &out[0];
    let gm = w.slice_axis(0, 0, m); // m × np
    let vm = w.slice_axis(0, m, m + np); // np × np
    let s = (&gm * &gm).reduce_sum(&[0]).sqrt();
    // The padding column never rotates: it is the column whose last V entry is exactly 1.
    let key = if padded {
        vm.row(np - 1).eq(1.0).select(-1.0, &s)
    } else {
        s.clone()
    };
    let perm = descending_order(&g, &key, np);
    let gm = gm.dot(&perm).slice(&[0, 0], &[m, n]);
    let v = vm.dot(&perm).slice(&[0, 0], &[n, n]);
    let sorted = perm.t().dot(&s).slice(&[0], &[n]);
    let pos = sorted.gt(0.0);
    let u = pos
        .reshape([1, n])
        .select(&gm / pos.select(&sorted, 1.0).reshape([1, n]), 0.0);
    // The scale folded into the permutation (still exact: one term per output), so that the
    // returned values come out of one product rather than a `sorted * scale` that XLA would
    // recompute inside each of their consumers.
    let s = (perm.t() * &scale).dot(&s).slice(&[0], &[n]);
    JacobiSvd { u, s, v, sweeps, off }
}

/// The permutation that sorts `key` (`[len]`) descending, ties by position (a stable sort),
/// as an `f64` one-hot matrix `P[i, k] = 1` where element `i` goes to position `k`.
fn descending_order(g: &Graph, key: &Tensor, len: i64) -> Tensor {
    let ki = key.reshape([len, 1]);
    let kj = key.reshape([1, len]);
    let (i, j) = (g.iota(DType::I64, [len, len], 0), g.iota(DType::I64, [len, len], 1));
    // j precedes i.
    let before = kj.gt(&ki).or(&kj.eq(&ki).and(&j.lt(&i)));
    let rank = before.convert(DType::I64).reduce_sum(&[1]); // [len]: position of element i
    rank.reshape([len, 1]).eq(&j).select(1.0, 0.0) // [i, k]: 1 where rank_i == k
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slot movement of one round, on host indices: the pairs of every round of a sweep
    /// cover every unordered pair exactly once.
    #[test]
    fn round_robin_covers_all_pairs() {
        for np in [2usize, 4, 6, 8, 10, 64] {
            let h = np / 2;
            let mut slots: Vec<usize> = (0..np).collect();
            let mut seen = std::collections::HashSet::new();
            for _ in 0..np - 1 {
                for i in 0..h {
                    let (a, b) = (slots[i].min(slots[h + i]), slots[i].max(slots[h + i]));
                    assert!(seen.insert((a, b)), "pair {a},{b} twice for n = {np}");
                }
                if h > 1 {
                    let (p, q) = (&slots[..h], &slots[h..]);
                    let mut next = vec![p[0], q[0]];
                    next.extend_from_slice(&p[1..h - 1]);
                    next.extend_from_slice(&q[1..h]);
                    next.push(p[h - 1]);
                    slots = next;
                }
            }
            assert_eq!(seen.len(), np * (np - 1) / 2);
        }
    }

    #[test]
    fn shapes_odd_and_errors() {
        let g = Graph::new();
        let a = g.parameter("a", DType::F64, [5, 3]);
        let (u, s, v) = jacobi_svd(&a);
        assert_eq!((u.dims(), s.dims(), v.dims()), (vec![5, 3], vec![3], vec![3, 3]));
        assert!(g.finish([&u, &s, &v]).is_ok());

        let g = Graph::new();
        let a = g.parameter("a", DType::F64, [3]);
        let err = g.try_with(|| jacobi_svd(&a)).unwrap_err().to_string();
        assert!(err.contains("rank 2"), "{err}");

        let g = Graph::new();
        let a = g.parameter("a", DType::F64, [2, 2]);
        let err = g
            .try_with(|| jacobi_svd_with(&a, &JacobiOptions::default().with_max_sweeps(0)).s)
            .unwrap_err();
        assert!(err.to_string().contains("max_sweeps"), "{err}");
    }
}
