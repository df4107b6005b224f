//! Levenberg–Marquardt as in MINPACK's `lmder` (Moré 1978), as one traced `while` loop.
//!
//! MINPACK scales the variables by `D = diag` (the running maximum of the Jacobian's column
//! norms in its default `mode = 1`, or `1 / x_scale`), and at each point solves
//! `min ‖J p + f‖² + λ‖D p‖²` with λ (`par`) chosen so that `‖D p‖ ≈ Δ` within 10%
//! (`lmpar`). With `q = D p` this is the trust-region subproblem of `J D⁻¹`, whose SVD
//! `R D⁻¹ = U diag(s) Vᵀ` (R from the QR of J) gives `q(λ) = -V (s·uf / (s² + λ))`,
//! `uf = Uᵀ Qᵀ f`; `lmpar`'s safeguarded Newton iteration on `φ(λ) = ‖q(λ)‖ - Δ` is then
//! evaluated exactly as MINPACK does with its QR updates. The acceptance threshold
//! (`ratio >= 1e-4`), the radius and λ updates, and the convergence tests (`info` 1–8) are
//! MINPACK's, mapped to scipy's status codes (1→2, 2→3, 3→4, 4→1, 5→0, 6→2, 7→3, 8→1).
//!
//! The same code solves one problem or a batch in lockstep (see `lanes`): each problem keeps
//! its own radius, λ, counters and status, and a problem that has finished a loop is frozen.
//!
//! # References
//! - J. J. Moré, "The Levenberg–Marquardt algorithm: implementation and theory", 1978.
//! - J. J. Moré, B. S. Garbow, K. E. Hillstrom, "User Guide for MINPACK-1", ANL-80-74, 1980.

use super::common::*;
use super::covariance::{covariance, unit_column_scale};
use super::lanes::{as_row, loop_state, mtv, mv, per_lane, pick, Lanes, LoopState};
use super::outer::{outer_loop, Outer, Record};
use super::termination::RUNNING;
use super::{carried, evaluate, Carried, Config, Inputs, Loss, Outputs, Problem, TrialFactors};
use crate::graph::Tensor;
use crate::types::DType;

const P1: f64 = 0.1;
const P0001: f64 = 1e-4;
/// MINPACK's `factor`: the initial step bound is `factor * ‖D x0‖`, with a floor in the units of
/// the residuals (see `common::initial_radius`). MINPACK's default is 100; with the floor, 1
/// does better on the tests that compare the two (`tests/lm_vs_minpack.rs`, NIST StRD): with
/// 100, NIST BoxBOD from start 1 stops unconverged and Meyer from 10× its start ends at a cost
/// 8000 times the minimum's (figures in `docs/performance.md`, "Initial step bound").
const FACTOR: f64 = 1.0;
const TINY: f64 = f64::MIN_POSITIVE;

loop_state! {
    /// State of `lmpar`'s Newton iteration on the secular equation.
    struct Lmpar {
        par: Tensor,
        parl: Tensor,
        paru: Tensor,
        iter: Tensor,
        /// φ at the previous iterate.
        prev: Tensor,
        done: Tensor,
    }
}

/// `lmpar` via the SVD: returns `(q, par)` with `q = D p` the scaled step.
fn lmpar(uf: &Tensor, s: &Tensor, v: &Tensor, delta: &Tensor, par0: &Tensor, m_valid: &Tensor) -> (Tensor, Tensor) {
    let lanes = Lanes::of(delta);
    let last = s.rank() as i64 - 1;
    let suf = s * uf;
    let nonsingular = s.gt(per_lane(&rank_threshold(s, m_valid)));
    let full_rank = nonsingular.select(0.0, 1.0).reduce_max(&[last]).eq(0.0);
    let s_safe = nonsingular.select(s, 1.0);
    // Gauss–Newton step (minimum-norm over the nonsingular directions).
    let q_gn = -(mv(v, &nonsingular.select(uf / &s_safe, 0.0)));
    let dxnorm = norm(&q_gn);
    let fp0 = &dxnorm - delta;
    let gn_ok = fp0.le(&(delta * P1));

    let phi = |par: &Tensor| {
        let denom = s.square() + per_lane(par);
        let q = -(mv(v, &(&suf / &denom)));
        let qn = norm(&q);
        let dphi = -(suf.square() / denom.powi(3)).reduce_sum(&[last]) / qn.max(TINY);
        (q, &qn - delta, dphi)
    };
    let (_, phi_at0, dphi_at0) = phi(&lanes.scalar(0.0));
    let parl0 = full_rank.select(-&phi_at0 / dphi_at0.min(-TINY), 0.0).max(0.0);
    let gnorm = norm(&suf);
    let paru0 = &gnorm / delta;
    let paru0 = paru0.eq(0.0).select(TINY / delta.min(P1), &paru0);
    let par = par0.max(&parl0).min(&paru0);
    let par = par.eq(0.0).select(&gnorm / dxnorm.max(TINY), &par);

    let init = Lmpar {
        par,
        parl: parl0,
        paru: paru0,
        iter: lanes.int(0),
        prev: lanes.scalar(f64::INFINITY),
        done: gn_ok.clone(),
    };
    let out = lanes.while_loop(
        init,
        |st| st.done.not(),
        |st| {
            let iter = &st.iter + 1.0;
            let par = st.par.eq(0.0).select((&st.paru * 0.001).max(TINY), &st.par);
            let (_, fp, dphi) = phi(&par);
            let done = fp
                .abs()
                .le(&(delta * P1))
                .or(&st.parl.eq(0.0).and(&fp.le(&st.prev)).and(&st.prev.lt(0.0)))
                .or(&iter.ge(10.0));
            // Newton correction (Moré): parc = -((fp + Δ)/Δ) * fp / φ'.
            let parc = -((&fp + delta) / delta) * &fp / dphi.min(-TINY);
            let parl = fp.gt(0.0).select(st.parl.max(&par), &st.parl);
            let paru = fp.lt(0.0).select(st.paru.min(&par), &st.paru);
            let par_next = parl.max(&(&par + &parc));
            Lmpar {
                par: done.select(&par, &par_next),
                parl,
                paru,
                iter,
                prev: fp,
                done,
            }
        },
    );
    let par = gn_ok.select(0.0, &out.par);
    let (q, _, _) = phi(&par);
    (pick(&gn_ok, &q_gn, &q), par)
}

loop_state! {
    /// LM's own state in the outer loop (one pass per Jacobian).
    struct Own {
        /// ‖f‖ at x.
        fnorm: Tensor,
        /// MINPACK's `diag`, D.
        diag: Tensor,
        /// Δ.
        delta: Tensor,
        par: Tensor,
        /// ‖D x‖.
        xnorm: Tensor,
        /// No step has been accepted yet.
        no_success: Tensor,
    }
}

loop_state! {
    /// State of the inner loop (trial steps from one point).
    struct Trial {
        delta: Tensor,
        par: Tensor,
        nfev: Tensor,
        /// The loop runs only while RUNNING (once on the evaluate-only pass).
        status: Tensor,
        ratio: Tensor,
        /// The accepted point (or the current one).
        x: Tensor,
        /// ‖f‖ at that point.
        fnorm: Tensor,
        xnorm: Tensor,
        no_success: Tensor,
        success: Tensor,
        /// The factorization at the accepted (or current) point, when trials are factored.
        carried: Option<Carried>,
    }
}

/// Builds the LM solve. As in TRF, the Jacobian is evaluated in one place only, at the top
/// of the outer loop body (MINPACK's outer iteration); a final pass after termination records
/// the Jacobian at the solution and the SVD of its `R` for the covariance.
///
/// A chunked problem with `factor_trials` instead factors `[J | f]` at every trial point (its
/// Gram pass costs about two residual passes) and carries the factorization of the accepted
/// point into the next iteration: one pass over the data per trial instead of a residual pass
/// per trial and a Jacobian pass per iteration. Counts are unchanged (`njev` counts the
/// Jacobians the iterations use).
pub(crate) fn solve(pb: &Problem<'_>, inp: &Inputs, cfg: &Config) -> Outputs {
    let lanes = &pb.lanes;
    let n = pb.n;
    let eps = f64::EPSILON;

    // MINPACK's gnorm: max_j |(Jᵀf)_j| / (‖f‖ ‖J_j‖).
    let gnorm_of = |r: &Tensor, qtf: &Tensor, fnorm: &Tensor| {
        let jtf = mtv(r, qtf);
        let acnorm = column_norms(r);
        let cosines = acnorm
            .ne(0.0)
            .select(jtf.abs() / (per_lane(fnorm) * acnorm.max(TINY)), 0.0);
        fnorm
            .ne(0.0)
            .select(cosines.reduce_max(&[cosines.rank() as i64 - 1]), 0.0)
    };

    let trials = TrialFactors::new(pb);
    let own = Own {
        fnorm: lanes.scalar(0.0),
        diag: lanes.zeros(&[n]),
        delta: lanes.scalar(0.0),
        par: lanes.scalar(0.0),
        xnorm: lanes.scalar(0.0),
        no_success: lanes.flag(true),
    };

    let out = outer_loop(pb, inp, cfg, &trials, Loss::Linear, own, |st, ev, eval_only| {
        let (x, first) = (&st.x, &st.rec.first);
        let r = &ev.r;
        let fnorm_here = (&ev.cost * 2.0).sqrt();
        let rec = st.rec.opened(lanes, ev, &(fnorm_here.square() * 0.5));
        let fnorm = first.select(&fnorm_here, &st.own.fnorm);
        let acnorm = column_norms(r);
        let diag_init = if cfg.jac_scale {
            acnorm.eq(0.0).select(1.0, &acnorm)
        } else {
            lanes.shared(&inp.x_scale.recip())
        };
        let diag = pick(first, &diag_init, &st.own.diag);
        let xnorm_init = norm(&(&diag * x));
        let xnorm = first.select(&xnorm_init, &st.own.xnorm);
        let (diag, reopen) = if cfg.jac_scale {
            reopen_stale(&diag, &acnorm, &rec.status, &rec.nfev.lt(&inp.max_nfev))
        } else {
            (diag, lanes.flag(false))
        };
        let xnorm = reopen.select(norm(&(&diag * x)), &xnorm);
        let rec_status = reopen.select(lanes.int(RUNNING), &rec.status);
        let delta_init = initial_radius(&(&xnorm_init * FACTOR), &fnorm_here, cfg.jac_scale);
        let delta = first.select(&delta_init, &st.own.delta);
        let gnorm = gnorm_of(r, &ev.qtf, &fnorm);
        let status = rec_status
            .eq(RUNNING as f64)
            .and(&gnorm.le(&inp.gtol))
            .select(lanes.int(1), &rec_status);
        let done = status.ne(RUNNING as f64);
        let diag = if cfg.jac_scale {
            pick(&done, &diag, diag.max(&acnorm))
        } else {
            diag
        };
        // On the final pass the SVD is of R with unit columns (for the covariance, the rank
        // and the parameters not determined).
        let unit = unit_column_scale(r);
        let rs = pick(&done, &(r * as_row(&unit)), &(r / as_row(&diag)));
        let col_scale = pick(&done, &unit, diag.recip());
        let (u, s, vmat) = lanes.svd(&rs);
        let uf = mtv(&u, &ev.qtf);
        // The tests also ask the full Gauss–Newton step (see `common::check_termination`):
        // ftol that it promises no more than ftol and is small, xtol and MINPACK's info 6 and
        // 7 (nothing more to gain within machine precision) that it stays within the point's
        // scale. MINPACK's reductions are relative to ‖f‖², that is to 2·cost.
        let model = GaussNewton::at(
            &uf,
            &s,
            &vmat,
            &diag.recip(),
            x,
            &(fnorm.square() * 0.5),
            &inp.ftol,
            &inp.m_valid,
        );

        let inner_init = Trial {
            delta: delta.clone(),
            par: st.own.par.clone(),
            nfev: rec.nfev.clone(),
            status: if trials.on {
                eval_only.select(lanes.int(RUNNING), &status)
            } else {
                status.clone()
            },
            ratio: lanes.scalar(0.0),
            x: x.clone(),
            fnorm: fnorm.clone(),
            xnorm: xnorm.clone(),
            no_success: st.own.no_success.clone(),
            success: lanes.flag(false),
            carried: st.factored.as_ref().map(|f| f.at_x.clone()),
        };
        let inner = lanes.while_loop(
            inner_init,
            |it| it.status.eq(RUNNING as f64).and(&it.success.not()),
            |it| {
                let (q, par) = lmpar(&uf, &s, &vmat, &it.delta, &it.par, &inp.m_valid);
                let p = &q / &diag;
                let x_new = if trials.on {
                    pick(eval_only, x, &(x + &p))
                } else {
                    x + &p
                };
                let pnorm = norm(&q);
                let delta = it.no_success.select(it.delta.min(&pnorm), &it.delta);
                let trial = trials.on.then(|| evaluate(pb, &x_new, Loss::Linear, &inp.f_scale));
                let nfev = &it.nfev + 1.0;
                let fnorm1 = match &trial {
                    Some(e) => (&e.cost * 2.0).sqrt(),
                    None => norm(&(pb.fun)(&x_new)),
                };
                let fnorm1 = is_finite(&fnorm1).select(&fnorm1, f64::INFINITY);
                let actred = (&fnorm1 * P1)
                    .lt(&fnorm)
                    .select(-(&fnorm1 / &fnorm).square() + 1.0, -1.0);
                let temp1 = norm(&mv(r, &p)) / &fnorm;
                let temp2 = par.sqrt() * &pnorm / &fnorm;
                let prered = temp1.square() + temp2.square() / 0.5;
                let dirder = -(temp1.square() + temp2.square());
                let ratio = prered.ne(0.0).select(&actred / prered.max(TINY), 0.0);
                // Radius and λ updates.
                let temp = actred.ge(0.0).select(0.5, &dirder * 0.5 / (&dirder + &actred * 0.5));
                let temp = (&fnorm1 * P1).ge(&fnorm).or(&temp.lt(P1)).select(P1, &temp);
                let shrink = ratio.le(0.25);
                let grow = par.eq(0.0).or(&ratio.ge(0.75));
                let delta_new = shrink.select(&temp * delta.min(&(&pnorm / P1)), grow.select(&pnorm / 0.5, &delta));
                let par_new = shrink.select(&par / &temp, grow.select(&par * 0.5, &par));
                // Acceptance.
                let success = ratio.ge(P0001);
                let x_acc = pick(&success, &x_new, x);
                let fnorm_acc = success.select(&fnorm1, &fnorm);
                let xnorm = success.select(norm(&(&diag * &x_new)), &it.xnorm);
                let no_success = success.select(lanes.flag(false), &it.no_success);
                // Convergence tests (MINPACK info 1..3), then 5..8.
                let ftol_ok = actred
                    .abs()
                    .le(&inp.ftol)
                    .and(&prered.le(&inp.ftol))
                    .and(&(&ratio * 0.5).le(1.0))
                    .and(&model.model_ok);
                let xtol_ok = delta_new.le(&(&inp.xtol * &xnorm)).and(&model.near);
                let status = ftol_ok.and(&xtol_ok).select(
                    lanes.int(4),
                    ftol_ok.select(lanes.int(2), xtol_ok.select(lanes.int(3), lanes.int(RUNNING))),
                );
                let running = status.eq(RUNNING as f64);
                let status = running.and(&nfev.ge(&inp.max_nfev)).select(lanes.int(0), &status);
                let running = status.eq(RUNNING as f64);
                let info6 = actred
                    .abs()
                    .le(eps)
                    .and(&prered.le(eps))
                    .and(&(&ratio * 0.5).le(1.0))
                    .and(&model.near);
                let status = running.and(&info6).select(lanes.int(2), &status);
                let running = status.eq(RUNNING as f64);
                let status = running
                    .and(&delta_new.le(&(&xnorm * eps)))
                    .and(&model.near)
                    .select(lanes.int(3), &status);
                let running = status.eq(RUNNING as f64);
                let status = running.and(&gnorm.le(eps)).select(lanes.int(1), &status);
                let next = Trial {
                    delta: delta_new,
                    par: par_new,
                    nfev,
                    status,
                    ratio,
                    x: x_acc,
                    fnorm: fnorm_acc,
                    xnorm,
                    no_success,
                    success: success.clone(),
                    carried: it.carried.clone(),
                };
                let (Some(e), Some(old)) = (&trial, &it.carried) else {
                    return next;
                };
                // The evaluate-only pass keeps everything but the evaluation, and ends.
                let kept = old.pick_from(&success.or(eval_only), &carried(e));
                let mut next = next.pick_from(eval_only, it);
                next.success = success.or(eval_only);
                next.carried = Some(kept);
                next
            },
        );
        let cv = covariance(&s, &vmat, &col_scale, &inp.m_valid);
        let grad = mtv(r, &ev.qtf);
        let njev = &rec.njev + done.not().select(1.0, 0.0).convert(DType::I64);
        let status = done.select(&status, &inner.status);
        let rec = rec.closed(lanes, ev, cv, done, status, &(inner.fnorm.square() * 0.5));
        let next = Outer {
            x: inner.x,
            rec: Record {
                nfev: inner.nfev,
                njev,
                optimality: norm_inf(&grad),
                grad,
                ..rec
            },
            factored: st.factored.clone(),
            own: Own {
                fnorm: inner.fnorm,
                diag,
                delta: inner.delta,
                par: inner.par,
                xnorm: inner.xnorm,
                no_success: inner.no_success,
            },
        };
        (next, inner.carried)
    });

    let cost = out.own.fnorm.square() * 0.5;
    let active_mask = (&out.x * 0.0).convert(DType::I64);
    out.rec.outputs(out.x, cost, active_mask)
}
