//! Results: the decoded program outputs as a `FitResult` and a `CurveFit`, and the errors a
//! fit that could not start reports.

use ndarray::{Array1, Array2, ArrayView1};

use super::program::Summary;
use super::statistics::{DataSummary, FitStatistics};
use super::units::Units;
use super::validate::{internal, invalid, Plan};
use super::{CurveFit, ExecutableSource, FitOptions, FitResult, Sigma, Timings, XData, HISTORY_LEN, NULL_SPACE_TOL};
use crate::error::{Error, Result};
use crate::solve::termination::{NONFINITE_START, TINY_JACOBIAN_START};
use crate::solve::{Loss, Method, Status};

impl Summary {
    /// The result this summary describes, with the residuals `fun` and the Jacobian `jac` of
    /// the valid rows, and the unscaled covariance `[n, n]`. A solve that found its start not
    /// finite, or an unknown status, is an error.
    pub(super) fn into_result(
        self,
        fun: Option<Vec<f64>>,
        jac: Option<Array2<f64>>,
        plan: &Plan,
        executable: ExecutableSource,
        device: String,
        timings: Timings,
    ) -> Result<(FitResult, Array2<f64>)> {
        if self.status == NONFINITE_START {
            return Err(invalid("p0", NOT_FINITE_AT_P0));
        }
        if self.status == TINY_JACOBIAN_START {
            return Err(invalid("p0", TINY_JACOBIAN_AT_P0));
        }
        let status = Status::from_code(self.status)
            .ok_or_else(|| internal("status", format!("solver ended with unknown status {}", self.status)))?;
        let n = self.x.len();
        let cov = Array2::from_shape_vec((n, n), self.cov).map_err(|e| internal("cov", e.to_string()))?;
        let history = self
            .history
            .into_iter()
            .take((self.nit as usize + 1).min(HISTORY_LEN as usize))
            .collect();
        let result = FitResult {
            x: Array1::from(self.x),
            cost: self.cost,
            fun: fun.map(Array1::from),
            jac,
            grad: Array1::from(self.grad),
            optimality: self.optimality,
            active_mask: Array1::from(self.active_mask),
            nfev: self.nfev as usize,
            njev: self.njev as usize,
            nit: self.nit as usize,
            status,
            initial_cost: self.initial_cost,
            history,
            rank: self.rank as usize,
            not_determined: not_determined(&self.null_weight),
            method: plan.method,
            loss: plan.loss,
            timings,
            executable,
            device,
        };
        Ok((result, cov))
    }
}

/// The reason of the error for residuals that are not finite at the start.
pub(super) const NOT_FINITE_AT_P0: &str = "the residuals (or the Jacobian) are not finite at the initial point";

/// The reason of the error for a Jacobian with a column too small to compute with at the start.
pub(super) const TINY_JACOBIAN_AT_P0: &str = "the Jacobian at the initial point has a column below 1e-138 \
     in every row, too small to compute with: that parameter's start is far off the scale at which it \
     changes the model (data in very large or small units need a p0 in the same units)";

/// Residuals that are not finite at p0 are blamed on p0 (or the model) unless the data explain
/// them: values that are not finite (with `check_finite` off), or data in units so extreme
/// that a model of the start's scale overflows in them. Other errors pass unchanged. Runs only after
/// the failure, so a fit pays nothing for it.
pub(super) fn explain_nonfinite(
    e: Error,
    xdata: &XData<'_>,
    ydata: ArrayView1<'_, f64>,
    options: &FitOptions,
) -> Error {
    if !matches!(&e, Error::InvalidInput { field: "p0", reason } if reason == NOT_FINITE_AT_P0) {
        return e;
    }
    fn first_bad<'v>(mut v: impl Iterator<Item = &'v f64>) -> Option<usize> {
        v.position(|v| !v.is_finite())
    }
    let x_bad = match xdata {
        XData::D1(x) => first_bad(x.iter()),
        XData::D2(x) => first_bad(x.iter()),
    };
    let sigma: Vec<f64> = match &options.sigma {
        Some(Sigma::Std(s)) => s.clone(),
        Some(Sigma::Cov(c)) => c.diag().iter().map(|v| v.sqrt()).collect(),
        None => Vec::new(),
    };
    let not_finite = |field, i: usize, v: f64| {
        invalid(
            field,
            format!("{field}[{i}] = {v} is not finite (check_finite is off), so the residuals are not either"),
        )
    };
    if let Some(i) = first_bad(ydata.iter()) {
        return not_finite("ydata", i, ydata[i]);
    }
    if let Some(i) = x_bad {
        let v = match xdata {
            XData::D1(x) => x[i],
            XData::D2(x) => x.iter().nth(i).copied().unwrap_or(f64::NAN),
        };
        return not_finite("xdata", i, v);
    }
    if let Some(i) = first_bad(sigma.iter()) {
        return not_finite("sigma", i, sigma[i]);
    }
    // Data in extreme units are fitted in scaled residuals (`units`), where the data are about
    // 1: residuals that are still not finite come from a model far larger than the data at p0.
    let weighted = ydata
        .iter()
        .enumerate()
        .map(|(i, y)| y.abs() / sigma.get(i).copied().unwrap_or(1.0))
        .fold(0.0, f64::max);
    if Units::factor(weighted) != 1.0 {
        let what = if sigma.is_empty() { "|ydata|" } else { "|ydata| / sigma" };
        return invalid(
            "p0",
            format!(
                "{what} is at most {weighted:.3e}, and in those units the model at p0 is so large \
                 that the residuals (or the Jacobian) are not finite: p0 is far off the data's \
                 scale; give a p0 in the data's units"
            ),
        );
    }
    e
}

/// The parameters whose null-space weight (see [`solve::covariance`]) exceeds
/// [`NULL_SPACE_TOL`], in ascending order.
pub(super) fn not_determined(null_weight: &[f64]) -> Vec<usize> {
    // A NaN weight (a Jacobian that is not finite) cannot vouch for its parameter either.
    (0..null_weight.len())
        .filter(|&j| !(null_weight[j] <= NULL_SPACE_TOL))
        .collect()
}

/// scipy's `pcov` from the unscaled `(JᵀJ)⁺`: scaled by the residual variance `2 cost / (m -
/// rank)` unless `absolute_sigma`; all inf when there are no degrees of freedom left (and not
/// absolute) or when it holds a NaN. A rank-deficient Jacobian (some parameter not determined)
/// gives an all-inf `pcov` with LM (scipy's answer where scipy has one), and with TRF the
/// pseudo-inverse with `inf` in the rows and columns of the parameters not determined. For a
/// full-rank Jacobian `m - rank` is scipy's `m - n`; for a rank-deficient one the directions the
/// data do not determine take no degree of freedom (a parameter the model does not use leaves
/// the others' errors as in the fit without it).
pub(super) fn curve_fit_result(
    result: FitResult,
    cov: Array2<f64>,
    m: usize,
    n: usize,
    absolute_sigma: bool,
    data: Option<DataSummary>,
) -> CurveFit {
    let statistics = chisqr(&result).map(|c| FitStatistics::new(c, m, n, data));
    let mut pcov = cov;
    if !absolute_sigma {
        let dof = m.saturating_sub(result.rank.min(n));
        if dof > 0 && m > n {
            let s_sq = 2.0 * result.cost / dof as f64;
            pcov.mapv_inplace(|v| v * s_sq);
        } else {
            pcov.fill(f64::INFINITY);
        }
    }
    if pcov.iter().any(|v| v.is_nan()) || (result.method == Method::Lm && !result.not_determined.is_empty()) {
        pcov.fill(f64::INFINITY);
    }
    for &j in &result.not_determined {
        pcov.row_mut(j).fill(f64::INFINITY);
        pcov.column_mut(j).fill(f64::INFINITY);
    }
    let perr = pcov.diag().mapv(|v| v.sqrt());
    CurveFit {
        popt: result.x.clone(),
        pcov,
        perr,
        dof: m.saturating_sub(n),
        statistics,
        starts: None,
        known_variance: absolute_sigma,
        result,
    }
}

/// `χ² = Σ r²` of the weighted residuals at the solution: twice the cost with the linear loss,
/// else from the residuals, `None` when a robust-loss fit did not return them.
fn chisqr(result: &FitResult) -> Option<f64> {
    match (result.loss, &result.fun) {
        (Loss::Linear, _) => Some(2.0 * result.cost),
        (_, Some(f)) => Some(f.iter().map(|v| v * v).sum()),
        (_, None) => None,
    }
}
