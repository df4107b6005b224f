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
use super::termination::{NONFINITE_START, RUNNING};
use super::{covariance, factor, Config, Inputs, Outputs, Problem};
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
    let parl0 = full_rank.select(-&phi_at0 / dphi_at0.min(-f64::MIN_POSITIVE), 0.0).max(0.0);
    let gnorm = norm(&suf);
    let paru0 = &gnorm / delta;
    let paru0 = paru0.eq(0.0).select(f64::MIN_POSITIVE / delta.min(P1), &paru0);
    let par = par0.max(&parl0).min(&paru0);
    let par = par.eq(0.0).select(&gnorm / dxnorm.max(f64::MIN_POSITIVE), &par);

    // State: par, parl, paru, iteration, previous phi, done.
    let out = g.while_loop(
        &[par, parl0.clone(), paru0, int(&g, 0), g.constant(f64::INFINITY), gn_ok.clone()],
        |st| st[5].not(),
        |st| {
            let (par, parl, paru, iter, prev) = (&st[0], &st[1], &st[2], &st[3], &st[4]);
            let iter = iter + 1.0;
            let par = par.eq(0.0).select((paru * 0.001).max(f64::MIN_POSITIVE), par);
            let (_, fp, dphi) = phi(&par);
            let done = fp.abs().le(&(delta * P1)).or(&parl.eq(0.0).and(&fp.le(prev)).and(&prev.lt(0.0))).or(&iter.ge(10.0));
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

/// Builds the LM solve.
pub(crate) fn solve(pb: &Problem<'_>, inp: &Inputs, cfg: &Config) -> Outputs {
    let g = inp.x0.graph().clone();
    let n = pb.n;
    let eps = f64::EPSILON;

    let eval_jac = |x: &Tensor| {
        let (f, j) = (pb.fun_jac)(x);
        let (r, qtf) = factor(&j, &f);
        (f, j, r, qtf)
    };
    // MINPACK's gnorm: max_j |(Jᵀf)_j| / (‖f‖ ‖J_j‖).
    let gnorm_of = |r: &Tensor, qtf: &Tensor, fnorm: &Tensor| {
        let jtf = r.t().dot(qtf);
        let acnorm = column_norms(r);
        let cosines = acnorm.ne(0.0).select(jtf.abs() / (fnorm * acnorm.max(f64::MIN_POSITIVE)), 0.0);
        fnorm.ne(0.0).select(cosines.reduce_max(&[0]), 0.0)
    };

    let x0 = inp.x0.clone();
    let (f0, j0, r0, qtf0) = eval_jac(&x0);
    let fnorm0 = norm(&f0);
    let finite0 = all_finite(&f0).and(&all_finite(&r0.reshape([n * n])));
    let acnorm0 = column_norms(&r0);
    let diag0 = if cfg.jac_scale { acnorm0.eq(0.0).select(1.0, &acnorm0) } else { inp.x_scale.recip() };
    let xnorm0 = norm(&(&diag0 * &x0));
    let delta0 = &xnorm0 * FACTOR;
    let delta0 = delta0.eq(0.0).select(FACTOR, &delta0);
    let gnorm0 = gnorm_of(&r0, &qtf0, &fnorm0);
    let status0 = finite0.not().select(
        int(&g, NONFINITE_START),
        gnorm0.le(&inp.gtol).select(int(&g, 1), inp.max_nfev.le(1.0).select(int(&g, 0), int(&g, RUNNING))),
    );
    let cost0 = fnorm0.square() * 0.5;
    let history0 = g.full(DType::F64, [cfg.history], f64::NAN).set(0, &cost0);

    let init = vec![
        x0.clone(),       // 0 x
        f0,               // 1 f
        j0,               // 2 J
        r0,               // 3 R
        qtf0,             // 4 Qᵀf
        fnorm0,           // 5 ‖f‖
        diag0,            // 6 D
        delta0,           // 7 Δ
        g.constant(0.0),  // 8 par
        int(&g, 1),       // 9 nfev
        int(&g, 1),       // 10 njev
        int(&g, 0),       // 11 nit
        status0,          // 12 status
        history0,         // 13 history
        xnorm0,           // 14 ‖D x‖
        g.scalar(DType::Bool, 1.0), // 15 no successful step yet
        gnorm0,           // 16 gnorm
    ];

    let out = g.while_loop(
        &init,
        |st| st[12].eq(RUNNING as f64),
        |st| {
            let (x, r, qtf, fnorm) = (&st[0], &st[3], &st[4], &st[5]);
            let gnorm = &st[16];
            let diag = if cfg.jac_scale { st[6].max(&column_norms(r)) } else { st[6].clone() };
            let rs = r / &diag;
            let (u, s, vmat) = crate::linalg::jacobi_svd(&rs);
            let uf = u.t().dot(qtf);
            // ftol also requires the full Gauss–Newton step to promise no more than ftol (see
            // `common::check_termination`); MINPACK's reductions are relative to ‖f‖².
            let gn_rel = gauss_newton_reduction(&uf, &s, &inp.m_valid) * 2.0 / fnorm.square().max(f64::MIN_POSITIVE);
            let model_ok = gn_rel
                .le(&inp.ftol)
                .and(&gauss_newton_converged(&uf, &s, &vmat, &diag.recip(), x, &inp.ftol, &inp.m_valid));

            let inner_init = vec![
                st[7].clone(),              // 0 Δ
                st[8].clone(),              // 1 par
                st[9].clone(),              // 2 nfev
                int(&g, RUNNING),           // 3 status
                g.constant(0.0),            // 4 ratio
                x.clone(),                  // 5 x (accepted or current)
                fnorm.clone(),              // 6 ‖f‖ at that x
                st[14].clone(),             // 7 ‖D x‖
                st[15].clone(),             // 8 first
                g.scalar(DType::Bool, 0.0), // 9 success
            ];
            let inner = g.while_loop(
                &inner_init,
                |it| it[3].eq(RUNNING as f64).and(&it[9].not()),
                |it| {
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
                    let actred = (&fnorm1 * P1).lt(fnorm).select(-(&fnorm1 / fnorm).square() + 1.0, -1.0);
                    let temp1 = norm(&r.dot(&p)) / fnorm;
                    let temp2 = par.sqrt() * &pnorm / fnorm;
                    let prered = temp1.square() + temp2.square() / 0.5;
                    let dirder = -(temp1.square() + temp2.square());
                    let ratio = prered.ne(0.0).select(&actred / prered.max(f64::MIN_POSITIVE), 0.0);
                    // Radius and λ updates.
                    let temp = actred.ge(0.0).select(0.5, &dirder * 0.5 / (&dirder + &actred * 0.5));
                    let temp = (&fnorm1 * P1).ge(fnorm).or(&temp.lt(P1)).select(P1, &temp);
                    let shrink = ratio.le(0.25);
                    let grow = par.eq(0.0).or(&ratio.ge(0.75));
                    let delta_new = shrink.select(&temp * delta.min(&(&pnorm / P1)), grow.select(&pnorm / 0.5, &delta));
                    let par_new = shrink.select(&par / &temp, grow.select(&par * 0.5, &par));
                    // Acceptance.
                    let success = ratio.ge(P0001);
                    let x_acc = success.select(&x_new, x);
                    let fnorm_acc = success.select(&fnorm1, fnorm);
                    let xnorm = success.select(norm(&(&diag * &x_new)), xnorm);
                    let first = success.select(false_(&g), first);
                    // Convergence tests (MINPACK info 1..3), then 5..8.
                    let ftol_ok = actred.abs().le(&inp.ftol).and(&prered.le(&inp.ftol)).and(&(&ratio * 0.5).le(1.0)).and(&model_ok);
                    let xtol_ok = delta_new.le(&(&inp.xtol * &xnorm));
                    let status = ftol_ok
                        .and(&xtol_ok)
                        .select(int(&g, 4), ftol_ok.select(int(&g, 2), xtol_ok.select(int(&g, 3), int(&g, RUNNING))));
                    let running = status.eq(RUNNING as f64);
                    let status = running.and(&nfev.ge(&inp.max_nfev)).select(int(&g, 0), &status);
                    let running = status.eq(RUNNING as f64);
                    let info6 = actred.abs().le(eps).and(&prered.le(eps)).and(&(&ratio * 0.5).le(1.0));
                    let status = running.and(&info6).select(int(&g, 2), &status);
                    let running = status.eq(RUNNING as f64);
                    let status = running.and(&delta_new.le(&(&xnorm * eps))).select(int(&g, 3), &status);
                    let running = status.eq(RUNNING as f64);
                    let status = running.and(&gnorm.le(eps)).select(int(&g, 1), &status);
                    vec![delta_new, par_new, nfev, status, ratio, x_acc, fnorm_acc, xnorm, first, success]
                },
            );
            let (delta, par, nfev, status_in) = (&inner[0], &inner[1], &inner[2], &inner[3]);
            let (x_new, xnorm, first, success) = (&inner[5], &inner[7], &inner[8], &inner[9]);

            let (f1, j1, r1, qtf1) = eval_jac(x_new);
            let x = success.select(x_new, x);
            let f = success.select(&f1, &st[1]);
            let jac = success.select(&j1, &st[2]);
            let r = success.select(&r1, r);
            let qtf = success.select(&qtf1, qtf);
            let fnorm = success.select(norm(&f1), fnorm);
            let njev = &st[10] + success.select(1.0, 0.0).convert(DType::I64);
            let nit = &st[11] + 1.0;
            let history = st[13].set(&nit, &(fnorm.square() * 0.5));
            let gnorm = success.select(gnorm_of(&r, &qtf, &fnorm), gnorm);
            let status = status_in.eq(RUNNING as f64).and(&gnorm.le(&inp.gtol)).select(int(&g, 1), status_in);
            vec![
                x, f, jac, r, qtf, fnorm, diag, delta.clone(), par.clone(), nfev.clone(), njev, nit, status, history,
                xnorm.clone(), first.clone(), gnorm,
            ]
        },
    );

    let x = out[0].clone();
    let f = out[1].clone();
    let r = out[3].clone();
    let grad = r.t().dot(&out[4]);
    let (cov, rank) = covariance(&r, &inp.m_valid);
    Outputs {
        active_mask: (&x * 0.0).convert(DType::I64),
        optimality: norm_inf(&grad),
        cost: out[5].square() * 0.5,
        x,
        fun: f,
        jac: out[2].clone(),
        grad,
        nfev: out[9].clone(),
        njev: out[10].clone(),
        nit: out[11].clone(),
        status: out[12].clone(),
        history: out[13].clone(),
        initial_cost: cost0,
        cov,
        rank,
    }
}

fn false_(g: &crate::graph::Graph) -> Tensor {
    g.scalar(DType::Bool, 0.0)
}
