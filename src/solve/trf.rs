//! Trust Region Reflective (Branch, Coleman & Li 1999) as one traced `while` loop.
//!
//! Notation follows scipy's `_lsq/trf.py`. With Coleman–Li scaling `v` (distance to the bound
//! the anti-gradient points at; 1 for unbounded components) and variable scales `scale`, the
//! step is sought in "hat" space `x = x_k + d ∘ h`, `d = sqrt(v) ∘ scale`, where the quadratic
//! model is `½‖J_h h‖² + ½ hᵀ diag(diag_h) h + g_hᵀ h` with `J_h = J diag(d)`,
//! `g_h = d ∘ g` and `diag_h = g ∘ dv ∘ scale` (the Coleman–Li term, zero without bounds).
//! The trust-region subproblem is solved exactly from the SVD of `[R diag(d); diag(diag_h)^½]`
//! where `R` is the triangle of the QR of `J`. A step that leaves the box is replaced by the
//! best of: the step truncated strictly inside (`theta`), its reflection off the bound, and the
//! scaled anti-gradient (scipy's `select_step`). The outer loop accepts points; the inner loop
//! shrinks the radius until the cost decreases, as in scipy.
//!
//! The same code solves one problem or a batch in lockstep (see `lanes`).
//!
//! # References
//! - M. A. Branch, T. F. Coleman, Y. Li, SIAM J. Sci. Comput. 21 (1999) 1–23.
//! - scipy/optimize/_lsq/trf.py (algorithm description in its module docstring).

use super::common::*;
use super::covariance::{covariance, unit_column_scale};
use super::lanes::{as_row, loop_state, mtv, mv, per_lane, pick, Lanes, LoopState};
use super::loss;
use super::outer::{outer_loop, Outer, Record};
use super::termination::{NONFINITE_START, RUNNING, TINY_JACOBIAN_START};
use super::{carried, evaluate, Carried, Config, Inputs, Outputs, Problem, TrialFactors};
use crate::graph::Tensor;
use crate::types::DType;

const TINY: f64 = f64::MIN_POSITIVE;

loop_state! {
    /// TRF's own state in the outer loop (one pass per Jacobian).
    struct Own {
        cost: Tensor,
        scale: Tensor,
        scale_inv: Tensor,
        delta: Tensor,
        alpha: Tensor,
        /// x changed since the last Jacobian.
        changed: Tensor,
    }
}

loop_state! {
    /// State of the inner loop (trial steps from one point).
    struct Trial {
        delta: Tensor,
        alpha: Tensor,
        nfev: Tensor,
        /// The loop runs only while RUNNING.
        status: Tensor,
        /// Actual reduction of the last trial (≤ 0: not accepted).
        actual: Tensor,
        x_new: Tensor,
        cost_new: Tensor,
        /// The factorization at `x_new`, when trials are factored.
        carried: Option<Carried>,
    }
}

/// Builds the TRF solve.
///
/// The program evaluates the Jacobian in exactly one place: at the top of the outer loop body,
/// at the current point (the start, then each accepted point). A loop iteration that finds the
/// solve already terminated only records that evaluation (the final `J`, gradient and the SVD
/// of `R` for the covariance) and ends the loop. Keeping one copy of the model, the QR and the
/// SVD in the program halves its size, and with it compile and load time.
///
/// A chunked problem with `factor_trials` factors `[J | f]` at every trial point instead (one
/// pass over the data per trial, as in `lm::solve`) and carries the factorization of the
/// accepted point into the next iteration; the counts are those of the unchunked solve.
pub(crate) fn solve(pb: &Problem<'_>, inp: &Inputs, cfg: &Config) -> Outputs {
    let lanes = &pb.lanes;
    let g = lanes.graph().clone();
    let n = pb.n;
    let loss = cfg.loss;
    let (lb, ub) = (&inp.lb, &inp.ub);
    let trials = TrialFactors::new(pb);
    let own = Own {
        cost: lanes.scalar(0.0),
        scale: lanes.zeros(&[n]),
        scale_inv: lanes.zeros(&[n]),
        delta: lanes.scalar(1.0),
        alpha: lanes.scalar(0.0),
        changed: lanes.flag(true),
    };

    // `ev` is the one evaluation of residuals and Jacobian, at the current point (carried over
    // from the accepted trial when trials are factored).
    let out = outer_loop(pb, inp, cfg, &trials, loss, own, |st, ev, eval_only| {
        let (x, first, changed) = (&st.x, &st.rec.first, &st.own.changed);
        let (r, qtf, cost_here) = (&ev.r, &ev.qtf, &ev.cost);
        let grad = mtv(r, qtf);
        let rec = st.rec.opened(lanes, ev, cost_here);
        let njev = &rec.njev + changed.select(1.0, 0.0).convert(DType::I64);
        let cost = first.select(cost_here, &st.own.cost);
        let (scale, scale_inv, reopen) = if cfg.jac_scale {
            let norms = column_norms(r);
            let init = norms.eq(0.0).select(1.0, &norms);
            let sinv = pick(first, &init, norms.max(&st.own.scale_inv));
            let (sinv, reopen) = reopen_stale(&sinv, &norms, &rec.status, &rec.nfev.lt(&inp.max_nfev));
            (sinv.recip(), sinv, reopen)
        } else {
            let (scale, sinv) = (lanes.shared(&inp.x_scale), lanes.shared(&inp.x_scale.recip()));
            (scale, sinv, lanes.flag(false))
        };
        let rec_status = reopen.select(lanes.int(RUNNING), &rec.status);
        let (v, dv) = cl_scaling(x, &grad, lb, ub);
        let gnorm = norm_inf(&(&grad * &v));
        let cosine = gradient_cosine(&grad, &column_norms(r), &v, &dv, &(&cost * 2.0).sqrt());
        // Distances to the bounds in units of the initial residual norm, capped at 1.
        let unit = bound_unit(&rec.initial_cost, cfg.jac_scale);
        let (v, dv) = scaled_cl(&v, &dv, &scale_inv, &unit);
        let delta_init = initial_radius(
            &norm(&(x * &scale_inv / v.sqrt())),
            &(cost_here * 2.0).sqrt(),
            cfg.jac_scale,
        );
        let delta = first.select(&delta_init, &st.own.delta);
        // Status at the top of the iteration (scipy): gtol, then max_nfev.
        // As in scipy, a small gradient overrides an ftol/xtol status of the last step.
        let status = rec_status
            .ne(NONFINITE_START as f64)
            .and(&rec_status.ne(TINY_JACOBIAN_START as f64))
            .and(&cosine.lt(&inp.gtol))
            .select(lanes.int(1), &rec_status);
        let status = status
            .eq(RUNNING as f64)
            .and(&rec.nfev.ge(&inp.max_nfev))
            .select(lanes.int(0), &status);
        let done = status.ne(RUNNING as f64);

        // Hat-space quantities; on the final pass (done) d scales R's columns to unit norm
        // and there is no Coleman–Li term, so the SVD below is that of R with unit columns,
        // for the covariance, the rank and the parameters not determined.
        let d = pick(&done, &unit_column_scale(r), &(v.sqrt() * &scale));
        let diag_h = pick(&done.not(), &(&grad * &dv * &scale), 0.0);
        let g_h = &d * &grad;
        let rd = r * as_row(&d);
        let (rs, c) = if cfg.bounded {
            let rows = rd.rank() as i64 - 2;
            let a = g.concat(&[rd.clone(), g.eye(DType::F64, n) * as_row(&diag_h.sqrt())], rows);
            let c = g.concat(&[qtf.clone(), lanes.zeros(&[n])], qtf.rank() as i64 - 1);
            lanes.factor(&a, &c)
        } else {
            (rd.clone(), qtf.clone())
        };
        let (u, s, vmat) = lanes.svd(&rs);
        let uf = mtv(&u, &c);
        let model = GaussNewton::at(&uf, &s, &vmat, &d, x, &cost, &inp.ftol, &inp.m_valid);
        // scipy steps back from the bounds by max(0.995, 1 - ‖g v‖_inf); the scale-free
        // measure of the gradient stands in for its norm, which has units.
        let theta = (-&cosine + 1.0).max(0.995);
        let quad = |sh: &Tensor| {
            let q = mv(&rd, sh);
            (dot(&q, &q) + dot(&(sh * &diag_h), sh)) * 0.5 + dot(&g_h, sh)
        };

        let inner_init = Trial {
            delta: delta.clone(),
            alpha: st.own.alpha.clone(),
            nfev: rec.nfev.clone(),
            status: status.clone(),
            actual: lanes.scalar(-1.0),
            x_new: x.clone(),
            cost_new: cost.clone(),
            carried: st.factored.as_ref().map(|f| f.at_x.clone()),
        };
        let inner = lanes.while_loop(
            inner_init,
            |it| {
                let go = it.nfev.lt(&inp.max_nfev).and(&it.status.eq(RUNNING as f64));
                // (Exactly once on the evaluate-only pass, which ends with actual = 1.)
                let go = if trials.on { go.or(eval_only) } else { go };
                it.actual.le(0.0).and(&go)
            },
            |it| {
                let delta = &it.delta;
                let (p_h, alpha_new) = solve_trust_region(&uf, &s, &vmat, delta, &it.alpha, &inp.m_valid);
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
                let x_new = if trials.on { pick(eval_only, x, &x_new) } else { x_new };
                let trial = trials.on.then(|| evaluate(pb, &x_new, loss, &inp.f_scale));
                let nfev = &it.nfev + 1.0;
                let step_h_norm = norm(&step_h);
                let (cost_new, finite) = match &trial {
                    Some(e) => (e.cost.clone(), is_finite(&e.cost)),
                    None => {
                        let f_new = (pb.fun)(&x_new);
                        let cost_new = loss::cost(loss, &f_new, &inp.f_scale);
                        let finite = lanes.all_finite(&f_new).and(&is_finite(&cost_new));
                        (cost_new, finite)
                    }
                };
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
                    &model,
                );
                let stop = term.ne(RUNNING as f64);
                let go_on = finite.and(&stop.not());
                let next = Trial {
                    delta: finite.select(stop.select(delta, &delta_new), &step_h_norm * 0.25),
                    alpha: go_on.select(&alpha_new * delta / &delta_new, &alpha_new),
                    nfev,
                    status: finite.select(&term, lanes.int(RUNNING)),
                    actual: finite.select(&actual, -1.0),
                    x_new,
                    cost_new,
                    carried: it.carried.clone(),
                };
                let Some(e) = &trial else { return next };
                // The evaluate-only pass keeps everything but the evaluation, and ends.
                let mut next = next.pick_from(eval_only, it);
                next.actual = eval_only.select(1.0, &next.actual);
                next.carried = Some(carried(e));
                next
            },
        );
        let cv = covariance(&s, &vmat, &d, &inp.m_valid);
        let accepted = inner.actual.gt(0.0);
        // An inner loop that ran out of evaluations leaves the status RUNNING: the next
        // pass reports max_nfev (after its gtol check), as scipy does.
        let x_next = pick(&accepted, &inner.x_new, x);
        let cost_next = accepted.select(&inner.cost_new, &cost);
        let carried_next = match (&inner.carried, &st.factored) {
            (Some(new), Some(old)) => Some(old.at_x.pick_from(&accepted.or(eval_only), new)),
            _ => None,
        };
        let status = done.select(&status, &inner.status);
        // The covariance from this pass's SVD: of R with unit columns on the final pass.
        let rec = rec.closed(lanes, ev, cv, done, status, &cost_next);
        let next = Outer {
            x: x_next,
            rec: Record {
                nfev: inner.nfev,
                njev,
                optimality: gnorm,
                grad,
                ..rec
            },
            factored: st.factored.clone(),
            own: Own {
                cost: cost_next,
                scale,
                scale_inv,
                delta: inner.delta,
                alpha: inner.alpha,
                changed: accepted,
            },
        };
        (next, carried_next)
    });

    let active_mask = active_constraints(&out.x, lb, ub, &inp.xtol);
    out.rec.outputs(out.x, out.own.cost, active_mask)
}

/// scipy's `select_step` for the exact trust-region solver: returns `(step, step_h,
/// predicted_reduction)`.
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
    let lanes = Lanes::of(delta);
    let quad = |sh: &Tensor| {
        let q = mv(rd, sh);
        (dot(&q, &q) + dot(&(sh * diag_h), sh)) * 0.5 + dot(g_h, sh)
    };
    // a, b (and c with s0) of the 1-D quadratic along `s` starting at `s0`.
    let quad_1d = |sv: &Tensor, s0: Option<&Tensor>| {
        let v = mv(rd, sv);
        let a = (dot(&v, &v) + dot(&(sv * diag_h), sv)) * 0.5;
        let mut b = dot(g_h, sv);
        let mut c = lanes.scalar(0.0);
        if let Some(s0) = s0 {
            let u = mv(rd, s0);
            b = b + dot(&u, &v) + dot(&(s0 * diag_h), sv);
            c = dot(&u, &u) * 0.5 + dot(g_h, s0) + dot(&(s0 * diag_h), s0) * 0.5;
        }
        (a, b, c)
    };

    let inside = in_bounds(&(x + p), lb, ub);
    let p_value_full = quad(p_h);

    let (p_stride, hits) = step_size_to_bound(x, p, lb, ub);
    let r_h = hits.ne(0.0).select(-p_h, p_h);
    let r = d * &r_h;
    let p2 = p * per_lane(&p_stride);
    let p_h2 = p_h * per_lane(&p_stride);
    let x_on_bound = x + &p2;
    let (_, to_tr) = intersect_trust_region(&p_h2, &r_h, delta);
    let (to_bound, _) = step_size_to_bound(&x_on_bound, &r, lb, ub);
    let r_stride = to_bound.min(&to_tr);
    let positive = r_stride.gt(0.0);
    let r_stride_l = positive.select((-theta + 1.0) * &p_stride / r_stride.max(TINY), 0.0);
    let r_stride_u = positive.select(r_stride.eq(&to_bound).select(theta * &to_bound, &to_tr), -1.0);
    let reflect_ok = r_stride_l.le(&r_stride_u);
    let (a, b, c) = quad_1d(&r_h, Some(&p_h2));
    let (rs, r_value) = minimize_quadratic_1d(&a, &b, &r_stride_l, &r_stride_u, &c);
    let r_h_final = &r_h * per_lane(&rs) + &p_h2;
    let r_final = &r_h_final * d;
    let r_value = reflect_ok.select(&r_value, f64::INFINITY);

    let p3 = &p2 * per_lane(theta);
    let p_h3 = &p_h2 * per_lane(theta);
    let p_value = quad(&p_h3);

    let ag_h = -g_h;
    let ag = d * &ag_h;
    let to_tr2 = delta / norm(&ag_h).max(TINY);
    let (to_bound2, _) = step_size_to_bound(x, &ag, lb, ub);
    let ag_stride = to_bound2.lt(&to_tr2).select(theta * &to_bound2, &to_tr2);
    let (a2, b2, _) = quad_1d(&ag_h, None);
    let zero = lanes.scalar(0.0);
    let (ags, ag_value) = minimize_quadratic_1d(&a2, &b2, &zero, &ag_stride, &zero);
    let ag_h = &ag_h * per_lane(&ags);
    let ag = &ag * per_lane(&ags);

    let pick_p = p_value.lt(&r_value).and(&p_value.lt(&ag_value));
    let pick_r = r_value.lt(&p_value).and(&r_value.lt(&ag_value));
    let step = pick(&pick_p, &p3, pick(&pick_r, &r_final, &ag));
    let step_h = pick(&pick_p, &p_h3, pick(&pick_r, &r_h_final, &ag_h));
    let value = pick_p.select(&p_value, pick_r.select(&r_value, &ag_value));

    (
        pick(&inside, p, &step),
        pick(&inside, p_h, &step_h),
        -inside.select(&p_value_full, &value),
    )
}
