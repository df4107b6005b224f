//! Levenberg–Marquardt over a batch of `B` independent problems in one traced `while` loop.
//!
//! The same algorithm as [`super::lm`] (MINPACK `lmder` with `lmpar` from the SVD), with every
//! state variable given a leading batch axis: vectors `[B, n]`, scalars `[B]`, matrices
//! `[B, n, n]`. Each problem keeps its own radius, λ, counters and status. Every loop (outer
//! iterations, trial steps, the `lmpar` Newton iteration, Jacobi sweeps) runs while *any*
//! problem still needs it, and its body `select`s per problem so that a problem that has
//! finished that loop is frozen (its state does not change), which reproduces the arithmetic
//! of fitting each problem alone. The Householder QR runs the same fixed `k` column steps for
//! all problems and needs no mask.

use super::common::{int, is_finite};
use super::covariance::{covariance, unit_column_scale};
use super::termination::{NONFINITE_START, RUNNING};
use crate::graph::{Graph, Tensor};
use crate::types::DType;

const P1: f64 = 0.1;
const P0001: f64 = 1e-4;
const FACTOR: f64 = 1.0;
const EPS: f64 = f64::EPSILON;
const TINY: f64 = f64::MIN_POSITIVE;
const TINY_PAIR: f64 = 1e-270;
const UNROLL_ROUNDS: i64 = 1;

/// The residual function of a batch.
pub(crate) struct BatchProblem<'a> {
    /// `p [B, n] -> f [B, m]` (weighted, zero on padding rows).
    pub fun: &'a dyn Fn(&Tensor) -> Tensor,
    /// `p [B, n] -> (f [B, m], Jᵀ [B, n, m])` (the Jacobian transposed, one row per parameter).
    pub fun_jac: &'a dyn Fn(&Tensor) -> (Tensor, Tensor),
    pub b: i64,
    pub m: i64,
    pub n: i64,
}

/// Inputs of a batched solve: per problem `x0 [B, n]`, `m_valid [B]`, `active [B]` (bool:
/// false for unused slots); shared `x_scale [n]`, tolerances and `max_nfev` (scalars).
pub(crate) struct BatchInputs {
    pub x0: Tensor,
    pub x_scale: Tensor,
    pub ftol: Tensor,
    pub xtol: Tensor,
    pub gtol: Tensor,
    pub max_nfev: Tensor,
    pub m_valid: Tensor,
    pub active: Tensor,
}

/// Outputs, in `fit::output_parts` order (the residuals last).
pub(crate) struct BatchOutputs {
    pub list: Vec<Tensor>,
}

pub(super) fn any(mask: &Tensor) -> Tensor {
    mask.select(1.0, 0.0).reduce_max(&[0]).gt(0.0)
}

/// `[B] -> [B, 1]`.
pub(super) fn col(t: &Tensor) -> Tensor {
    let b = t.dims()[0];
    t.reshape([b, 1])
}

/// `[B] -> [B, 1, 1]`.
fn col3(t: &Tensor) -> Tensor {
    let b = t.dims()[0];
    t.reshape([b, 1, 1])
}

/// Selects per problem (`mask [B]`) between tensors with a leading batch axis.
pub(super) fn pick(mask: &Tensor, on_true: &Tensor, on_false: &Tensor) -> Tensor {
    let r = on_true.rank();
    let b = mask.dims()[0];
    let mut shape = vec![b];
    shape.extend(std::iter::repeat(1).take(r.saturating_sub(1)));
    mask.reshape(shape).select(on_true, on_false)
}

/// `a [B, r, k] · x [B, k] -> [B, r]`.
///
/// Written as a product and a reduction rather than a batched `dot_general`: XLA:CPU runs
/// tiny batched matrix products one batch element at a time, while this fuses into one loop.
pub(super) fn mv(a: &Tensor, x: &Tensor) -> Tensor {
    let d = x.dims();
    (a * x.reshape([d[0], 1, d[1]])).reduce_sum(&[2])
}

/// `a [B, k, r]ᵀ · x [B, k] -> [B, r]`.
pub(super) fn mtv(a: &Tensor, x: &Tensor) -> Tensor {
    let d = x.dims();
    (a * x.reshape([d[0], d[1], 1])).reduce_sum(&[1])
}

pub(super) fn norm(v: &Tensor) -> Tensor {
    v.square().reduce_sum(&[1]).sqrt()
}

pub(super) fn first_col(s: &Tensor) -> Tensor {
    let b = s.dims()[0];
    s.slice_axis(1, 0, 1).reshape([b])
}

pub(super) fn column_norms(r: &Tensor) -> Tensor {
    r.square().reduce_sum(&[1]).sqrt()
}

/// `R [B, k, k]` of the Householder QR of each `A [B, m, k]`, given as `Aᵀ [B, k, m]`: the reflectors of
/// `linalg::householder_qr_r` (Parlett's choice, `diag(R) >= 0`), with the `k` column steps
/// unrolled so that step `j` updates only the `k - j - 1` columns right of `j` (static
/// shapes; `k = n + 1` is small).
pub(crate) fn qr_r(a: &Tensor) -> Tensor {
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

/// One Jacobi round on `w [B, m + np, np]` (as `linalg::jacobi_svd`'s `round`).
fn round(g: &Graph, w: &Tensor, m: i64, np: i64, tol: f64) -> (Tensor, Tensor) {
    let b = w.dims()[0];
    let h = np / 2;
    let top = w.slice_axis(1, 0, m);
    let (p, q) = (top.slice_axis(2, 0, h), top.slice_axis(2, h, np));
    let stacked = g.concat(
        &[
            (&p * &p).reshape([b, m, 1, h]),
            (&q * &q).reshape([b, m, 1, h]),
            (&p * &q).reshape([b, m, 1, h]),
        ],
        2,
    );
    let sums = stacked.reduce_sum(&[1]); // [B, 3, h]
    let row = |i: i64| sums.slice_axis(1, i, i + 1).reshape([b, h]);
    let (alpha, beta, gamma) = (row(0), row(1), row(2));
    let ab = &alpha * &beta;
    let g2 = gamma.square();
    let rotate = g2.gt(&ab * (tol * tol)).and(&ab.gt(TINY_PAIR));
    let (d, e) = (&beta - &alpha, &gamma * 2.0);
    let num = rotate.select(d.ge(0.0).select(&e, -&e), 0.0);
    let den = rotate.select(d.abs() + (d.square() + e.square()).sqrt(), 1.0);
    let inv = (den.square() + num.square()).rsqrt();
    let (c, s) = ((&den * &inv).reshape([b, 1, h]), (&num * &inv).reshape([b, 1, h]));
    let cos2 = rotate.select(&g2 / ab.max(TINY), 0.0).reduce_max(&[1]);
    let (wp, wq) = (w.slice_axis(2, 0, h), w.slice_axis(2, h, np));
    let np_ = &wp * &c - &wq * &s;
    let nq_ = &wp * &s + &wq * &c;
    let next = if h == 1 {
        g.concat(&[np_, nq_], 2)
    } else {
        let mut parts = vec![np_.slice_axis(2, 0, 1), nq_.slice_axis(2, 0, 1)];
        if h > 2 {
            parts.push(np_.slice_axis(2, 1, h - 1));
        }
        parts.push(nq_.slice_axis(2, 1, h));
        parts.push(np_.slice_axis(2, h - 1, h));
        g.concat(&parts, 2)
    };
    (next, cos2)
}

/// SVD of each `a [B, m, n]` by one-sided Jacobi (as `linalg::jacobi_svd` with default options).
pub(crate) fn svd(a: &Tensor) -> (Tensor, Tensor, Tensor) {
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
                let (next, cos2) = round(&g, &w, m, np, tol);
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

/// `lmpar` (see `lm::lmpar`) for every problem; `delta`, `par0`, `m_valid` are `[B]`.
fn lmpar(uf: &Tensor, s: &Tensor, v: &Tensor, delta: &Tensor, par0: &Tensor, m_valid: &Tensor) -> (Tensor, Tensor) {
    let g = uf.graph().clone();
    let (b, n) = (s.dims()[0], s.dims()[1]);
    let suf = s * uf;
    let threshold = m_valid.max(n as f64) * EPS * first_col(s);
    let nonsingular = s.gt(col(&threshold));
    let full_rank = nonsingular.select(0.0, 1.0).reduce_max(&[1]).eq(0.0);
    let s_safe = nonsingular.select(s, 1.0);
    let q_gn = -(mv(v, &nonsingular.select(uf / &s_safe, 0.0)));
    let dxnorm = norm(&q_gn);
    let fp0 = &dxnorm - delta;
    let gn_ok = fp0.le(&(delta * P1));
    let phi = |par: &Tensor| {
        let denom = s.square() + col(par);
        let q = -(mv(v, &(&suf / &denom)));
        let qn = norm(&q);
        let dphi = -(suf.square() / denom.powi(3)).reduce_sum(&[1]) / qn.max(TINY);
        (q, &qn - delta, dphi)
    };
    let (_, phi_at0, dphi_at0) = phi(&g.zeros(DType::F64, [b]));
    let parl0 = full_rank.select(-&phi_at0 / dphi_at0.min(-TINY), 0.0).max(0.0);
    let gnorm = norm(&suf);
    let paru0 = &gnorm / delta;
    let paru0 = paru0.eq(0.0).select(TINY / delta.min(P1), &paru0);
    let par = par0.max(&parl0).min(&paru0);
    let par = par.eq(0.0).select(&gnorm / dxnorm.max(TINY), &par);
    let out = g.while_loop(
        &[
            par,
            parl0,
            paru0,
            g.zeros(DType::I64, [b]),
            g.full(DType::F64, [b], f64::INFINITY),
            gn_ok.clone(),
        ],
        |st| any(&st[5].not()),
        |st| {
            let (par, parl, paru, iter, prev) = (&st[0], &st[1], &st[2], &st[3], &st[4]);
            let iter = iter + 1.0;
            let par = par.eq(0.0).select((paru * 0.001).max(TINY), par);
            let (_, fp, dphi) = phi(&par);
            let done = fp
                .abs()
                .le(&(delta * P1))
                .or(&parl.eq(0.0).and(&fp.le(prev)).and(&prev.lt(0.0)))
                .or(&iter.ge(10.0));
            let parc = -((&fp + delta) / delta) * &fp / dphi.min(-TINY);
            let parl_new = fp.gt(0.0).select(parl.max(&par), parl);
            let paru_new = fp.lt(0.0).select(paru.min(&par), paru);
            let par_next = parl_new.max(&(&par + &parc));
            let new = [done.select(&par, &par_next), parl_new, paru_new, iter, fp, done];
            let was = &st[5];
            new.iter().zip(st).map(|(n, o)| was.select(o, n)).collect()
        },
    );
    let par = gn_ok.select(0.0, &out[0]);
    let (q, _, _) = phi(&par);
    (pick(&gn_ok, &q_gn, &q), par)
}

/// `gauss_newton_reduction` per problem.
pub(super) fn gn_reduction(uf: &Tensor, s: &Tensor, m_valid: &Tensor) -> Tensor {
    let n = s.dims()[1];
    let threshold = m_valid.max(n as f64) * EPS * first_col(s);
    s.gt(col(&threshold)).select(uf.square(), 0.0).reduce_sum(&[1]) * 0.5
}

/// `gauss_newton_converged` per problem.
#[allow(clippy::too_many_arguments)]
pub(super) fn gn_converged(
    uf: &Tensor,
    s: &Tensor,
    v: &Tensor,
    d: &Tensor,
    x: &Tensor,
    ftol: &Tensor,
    m_valid: &Tensor,
) -> Tensor {
    let n = s.dims()[1];
    let threshold = m_valid.max(n as f64) * EPS * first_col(s);
    let keep = s.gt(col(&threshold));
    let h = -(mv(v, &keep.select(uf / keep.select(s, 1.0), 0.0)));
    super::common::step_converged(&h, &(x / d), ftol)
}

/// Builds the batched LM solve (`jac_scale`: MINPACK's running column-norm scaling).
pub(crate) fn solve(pb: &BatchProblem<'_>, inp: &BatchInputs, jac_scale: bool, history_len: i64) -> BatchOutputs {
    let g = inp.x0.graph().clone();
    let (b, m, n) = (pb.b, pb.m, pb.n);
    let f64z = |shape: Vec<i64>| g.zeros(DType::F64, shape);
    let i64z = || g.zeros(DType::I64, [b]);
    let bools = |v: f64| g.full(DType::Bool, [b], v);
    let const_i = |v: i64| g.full(DType::I64, [b], v as f64);
    let hist_idx = g.iota(DType::I64, [history_len], 0);
    let set_hist = |h: &Tensor, idx: &Tensor, value: &Tensor| {
        let idx = idx.min(g.scalar(DType::I64, (history_len - 1) as f64));
        hist_idx.eq(col(&idx)).select(col(value), h)
    };

    let init = vec![
        inp.x0.clone(),                                 // 0 x
        f64z(vec![b, m]),                               // 1 f
        f64z(vec![b]),                                  // 2 ‖f‖
        f64z(vec![b, n]),                               // 3 D
        f64z(vec![b]),                                  // 4 Δ
        f64z(vec![b]),                                  // 5 par
        i64z(),                                         // 6 nfev
        i64z(),                                         // 7 njev
        i64z(),                                         // 8 nit
        const_i(RUNNING),                               // 9 status
        g.full(DType::F64, [b, history_len], f64::NAN), // 10 history
        f64z(vec![b]),                                  // 11 ‖D x‖
        bools(1.0),                                     // 12 no successful step yet
        f64z(vec![b]),                                  // 13 gradient max-norm
        inp.active.not(),                               // 14 done (unused slots: from the start)
        bools(1.0),                                     // 15 first pass
        f64z(vec![b]),                                  // 16 initial cost
        f64z(vec![b, n, n]),                            // 17 covariance
        i64z(),                                         // 18 rank
        f64z(vec![b, n]),                               // 19 gradient
        f64z(vec![b, n]),                               // 20 null-space weights
    ];

    let out = g.while_loop(
        &init,
        |st| any(&st[14].not()),
        |st| {
            let (x, first_pass) = (&st[0], &st[15]);
            let (f, j) = (pb.fun_jac)(x);
            let aug_t = g.concat(&[j, f.reshape([b, 1, m])], 1);
            let r_aug = qr_r(&aug_t);
            let r = r_aug.slice(&[0, 0, 0], &[b, n, n]);
            let qtf = r_aug.slice(&[0, 0, n], &[b, n, n + 1]).reshape([b, n]);
            let cost_here = f.square().reduce_sum(&[1]) * 0.5;
            let finite = is_finite(&f.square().reduce_sum(&[1]))
                .and(&is_finite(&r.square().reduce_sum(&[1, 2])))
                .and(&is_finite(&cost_here));
            let fnorm_here = (&cost_here * 2.0).sqrt();
            let nfev = first_pass.select(const_i(1), &st[6]);
            let fnorm = first_pass.select(&fnorm_here, &st[2]);
            let acnorm = column_norms(&r);
            let diag_init = if jac_scale {
                acnorm.eq(0.0).select(1.0, &acnorm)
            } else {
                inp.x_scale.recip().broadcast_to([b, n])
            };
            let diag = pick(first_pass, &diag_init, &st[3]);
            let xnorm_init = norm(&(&diag * x));
            let xnorm = first_pass.select(&xnorm_init, &st[11]);
            let delta_init = &xnorm_init * FACTOR;
            let delta_init = delta_init.eq(0.0).select(FACTOR, &delta_init);
            let delta = first_pass.select(&delta_init, &st[4]);
            let initial_cost = first_pass.select(fnorm_here.square() * 0.5, &st[16]);
            let history = pick(
                first_pass,
                &set_hist(&st[10], &i64z(), &(fnorm_here.square() * 0.5)),
                &st[10],
            );
            // MINPACK's gnorm.
            let jtf = mtv(&r, &qtf);
            let cosines = acnorm.ne(0.0).select(jtf.abs() / (col(&fnorm) * acnorm.max(TINY)), 0.0);
            let gnorm = fnorm.ne(0.0).select(cosines.reduce_max(&[1]), 0.0);
            let status = first_pass.and(&finite.not()).select(const_i(NONFINITE_START), &st[9]);
            let status = status
                .eq(RUNNING as f64)
                .and(&gnorm.le(&inp.gtol))
                .select(const_i(1), &status);
            let done = status.ne(RUNNING as f64);
            let diag = if jac_scale {
                pick(&done, &diag, &diag.max(&acnorm))
            } else {
                diag
            };
            // On the final pass the SVD is of R with unit columns (see `lm::solve`).
            let unit = unit_column_scale(&r);
            let rs = pick(&done, &(&r * unit.reshape([b, 1, n])), &(&r / diag.reshape([b, 1, n])));
            let col_scale = pick(&done, &unit, &diag.recip());
            let (u, s, vmat) = svd(&rs);
            let uf = mtv(&u, &qtf);
            let gn_rel = gn_reduction(&uf, &s, &inp.m_valid) * 2.0 / fnorm.square().max(TINY);
            let model_ok =
                gn_rel
                    .le(&inp.ftol)
                    .and(&gn_converged(&uf, &s, &vmat, &diag.recip(), x, &inp.ftol, &inp.m_valid));

            let inner_init = vec![
                delta.clone(),
                st[5].clone(),
                nfev.clone(),
                status.clone(),
                f64z(vec![b]),
                x.clone(),
                fnorm.clone(),
                xnorm.clone(),
                st[12].clone(),
                bools(0.0),
            ];
            let inner_running = |it: &[Tensor]| it[3].eq(RUNNING as f64).and(&it[9].not());
            let inner = g.while_loop(
                &inner_init,
                |it| any(&inner_running(it)),
                |it| {
                    let active = inner_running(it);
                    let (delta, par0, nfev, xnorm, first) = (&it[0], &it[1], &it[2], &it[7], &it[8]);
                    let (q, par) = lmpar(&uf, &s, &vmat, delta, par0, &inp.m_valid);
                    let p = &q / &diag;
                    let x_new = x + &p;
                    let pnorm = norm(&q);
                    let delta = first.select(delta.min(&pnorm), delta);
                    let f_new = (pb.fun)(&x_new);
                    let nfev = nfev + 1.0;
                    let fnorm1 = norm(&f_new);
                    let fnorm1 = is_finite(&fnorm1).select(&fnorm1, f64::INFINITY);
                    let actred = (&fnorm1 * P1)
                        .lt(&fnorm)
                        .select(-(&fnorm1 / &fnorm).square() + 1.0, -1.0);
                    let temp1 = norm(&mv(&r, &p)) / &fnorm;
                    let temp2 = par.sqrt() * &pnorm / &fnorm;
                    let prered = temp1.square() + temp2.square() / 0.5;
                    let dirder = -(temp1.square() + temp2.square());
                    let ratio = prered.ne(0.0).select(&actred / prered.max(TINY), 0.0);
                    let temp = actred.ge(0.0).select(0.5, &dirder * 0.5 / (&dirder + &actred * 0.5));
                    let temp = (&fnorm1 * P1).ge(&fnorm).or(&temp.lt(P1)).select(P1, &temp);
                    let shrink = ratio.le(0.25);
                    let grow = par.eq(0.0).or(&ratio.ge(0.75));
                    let delta_new = shrink.select(&temp * delta.min(&(&pnorm / P1)), grow.select(&pnorm / 0.5, &delta));
                    let par_new = shrink.select(&par / &temp, grow.select(&par * 0.5, &par));
                    let success = ratio.ge(P0001);
                    let x_acc = pick(&success, &x_new, x);
                    let fnorm_acc = success.select(&fnorm1, &fnorm);
                    let xnorm = success.select(norm(&(&diag * &x_new)), xnorm);
                    let first = success.select(bools(0.0), first);
                    let ftol_ok = actred
                        .abs()
                        .le(&inp.ftol)
                        .and(&prered.le(&inp.ftol))
                        .and(&(&ratio * 0.5).le(1.0))
                        .and(&model_ok);
                    let xtol_ok = delta_new.le(&(&inp.xtol * &xnorm));
                    let status = ftol_ok.and(&xtol_ok).select(
                        const_i(4),
                        ftol_ok.select(const_i(2), xtol_ok.select(const_i(3), const_i(RUNNING))),
                    );
                    let running = status.eq(RUNNING as f64);
                    let status = running.and(&nfev.ge(&inp.max_nfev)).select(const_i(0), &status);
                    let running = status.eq(RUNNING as f64);
                    let info6 = actred.abs().le(EPS).and(&prered.le(EPS)).and(&(&ratio * 0.5).le(1.0));
                    let status = running.and(&info6).select(const_i(2), &status);
                    let running = status.eq(RUNNING as f64);
                    let status = running.and(&delta_new.le(&(&xnorm * EPS))).select(const_i(3), &status);
                    let running = status.eq(RUNNING as f64);
                    let status = running.and(&gnorm.le(EPS)).select(const_i(1), &status);
                    let new = [
                        delta_new, par_new, nfev, status, ratio, x_acc, fnorm_acc, xnorm, first, success,
                    ];
                    new.iter().zip(it).map(|(n, o)| pick(&active, n, o)).collect()
                },
            );
            let cv = covariance(&s, &vmat, &col_scale, &inp.m_valid);
            let step = done.not().select(1.0, 0.0).convert(DType::I64);
            let njev = &st[7] + &step;
            let nit = &st[8] + &step;
            let fnorm_next = &inner[6];
            let history = pick(&done, &history, &set_hist(&history, &nit, &(fnorm_next.square() * 0.5)));
            let grad = mtv(&r, &qtf);
            let new = [
                inner[5].clone(),
                f,
                fnorm_next.clone(),
                diag,
                inner[0].clone(),
                inner[1].clone(),
                inner[2].clone(),
                njev,
                nit,
                done.select(&status, &inner[3]),
                history,
                inner[7].clone(),
                inner[8].clone(),
                grad.abs().reduce_max(&[1]),
                done,
                bools(0.0),
                initial_cost,
                cv.cov,
                cv.rank,
                grad,
                cv.null_weight,
            ];
            let was = &st[14];
            new.iter().zip(st).map(|(n, o)| pick(was, o, n)).collect()
        },
    );

    let list = vec![
        out[0].clone(),
        out[2].square() * 0.5,
        out[19].clone(),
        out[13].clone(),
        g.zeros(DType::I64, [b, n]),
        out[6].clone(),
        out[7].clone(),
        out[8].clone(),
        out[9].clone(),
        out[10].clone(),
        out[16].clone(),
        out[17].clone(),
        out[18].clone(),
        out[20].clone(),
        out[1].clone(),
    ];
    let _ = int; // (shared helper kept for symmetry with lm.rs)
    BatchOutputs { list }
}

#[cfg(test)]
mod timing {
    use super::*;

    fn time_program(g: &Graph, outs: &[Tensor], inputs: &[(Vec<f64>, Vec<i64>)]) -> f64 {
        crate::test_util::prepare(g, outs, inputs).median_ms() / 1e3
    }

    fn rnd(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    /// `cargo test --release --lib lm_batch::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn parts() {
        let (b, m, n) = (1024i64, 104i64, 3i64);
        let g = Graph::new();
        let a = g.parameter("a", DType::F64, [b, n + 1, m]);
        let r = qr_r(&a);
        println!(
            "qr [B, 4, 104]: {:.3} ms",
            1e3 * time_program(&g, &[r], &[(rnd((b * (n + 1) * m) as usize, 1), vec![b, n + 1, m])])
        );
        let g = Graph::new();
        let a = g.parameter("a", DType::F64, [b, n, n]);
        let (u, s, v) = svd(&a);
        println!(
            "svd [B, 3, 3]: {:.3} ms",
            1e3 * time_program(&g, &[s, u, v], &[(rnd((b * n * n) as usize, 2), vec![b, n, n])])
        );
        let g = Graph::new();
        let a = g.parameter("a", DType::F64, [b, n, n]);
        let uf = g.parameter("uf", DType::F64, [b, n]);
        let (u, s, v) = svd(&a);
        let _ = u;
        let delta = g.full(DType::F64, [b], 0.01);
        let par0 = g.zeros(DType::F64, [b]);
        let mv_ = g.full(DType::F64, [b], 100.0);
        let (q, par) = lmpar(&uf, &s, &v, &delta, &par0, &mv_);
        println!(
            "svd + lmpar: {:.3} ms",
            1e3 * time_program(
                &g,
                &[q, par],
                &[
                    (rnd((b * n * n) as usize, 2), vec![b, n, n]),
                    (rnd((b * n) as usize, 3), vec![b, n])
                ]
            )
        );
        let g = Graph::new();
        let x = g.parameter("x", DType::F64, [b, m]);
        let f = (x.exp() * 2.0 + 1.0).square().reduce_sum(&[1]);
        println!(
            "exp + reduce [B, 104]: {:.3} ms",
            1e3 * time_program(&g, &[f], &[(rnd((b * m) as usize, 4), vec![b, m])])
        );
    }
}
