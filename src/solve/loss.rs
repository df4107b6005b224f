//! Robust loss functions as graph code, with scipy's definitions and scaling.
//!
//! For residuals `f` and `z = (f / f_scale)^2` a loss gives `rho(z)` and its first two
//! derivatives; the cost is `0.5 * f_scale^2 * sum(rho(z))`. The solver then works on the
//! equivalent least-squares problem with residuals and Jacobian rescaled as in scipy's
//! `scale_for_robust_loss_function` (Triggs et al., "Bundle adjustment — a modern synthesis"):
//! `J_scale = sqrt(max(rho' + 2 rho'' f^2, eps))`, `f_s = f * rho' / J_scale`, `J_s = J_scale * J`.
//!
//! # References
//! - B. Triggs et al., "Bundle Adjustment — A Modern Synthesis", 2000, section 4.3.
//! - scipy.optimize.least_squares documentation (loss, f_scale).

use super::options::Loss;
use crate::graph::Tensor;

/// `rho(z)`, `rho'(z)`, `rho''(z)` already scaled by `f_scale` (`rho0 * c^2`, `rho1`, `rho2 / c^2`).
pub(crate) struct Rho {
    pub rho0: Tensor,
    pub rho1: Tensor,
    pub rho2: Tensor,
}

/// Evaluates the loss at residuals `f` (any shape) with scale `f_scale` (scalar tensor).
pub(crate) fn rho(loss: Loss, f: &Tensor, f_scale: &Tensor) -> Rho {
    let c2 = f_scale.square();
    let z = f.square() / &c2;
    let (r0, r1, r2) = match loss {
        Loss::Linear => (z.clone(), &z * 0.0 + 1.0, &z * 0.0),
        Loss::SoftL1 => {
            let t = &z + 1.0;
            let s = t.sqrt();
            ((&s - 1.0) * 2.0, s.recip(), -0.5 * (&t * &s).recip())
        }
        Loss::Huber => {
            let inside = z.le(1.0);
            let sz = z.sqrt();
            let r0 = inside.select(&z, &sz * 2.0 - 1.0);
            let r1 = inside.select(1.0, sz.recip());
            let r2 = inside.select(0.0, -0.5 * (&z * &sz).recip());
            (r0, r1, r2)
        }
        Loss::Cauchy => {
            let t = &z + 1.0;
            (z.ln_1p(), t.recip(), -(t.square().recip()))
        }
        Loss::Arctan => {
            let t = z.square() + 1.0;
            (z.atan(), t.recip(), -2.0 * &z / t.square())
        }
    };
    Rho {
        rho0: r0 * &c2,
        rho1: r1,
        rho2: r2 / &c2,
    }
}

/// `0.5 * sum(rho0)`: the cost of residuals `f` (per lane: `f [.., m]`).
pub(crate) fn cost(loss: Loss, f: &Tensor, f_scale: &Tensor) -> Tensor {
    let rows = [f.rank() as i64 - 1];
    match loss {
        Loss::Linear => f.square().reduce_sum(&rows) * 0.5,
        _ => rho(loss, f, f_scale).rho0.reduce_sum(&rows) * 0.5,
    }
}

/// Residuals and Jacobian (`J [m, n]`) of the equivalent least-squares problem, and the cost.
pub(crate) fn scale_for_loss(loss: Loss, f: &Tensor, jac: &Tensor, f_scale: &Tensor) -> (Tensor, Tensor, Tensor) {
    let m = f.dims()[0];
    scale_rows(loss, f, jac, f_scale, vec![m, 1])
}

/// [`scale_for_loss`] for the transposed Jacobian `Jᵀ [.., n, m]` of residuals `f [.., m]` (one
/// problem or a batch).
pub(crate) fn scale_for_loss_t(loss: Loss, f: &Tensor, jt: &Tensor, f_scale: &Tensor) -> (Tensor, Tensor, Tensor) {
    let d = f.dims();
    let shape = [&d[..d.len() - 1], &[1, d[d.len() - 1]]].concat();
    scale_rows(loss, f, jt, f_scale, shape)
}

/// Scales residuals and Jacobian by the loss; `shape` is the per-residual scale factor's shape
/// against the Jacobian's (`[m, 1]`, or `[.., 1, m]` for `Jᵀ`).
fn scale_rows(loss: Loss, f: &Tensor, jac: &Tensor, f_scale: &Tensor, shape: Vec<i64>) -> (Tensor, Tensor, Tensor) {
    if loss == Loss::Linear {
        return (f.clone(), jac.clone(), cost(loss, f, f_scale));
    }
    let r = rho(loss, f, f_scale);
    let js = (&r.rho1 + 2.0 * &r.rho2 * f.square()).max(f64::EPSILON).sqrt();
    let fs = f * &r.rho1 / &js;
    let jac_s = jac * js.reshape(shape);
    (fs, jac_s, r.rho0.reduce_sum(&[f.rank() as i64 - 1]) * 0.5)
}
