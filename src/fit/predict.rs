//! The fitted model at new points, with confidence and prediction bands.
//!
//! `model(x, popt)` and its Jacobian `J` at the new points come from one small program (the
//! model and its forward-mode derivative, x and p as inputs, padded to a [`bucket`] of rows so
//! that nearby lengths share it), taken from the executable caches like every fit program. The
//! bands are the delta method's, from `pcov`:
//!
//! ```text
//!   confidence:  q · √(jᵢ pcov jᵢᵀ)                  (the uncertainty of the curve)
//!   prediction:  q · √(jᵢ pcov jᵢᵀ + s² σᵢ²)          (of a new observation at xᵢ)
//! ```
//!
//! with `jᵢ` the row of `J` at `xᵢ`, `q` the interval quantile of
//! [`CurveFit::confidence_intervals`], `s²` the reduced χ² (1 with `absolute_sigma`: σ is then
//! the data's own standard deviation) and `σᵢ` the standard deviation of the new observation in
//! the units of the fit's sigma (1 when not given, as for a fit without sigma). These are
//! statsmodels' `get_prediction` `mean_ci` and `obs_ci` for a linear model, and lmfit's
//! `eval_uncertainty` (`dely`) for the confidence band.

use ndarray::{Array1, ArrayView1, ArrayView2};

use super::cache::portable_executable;
use super::statistics::interval_quantile;
use super::validate::{bucket, invalid};
use super::{CurveFit, XData};
use crate::error::Result;
use crate::graph::{eval_model, jacfwd_t, Graph, Params, Tensor};
use crate::types::DType;

/// The fitted model at new points ([`predict`]): values and the half-widths of the bands.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Prediction {
    /// `model(x, popt)` at each point.
    pub y: Array1<f64>,
    /// Half-width of the confidence band of the curve at `level` (`inf` where a parameter the
    /// data do not determine moves the model).
    pub confidence: Array1<f64>,
    /// Half-width of the prediction band of a new observation at `level`.
    pub prediction: Array1<f64>,
    /// The confidence level of both bands.
    pub level: f64,
}

/// `model` at the points `xdata` (`[m]` or `[k, m]`, as for [`curve_fit`](super::curve_fit))
/// with the parameters of `fit`, and its confidence and prediction bands at `level` (e.g. 0.95).
/// `sigma`, one per point, is the standard deviation of a new observation there, in the units
/// of the fit's sigma (`None`: 1).
///
/// The bands are the delta method's, with `jᵢ` the model's gradient in the parameters at `xᵢ`
/// and `q` the quantile of [`CurveFit::confidence_intervals`]:
///
/// ```text
///   confidence:  q · √(jᵢ pcov jᵢᵀ)                  (the uncertainty of the curve)
///   prediction:  q · √(jᵢ pcov jᵢᵀ + s² σᵢ²)          (of a new observation at xᵢ)
/// ```
///
/// where `s²` is the reduced χ² (1 with `absolute_sigma`). For a linear model these are
/// statsmodels' `get_prediction` `mean_ci` and `obs_ci`; the confidence band is lmfit's
/// `eval_uncertainty`. The model and its Jacobian at the new points run as one small program,
/// cached like the fit programs (lengths padded to a [`bucket`](super::bucket)).
///
/// # Errors
/// [`Error::InvalidOption`](crate::Error::InvalidOption) for a `level` outside (0, 1);
/// [`Error::InvalidInput`](crate::Error::InvalidInput) for no points, a `sigma` of the wrong
/// length or not positive, or a model that does not take `fit`'s number of parameters; runtime
/// errors as for a fit.
///
/// # Examples
/// ```no_run
/// use nlsq::fit::{curve_fit, predict, FitOptions};
/// use nlsq::graph::{Params, Tensor};
///
/// let model = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp();
/// let x: Vec<f64> = (0..50).map(|i| i as f64 * 0.1).collect();
/// let y: Vec<f64> = x.iter().map(|x| 2.0 * (-1.3 * x).exp() + 0.01 * (7.0 * x).sin()).collect();
/// let fit = curve_fit(&model, &x, &y, Some(&[1.0, 1.0]), &FitOptions::default())?;
/// let at = [0.25, 6.0];
/// let p = predict(&model, &at, &fit, 0.95, None)?;
/// println!("{} ± {} (new observations ± {})", p.y[0], p.confidence[0], p.prediction[0]);
/// # Ok::<(), nlsq::Error>(())
/// ```
pub fn predict<'a, M>(
    model: &M,
    xdata: impl Into<XData<'a>>,
    fit: &CurveFit,
    level: f64,
    sigma: Option<&[f64]>,
) -> Result<Prediction>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let q = interval_quantile(level, fit.dof, fit.known_variance)?;
    let xdata = xdata.into();
    let m = xdata.len();
    if m == 0 {
        return Err(invalid("xdata", "no points to predict at"));
    }
    if let Some(s) = sigma {
        if s.len() != m {
            return Err(invalid(
                "sigma",
                format!("has {} values but xdata has {m} points", s.len()),
            ));
        }
        if let Some(i) = s.iter().position(|v| !(*v > 0.0 && v.is_finite())) {
            return Err(invalid(
                "sigma",
                format!("sigma[{i}] = {}: must be finite and > 0", s[i]),
            ));
        }
    }
    let (y, jt) = model_and_jacobian(model, &xdata, fit.popt.view())?;
    let n = fit.popt.len();
    let s2 = match (&fit.statistics, fit.known_variance) {
        (_, true) => 1.0,
        (Some(st), false) => st.redchi,
        // A robust-loss fit too large to return its residuals: the variance is that of pcov's
        // scaling, which is not kept; no prediction band.
        (None, false) => f64::NAN,
    };
    let mut confidence = Array1::zeros(m);
    let mut prediction = Array1::zeros(m);
    for i in 0..m {
        // j pcov jᵀ, skipping zero derivatives (so that an undetermined parameter the model
        // does not depend on at this point leaves the band finite: 0 · inf is not taken).
        let mut var = 0.0;
        for a in 0..n {
            let ja = jt[[a, i]];
            if ja == 0.0 {
                continue;
            }
            for b in 0..n {
                let jb = jt[[b, i]];
                if jb != 0.0 {
                    // A parameter without a finite variance that moves the model here: the
                    // band is unbounded (inf − inf in the sum would read as NaN, then 0).
                    if !fit.pcov[[a, b]].is_finite() {
                        var = f64::INFINITY;
                        break;
                    }
                    var += ja * fit.pcov[[a, b]] * jb;
                }
            }
            if var == f64::INFINITY {
                break;
            }
        }
        let var = if var.is_nan() { f64::INFINITY } else { var.max(0.0) };
        let sd = sigma.map_or(1.0, |s| s[i]);
        // A point where the model does not depend on the parameters has no curve uncertainty,
        // whatever the quantile (inf without degrees of freedom).
        let half = |v: f64| if v == 0.0 { 0.0 } else { q * v.sqrt() };
        confidence[i] = half(var);
        prediction[i] = half(var + s2 * sd * sd);
    }
    Ok(Prediction {
        y,
        confidence,
        prediction,
        level,
    })
}

/// `model(x, p)` `[m]` and its transposed Jacobian `[n, m]` with respect to `p`.
fn model_and_jacobian<M>(
    model: &M,
    xdata: &XData<'_>,
    p: ArrayView1<'_, f64>,
) -> Result<(Array1<f64>, ndarray::Array2<f64>)>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let m = xdata.len();
    let n = p.len();
    let m_pad = bucket(m);
    // Padded with the first point, so that the model stays finite on the padding.
    let pad = |row: ArrayView1<'_, f64>| -> Vec<f64> {
        let mut v: Vec<f64> = row.to_vec();
        v.resize(m_pad, row[0]);
        v
    };
    let (flat, x_dims): (Vec<f64>, Vec<i64>) = match xdata {
        XData::D1(x) => (pad(x.view()), vec![m_pad as i64]),
        XData::D2(x) => {
            let x: ArrayView2<'_, f64> = x.view();
            let rows: Vec<f64> = x.rows().into_iter().flat_map(&pad).collect();
            (rows, vec![x.nrows() as i64, m_pad as i64])
        }
    };
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, x_dims.clone());
    let pv = g.parameter("p", DType::F64, [n as i64]);
    let f = eval_model(model, &x, &pv)?;
    let jt = jacfwd_t(&f, &pv)?;
    let program = g.finish([&f, &jt])?;
    let exe = portable_executable(&program.text)?.executable;
    let client = exe.client().clone();
    let device = client.lease_device()?;
    let xb = client.buffer_from_host_on(&device, &flat, &x_dims)?;
    let pb = client.buffer_from_host_on(&device, &p.to_vec(), &[n as i64])?;
    let out = exe.execute_on(&device, &[&xb, &pb])?;
    let mut y = out[0].to_vec::<f64>()?;
    y.truncate(m);
    let jt_all = ndarray::Array2::from_shape_vec((n, m_pad), out[1].to_vec::<f64>()?)
        .map_err(|e| invalid("model", format!("the Jacobian at the new points: {e}")))?;
    Ok((Array1::from(y), jt_all.slice(ndarray::s![.., ..m]).to_owned()))
}
