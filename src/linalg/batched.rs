//! Batched factorizations: the Householder QR triangle and the one-sided Jacobi SVD of `B`
//! small matrices at once, each with a leading batch axis (`[B, m, n]`).
//!
//! They compute what [`householder_qr_r`](super::householder_qr_r) and
//! [`jacobi_svd`](super::jacobi_svd()) compute for one matrix, with every step applied to all
//! matrices together: the QR runs the same `k` column steps for all of them (no mask needed),
//! and the Jacobi sweeps run while any matrix has not converged, freezing those that have. The
//! solvers use them for the lockstep batch program ([`qr_r`], [`svd`]), where a loop of
//! single-matrix factorizations would cost one kernel launch per matrix.
//!
//! The lane helpers (`pick`, `any`, `mv`, `mtv`) are the few operations whose batched
//! form differs from the single one; the solvers use them through `solve::lanes`.

use crate::graph::Tensor;
use crate::types::DType;

const EPS: f64 = f64::EPSILON;
const TINY: f64 = f64::MIN_POSITIVE;
/// Jacobi rounds per step of the sweep loop.
const UNROLL_ROUNDS: i64 = 1;

/// True when any lane of `mask [B]` is (a scalar).
pub(crate) fn any(mask: &Tensor) -> Tensor {
    mask.select(1.0, 0.0).reduce_max(&[0]).gt(0.0)
}

/// `[B] -> [B, 1]`.
fn col(t: &Tensor) -> Tensor {
    let b = t.dims()[0];
    t.reshape([b, 1])
}

/// `[B] -> [B, 1, 1]`.
fn col3(t: &Tensor) -> Tensor {
    let b = t.dims()[0];
    t.reshape([b, 1, 1])
}

/// Selects per lane (`mask [B]`) between tensors with a leading batch axis.
pub(crate) fn pick(mask: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Tensor {
    let r = on_true.rank().max(on_false.rank());
    let mut shape = mask.dims();
    shape.extend(std::iter::repeat(1).take(r.saturating_sub(shape.len())));
    mask.reshape(shape).select(on_true, on_false)
}

/// `a [B, r, k] · x [B, k] -> [B, r]`.
///
/// Written as a product and a reduction rather than a batched `dot_general`: XLA:CPU runs
/// tiny batched matrix products one batch element at a time, while this fuses into one loop.
pub(crate) fn mv(a: &Tensor, x: &Tensor) -> Tensor {
    let d = x.dims();
    (a * x.reshape([d[0], 1, d[1]])).reduce_sum(&[2])
}

/// `a [B, k, r]ᵀ · x [B, k] -> [B, r]`.
pub(crate) fn mtv(a: &Tensor, x: &Tensor) -> Tensor {
    let d = x.dims();
    (a * x.reshape([d[0], d[1], 1])).reduce_sum(&[1])
}

/// `R [B, k, k]` of the Householder QR of each `A [B, m, k]`, given as `Aᵀ [B, k, m]`: the reflectors of
/// `linalg::householder_qr_r` (Parlett's choice, `diag(R) >= 0`), with the `k` column steps
/// unrolled so that step `j` updates only the `k - j - 1` columns right of `j` (static
/// shapes; `k = n + 1` is small).
pub fn qr_r(a: &Tensor) -> Tensor {
    let g = a.graph().clone();
    let d = a.dims();
    let (b, k, m) = (d[0], d[1], d[2]);
    let rows = g.iota(DType::I64, [m], 0);
    // Aᵀ, one row per column of A: finished rows (columns of R) and the rows still to update.
    let mut done: Vec<Tensor> = Vec::with_capacity(k as usize);
    let mut rest = a.clone(); // [B, k - j, m]
    for j in 0..k {
        let x = rest.slice_axis(1, 0, 1).reshape([b, m]);
        let tail = rows.gt(j as f64).select(&x, 0.0);
        let sigma = (&tail * &tail).reduce_sum(&[1]);
        let x0 = x.slice_axis(1, j, j + 1).reshape([b]);
        let mu = (&x0 * &x0 + &sigma).sqrt();
        let c = rows.lt(j as f64).select(&x, rows.eq(j as f64).select(col(&mu), 0.0));
        done.push(c.reshape([b, 1, m]));
        if j + 1 == k {
            break;
        }
        let v0 = x0.gt(0.0).select(-&sigma / (&x0 + &mu).max(TINY), &x0 - &mu);
        let vtv = &v0 * &v0 + &sigma;
        let beta = vtv.gt(0.0).select(2.0 / vtv.max(TINY), 0.0);
        let v = rows.eq(j as f64).select(col(&v0), &tail);
        let right = rest.slice_axis(1, 1, k - j);
        let w = mv(&right, &(&v * col(&beta))); // [B, k - j - 1]
        rest = &right - w.reshape([b, k - j - 1, 1]) * v.reshape([b, 1, m]);
    }
    g.concat(&done, 1).slice_axis(2, 0, k).transpose(&[0, 2, 1])
}

/// SVD of each `a [B, m, n]` by one-sided Jacobi (as `linalg::jacobi_svd` with default options).
pub fn svd(a: &Tensor) -> (Tensor, Tensor, Tensor) {
    let g = a.graph().clone();
    let dims = a.dims();
    let (b, m, n) = (dims[0], dims[1], dims[2]);
    let padded = n % 2 == 1;
    let np = n + i64::from(padded);
    let tol = m.max(n) as f64 * EPS;
    let amax = a.abs().reduce_max(&[1, 2]);
    let scale = amax.gt(0.0).select(&amax, 1.0);
    let a1 = a / col3(&scale);
    let g0 = if padded {
        g.concat(&[a1, g.zeros(DType::F64, [b, m, 1])], 2)
    } else {
        a1
    };
    let eye = g.eye(DType::F64, np).broadcast_to([b, np, np]);
    let w0 = g.concat(&[g0, eye], 1);
    let rounds_per_sweep = np - 1;
    let per_iter = rounds_per_sweep.min(UNROLL_ROUNDS);
    let max_rounds = (30 * rounds_per_sweep) as f64;
    let running = |st: &[Tensor]| st[1].lt(max_rounds).and(&st[2].lt(rounds_per_sweep as f64));
    let zeros_i = g.zeros(DType::I64, [b]);
    let out = g.while_loop(
        &[w0, zeros_i.clone(), zeros_i],
        |st| any(&running(st)),
        |st| {
            let active = running(st);
            let (mut w, mut rounds, mut quiet) = (st[0].clone(), st[1].clone(), st[2].clone());
            for _ in 0..per_iter {
                let (next, cos2) = super::jacobi_svd::round(&g, &w, m, np, tol);
                w = next;
                quiet = cos2.gt(0.0).select(0.0, &quiet + 1.0);
                rounds += 1.0;
            }
            vec![
                pick(&active, &w, &st[0]),
                pick(&active, &rounds, &st[1]),
                pick(&active, &quiet, &st[2]),
            ]
        },
    );
    let w = &out[0];
    let gm = w.slice_axis(1, 0, m); // [B, m, np]
    let vm = w.slice_axis(1, m, m + np); // [B, np, np]
    let s = (&gm * &gm).reduce_sum(&[1]).sqrt(); // [B, np]
    let key = if padded {
        vm.slice_axis(1, np - 1, np).reshape([b, np]).eq(1.0).select(-1.0, &s)
    } else {
        s.clone()
    };
    // Stable descending order as a one-hot permutation P[b, i, k] = (rank of i == k).
    let ki = key.reshape([b, np, 1]);
    let kj = key.reshape([b, 1, np]);
    let (ii, jj) = (g.iota(DType::I64, [np, np], 0), g.iota(DType::I64, [np, np], 1));
    let before = kj.gt(&ki).or(&kj.eq(&ki).and(&jj.lt(&ii)));
    let rank = before.convert(DType::I64).reduce_sum(&[2]); // [B, np]
    let onehot = rank.reshape([b, np, 1]).eq(&jj); // [B, i, k]
    let s = onehot
        .select(s.reshape([b, np, 1]), 0.0)
        .reduce_sum(&[1])
        .slice_axis(1, 0, n);
    // Column k of the result is the column i with rank k: a one-hot selection and a sum
    // (exact: one term, the others zero).
    let permute = |a: &Tensor| {
        let r = a.dims()[1];
        onehot
            .reshape([b, 1, np, np])
            .select(a.reshape([b, r, np, 1]), 0.0)
            .reduce_sum(&[2])
    };
    let gm = permute(&gm).slice_axis(2, 0, n); // [B, m, n]
    let v = permute(&vm).slice(&[0, 0, 0], &[b, n, n]);
    let pos = s.gt(0.0);
    let u = pos
        .reshape([b, 1, n])
        .select(&gm / pos.select(&s, 1.0).reshape([b, 1, n]), 0.0);
    let s = s * col(&scale);
    (u, s, v)
}
