//! Trust Region Reflective over a batch of `B` independent problems in one traced loop.
//!
//! The same algorithm as [`super::trf`], line by line, with a leading batch axis on every
//! state variable (vectors `[B, n]`, scalars `[B]`); loops run while any problem needs them
//! and freeze the problems that are done (see [`super::lm_batch`]).

use super::common::{
    active_constraints, bound_unit, check_termination, cl_scaling, gradient_cosine, int, intersect_trust_region,
    is_finite, make_strictly_feasible, minimize_quadratic_1d, scaled_cl, update_radius,
};
use super::covariance::{covariance, unit_column_scale};
use super::lm_batch::{
    any, col, column_norms, first_col, gn_converged, gn_reduction, mtv, mv, norm, pick, qr_r, svd, BatchOutputs,
    BatchProblem,
};
use super::loss;
use super::termination::{NONFINITE_START, RUNNING};
use super::Loss;
use crate::graph::Tensor;
use crate::types::DType;

const TINY: f64 = f64::MIN_POSITIVE;

/// Inputs of a batched TRF solve: per problem `x0, lb, ub [B, n]`, `m_valid [B]`, `active
/// [B]`; shared `x_scale [n]`, tolerances, `f_scale`, `max_nfev`.
pub(crate) struct TrfInputs {
    pub x0: Tensor,
    pub lb: Tensor,
    pub ub: Tensor,
    pub x_scale: Tensor,
    pub ftol: Tensor,
    pub xtol: Tensor,
    pub gtol: Tensor,
    pub f_scale: Tensor,
    pub max_nfev: Tensor,
    pub m_valid: Tensor,
    pub active: Tensor,
}

/// Static choices.
pub(crate) struct TrfConfig {
    pub loss: Loss,
    pub jac_scale: bool,
    pub bounded: bool,
    pub history: i64,
}

fn dot(a: &Tensor, b: &Tensor) -> Tensor {
    (a * b).reduce_sum(&[1])
}

/// Per-problem cost `0.5 Σ rho(f²)` of `f [B, m]`.
fn cost_of(l: Loss, f: &Tensor, f_scale: &Tensor) -> Tensor {
    match l {
        Loss::Linear => f.square().reduce_sum(&[1]) * 0.5,
        _ => loss::rho(l, f, f_scale).rho0.reduce_sum(&[1]) * 0.5,
    }
}

/// `loss::scale_for_loss` for `f [B, m]` and `Jᵀ [B, n, m]`.
fn scale_for_loss(l: Loss, f: &Tensor, jt: &Tensor, f_scale: &Tensor) -> (Tensor, Tensor, Tensor) {
    if l == Loss::Linear {
        return (f.clone(), jt.clone(), f.square().reduce_sum(&[1]) * 0.5);
    }
    let (b, m) = (f.dims()[0], f.dims()[1]);
    let r = loss::rho(l, f, f_scale);
    let js = (&r.rho1 + 2.0 * &r.rho2 * f.square()).max(f64::EPSILON).sqrt();
    let fs = f * &r.rho1 / &js;
    (fs, jt * js.reshape([b, 1, m]), r.rho0.reduce_sum(&[1]) * 0.5)
}

fn in_bounds(x: &Tensor, lb: &Tensor, ub: &Tensor) -> Tensor {
    x.ge(lb).and(&x.le(ub)).select(0.0, 1.0).reduce_max(&[1]).eq(0.0)
}

fn step_size_to_bound(x: &Tensor, s: &Tensor, lb: &Tensor, ub: &Tensor) -> (Tensor, Tensor) {
    let nonzero = s.ne(0.0);
    let s_safe = nonzero.select(s, 1.0);
    let steps = nonzero.select(((lb - x) / &s_safe).max(&((ub - x) / &s_safe)), f64::INFINITY);
    let min_step = steps.reduce_min(&[1]);
    let hits = steps.eq(col(&min_step)).select(s.signum(), 0.0);
    (min_step, hits)
}

fn phi_and_derivative(alpha: &Tensor, suf: &Tensor, s: &Tensor, delta: &Tensor) -> (Tensor, Tensor) {
    let denom = s.square() + col(alpha);
    let p_norm = norm(&(suf / &denom));
    let phi = &p_norm - delta;
    let phi_prime = -(suf.square() / denom.powi(3)).reduce_sum(&[1]) / &p_norm;
    (phi, phi_prime)
}

/// `common::solve_trust_region` per problem.
fn solve_trust_region(
    uf: &Tensor,
    s: &Tensor,
    v: &Tensor,
    delta: &Tensor,
    initial_alpha: &Tensor,
    m_valid: &Tensor,
) -> (Tensor, Tensor) {
    let g = uf.graph().clone();
    let (b, n) = (s.dims()[0], s.dims()[1]);
    let suf = s * uf;
    let threshold = m_valid * f64::EPSILON * first_col(s);
    let s_last = s.slice_axis(1, n - 1, n).reshape([b]);
    let full_rank = m_valid.ge(n as f64).and(&s_last.gt(&threshold));
    let s_safe = col(&full_rank).select(s, 1.0);
    let p_gn = -(mv(v, &(uf / &s_safe)));
    let gn_ok = full_rank.and(&norm(&p_gn).le(delta));

    let alpha_upper0 = norm(&suf) / delta;
    let (phi0, dphi0) = phi_and_derivative(&g.zeros(DType::F64, [b]), &suf, &s_safe, delta);
    let alpha_lower0 = full_rank.select(-&phi0 / &dphi0, 0.0);
    let guess = |lo: &Tensor, up: &Tensor| (up * 0.001).max((lo * up).sqrt());
    let use_guess = full_rank.not().and(&initial_alpha.eq(0.0));
    let alpha0 = use_guess.select(guess(&alpha_lower0, &alpha_upper0), initial_alpha);

    let rtol = 0.01;
    let running = |st: &[Tensor]| st[4].not().and(&st[3].lt(10.0));
    let out = g.while_loop(
        &[
            alpha0,
            alpha_lower0,
            alpha_upper0,
            g.zeros(DType::I64, [b]),
            g.full(DType::Bool, [b], 0.0),
        ],
        |st| any(&running(st)),
        |st| {
            let active = running(st);
            let (alpha, lower, upper, it) = (&st[0], &st[1], &st[2], &st[3]);
            let out_of_range = alpha.lt(lower).or(&alpha.gt(upper));
            let alpha = out_of_range.select(guess(lower, upper), alpha);
            let (phi, dphi) = phi_and_derivative(&alpha, &suf, s, delta);
            let upper = phi.lt(0.0).select(&alpha, upper);
            let ratio = &phi / &dphi;
            let lower = lower.max(&(&alpha - &ratio));
            let alpha_next = &alpha - (&phi + delta) * &ratio / delta;
            let done = phi.abs().lt(&(delta * rtol));
            let new = [alpha_next, lower, upper, it + 1.0, done];
            new.iter().zip(st).map(|(n, o)| active.select(n, o)).collect()
        },
    );
    let alpha = out[0].clone();
    let p = -(mv(v, &(&suf / (s.square() + col(&alpha)))));
    let pn = norm(&p);
    let p = col(&pn.gt(0.0)).select(&p * col(&(delta / pn.max(TINY))), &p);
    (pick(&gn_ok, &p_gn, &p), gn_ok.select(0.0, &alpha))
}

/// `trf::select_step` per problem.
#[allow(clippy::too_many_arguments)]
fn select_step(
    x: &Tensor,
    rd: &Tensor,
    diag_h: &Tensor,
    g_h: &Tensor,
    p: &Tensor,
    p_h: &Tensor,
    d: &Tensor,
    delta: &Tensor,
    lb: &Tensor,
    ub: &Tensor,
    theta: &Tensor,
) -> (Tensor, Tensor, Tensor) {
    let g = x.graph().clone();
    let b = x.dims()[0];
    let quad = |sh: &Tensor| {
        let q = mv(rd, sh);
        (dot(&q, &q) + dot(&(sh * diag_h), sh)) * 0.5 + dot(g_h, sh)
    };
    let quad_1d = |sv: &Tensor, s0: Option<&Tensor>| {
        let v = mv(rd, sv);
        let a = (dot(&v, &v) + dot(&(sv * diag_h), sv)) * 0.5;
        let mut bb = dot(g_h, sv);
        let mut c = g.zeros(DType::F64, [b]);
        if let Some(s0) = s0 {
            let u = mv(rd, s0);
            bb = bb + dot(&u, &v) + dot(&(s0 * diag_h), sv);
            c = dot(&u, &u) * 0.5 + dot(g_h, s0) + dot(&(s0 * diag_h), s0) * 0.5;
        }
        (a, bb, c)
    };

    let inside = in_bounds(&(x + p), lb, ub);
    let p_value_full = quad(p_h);

    let (p_stride, hits) = step_size_to_bound(x, p, lb, ub);
    let r_h = hits.ne(0.0).select(-p_h, p_h);
    let r = d * &r_h;
    let p2 = p * col(&p_stride);
    let p_h2 = p_h * col(&p_stride);
    let x_on_bound = x + &p2;
    let (_, to_tr) = intersect_trust_region(&p_h2, &r_h, delta);
    let (to_bound, _) = step_size_to_bound(&x_on_bound, &r, lb, ub);
    let r_stride = to_bound.min(&to_tr);
    let positive = r_stride.gt(0.0);
    let r_stride_l = positive.select((-theta + 1.0) * &p_stride / r_stride.max(TINY), 0.0);
    let r_stride_u = positive.select(r_stride.eq(&to_bound).select(theta * &to_bound, &to_tr), -1.0);
    let reflect_ok = r_stride_l.le(&r_stride_u);
    let (a, bq, c) = quad_1d(&r_h, Some(&p_h2));
    let (rs, r_value) = minimize_quadratic_1d(&a, &bq, &r_stride_l, &r_stride_u, &c);
    let r_h_final = &r_h * col(&rs) + &p_h2;
    let r_final = &r_h_final * d;
    let r_value = reflect_ok.select(&r_value, f64::INFINITY);

    let p3 = &p2 * col(theta);
    let p_h3 = &p_h2 * col(theta);
    let p_value = quad(&p_h3);

    let ag_h = -g_h;
    let ag = d * &ag_h;
    let to_tr2 = delta / norm(&ag_h).max(TINY);
    let (to_bound2, _) = step_size_to_bound(x, &ag, lb, ub);
    let ag_stride = to_bound2.lt(&to_tr2).select(theta * &to_bound2, &to_tr2);
    let (a2, b2, _) = quad_1d(&ag_h, None);
    let zero = g.zeros(DType::F64, [b]);
    let (ags, ag_value) = minimize_quadratic_1d(&a2, &b2, &zero, &ag_stride, &zero);
    let ag_h = &ag_h * col(&ags);
    let ag = &ag * col(&ags);

    let pick_p = p_value.lt(&r_value).and(&p_value.lt(&ag_value));
    let pick_r = r_value.lt(&p_value).and(&r_value.lt(&ag_value));
    let step = pick(&pick_p, &p3, &pick(&pick_r, &r_final, &ag));
    let step_h = pick(&pick_p, &p_h3, &pick(&pick_r, &r_h_final, &ag_h));
    let value = pick_p.select(&p_value, pick_r.select(&r_value, &ag_value));

    (
        pick(&inside, p, &step),
        pick(&inside, p_h, &step_h),
        -inside.select(&p_value_full, &value),
    )
}

/// Builds the batched TRF solve.
pub(crate) fn solve(pb: &BatchProblem<'_>, inp: &TrfInputs, cfg: &TrfConfig) -> BatchOutputs {
    let g = inp.x0.graph().clone();
    let (b, m, n) = (pb.b, pb.m, pb.n);
    let loss_kind = cfg.loss;
    let (lb, ub) = (&inp.lb, &inp.ub);
    let f64z = |shape: Vec<i64>| g.zeros(DType::F64, shape);
    let i64z = || g.zeros(DType::I64, [b]);
    let bools = |v: f64| g.full(DType::Bool, [b], v);
    let const_i = |v: i64| g.full(DType::I64, [b], v as f64);
    let history_len = cfg.history;
    let hist_idx = g.iota(DType::I64, [history_len], 0);
    let set_hist = |h: &Tensor, idx: &Tensor, value: &Tensor| {
        let idx = idx.min(g.scalar(DType::I64, (history_len - 1) as f64));
        hist_idx.eq(col(&idx)).select(col(value), h)
    };
    let init = vec![
        inp.x0.clone(),                                 // 0 x
        f64z(vec![b, m]),                               // 1 f at x (unscaled)
        f64z(vec![b]),                                  // 2 (unused: J is not kept)
        f64z(vec![b]),                                  // 3 cost at x
        f64z(vec![b, n]),                               // 4 gradient
        f64z(vec![b, n]),                               // 5 scale
        f64z(vec![b, n]),                               // 6 scale_inv
        g.full(DType::F64, [b], 1.0),                   // 7 Delta
        f64z(vec![b]),                                  // 8 alpha
        i64z(),                                         // 9 nfev
        i64z(),                                         // 10 njev
        i64z(),                                         // 11 nit
        const_i(RUNNING),                               // 12 status
        g.full(DType::F64, [b, history_len], f64::NAN), // 13 history
        f64z(vec![b]),                                  // 14 optimality
        inp.active.not(),                               // 15 done (unused slots: from the start)
        bools(1.0),                                     // 16 first iteration
        bools(1.0),                                     // 17 x changed since the last J
        f64z(vec![b]),                                  // 18 initial cost
        f64z(vec![b, n, n]),                            // 19 covariance
        i64z(),                                         // 20 rank
        f64z(vec![b, n]),                               // 21 null-space weights
    ];

    let out = g.while_loop(
        &init,
        |st| any(&st[15].not()),
        |st| {
            let (x, first, changed) = (&st[0], &st[16], &st[17]);
            let (f, jt) = (pb.fun_jac)(x);
            let (fs, jts, cost_here) = scale_for_loss(loss_kind, &f, &jt, &inp.f_scale);
            let r_aug = qr_r(&g.concat(&[jts, fs.reshape([b, 1, m])], 1));
            let r = r_aug.slice(&[0, 0, 0], &[b, n, n]);
            let qtf = r_aug.slice(&[0, 0, n], &[b, n, n + 1]).reshape([b, n]);
            let finite = is_finite(&f.square().reduce_sum(&[1]))
                .and(&is_finite(&r.square().reduce_sum(&[1, 2])))
                .and(&is_finite(&cost_here));
            let grad = mtv(&r, &qtf);
            let nfev = first.select(const_i(1), &st[9]);
            let njev = &st[10] + changed.select(1.0, 0.0).convert(DType::I64);
            let cost = first.select(&cost_here, &st[3]);
            let (scale, scale_inv) = if cfg.jac_scale {
                let norms = column_norms(&r);
                let init = norms.eq(0.0).select(1.0, &norms);
                let sinv = pick(first, &init, &norms.max(&st[6]));
                (sinv.recip(), sinv)
            } else {
                (
                    inp.x_scale.broadcast_to([b, n]),
                    inp.x_scale.recip().broadcast_to([b, n]),
                )
            };
            let (v, dv) = cl_scaling(x, &grad, lb, ub);
            let gnorm = (&grad * &v).abs().reduce_max(&[1]);
            let cosine = gradient_cosine(&grad, &column_norms(&r), &v, &dv, &(&cost * 2.0).sqrt());
            // As in `trf::solve`: distances to the bounds in units of the initial residual norm.
            let unit = bound_unit(&first.select(&cost_here, &st[18]), cfg.jac_scale);
            let (v, dv) = scaled_cl(&v, &dv, &scale_inv, &unit);
            let delta_init = norm(&(x * &scale_inv / v.sqrt()));
            let delta_init = delta_init
                .eq(0.0)
                .or(&is_finite(&delta_init).not())
                .select(1.0, &delta_init);
            let delta = first.select(&delta_init, &st[7]);
            let initial_cost = first.select(&cost_here, &st[18]);
            let history = pick(first, &set_hist(&st[13], &i64z(), &cost_here), &st[13]);
            let status = first.and(&finite.not()).select(const_i(NONFINITE_START), &st[12]);
            let status = status
                .ne(NONFINITE_START as f64)
                .and(&cosine.lt(&inp.gtol))
                .select(const_i(1), &status);
            let status = status
                .eq(RUNNING as f64)
                .and(&nfev.ge(&inp.max_nfev))
                .select(const_i(0), &status);
            let done = status.ne(RUNNING as f64);

            // On the final pass d gives R unit columns (see `trf::solve`).
            let d = col(&done).select(unit_column_scale(&r), v.sqrt() * &scale);
            let diag_h = col(&done).select(0.0, &grad * &dv * &scale);
            let g_h = &d * &grad;
            let rd = &r * d.reshape([b, 1, n]);
            let (rs, c) = if cfg.bounded {
                // QR of [[R d, Qᵀf], [diag(√diag_h), 0]], given transposed.
                let top = g.concat(&[rd.transpose(&[0, 2, 1]), qtf.reshape([b, 1, n])], 1);
                let dh = g.eye(DType::F64, n) * diag_h.sqrt().reshape([b, 1, n]);
                let bottom = g.concat(&[dh, f64z(vec![b, 1, n])], 1);
                let r_aug = qr_r(&g.concat(&[top, bottom], 2));
                (
                    r_aug.slice(&[0, 0, 0], &[b, n, n]),
                    r_aug.slice(&[0, 0, n], &[b, n, n + 1]).reshape([b, n]),
                )
            } else {
                (rd.clone(), qtf.clone())
            };
            let (u, s, vmat) = svd(&rs);
            let uf = mtv(&u, &c);
            let model_ok = gn_reduction(&uf, &s, &inp.m_valid)
                .le(&(&inp.ftol * &cost))
                .and(&gn_converged(&uf, &s, &vmat, &d, x, &inp.ftol, &inp.m_valid));
            // scipy steps back from the bounds by max(0.995, 1 - ‖g v‖_inf); the scale-free
            // measure of the gradient stands in for its norm, which has units.
            let theta = (-&cosine + 1.0).max(0.995);
            let quad = |sh: &Tensor| {
                let q = mv(&rd, sh);
                (dot(&q, &q) + dot(&(sh * &diag_h), sh)) * 0.5 + dot(&g_h, sh)
            };

            let inner_init = vec![
                delta.clone(),
                st[8].clone(),
                nfev.clone(),
                status.clone(),
                g.full(DType::F64, [b], -1.0),
                x.clone(),
                cost.clone(),
            ];
            let inner_running = |it: &[Tensor]| {
                it[4]
                    .le(0.0)
                    .and(&it[2].lt(&inp.max_nfev))
                    .and(&it[3].eq(RUNNING as f64))
            };
            let inner = g.while_loop(
                &inner_init,
                |it| any(&inner_running(it)),
                |it| {
                    let active = inner_running(it);
                    let (delta, alpha, nfev) = (&it[0], &it[1], &it[2]);
                    let (p_h, alpha_new) = solve_trust_region(&uf, &s, &vmat, delta, alpha, &inp.m_valid);
                    let p = &d * &p_h;
                    let (step, step_h, predicted) = if cfg.bounded {
                        select_step(x, &rd, &diag_h, &g_h, &p, &p_h, &d, delta, lb, ub, &theta)
                    } else {
                        let pv = quad(&p_h);
                        (p.clone(), p_h.clone(), -pv)
                    };
                    let x_new = if cfg.bounded {
                        make_strictly_feasible(&(x + &step), lb, ub)
                    } else {
                        x + &step
                    };
                    let f_new = (pb.fun)(&x_new);
                    let nfev = nfev + 1.0;
                    let step_h_norm = norm(&step_h);
                    let cost_new = cost_of(loss_kind, &f_new, &inp.f_scale);
                    let finite = is_finite(&f_new.square().reduce_sum(&[1])).and(&is_finite(&cost_new));
                    let actual = &cost - &cost_new;
                    let bound_hit = step_h_norm.gt(&(delta * 0.95));
                    let (delta_new, ratio) = update_radius(delta, &actual, &predicted, &step_h_norm, &bound_hit);
                    let term = check_termination(
                        &actual,
                        &cost,
                        &norm(&(&step * &scale_inv)),
                        &norm(&(x * &scale_inv)),
                        &ratio,
                        &inp.ftol,
                        &inp.xtol,
                        &model_ok,
                    );
                    let stop = term.ne(RUNNING as f64);
                    let go_on = finite.and(&stop.not());
                    let new = [
                        finite.select(stop.select(delta, &delta_new), &step_h_norm * 0.25),
                        go_on.select(&alpha_new * delta / &delta_new, &alpha_new),
                        nfev,
                        finite.select(&term, int(&g, RUNNING)),
                        finite.select(&actual, -1.0),
                        x_new,
                        cost_new,
                    ];
                    new.iter().zip(it).map(|(n, o)| pick(&active, n, o)).collect()
                },
            );
            let cv = covariance(&s, &vmat, &d, &inp.m_valid);
            let accepted = inner[4].gt(0.0);
            let x_next = pick(&accepted, &inner[5], x);
            let cost_next = accepted.select(&inner[6], &cost);
            let nit = &st[11] + done.not().select(1.0, 0.0).convert(DType::I64);
            let history = pick(&done, &history, &set_hist(&history, &nit, &cost_next));
            let new = [
                x_next,
                f,
                st[2].clone(),
                cost_next,
                grad,
                scale,
                scale_inv,
                inner[0].clone(),
                inner[1].clone(),
                inner[2].clone(),
                njev,
                nit,
                done.select(&status, &inner[3]),
                history,
                gnorm,
                done,
                bools(0.0),
                accepted,
                initial_cost,
                cv.cov,
                cv.rank,
                cv.null_weight,
            ];
            let was = &st[15];
            new.iter().zip(st).map(|(n, o)| pick(was, o, n)).collect()
        },
    );

    let x = out[0].clone();
    let list = vec![
        x.clone(),
        out[3].clone(),
        out[4].clone(),
        out[14].clone(),
        active_constraints(&x, lb, ub, &inp.xtol),
        out[9].clone(),
        out[10].clone(),
        out[11].clone(),
        out[12].clone(),
        out[13].clone(),
        out[18].clone(),
        out[19].clone(),
        out[20].clone(),
        out[21].clone(),
        out[1].clone(),
    ];
    BatchOutputs { list }
}
