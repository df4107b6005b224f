//! Trust-region building blocks shared by TRF and LM, written as graph code.
//!
//! All functions take and return traced tensors of one problem or of a batch (`f64`;
//! lane-vectors `[.., n]`, lane-scalars `[..]`: see `lanes`). They mirror the helpers of scipy's `_lsq/common.py` and MINPACK, so that the traced solvers can
//! be read side by side with the papers:
//!
//! * [`solve_trust_region`]: the exact trust-region subproblem `min ‖J h + f‖` s.t.
//!   `‖h‖ <= Delta` from the SVD `J = U diag(s) Vᵀ` (Moré & Sorensen 1983; Nocedal & Wright
//!   §4.3): with `uf = Uᵀ f`, `h(α) = -V (s·uf / (s² + α))`, and `φ(α) = ‖h(α)‖ - Delta`
//!   is solved for α by Newton's method on `1/‖h‖` safeguarded by `[α_lower, α_upper]`.
//! * [`update_radius`], [`check_termination`]: scipy's radius update and ftol/xtol tests.
//! * Coleman–Li scaling, step-to-bound and reflection helpers for the bounded TRF.
//!
//! # References
//! - J. J. Moré, D. C. Sorensen, "Computing a Trust Region Step", SIAM J. Sci. Stat. Comput. 4, 1983.
//! - M. A. Branch, T. F. Coleman, Y. Li, "A Subspace, Interior, and Conjugate Gradient Method
//!   for Large-Scale Bound-Constrained Minimization Problems", SIAM J. Sci. Comput. 21, 1999.
//! - J. Nocedal, S. J. Wright, "Numerical Optimization", 2nd ed., ch. 4 and 10.

use crate::graph::{Graph, Tensor};
use crate::types::DType;

use super::lanes::{first, last, mv, per_lane, pick, Lanes};
use super::termination::RUNNING;

/// The last axis of `v` (the vector axis of a lane-vector).
fn last_axis(v: &Tensor) -> i64 {
    v.rank() as i64 - 1
}

/// Euclidean norm of each lane-vector.
pub(crate) fn norm(v: &Tensor) -> Tensor {
    v.square().reduce_sum(&[last_axis(v)]).sqrt()
}

/// Max-norm of each lane-vector.
pub(crate) fn norm_inf(v: &Tensor) -> Tensor {
    v.abs().reduce_max(&[last_axis(v)])
}

/// Dot product of two lane-vectors.
pub(crate) fn dot(a: &Tensor, b: &Tensor) -> Tensor {
    (a * b).reduce_sum(&[last_axis(a)])
}

/// True where finite (false for ±inf and NaN).
pub(crate) fn is_finite(v: &Tensor) -> Tensor {
    v.abs().le(f64::MAX)
}

/// An i64 scalar constant.
pub(crate) fn int(g: &Graph, v: i64) -> Tensor {
    g.scalar(DType::I64, v as f64)
}

/// `φ(α) = ‖s·uf / (s² + α)‖ - Delta` and its derivative.
fn phi_and_derivative(alpha: &Tensor, suf: &Tensor, s: &Tensor, delta: &Tensor) -> (Tensor, Tensor) {
    let denom = s.square() + per_lane(alpha);
    let p_norm = norm(&(suf / &denom));
    let phi = &p_norm - delta;
    let phi_prime = -(suf.square() / denom.powi(3)).reduce_sum(&[last_axis(suf)]) / &p_norm;
    (phi, phi_prime)
}

/// Solution of the trust-region subproblem from the SVD of the (scaled) Jacobian.
///
/// Returns `(h, alpha)`: the step and the Levenberg–Marquardt parameter (0 for the
/// Gauss–Newton step). `m_valid` (f64 scalar) is the number of residuals, used in the rank
/// threshold `eps * m * s[0]`. Follows scipy's `solve_lsq_trust_region` (rtol 0.01, at most
/// 10 iterations, final step scaled onto the boundary).
pub(crate) fn solve_trust_region(
    uf: &Tensor,
    s: &Tensor,
    v: &Tensor,
    delta: &Tensor,
    initial_alpha: &Tensor,
    m_valid: &Tensor,
) -> (Tensor, Tensor) {
    let lanes = Lanes::of(delta);
    let n = s.dims()[s.rank() - 1];
    let suf = s * uf;
    let threshold = f64::EPSILON * m_valid * first(s);
    let full_rank = m_valid.ge(n as f64).and(&last(s).gt(&threshold));
    let s_safe = pick(&full_rank, s, 1.0);
    let p_gn = -(mv(v, &(uf / &s_safe)));
    let gn_ok = full_rank.and(&norm(&p_gn).le(delta));

    let alpha_upper0 = norm(&suf) / delta;
    let (phi0, dphi0) = phi_and_derivative(&lanes.scalar(0.0), &suf, &s_safe, delta);
    let alpha_lower0 = full_rank.select(-&phi0 / &dphi0, 0.0);
    let guess = |lo: &Tensor, up: &Tensor| (up * 0.001).max((lo * up).sqrt());
    let use_guess = full_rank.not().and(&initial_alpha.eq(0.0));
    let alpha0 = use_guess.select(guess(&alpha_lower0, &alpha_upper0), initial_alpha);

    let rtol = 0.01;
    let init = Secular {
        alpha: alpha0,
        lower: alpha_lower0,
        upper: alpha_upper0,
        iter: lanes.int(0),
        done: lanes.flag(false),
    };
    let out = lanes.while_loop(
        init,
        |st| st.done.not().and(&st.iter.lt(10.0)),
        |st| {
            let out_of_range = st.alpha.lt(&st.lower).or(&st.alpha.gt(&st.upper));
            let alpha = out_of_range.select(guess(&st.lower, &st.upper), &st.alpha);
            let (phi, dphi) = phi_and_derivative(&alpha, &suf, s, delta);
            let ratio = &phi / &dphi;
            Secular {
                alpha: &alpha - (&phi + delta) * &ratio / delta,
                lower: st.lower.max(&(&alpha - &ratio)),
                upper: phi.lt(0.0).select(&alpha, &st.upper),
                iter: &st.iter + 1.0,
                done: phi.abs().lt(&(delta * rtol)),
            }
        },
    );
    let alpha = out.alpha;
    let p = -(mv(v, &(&suf / (s.square() + per_lane(&alpha)))));
    let pn = norm(&p);
    let p = pick(&pn.gt(0.0), &(&p * per_lane(&(delta / pn.max(f64::MIN_POSITIVE)))), &p);
    (pick(&gn_ok, &p_gn, &p), gn_ok.select(0.0, &alpha))
}

super::lanes::loop_state! {
    /// State of the secular-equation iteration of [`solve_trust_region`].
    struct Secular {
        alpha: Tensor,
        lower: Tensor,
        upper: Tensor,
        iter: Tensor,
        done: Tensor,
    }
}

/// scipy's `update_tr_radius`: returns `(Delta_new, ratio)`.
pub(crate) fn update_radius(
    delta: &Tensor,
    actual: &Tensor,
    predicted: &Tensor,
    step_norm: &Tensor,
    bound_hit: &Tensor,
) -> (Tensor, Tensor) {
    let both_zero = predicted.eq(0.0).and(&actual.eq(0.0));
    let ratio = predicted
        .gt(0.0)
        .select(actual / predicted.max(f64::MIN_POSITIVE), both_zero.select(1.0, 0.0));
    let grow = ratio.gt(0.75).and(bound_hit);
    let new = ratio.lt(0.25).select(step_norm * 0.25, grow.select(delta * 2.0, delta));
    (new, ratio)
}

/// The first-order test of TRF, free of units: `max_j |g_j| w_j / (‖J_j‖ ‖f‖)` with the cost's
/// gradient `g = Jᵀf`, the column norms `‖J_j‖` and `‖f‖ = sqrt(2 cost)`. Unconstrained (or
/// pointing away from its bound) `w_j = 1`, and this is MINPACK's cosine between `f` and the
/// column `J_j`; where the Coleman–Li vector `v_j` is the distance to the bound the gradient
/// points at (`dv_j ≠ 0`), `w_j = min(1, v_j ‖J_j‖ / ‖f‖)`, the fraction of `‖f‖` by which
/// moving to the bound could change the residuals. scipy's `‖g v‖_inf` has the units of the
/// cost over those of x: it stops at p0 when `y` is small (`y ~ 1e-10`) and never when it is
/// large. Vectors `[.., n]`, `fnorm [..]`.
pub(crate) fn gradient_cosine(grad: &Tensor, colnorm: &Tensor, v: &Tensor, dv: &Tensor, fnorm: &Tensor) -> Tensor {
    let f = per_lane(&fnorm.max(f64::MIN_POSITIVE));
    let reach = dv.ne(0.0).select((v * colnorm / &f).min(1.0), 1.0);
    let cosines = colnorm
        .ne(0.0)
        .select(grad.abs() * reach / (colnorm * &f).max(f64::MIN_POSITIVE), 0.0);
    fnorm.ne(0.0).select(cosines.reduce_max(&[grad.rank() as i64 - 1]), 0.0)
}

/// True (per lane) when every component of a step `h [.., n]` in the solver's scaled variables
/// is at most `sqrt(ftol) |xs_j| + ftol ‖xs‖`, with `xs` the point in the same variables: the
/// parameters have converged to about half the digits of `ftol`. Relative to the scaled point,
/// so it does not depend on the units of the parameters (an absolute `+ ftol` would let a
/// parameter of size 1e-150 pass at once).
pub(crate) fn step_converged(h: &Tensor, xs: &Tensor, ftol: &Tensor) -> Tensor {
    let allowed = ftol.sqrt() * xs.abs() + per_lane(&(ftol * norm(xs)));
    h.abs()
        .le(&allowed)
        .select(0.0, 1.0)
        .reduce_max(&[h.rank() as i64 - 1])
        .eq(0.0)
}

/// A running column scale more than this many times the column's current norm is stale.
pub(crate) const STALE_SCALE: f64 = 1e8;

/// The Jacobian scaling `scale` (per column) of a lane whose last iteration claimed ftol or xtol
/// convergence (`status` 2–4), with the columns whose scale is stale (more than
/// [`STALE_SCALE`] times their current nonzero norm `norms`) reset to that norm, and whether
/// that happened (then the lane goes on iterating). Other lanes, and lanes without
/// evaluations left (`budget_left` false), keep `scale`.
///
/// Both methods scale the variables by the running maximum of the column norms (MINPACK, scipy),
/// so the scaled variables cannot shrink back and forth. A start far off the data's scale makes
/// that maximum remember a scale a parameter never has again: in `a e^{-b x} + c` fitted to
/// `y ~ 1e-25` from p0 = (1, 1, 1), the first steps take `a` to 1e-25 and b's column norm
/// (proportional to `a`) with it, while its scale stays at the start's. In the scaled variables
/// b is then numerically singular, and the tests see a converged fit with b at its start.
/// Resetting only where convergence is claimed leaves every other iteration MINPACK's (a reset
/// at every iteration moved NIST MGH10 from start 1 into a wrong basin).
pub(crate) fn reopen_stale(scale: &Tensor, norms: &Tensor, status: &Tensor, budget_left: &Tensor) -> (Tensor, Tensor) {
    let stale = norms.gt(0.0).and(&scale.gt(&(norms * STALE_SCALE)));
    let any = stale.select(1.0, 0.0).reduce_max(&[last_axis(norms)]).gt(0.0);
    let reopen = status.ge(2.0).and(&status.le(4.0)).and(&any).and(budget_left);
    (pick(&reopen, &stale.select(norms, scale), scale), reopen)
}

/// With Jacobian scaling, the first trust radius is at least this fraction of `‖f(x0)‖`.
pub(crate) const RADIUS_FLOOR: f64 = 0.01;

/// The first trust radius from the method's own `from_x` (MINPACK's `factor ‖D x0‖`, scipy's
/// `‖x0 / scale‖`) and the residual norm `fnorm` at the start, per lane.
///
/// Both methods measure steps in variables scaled by the Jacobian's column norms, where a step
/// of length Δ changes the residuals by about Δ: a radius has the units of the residuals, while
/// `from_x` has those of the start. With Jacobian scaling (`jac_scale`) the radius is therefore
/// at least [`RADIUS_FLOOR`] `· fnorm`, and `fnorm` when `from_x` is 0 or not finite (where
/// MINPACK and scipy take 1, in no units). A start of the right scale is unchanged; one far too
/// small for the data, or data in large units (`y ~ 1e30` from p0 = (1, 1)), no longer takes
/// steps that change the cost by less than its rounding (never accepted) or a hundred
/// doublings of the radius. With `x_scale` values the user chose the variables: the methods'
/// own rule, with 1 for a zero or non-finite `from_x`.
pub(crate) fn initial_radius(from_x: &Tensor, fnorm: &Tensor, jac_scale: bool) -> Tensor {
    let unusable = from_x.eq(0.0).or(&is_finite(from_x).not());
    if !jac_scale {
        return unusable.select(1.0, from_x);
    }
    let floor = fnorm * RADIUS_FLOOR;
    let r = unusable.select(fnorm, from_x.max(&floor));
    // f = 0 exactly (the start is the solution): any positive radius.
    r.gt(0.0).and(&is_finite(&r)).select(&r, 1.0)
}

/// scipy's `check_termination`: status 4 (both), 2 (ftol), 3 (xtol) or [`RUNNING`].
///
/// The xtol test is MINPACK's, in the solver's scaled variables: `‖D dx‖ <= xtol ‖D x‖`
/// (`step_norm`, `x_norm`), where scipy tests `‖dx‖ < xtol (xtol + ‖x‖)` in the units of x.
///
/// Two additions to scipy's tests, both from the local model at the point (a
/// [`GaussNewton`]): ftol also requires that the full Gauss–Newton step promises no more than
/// `ftol * F` further reduction and is itself small (`model_ok`); without it a step merely
/// cut short by a small trust radius reports `ftol` convergence far from the minimum (NIST
/// ENSO and MGH09 at the default tolerances). xtol also requires that step to stay within the
/// point's scale (`near`, see [`NEAR_TOL`]): a radius that is small next to `‖D x‖` says the
/// steps are small, not that the point is a minimum. Without it a start far off the data's
/// scale (a line fitted to `y ~ 1e30` from p0 = (1, 1)) stops at p0 with success; with it
/// the radius keeps growing until the fit converges, or it runs out of evaluations and says
/// so.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_termination(
    d_cost: &Tensor,
    cost: &Tensor,
    step_norm: &Tensor,
    x_norm: &Tensor,
    ratio: &Tensor,
    ftol: &Tensor,
    xtol: &Tensor,
    model: &GaussNewton,
) -> Tensor {
    let g = d_cost.graph().clone();
    let ftol_ok = d_cost.lt(&(ftol * cost)).and(&ratio.gt(0.25)).and(&model.model_ok);
    let xtol_ok = step_norm.le(&(xtol * x_norm)).and(&model.near);
    ftol_ok.and(&xtol_ok).select(
        int(&g, 4),
        ftol_ok.select(int(&g, 2), xtol_ok.select(int(&g, 3), int(&g, RUNNING))),
    )
}

/// The full Gauss–Newton step at a point, for the convergence tests (per lane).
pub(crate) struct GaussNewton {
    /// It reduces the cost by at most `ftol` of itself and is small in the scaled variables
    /// ([`step_converged`] at `ftol`).
    pub(crate) model_ok: Tensor,
    /// It stays within the point's own scale ([`step_converged`] at [`NEAR_TOL`]): what the
    /// xtol tests also ask.
    pub(crate) near: Tensor,
}

/// The xtol tests also ask that the full Gauss–Newton step be at most `√NEAR_TOL |xs_j| +
/// NEAR_TOL ‖xs‖` in each scaled variable: a tenth of the point's scale. Converged points,
/// including zero-residual problems whose residuals are rounding noise, pass by many orders of
/// magnitude; a start far off the data's scale, whose Gauss–Newton step is many times the
/// point itself, does not.
pub(crate) const NEAR_TOL: f64 = 1e-2;

impl GaussNewton {
    /// From the SVD `U diag(s) Vᵀ` of `J ∘ d` (`uf = Uᵀ f`) at `x`, with cost `cost`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn at(
        uf: &Tensor,
        s: &Tensor,
        v: &Tensor,
        d: &Tensor,
        x: &Tensor,
        cost: &Tensor,
        ftol: &Tensor,
        m_valid: &Tensor,
    ) -> GaussNewton {
        let keep = s.gt(per_lane(&rank_threshold(s, m_valid)));
        let h = -(mv(v, &keep.select(uf / keep.select(s, 1.0), 0.0)));
        let xs = x / d;
        let little_left = gauss_newton_reduction(uf, s, m_valid).le(&(ftol * cost));
        GaussNewton {
            model_ok: little_left.and(&step_converged(&h, &xs, ftol)),
            near: step_converged(&h, &xs, &Lanes::of(ftol).scalar(NEAR_TOL)),
        }
    }
}

/// Reduction of `½‖J h + f‖²` that the full Gauss–Newton step achieves, `½ Σ uf_i²` over the
/// singular values above `eps * m * s[0]` (from the SVD `J = U diag(s) Vᵀ`, `uf = Uᵀ f`).
pub(crate) fn gauss_newton_reduction(uf: &Tensor, s: &Tensor, m_valid: &Tensor) -> Tensor {
    s.gt(per_lane(&rank_threshold(s, m_valid)))
        .select(uf.square(), 0.0)
        .reduce_sum(&[last_axis(s)])
        * 0.5
}

/// scipy's rank cut-off `eps · max(m, n) · s₀` per lane, for singular values `s [.., n]` of a
/// Jacobian of `m_valid` rows.
pub(crate) fn rank_threshold(s: &Tensor, m_valid: &Tensor) -> Tensor {
    let n = s.dims()[s.rank() - 1];
    f64::EPSILON * m_valid.max(n as f64) * first(s)
}

/// Column norms of each lane-matrix.
pub(crate) fn column_norms(a: &Tensor) -> Tensor {
    a.square().reduce_sum(&[a.rank() as i64 - 2]).sqrt()
}

/// True where a bound is finite.
pub(crate) fn finite_bound(b: &Tensor) -> Tensor {
    is_finite(b)
}

/// Coleman–Li scaling vector `v` and its derivative sign `dv` (scipy's `CL_scaling_vector`).
pub(crate) fn cl_scaling(x: &Tensor, grad: &Tensor, lb: &Tensor, ub: &Tensor) -> (Tensor, Tensor) {
    let to_upper = grad.lt(0.0).and(&finite_bound(ub));
    let to_lower = grad.gt(0.0).and(&finite_bound(lb));
    let v = to_lower.select(x - lb, to_upper.select(ub - x, 1.0));
    let dv = to_lower.select(1.0, to_upper.select(-1.0, 0.0));
    (v, dv)
}

/// Coleman–Li's `(v, dv)` in the solver's scaled variables, with the distances to the bounds
/// measured in `unit` (per lane) and capped at 1, the value of a component without a bound:
/// returns `(v', dv')` with `v' = min(1, v · scale_inv / unit)` and `dv' = dv / unit` where a
/// bound is nearer than that, and `(1, 0)` where it is farther. With `unit` the initial residual
/// norm (Jacobian scaling) the scaled distance is free of units: how much of the residual a move
/// to the bound could change. scipy uses `v · scale_inv` uncapped, so a bound at 1e100 (or
/// ±1e308) shapes the trust region as no bound would: TRF stalled at p0 with ±1e308 and returned
/// a wrong minimum with `[0, 1e100]`. `dv'` is the derivative of `v'` in those units, so the
/// hat-space term `C = g · dv' · scale` stays the one of the method. Vectors `[.., n]`,
/// `unit [..]`.
pub(crate) fn scaled_cl(v: &Tensor, dv: &Tensor, scale_inv: &Tensor, unit: &Tensor) -> (Tensor, Tensor) {
    let unit = per_lane(unit);
    let bounded = dv.ne(0.0);
    let rel = v * scale_inv / &unit;
    let near = bounded.and(&rel.lt(1.0));
    (near.select(&rel, 1.0), near.select(dv / &unit, 0.0))
}

/// The `unit` of [`scaled_cl`]: the initial residual norm `sqrt(2 cost0)` per lane with Jacobian
/// scaling (1 where it is 0 or not finite), 1 with the user's `x_scale`, whose values define the
/// units.
pub(crate) fn bound_unit(initial_cost: &Tensor, jac_scale: bool) -> Tensor {
    if !jac_scale {
        return initial_cost.graph().constant(1.0);
    }
    let f0 = (initial_cost * 2.0).sqrt();
    f0.gt(0.0).and(&is_finite(&f0)).select(&f0, 1.0)
}

/// Smallest step along `s` from `x` to a bound, and which components hit it (sign of `s`).
pub(crate) fn step_size_to_bound(x: &Tensor, s: &Tensor, lb: &Tensor, ub: &Tensor) -> (Tensor, Tensor) {
    let nonzero = s.ne(0.0);
    let s_safe = nonzero.select(s, 1.0);
    let steps = nonzero.select(((lb - x) / &s_safe).max(&((ub - x) / &s_safe)), f64::INFINITY);
    let min_step = steps.reduce_min(&[last_axis(s)]);
    let hits = steps.eq(per_lane(&min_step)).select(s.signum(), 0.0);
    (min_step, hits)
}

/// All components within `[lb, ub]`.
pub(crate) fn in_bounds(x: &Tensor, lb: &Tensor, ub: &Tensor) -> Tensor {
    let ok = x.ge(lb).and(&x.le(ub));
    ok.select(0.0, 1.0).reduce_max(&[last_axis(x)]).eq(0.0)
}

/// The two roots `t1 <= t2` of `‖x + t s‖ = Delta` (scipy's `intersect_trust_region`).
///
/// Solved for `x / Delta` and `s / Delta` (the same roots): the discriminant holds fourth
/// powers of the step lengths, which underflow (or overflow) for data in small (or large)
/// units, around 1e-100, while the scaled ones are of order 1.
/// Vectors `[.., n]`, `delta [..]` (one problem or a batch).
pub(crate) fn intersect_trust_region(x: &Tensor, s: &Tensor, delta: &Tensor) -> (Tensor, Tensor) {
    let unit = per_lane(&delta.max(f64::MIN_POSITIVE));
    let (x, s) = (&(x / &unit), &(s / &unit));
    let dot = |u: &Tensor, v: &Tensor| (u * v).reduce_sum(&[u.rank() as i64 - 1]);
    let a = dot(s, s);
    let b = dot(x, s);
    let c = dot(x, x) - 1.0;
    let d = (b.square() - &a * &c).max(0.0).sqrt();
    let q = -(&b + b.ge(0.0).select(&d, -&d));
    let t1 = &q / &a;
    let t2 = &c / &q;
    (t1.min(&t2), t1.max(&t2))
}

/// Minimum of `a t² + b t + c` on `[lo, hi]`: `(t, value)` (scipy's `minimize_quadratic_1d`).
pub(crate) fn minimize_quadratic_1d(a: &Tensor, b: &Tensor, lo: &Tensor, hi: &Tensor, c: &Tensor) -> (Tensor, Tensor) {
    let y = |t: &Tensor| t * (a * t + b) + c;
    let (y_lo, y_hi) = (y(lo), y(hi));
    let a_safe = a.ne(0.0).select(a, 1.0);
    let ext = -0.5 * b / &a_safe;
    let ext_ok = a.ne(0.0).and(&lo.lt(&ext)).and(&ext.lt(hi));
    let y_ext = ext_ok.select(y(&ext), f64::INFINITY);
    let pick_lo = y_lo.le(&y_hi).and(&y_lo.le(&y_ext));
    let pick_hi = y_hi.le(&y_ext);
    let t = pick_lo.select(lo, pick_hi.select(hi, &ext));
    let v = pick_lo.select(&y_lo, pick_hi.select(&y_hi, &y_ext));
    (t, v)
}

/// The next representable-ish value from `a` towards `b`: `a ± max(|a| eps, tiny)`.
///
/// scipy uses `nextafter`; one or two ulps further keeps the point strictly feasible, which
/// is all that matters, and avoids subnormals that XLA may flush to zero.
fn step_towards(a: &Tensor, b: &Tensor) -> Tensor {
    let ulp = (a.abs() * f64::EPSILON).max(f64::MIN_POSITIVE);
    b.gt(a).select(a + &ulp, a - &ulp)
}

/// Moves points on or outside a bound strictly inside (scipy's `make_strictly_feasible`, rstep=0).
pub(crate) fn make_strictly_feasible(x: &Tensor, lb: &Tensor, ub: &Tensor) -> Tensor {
    let lower = x.le(lb);
    let upper = x.ge(ub);
    let x_new = upper.select(step_towards(ub, lb), lower.select(step_towards(lb, ub), x));
    let tight = x_new.lt(lb).or(&x_new.gt(ub));
    tight.select((lb + ub) * 0.5, &x_new)
}

/// Active-constraint mask: -1 at a lower bound, 1 at an upper bound, 0 otherwise (scipy's
/// `find_active_constraints` with relative tolerance `rtol`).
pub(crate) fn active_constraints(x: &Tensor, lb: &Tensor, ub: &Tensor, rtol: &Tensor) -> Tensor {
    let lower_dist = x - lb;
    let upper_dist = ub - x;
    let lower_thr = rtol * lb.abs().max(1.0);
    let upper_thr = rtol * ub.abs().max(1.0);
    let lower = finite_bound(lb).and(&lower_dist.le(upper_dist.min(&lower_thr)));
    let upper = finite_bound(ub).and(&upper_dist.le(lower_dist.min(&upper_thr)));
    upper.select(1.0, lower.select(-1.0, 0.0)).convert(DType::I64)
}
