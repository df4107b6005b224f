//! The fitted model at new points for the plot: the library's `nlsq::fit::predict` (the model
//! and its Jacobian in one small cached program, with the confidence band from `pcov`).

use anyhow::{Context, Result};
use ndarray::Array2;
use nlsq::expr::Expr;
use nlsq::fit::{predict, CurveFit, Prediction};

/// `model(x, popt)` at the points `x`, given as `k` rows of `m` values, with its bands at
/// `level`.
pub fn evaluate(expr: &Expr, x_rows: &[Vec<f64>], fit: &CurveFit, level: f64) -> Result<Prediction> {
    let model = expr.model();
    let m = x_rows.first().map_or(0, Vec::len);
    let out = if x_rows.len() == 1 {
        predict(&model, &x_rows[0], fit, level, None)
    } else {
        let x = Array2::from_shape_vec((x_rows.len(), m), x_rows.concat()).context("the x rows")?;
        predict(&model, &x, fit, level, None)
    };
    out.context("evaluating the fitted model")
}
