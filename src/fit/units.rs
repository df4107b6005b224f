//! Fits in extreme units: data or parameters scaled by exact powers of two before the fit and
//! back after it.

use ndarray::ArrayView1;

use super::validate::expand_bounds;
use super::{CurveFit, FitOptions, Sigma};
use crate::error::Result;
use crate::graph::{Params, Tensor};
use crate::solve::Method;
use crate::types::DType;

/// Exact powers of two by which `curve_fit` rescales a problem in extreme units: the residuals
/// by `residual` (from the largest `|y / sigma|`) and parameter `j` by `params[j]` (from
/// `|p0_j|`, in the scaled problem `p_j = params[j] · p'_j`), each 1 while its scale is within
/// 2^±300 (about 1e±90). The factors are constants of the traced program: a fit in such units
/// compiles its own program (once per units). The scaled fit is the unscaled one's, bit for bit
/// where nothing under- or overflows, while otherwise squared residuals or Jacobian columns of
/// data around 1e-150 fall below the smallest normal double (and around 1e200 overflow).
pub(super) struct Units {
    pub(super) residual: f64,
    pub(super) params: Vec<f64>,
}

impl Units {
    /// No rescaling of `n` parameters.
    pub(super) fn identity(n: usize) -> Units {
        Units {
            residual: 1.0,
            params: vec![1.0; n],
        }
    }

    /// A power of two near `1 / scale` when `scale` is beyond 2^±300, else 1. The exponent is a
    /// multiple of 64 (so datasets in the same units share one program: the factor is a
    /// constant of it), at most 960 either way.
    pub(super) fn factor(scale: f64) -> f64 {
        if !(scale.is_finite() && scale > 0.0) {
            return 1.0;
        }
        let e = scale.log2();
        if e.abs() < 300.0 {
            return 1.0;
        }
        let e = ((e / 64.0).round() * 64.0).clamp(-960.0, 960.0);
        2f64.powi(-(e as i32))
    }

    /// The units of a `curve_fit` of `ydata` from `p0` with `options` (its sigma included).
    pub(super) fn of(ydata: ArrayView1<'_, f64>, p0: Option<&[f64]>, options: &FitOptions) -> Units {
        let sigma = |i: usize| match &options.sigma {
            Some(Sigma::Std(s)) => s.get(i).copied().unwrap_or(1.0),
            Some(Sigma::Cov(c)) if i < c.nrows() => c[[i, i]].sqrt(),
            _ => 1.0,
        };
        let largest = ydata
            .iter()
            .enumerate()
            .map(|(i, y)| (y / sigma(i)).abs())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        Self::from_scales(largest, p0, p0.map(<[f64]>::len).or(options.n_params).unwrap_or(0))
    }

    /// The units of a problem whose largest finite `|y / sigma|` is `largest`, from `p0` (or
    /// `n` parameters without one).
    pub(super) fn from_scales(largest: f64, p0: Option<&[f64]>, n: usize) -> Units {
        let params = match p0 {
            Some(p) => p.iter().map(|v| 1.0 / Self::factor(v.abs())).collect(),
            None => vec![1.0; n],
        };
        Units {
            residual: Self::factor(largest),
            params,
        }
    }

    pub(super) fn is_identity(&self) -> bool {
        self.residual == 1.0 && self.params.iter().all(|&c| c == 1.0)
    }

    /// `options` for the scaled problem: bounds and `x_scale` in the scaled parameters,
    /// `f_scale` in the scaled residuals.
    pub(super) fn scale_options(&self, options: &FitOptions) -> Result<FitOptions> {
        let mut o = options.clone().with_f_scale(options.solver.f_scale * self.residual);
        if options.bounds.is_some() {
            let (lo, hi) = expand_bounds(&options.bounds, self.params.len())?;
            let per = |b: Vec<f64>| -> Vec<f64> { b.iter().zip(&self.params).map(|(v, c)| v / c).collect() };
            o.bounds = Some((per(lo), per(hi)));
        }
        // (Values of the wrong length are left for `validate` to refuse.)
        let n = self.params.len();
        if let Some(crate::solve::XScale::Values(v)) = &options.solver.x_scale {
            if v.len() != 1 && v.len() != n {
                return Ok(o);
            }
            let v: Vec<f64> = (0..n)
                .map(|j| v[if v.len() == 1 { 0 } else { j }] / self.params[j])
                .collect();
            o.solver.x_scale = Some(crate::solve::XScale::Values(v));
        }
        Ok(o)
    }

    /// The model of the scaled problem, traced: `residual · model(x, params ∘ p')`.
    pub(super) fn model<M>(&self, model: &M, x: &Tensor, p: &Params) -> Tensor
    where
        M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        let f = if self.params.iter().all(|&c| c == 1.0) {
            model(x, p)
        } else {
            let v = p.vector();
            // Fixed parameters (after the varying ones, `fit::parameters`) keep the caller's units.
            let mut units = self.params.clone();
            units.resize(p.len().max(units.len()), 1.0);
            let c = v.graph().constant_array_of(DType::F64, &units, [units.len() as i64]);
            model(x, &Params::new(&(v * c)))
        };
        if self.residual == 1.0 {
            f
        } else {
            f * self.residual
        }
    }

    /// A fit of the scaled problem in the caller's units. The covariance is scaled from the
    /// scaled problem's `pcov` (where the residual unit cancels unless `absolute_sigma`), never
    /// through the unscaled `(JᵀJ)⁺`, which alone may overflow.
    pub(super) fn unscale(&self, fit: &mut CurveFit, absolute_sigma: bool) {
        // Divided by u twice, never by u² (which overflows for u = 2^±997).
        let (u, c) = (self.residual, &self.params);
        let by_u2 = |v: f64| v / u / u;
        let r = &mut fit.result;
        r.x.iter_mut().zip(c).for_each(|(x, c)| *x *= c);
        r.cost = by_u2(r.cost);
        r.initial_cost = by_u2(r.initial_cost);
        r.history.iter_mut().for_each(|h| *h = by_u2(*h));
        // g = Jᵀf: the scaled one is u² c_j g_j.
        r.grad.iter_mut().zip(c).for_each(|(g, c)| *g = by_u2(*g) / c);
        r.optimality = match r.method {
            // ‖g‖_inf, from the gradient in the caller's units.
            Method::Lm => r.grad.iter().fold(0.0, |a: f64, g| a.max(g.abs())),
            // ‖g v‖_inf with v a distance in parameter units: u² times the caller's.
            _ => by_u2(r.optimality),
        };
        if let Some(fun) = &mut r.fun {
            fun.mapv_inplace(|f| f / u);
        }
        if let Some(jac) = &mut r.jac {
            for (j, mut col) in jac.columns_mut().into_iter().enumerate() {
                col.mapv_inplace(|v| v / u / c[j]);
            }
        }
        fit.popt = r.x.clone();
        // (JᵀJ)⁺ scales as 1 / (u² cᵢ cⱼ), the residual variance as u². The errors scale from
        // the scaled errors: a variance of a parameter around 1e-300 is below any double
        // (pcov holds 0 there) while its error is not.
        let ua = if absolute_sigma { u } else { 1.0 };
        for ((i, j), v) in fit.pcov.indexed_iter_mut() {
            *v = *v * c[i] * ua * c[j] * ua;
        }
        fit.perr.iter_mut().zip(c).for_each(|(e, c)| *e = *e * c * ua);
        if let Some(s) = &mut fit.statistics {
            s.unscale(u);
        }
    }
}
