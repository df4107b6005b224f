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
//! # References
//! - M. A. Branch, T. F. Coleman, Y. Li, SIAM J. Sci. Comput. 21 (1999) 1–23.
//! - scipy/optimize/_lsq/trf.py (algorithm description in its module docstring).

use super::common::*;
use super::covariance::{covariance, unit_column_scale};
use super::loss;
use super::termination::{NONFINITE_START, RUNNING};
use super::{evaluate, factor, Config, Inputs, Outputs, Problem, TrialFactors};
use crate::graph::Tensor;
use crate::types::DType;

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
    let g = inp.x0.graph().clone();
    let n = pb.n;
    let loss = cfg.loss;
    let (lb, ub) = (&inp.lb, &inp.ub);
    let x0 = inp.x0.clone();
    let zeros_n = || g.zeros(DType::F64, [n]);
    let trials = TrialFactors::new(pb, 22);
    let mut init = vec![
        x0.clone(),                                  // 0 x
        g.zeros(DType::F64, [pb.jac_rows()]),        // 1 f at x (unscaled)
        g.zeros(DType::F64, [pb.jac_rows(), n]),     // 2 J at x (loss-scaled)
        g.constant(0.0),                             // 3 cost at x
        zeros_n(),                                   // 4 gradient
        zeros_n(),                                   // 5 scale
        zeros_n(),                                   // 6 scale_inv
        g.constant(1.0),                             // 7 Delta
        g.constant(0.0),                             // 8 alpha
        int(&g, 0),                                  // 9 nfev
        int(&g, 0),                                  // 10 njev
        int(&g, 0),                                  // 11 nit
        int(&g, RUNNING),                            // 12 status
        g.full(DType::F64, [cfg.history], f64::NAN), // 13 history
        g.constant(0.0),                             // 14 optimality
        g.scalar(DType::Bool, 0.0),                  // 15 done
        g.scalar(DType::Bool, 1.0),                  // 16 first iteration
        g.scalar(DType::Bool, 1.0),                  // 17 x changed since the last J
        g.constant(0.0),                             // 18 initial cost
        g.zeros(DType::F64, [n, n]),                 // 19 covariance (JᵀJ)⁺ at x
        int(&g, 0),                                  // 20 rank of J at x
        g.zeros(DType::F64, [n]),                    // 21 null-space weights at x
    ];
    init.extend(trials.init(&g, n)); // 22-26 when trials are factored

    let out = g.while_loop(
        &init,
        |st| st[15].not(),
        |st| {
            let (x, first, changed) = (&st[0], &st[16], &st[17]);
            // The one evaluation of residuals and Jacobian, at the current point (carried over
            // from the accepted trial when trials are factored).
            let (ev, eval_only) = trials.current(pb, st, x, loss, &inp.f_scale);
            let (f, js, r, qtf, cost_here, finite) = (ev.f, ev.jac, ev.r, ev.qtf, ev.cost, ev.finite);
            let grad = r.t().dot(&qtf);
            let nfev = first.select(int(&g, 1), &st[9]);
            let njev = &st[10] + changed.select(1.0, 0.0).convert(DType::I64);
            let cost = first.select(&cost_here, &st[3]);
            let (scale, scale_inv) = if cfg.jac_scale {
                let norms = column_norms(&r);
                let init = norms.eq(0.0).select(1.0, &norms);
                let sinv = first.select(&init, norms.max(&st[6]));
                (sinv.recip(), sinv)
            } else {
                (inp.x_scale.clone(), inp.x_scale.recip())
            };
            let (v, dv) = cl_scaling(x, &grad, lb, ub);
            let gnorm = norm_inf(&(&grad * &v));
            let cosine = gradient_cosine(&grad, &column_norms(&r), &v, &dv, &(&cost * 2.0).sqrt());
            // Distances to the bounds in units of the initial residual norm, capped at 1.
            let unit = bound_unit(&first.select(&cost_here, &st[18]), cfg.jac_scale);
            let (v, dv) = scaled_cl(&v, &dv, &scale_inv, &unit);
            let delta_init = norm(&(x * &scale_inv / v.sqrt()));
            let delta_init = delta_init
                .eq(0.0)
                .or(&is_finite(&delta_init).not())
                .select(1.0, &delta_init);
            let delta = first.select(&delta_init, &st[7]);
            let initial_cost = first.select(&cost_here, &st[18]);
            let history = first.select(st[13].set(0, &cost_here), &st[13]);
            // Status at the top of the iteration (scipy): gtol, then max_nfev.
            let status = first.and(&finite.not()).select(int(&g, NONFINITE_START), &st[12]);
            // As in scipy, a small gradient overrides an ftol/xtol status of the last step.
            let status = status
                .ne(NONFINITE_START as f64)
                .and(&cosine.lt(&inp.gtol))
                .select(int(&g, 1), &status);
            let status = status
                .eq(RUNNING as f64)
                .and(&nfev.ge(&inp.max_nfev))
                .select(int(&g, 0), &status);
            let done = status.ne(RUNNING as f64);

            // Hat-space quantities; on the final pass (done) d scales R's columns to unit norm
            // and there is no Coleman–Li term, so the SVD below is that of R with unit columns,
            // for the covariance, the rank and the parameters not determined.
            let d = done.select(unit_column_scale(&r), v.sqrt() * &scale);
            let diag_h = done.select(0.0, &grad * &dv * &scale);
            let g_h = &d * &grad;
            let rd = &r * &d;
            let (rs, c) = if cfg.bounded {
                let b = g.concat(&[rd.clone(), g.eye(DType::F64, n) * diag_h.sqrt()], 0);
                let cvec = g.concat(&[qtf.clone(), g.zeros(DType::F64, [n])], 0);
                factor(&b, &cvec)
            } else {
                (rd.clone(), qtf.clone())
            };
            let (u, s, vmat) = crate::linalg::jacobi_svd(&rs);
            let uf = u.t().dot(&c);
            let gn_reduction = gauss_newton_reduction(&uf, &s, &inp.m_valid);
            let model_ok = gn_reduction.le(&(&inp.ftol * &cost)).and(&gauss_newton_converged(
                &uf,
                &s,
                &vmat,
                &d,
                x,
                &inp.ftol,
                &inp.m_valid,
            ));
            // scipy steps back from the bounds by max(0.995, 1 - ‖g v‖_inf); the scale-free
            // measure of the gradient stands in for its norm, which has units.
            let theta = (-&cosine + 1.0).max(0.995);
            let quad = |sh: &Tensor| {
                let q = rd.dot(sh);
                (dot(&q, &q) + dot(&(sh * &diag_h), sh)) * 0.5 + dot(&g_h, sh)
            };

            let mut inner_init = vec![
                delta.clone(),    // 0 Delta
                st[8].clone(),    // 1 alpha
                nfev.clone(),     // 2 nfev
                status.clone(),   // 3 status (the loop runs only while RUNNING)
                g.constant(-1.0), // 4 actual reduction
                x.clone(),        // 5 x_new
                cost.clone(),     // 6 cost_new
            ];
            // 7-10 (only when trials are factored): the factorization at x_new.
            inner_init.extend(trials.carried(st).iter().cloned());
            let inner = g.while_loop(
                &inner_init,
                |it| {
                    // (Exactly once on the evaluate-only pass, which ends with it[4] = 1.)
                    it[4]
                        .le(0.0)
                        .and(&it[2].lt(&inp.max_nfev).and(&it[3].eq(RUNNING as f64)).or(&eval_only))
                },
                |it| {
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
                    let x_new = eval_only.select(x, &x_new);
                    let trial = trials.on.then(|| evaluate(pb, &x_new, loss, &inp.f_scale));
                    let nfev = nfev + 1.0;
                    let step_h_norm = norm(&step_h);
                    let (cost_new, finite) = match &trial {
                        Some(e) => (e.cost.clone(), is_finite(&e.cost)),
                        None => {
                            let f_new = (pb.fun)(&x_new);
                            let cost_new = loss::cost(loss, &f_new, &inp.f_scale);
                            let finite = all_finite(&f_new).and(&is_finite(&cost_new));
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
                        &model_ok,
                    );
                    let stop = term.ne(RUNNING as f64);
                    let go_on = finite.and(&stop.not());
                    let next = vec![
                        finite.select(stop.select(delta, &delta_new), &step_h_norm * 0.25),
                        go_on.select(&alpha_new * delta / &delta_new, &alpha_new),
                        nfev,
                        finite.select(&term, int(&g, RUNNING)),
                        finite.select(&actual, -1.0),
                        x_new,
                        cost_new,
                    ];
                    let Some(e) = &trial else { return next };
                    // The evaluate-only pass keeps everything but the evaluation, and ends.
                    let mut next: Vec<Tensor> = next
                        .iter()
                        .zip(&it[..7])
                        .map(|(new, old)| eval_only.select(old, new))
                        .collect();
                    next[4] = eval_only.select(1.0, &next[4]);
                    next.extend(super::carried(e));
                    next
                },
            );
            let cv = covariance(&s, &vmat, &d, &inp.m_valid);
            let accepted = inner[4].gt(0.0);
            let status_after = inner[3].clone();
            // An inner loop that ran out of evaluations leaves the status RUNNING: the next
            // pass reports max_nfev (after its gtol check), as scipy does.
            let x_next = accepted.select(&inner[5], x);
            let cost_next = accepted.select(&inner[6], &cost);
            let nit = &st[11] + done.not().select(1.0, 0.0).convert(DType::I64);
            let history = done.select(&history, history.set(&nit, &cost_next));
            let carried_next: Vec<Tensor> = inner[7..]
                .iter()
                .zip(trials.carried(st))
                .map(|(new, old)| accepted.or(&eval_only).select(new, old))
                .collect();
            let next = vec![
                x_next,
                f,
                js,
                cost_next,
                grad,
                scale,
                scale_inv,
                inner[0].clone(),
                inner[1].clone(),
                inner[2].clone(),
                njev,
                nit,
                done.select(&status, &status_after),
                history,
                gnorm,
                done,
                g.scalar(DType::Bool, 0.0),
                accepted,
                initial_cost,
                // The covariance from this pass's SVD: of R with unit columns on the final pass.
                cv.cov,
                cv.rank,
                cv.null_weight,
            ];
            trials.next(next, st, &carried_next, &eval_only)
        },
    );

    let x = out[0].clone();
    let cov = out[19].clone();
    let rank = out[20].clone();
    let null_weight = out[21].clone();
    Outputs {
        active_mask: active_constraints(&x, lb, ub, &inp.xtol),
        x,
        fun: out[1].clone(),
        jac: out[2].clone(),
        cost: out[3].clone(),
        grad: out[4].clone(),
        nfev: out[9].clone(),
        njev: out[10].clone(),
        nit: out[11].clone(),
        status: out[12].clone(),
        history: out[13].clone(),
        optimality: out[14].clone(),
        initial_cost: out[18].clone(),
        cov,
        rank,
        null_weight,
    }
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
    let g = x.graph().clone();
    let quad = |sh: &Tensor| {
        let q = rd.dot(sh);
        (dot(&q, &q) + dot(&(sh * diag_h), sh)) * 0.5 + dot(g_h, sh)
    };
    // a, b (and c with s0) of the 1-D quadratic along `s` starting at `s0`.
    let quad_1d = |sv: &Tensor, s0: Option<&Tensor>| {
        let v = rd.dot(sv);
        let a = (dot(&v, &v) + dot(&(sv * diag_h), sv)) * 0.5;
        let mut b = dot(g_h, sv);
        let mut c = g.constant(0.0);
        if let Some(s0) = s0 {
            let u = rd.dot(s0);
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
    let p2 = p * &p_stride;
    let p_h2 = p_h * &p_stride;
    let x_on_bound = x + &p2;
    let (_, to_tr) = intersect_trust_region(&p_h2, &r_h, delta);
    let (to_bound, _) = step_size_to_bound(&x_on_bound, &r, lb, ub);
    let r_stride = to_bound.min(&to_tr);
    let positive = r_stride.gt(0.0);
    let r_stride_l = positive.select((-theta + 1.0) * &p_stride / r_stride.max(f64::MIN_POSITIVE), 0.0);
    let r_stride_u = positive.select(r_stride.eq(&to_bound).select(theta * &to_bound, &to_tr), -1.0);
    let reflect_ok = r_stride_l.le(&r_stride_u);
    let (a, b, c) = quad_1d(&r_h, Some(&p_h2));
    let (rs, r_value) = minimize_quadratic_1d(&a, &b, &r_stride_l, &r_stride_u, &c);
    let r_h_final = &r_h * &rs + &p_h2;
    let r_final = &r_h_final * d;
    let r_value = reflect_ok.select(&r_value, f64::INFINITY);

    let p3 = &p2 * theta;
    let p_h3 = &p_h2 * theta;
    let p_value = quad(&p_h3);

    let ag_h = -g_h;
    let ag = d * &ag_h;
    let to_tr2 = delta / norm(&ag_h).max(f64::MIN_POSITIVE);
    let (to_bound2, _) = step_size_to_bound(x, &ag, lb, ub);
    let ag_stride = to_bound2.lt(&to_tr2).select(theta * &to_bound2, &to_tr2);
    let (a2, b2, _) = quad_1d(&ag_h, None);
    let zero = g.constant(0.0);
    let (ags, ag_value) = minimize_quadratic_1d(&a2, &b2, &zero, &ag_stride, &zero);
    let ag_h = &ag_h * &ags;
    let ag = &ag * &ags;

    let pick_p = p_value.lt(&r_value).and(&p_value.lt(&ag_value));
    let pick_r = r_value.lt(&p_value).and(&r_value.lt(&ag_value));
    let step = pick_p.select(&p3, pick_r.select(&r_final, &ag));
    let step_h = pick_p.select(&p_h3, pick_r.select(&r_h_final, &ag_h));
    let value = pick_p.select(&p_value, pick_r.select(&r_value, &ag_value));

    (
        inside.select(p, &step),
        inside.select(p_h, &step_h),
        -inside.select(&p_value_full, &value),
    )
}
