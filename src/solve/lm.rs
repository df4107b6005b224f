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
//! # References
//! - J. J. Moré, "The Levenberg–Marquardt algorithm: implementation and theory", 1978.
//! - J. J. Moré, B. S. Garbow, K. E. Hillstrom, "User Guide for MINPACK-1", ANL-80-74, 1980.

use super::common::*;
use super::covariance::{covariance, unit_column_scale};
use super::termination::{NONFINITE_START, RUNNING};
use super::{evaluate, Config, Inputs, Outputs, Problem, TrialFactors};
use crate::graph::Tensor;
use crate::types::DType;

const P1: f64 = 0.1;
const P0001: f64 = 1e-4;
/// MINPACK's `factor`: initial step bound is `factor * ‖D x0‖` (or `factor` when that is 0).
const FACTOR: f64 = 1.0;

/// `lmpar` via the SVD: returns `(q, par)` with `q = D p` the scaled step.
fn lmpar(uf: &Tensor, s: &Tensor, v: &Tensor, delta: &Tensor, par0: &Tensor, m_valid: &Tensor) -> (Tensor, Tensor) {
    let g = uf.graph().clone();
    let n = s.dims()[0];
    let suf = s * uf;
    let threshold = f64::EPSILON * m_valid.max(n as f64) * s.at(0);
    let nonsingular = s.gt(&threshold);
    let full_rank = nonsingular.select(0.0, 1.0).reduce_max(&[0]).eq(0.0);
    let s_safe = nonsingular.select(s, 1.0);
    // Gauss–Newton step (minimum-norm over the nonsingular directions).
    let q_gn = -(v.dot(&nonsingular.select(uf / &s_safe, 0.0)));
    let dxnorm = norm(&q_gn);
    let fp0 = &dxnorm - delta;
    let gn_ok = fp0.le(&(delta * P1));

    let phi = |par: &Tensor| {
        let denom = s.square() + par;
        let q = -(v.dot(&(&suf / &denom)));
        let qn = norm(&q);
        let dphi = -(suf.square() / denom.powi(3)).sum() / qn.max(f64::MIN_POSITIVE);
        (q, &qn - delta, dphi)
    };
    let (_, phi_at0, dphi_at0) = phi(&g.constant(0.0));
    let parl0 = full_rank
        .select(-&phi_at0 / dphi_at0.min(-f64::MIN_POSITIVE), 0.0)
        .max(0.0);
    let gnorm = norm(&suf);
    let paru0 = &gnorm / delta;
    let paru0 = paru0.eq(0.0).select(f64::MIN_POSITIVE / delta.min(P1), &paru0);
    let par = par0.max(&parl0).min(&paru0);
    let par = par.eq(0.0).select(&gnorm / dxnorm.max(f64::MIN_POSITIVE), &par);

    // State: par, parl, paru, iteration, previous phi, done.
    let out = g.while_loop(
        &[
            par,
            parl0.clone(),
            paru0,
            int(&g, 0),
            g.constant(f64::INFINITY),
            gn_ok.clone(),
        ],
        |st| st[5].not(),
        |st| {
            let (par, parl, paru, iter, prev) = (&st[0], &st[1], &st[2], &st[3], &st[4]);
            let iter = iter + 1.0;
            let par = par.eq(0.0).select((paru * 0.001).max(f64::MIN_POSITIVE), par);
            let (_, fp, dphi) = phi(&par);
            let done = fp
                .abs()
                .le(&(delta * P1))
                .or(&parl.eq(0.0).and(&fp.le(prev)).and(&prev.lt(0.0)))
                .or(&iter.ge(10.0));
            // Newton correction (Moré): parc = -((fp + Δ)/Δ) * fp / φ'.
            let parc = -((&fp + delta) / delta) * &fp / dphi.min(-f64::MIN_POSITIVE);
            let parl_new = fp.gt(0.0).select(parl.max(&par), parl);
            let paru_new = fp.lt(0.0).select(paru.min(&par), paru);
            let par_next = parl_new.max(&(&par + &parc));
            vec![done.select(&par, &par_next), parl_new, paru_new, iter, fp, done]
        },
    );
    let par = gn_ok.select(0.0, &out[0]);
    let (q, _, _) = phi(&par);
    (gn_ok.select(&q_gn, &q), par)
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
    let g = inp.x0.graph().clone();
    let n = pb.n;
    let eps = f64::EPSILON;

    // MINPACK's gnorm: max_j |(Jᵀf)_j| / (‖f‖ ‖J_j‖).
    let gnorm_of = |r: &Tensor, qtf: &Tensor, fnorm: &Tensor| {
        let jtf = r.t().dot(qtf);
        let acnorm = column_norms(r);
        let cosines = acnorm
            .ne(0.0)
            .select(jtf.abs() / (fnorm * acnorm.max(f64::MIN_POSITIVE)), 0.0);
        fnorm.ne(0.0).select(cosines.reduce_max(&[0]), 0.0)
    };

    let trials = TrialFactors::new(pb, 22);
    let mut init = vec![
        inp.x0.clone(),                              // 0 x
        g.zeros(DType::F64, [pb.jac_rows()]),        // 1 f at x
        g.zeros(DType::F64, [pb.jac_rows(), n]),     // 2 J at x
        g.constant(0.0),                             // 3 ‖f‖ at x
        g.zeros(DType::F64, [n]),                    // 4 D
        g.constant(0.0),                             // 5 Δ
        g.constant(0.0),                             // 6 par
        int(&g, 0),                                  // 7 nfev
        int(&g, 0),                                  // 8 njev
        int(&g, 0),                                  // 9 nit
        int(&g, RUNNING),                            // 10 status
        g.full(DType::F64, [cfg.history], f64::NAN), // 11 history
        g.constant(0.0),                             // 12 ‖D x‖
        g.scalar(DType::Bool, 1.0),                  // 13 no successful step yet
        g.constant(0.0),                             // 14 gradient max-norm at x
        g.scalar(DType::Bool, 0.0),                  // 15 done
        g.scalar(DType::Bool, 1.0),                  // 16 first pass
        g.constant(0.0),                             // 17 initial cost
        g.zeros(DType::F64, [n, n]),                 // 18 covariance at x
        int(&g, 0),                                  // 19 rank at x
        g.zeros(DType::F64, [n]),                    // 20 gradient at x
        g.zeros(DType::F64, [n]),                    // 21 null-space weights at x
    ];
    init.extend(trials.init(&g, n)); // 22-26 when trials are factored

    let out = g.while_loop(
        &init,
        |st| st[15].not(),
        |st| {
            let (x, first_pass) = (&st[0], &st[16]);
            let (ev, eval_only) = trials.current(pb, st, x, super::Loss::Linear, &inp.f_scale);
            let (f, j, r, qtf, finite) = (ev.f, ev.jac, ev.r, ev.qtf, ev.finite);
            let fnorm_here = (&ev.cost * 2.0).sqrt();
            let nfev = first_pass.select(int(&g, 1), &st[7]);
            let fnorm = first_pass.select(&fnorm_here, &st[3]);
            let acnorm = column_norms(&r);
            let diag_init = if cfg.jac_scale {
                acnorm.eq(0.0).select(1.0, &acnorm)
            } else {
                inp.x_scale.recip()
            };
            let diag = first_pass.select(&diag_init, &st[4]);
            let xnorm_init = norm(&(&diag * x));
            let xnorm = first_pass.select(&xnorm_init, &st[12]);
            let delta_init = &xnorm_init * FACTOR;
            let delta_init = delta_init.eq(0.0).select(FACTOR, &delta_init);
            let delta = first_pass.select(&delta_init, &st[5]);
            let initial_cost = first_pass.select(fnorm_here.square() * 0.5, &st[17]);
            let history = first_pass.select(st[11].set(0, &(fnorm_here.square() * 0.5)), &st[11]);
            let gnorm = gnorm_of(&r, &qtf, &fnorm);
            let status = first_pass.and(&finite.not()).select(int(&g, NONFINITE_START), &st[10]);
            let status = status
                .eq(RUNNING as f64)
                .and(&gnorm.le(&inp.gtol))
                .select(int(&g, 1), &status);
            let done = status.ne(RUNNING as f64);
            let diag = if cfg.jac_scale {
                done.select(&diag, diag.max(&acnorm))
            } else {
                diag
            };
            // On the final pass the SVD is of R with unit columns (for the covariance, the rank
            // and the parameters not determined).
            let unit = unit_column_scale(&r);
            let rs = done.select(&r * &unit, &r / &diag);
            let col_scale = done.select(&unit, diag.recip());
            let (u, s, vmat) = crate::linalg::jacobi_svd(&rs);
            let uf = u.t().dot(&qtf);
            // ftol also requires the full Gauss–Newton step to promise no more than ftol (see
            // `common::check_termination`); MINPACK's reductions are relative to ‖f‖².
            let gn_rel = gauss_newton_reduction(&uf, &s, &inp.m_valid) * 2.0 / fnorm.square().max(f64::MIN_POSITIVE);
            let model_ok = gn_rel.le(&inp.ftol).and(&gauss_newton_converged(
                &uf,
                &s,
                &vmat,
                &diag.recip(),
                x,
                &inp.ftol,
                &inp.m_valid,
            ));

            let mut inner_init = vec![
                delta.clone(), // 0 Δ
                st[6].clone(), // 1 par
                nfev.clone(),  // 2 nfev
                // 3 status (the loop runs only while RUNNING; once on the evaluate-only pass)
                eval_only.select(int(&g, RUNNING), &status),
                g.constant(0.0),            // 4 ratio
                x.clone(),                  // 5 x (accepted or current)
                fnorm.clone(),              // 6 ‖f‖ at that x
                xnorm.clone(),              // 7 ‖D x‖
                st[13].clone(),             // 8 no successful step yet
                g.scalar(DType::Bool, 0.0), // 9 success
            ];
            // 10-13 (only when trials are factored): the factorization at the accepted (or current) point.
            inner_init.extend(trials.carried(st).iter().cloned());
            let inner = g.while_loop(
                &inner_init,
                |it| it[3].eq(RUNNING as f64).and(&it[9].not()),
                |it| {
                    let (delta, par0, nfev, xnorm, first) = (&it[0], &it[1], &it[2], &it[7], &it[8]);
                    let (q, par) = lmpar(&uf, &s, &vmat, delta, par0, &inp.m_valid);
                    let p = &q / &diag;
                    let x_new = eval_only.select(x, x + &p);
                    let pnorm = norm(&q);
                    let delta = first.select(delta.min(&pnorm), delta);
                    let trial = trials
                        .on
                        .then(|| evaluate(pb, &x_new, super::Loss::Linear, &inp.f_scale));
                    let nfev = nfev + 1.0;
                    let fnorm1 = match &trial {
                        Some(e) => (&e.cost * 2.0).sqrt(),
                        None => norm(&(pb.fun)(&x_new)),
                    };
                    let fnorm1 = is_finite(&fnorm1).select(&fnorm1, f64::INFINITY);
                    let actred = (&fnorm1 * P1)
                        .lt(&fnorm)
                        .select(-(&fnorm1 / &fnorm).square() + 1.0, -1.0);
                    let temp1 = norm(&r.dot(&p)) / &fnorm;
                    let temp2 = par.sqrt() * &pnorm / &fnorm;
                    let prered = temp1.square() + temp2.square() / 0.5;
                    let dirder = -(temp1.square() + temp2.square());
                    let ratio = prered.ne(0.0).select(&actred / prered.max(f64::MIN_POSITIVE), 0.0);
                    // Radius and λ updates.
                    let temp = actred.ge(0.0).select(0.5, &dirder * 0.5 / (&dirder + &actred * 0.5));
                    let temp = (&fnorm1 * P1).ge(&fnorm).or(&temp.lt(P1)).select(P1, &temp);
                    let shrink = ratio.le(0.25);
                    let grow = par.eq(0.0).or(&ratio.ge(0.75));
                    let delta_new = shrink.select(&temp * delta.min(&(&pnorm / P1)), grow.select(&pnorm / 0.5, &delta));
                    let par_new = shrink.select(&par / &temp, grow.select(&par * 0.5, &par));
                    // Acceptance.
                    let success = ratio.ge(P0001);
                    let x_acc = success.select(&x_new, x);
                    let fnorm_acc = success.select(&fnorm1, &fnorm);
                    let xnorm = success.select(norm(&(&diag * &x_new)), xnorm);
                    let first = success.select(false_(&g), first);
                    // Convergence tests (MINPACK info 1..3), then 5..8.
                    let ftol_ok = actred
                        .abs()
                        .le(&inp.ftol)
                        .and(&prered.le(&inp.ftol))
                        .and(&(&ratio * 0.5).le(1.0))
                        .and(&model_ok);
                    let xtol_ok = delta_new.le(&(&inp.xtol * &xnorm));
                    let status = ftol_ok.and(&xtol_ok).select(
                        int(&g, 4),
                        ftol_ok.select(int(&g, 2), xtol_ok.select(int(&g, 3), int(&g, RUNNING))),
                    );
                    let running = status.eq(RUNNING as f64);
                    let status = running.and(&nfev.ge(&inp.max_nfev)).select(int(&g, 0), &status);
                    let running = status.eq(RUNNING as f64);
                    let info6 = actred.abs().le(eps).and(&prered.le(eps)).and(&(&ratio * 0.5).le(1.0));
                    let status = running.and(&info6).select(int(&g, 2), &status);
                    let running = status.eq(RUNNING as f64);
                    let status = running.and(&delta_new.le(&(&xnorm * eps))).select(int(&g, 3), &status);
                    let running = status.eq(RUNNING as f64);
                    let status = running.and(&gnorm.le(eps)).select(int(&g, 1), &status);
                    let next = vec![
                        delta_new,
                        par_new,
                        nfev,
                        status,
                        ratio,
                        x_acc,
                        fnorm_acc,
                        xnorm,
                        first,
                        success.clone(),
                    ];
                    let Some(e) = &trial else { return next };
                    let kept = super::carried(e)
                        .iter()
                        .zip(&it[10..])
                        .map(|(new, old)| success.or(&eval_only).select(new, old))
                        .collect::<Vec<_>>();
                    // The evaluate-only pass keeps everything but the evaluation, and ends.
                    let mut next: Vec<Tensor> = next
                        .iter()
                        .zip(&it[..10])
                        .map(|(new, old)| eval_only.select(old, new))
                        .collect();
                    next[9] = success.or(&eval_only);
                    next.extend(kept);
                    next
                },
            );
            let cv = covariance(&s, &vmat, &col_scale, &inp.m_valid);
            let njev = &st[8] + done.not().select(1.0, 0.0).convert(DType::I64);
            let nit = &st[9] + done.not().select(1.0, 0.0).convert(DType::I64);
            let fnorm_next = &inner[6];
            let history = done.select(&history, history.set(&nit, &(fnorm_next.square() * 0.5)));
            let grad = r.t().dot(&qtf);
            let next = vec![
                inner[5].clone(),
                f,
                j,
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
                norm_inf(&grad),
                done,
                g.scalar(DType::Bool, 0.0),
                initial_cost,
                cv.cov,
                cv.rank,
                grad,
                cv.null_weight,
            ];
            trials.next(next, st, &inner[10..], &eval_only)
        },
    );

    let x = out[0].clone();
    Outputs {
        active_mask: (&x * 0.0).convert(DType::I64),
        x,
        fun: out[1].clone(),
        jac: out[2].clone(),
        cost: out[3].square() * 0.5,
        grad: out[20].clone(),
        optimality: out[14].clone(),
        nfev: out[7].clone(),
        njev: out[8].clone(),
        nit: out[9].clone(),
        status: out[10].clone(),
        history: out[11].clone(),
        initial_cost: out[17].clone(),
        cov: out[18].clone(),
        rank: out[19].clone(),
        null_weight: out[21].clone(),
    }
}

fn false_(g: &crate::graph::Graph) -> Tensor {
    g.scalar(DType::Bool, 0.0)
}
