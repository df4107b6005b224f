//! Goodness-of-fit statistics of a fit: χ², R², information criteria, confidence intervals.
//!
//! Conventions (`N` points, `k` varying parameters, `ν = N − k` degrees of freedom, `r` the
//! residuals weighted by sigma — `(f − y)/σ`, or `L⁻¹(f − y)` for a covariance `σ = L Lᵀ` — so
//! that `χ² = Σ r²`):
//!
//! * reduced χ² `= χ²/ν` and the residual standard error `s = √(χ²/ν)` (R's `summary.nls`,
//!   lmfit's `redchi`);
//! * R² `= 1 − χ²/TSS`, with TSS the weighted total sum of squares about the weighted mean, as
//!   statsmodels' WLS (`Σ w (y − ȳ_w)²`, `w = 1/σ²`) and GLS (`‖L⁻¹(y − μ 1)‖²` with μ the
//!   generalised-least-squares mean); adjusted R² `= 1 − (1 − R²)(N − 1)/ν`;
//! * the Gaussian log-likelihood with the residual variance estimated (R's `logLik.nls`,
//!   statsmodels' `llf`): `ℓ = −N/2 (ln 2π + 1 − ln N + ln χ²) + ½ ln det W`, where `W = Σ⁻¹`
//!   is the weight matrix (`Σ ln 1/σᵢ²` for 1-D sigma, 0 without sigma);
//! * AIC `= −2ℓ + 2(k + 1)` and BIC `= −2ℓ + ln N · (k + 1)`, as R's `AIC()`/`BIC()` on an
//!   `nls` fit (the `+ 1` is the estimated variance; statsmodels' `aic` counts only `k`, so it
//!   is R's minus 2);
//! * lmfit's χ²-based criteria, named as such: `N ln(χ²/N) + 2k` and `N ln(χ²/N) + ln N · k`.
//!
//! Confidence intervals are `popt ± q · perr` with `q` the `(1 + level)/2` quantile of
//! Student's t with ν degrees of freedom (R's `confint.default` uses the normal quantile; with
//! the variance estimated from ν residuals, t is the exact one for a linear model), or of the
//! standard normal when `absolute_sigma` says the variance is known.

use ndarray::{Array2, ArrayView1};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use crate::error::{Error, Result};

/// What the statistics need from the data besides the residuals, computed where the data and
/// sigma are validated, in the units the fit runs in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DataSummary {
    /// Weighted total sum of squares of `y` about its weighted mean (see the module docs).
    pub(crate) tss: f64,
    /// `ln det W` of the weight matrix `W = Σ⁻¹`.
    pub(crate) log_det_w: f64,
}

impl DataSummary {
    /// Of `y` with per-point weights `inv_sigma = 1/σ` (`None`: all ones). It runs on every fit,
    /// so its passes over the data are vectorised ([`sum_of`]).
    pub(crate) fn diagonal(y: ArrayView1<'_, f64>, inv_sigma: Option<&[f64]>) -> DataSummary {
        let owned;
        let y: &[f64] = match y.as_slice() {
            Some(s) => s,
            None => {
                owned = y.to_vec();
                &owned
            }
        };
        let n = y.len();
        // Every y equal: no variation to explain (the rounded mean would leave a TSS of rounding
        // noise, and an R² of noise over noise).
        let constant = y.iter().all(|v| *v == y[0]);
        let Some(ws) = inv_sigma else {
            let mean = sum_of(n, |i| y[i]) / n as f64;
            let tss = if constant {
                0.0
            } else {
                sum_of(n, |i| (y[i] - mean) * (y[i] - mean))
            };
            return DataSummary { tss, log_det_w: 0.0 };
        };
        // (The callers pass one weight per point; anything else leaves R² unknown.)
        let Some(ws) = ws.get(..n) else {
            return DataSummary {
                tss: f64::NAN,
                log_det_w: f64::NAN,
            };
        };
        // Relative weights (largest 1), so that 1/σ² cannot overflow for a tiny σ.
        let top = ws.iter().fold(0.0f64, |a, &w| a.max(w));
        let rel = |i: usize| (ws[i] / top) * (ws[i] / top);
        let mean = sum_of(n, |i| rel(i) * y[i]) / sum_of(n, rel);
        let tss = if constant {
            0.0
        } else {
            sum_of(n, |i| (ws[i] * (y[i] - mean)) * (ws[i] * (y[i] - mean)))
        };
        let log_det_w = 2.0 * ws.iter().map(|w| w.ln()).sum::<f64>();
        DataSummary { tss, log_det_w }
    }

    /// Of `y` with the lower-triangular whitening matrix `w = L⁻¹` of a covariance `σ = L Lᵀ`.
    pub(crate) fn whitened(y: ArrayView1<'_, f64>, w: &Array2<f64>) -> DataSummary {
        let ones = ndarray::Array1::<f64>::ones(y.len());
        let (wy, w1) = (w.dot(&y), w.dot(&ones));
        let mean = wy.dot(&w1) / w1.dot(&w1);
        let tss = if y.iter().all(|v| *v == y[0]) {
            0.0
        } else {
            wy.iter().zip(&w1).map(|(a, b)| (a - mean * b) * (a - mean * b)).sum()
        };
        let log_det_w = 2.0 * w.diag().iter().map(|v| v.abs().ln()).sum::<f64>();
        DataSummary { tss, log_det_w }
    }
}

/// `Σ f(i)` over `0..n` in eight interleaved partial sums: one running sum cannot be reordered,
/// so the compiler would not vectorise it (one running sum took 1.1 ms per pass of a summary
/// over 10⁶ points, about 4% of a warm fit of that size; these take 0.25 ms).
fn sum_of(n: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let whole = n / 8 * 8;
    for base in (0..whole).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(base + l);
        }
    }
    acc.iter().sum::<f64>() + (whole..n).map(f).sum::<f64>()
}

/// Goodness-of-fit statistics of a [`CurveFit`](super::CurveFit) (conventions in the
/// [module docs](self)), over the `n_varying` parameters the solver moved.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FitStatistics {
    /// Data points `N`.
    pub n_points: usize,
    /// Varying parameters `k`.
    pub n_varying: usize,
    /// Degrees of freedom `ν = N − k` (0 when `N ≤ k`), as R and lmfit count them. (`pcov` is
    /// scaled by `χ²/(N − rank)`, which is the same unless the data do not determine some
    /// parameter, and then those parameters' variances are inf.)
    pub dof: usize,
    /// `χ² = Σ r²`, the sum of squared weighted residuals (before any robust loss: with the
    /// linear loss it is twice the cost).
    pub chisqr: f64,
    /// Reduced χ², `χ²/ν` (`inf` when ν = 0).
    pub redchi: f64,
    /// Residual standard error `√(χ²/ν)`, in the units of the weighted residuals (R's
    /// "Residual standard error: s on ν degrees of freedom").
    pub residual_se: f64,
    /// R², `1 − χ²/TSS`; `None` without data (`least_squares`) or when every `y` is equal (no
    /// variation to explain).
    pub r_squared: Option<f64>,
    /// Adjusted R², `1 − (1 − R²)(N − 1)/ν`; `None` where R² is, or when ν = 0.
    pub adj_r_squared: Option<f64>,
    /// Gaussian log-likelihood with the residual variance estimated (R's `logLik`).
    pub log_likelihood: f64,
    /// Akaike's criterion as R's `AIC()`: `−2ℓ + 2(k + 1)`.
    pub aic: f64,
    /// Schwarz's criterion as R's `BIC()`: `−2ℓ + ln N · (k + 1)`.
    pub bic: f64,
    /// lmfit's χ²-based AIC, `N ln(χ²/N) + 2k`.
    pub chisqr_aic: f64,
    /// lmfit's χ²-based BIC, `N ln(χ²/N) + ln N · k`.
    pub chisqr_bic: f64,
}

impl FitStatistics {
    /// The statistics of a fit with sum of squared weighted residuals `chisqr` on `n_points`
    /// points and `n_varying` parameters; `data` is `None` when there is no `y` (R² unknown).
    pub(crate) fn new(chisqr: f64, n_points: usize, n_varying: usize, data: Option<DataSummary>) -> FitStatistics {
        let dof = n_points.saturating_sub(n_varying);
        let (nf, kf) = (n_points as f64, n_varying as f64);
        let redchi = if dof > 0 { chisqr / dof as f64 } else { f64::INFINITY };
        let r_squared = data.filter(|d| d.tss > 0.0).map(|d| 1.0 - chisqr / d.tss);
        let adj_r_squared = r_squared
            .filter(|_| dof > 0)
            .map(|r2| 1.0 - (1.0 - r2) * (nf - 1.0) / dof as f64);
        let log_det_w = data.map_or(0.0, |d| d.log_det_w);
        let ln_chi = (chisqr / nf).ln();
        let log_likelihood = -0.5 * nf * ((2.0 * std::f64::consts::PI).ln() + 1.0 + ln_chi) + 0.5 * log_det_w;
        FitStatistics {
            n_points,
            n_varying,
            dof,
            chisqr,
            redchi,
            residual_se: redchi.sqrt(),
            r_squared,
            adj_r_squared,
            log_likelihood,
            aic: -2.0 * log_likelihood + 2.0 * (kf + 1.0),
            bic: -2.0 * log_likelihood + nf.ln() * (kf + 1.0),
            chisqr_aic: nf * ln_chi + 2.0 * kf,
            chisqr_bic: nf * ln_chi + nf.ln() * kf,
        }
    }

    /// The statistics of a fit whose residuals were multiplied by `u` (a power of two, see
    /// `Units`) in the caller's units: χ² is divided by `u` twice (never by `u²`, which may
    /// overflow), the logarithms shift by `N ln u`; R² does not change.
    pub(crate) fn unscale(&mut self, u: f64) {
        let by_u2 = |v: f64| v / u / u;
        let shift = self.n_points as f64 * u.abs().ln();
        self.chisqr = by_u2(self.chisqr);
        self.redchi = by_u2(self.redchi);
        self.residual_se /= u.abs();
        self.log_likelihood += shift;
        self.aic -= 2.0 * shift;
        self.bic -= 2.0 * shift;
        self.chisqr_aic -= 2.0 * shift;
        self.chisqr_bic -= 2.0 * shift;
    }
}

impl std::fmt::Display for FitStatistics {
    /// Five lines: residual standard error and degrees of freedom, χ², R², log-likelihood,
    /// and the information criteria (R's, then lmfit's χ²-based ones).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.6}"));
        writeln!(
            f,
            "{:<24}{:>14.6e}  on {} degrees of freedom",
            "Residual std. error", self.residual_se, self.dof
        )?;
        writeln!(
            f,
            "{:<24}{:>14.6e}  (reduced {:.6e})",
            "Chi-square", self.chisqr, self.redchi
        )?;
        writeln!(
            f,
            "{:<24}{:>14}  (adjusted {})",
            "R-squared",
            opt(self.r_squared),
            opt(self.adj_r_squared)
        )?;
        writeln!(f, "{:<24}{:>14.6e}", "Log-likelihood", self.log_likelihood)?;
        write!(
            f,
            "{:<24}{:>14.4}  BIC {:.4}  (lmfit's chi-square based: AIC {:.4}, BIC {:.4})",
            "AIC", self.aic, self.bic, self.chisqr_aic, self.chisqr_bic
        )
    }
}

/// The `(1 + level)/2` quantile that scales a standard error into the half-width of a
/// two-sided interval at `level`: Student's t with `dof` degrees of freedom, or the standard
/// normal when the variance is known (`known_variance`). `inf` when `dof` is 0 and the
/// variance is estimated.
pub(crate) fn interval_quantile(level: f64, dof: usize, known_variance: bool) -> Result<f64> {
    if !(level > 0.0 && level < 1.0) {
        return Err(Error::InvalidOption {
            field: "level",
            value: level.to_string(),
            constraint: "a confidence level strictly between 0 and 1 (e.g. 0.95)",
        });
    }
    let p = 0.5 + 0.5 * level;
    let q = if known_variance {
        Normal::standard().inverse_cdf(p)
    } else if dof == 0 {
        f64::INFINITY
    } else {
        let t = StudentsT::new(0.0, 1.0, dof as f64).map_err(|_| Error::InvalidOption {
            field: "dof",
            value: dof.to_string(),
            constraint: "at least 1 degree of freedom",
        })?;
        t.inverse_cdf(p)
    };
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_student_t_and_normal() {
        // t_{0.975, 10} = 2.228138851986274, z_{0.975} = 1.959963984540054 (R: qt, qnorm).
        assert!((interval_quantile(0.95, 10, false).unwrap() - 2.228138851986274).abs() < 1e-12);
        assert!((interval_quantile(0.95, 10, true).unwrap() - 1.959963984540054).abs() < 1e-12);
        assert!((interval_quantile(0.99, 1, false).unwrap() - 63.65674116287399).abs() < 1e-9);
        assert_eq!(interval_quantile(0.95, 0, false).unwrap(), f64::INFINITY);
        for bad in [0.0, 1.0, -0.5, f64::NAN, 95.0] {
            assert!(interval_quantile(bad, 5, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn weights_of_a_tiny_sigma_do_not_overflow() {
        let y = ndarray::arr1(&[1.0, 2.0, 4.0]);
        let plain = DataSummary::diagonal(y.view(), None);
        // Data and sigma both around 1e-200 (1/σ² = 1e400 overflows): the weighted TSS is that
        // of y/σ, with equal weights the plain one.
        let s = 1e-200;
        let tiny = y.mapv(|v| v * s);
        let w = DataSummary::diagonal(tiny.view(), Some(&[1.0 / s, 1.0 / s, 1.0 / s]));
        assert!((w.tss / plain.tss - 1.0).abs() < 1e-12, "{w:?}");
        assert!((w.log_det_w / (6.0 * (1.0 / s).ln()) - 1.0).abs() < 1e-14, "{w:?}");
        // The whitened form of a diagonal covariance equals the 1-D form.
        let sig = [0.5, 2.0, 1.5];
        let inv: Vec<f64> = sig.iter().map(|s| 1.0 / s).collect();
        let d = DataSummary::diagonal(y.view(), Some(&inv));
        let wm = Array2::from_diag(&ndarray::arr1(&inv));
        let g = DataSummary::whitened(y.view(), &wm);
        assert!((d.tss - g.tss).abs() < 1e-12 * d.tss && (d.log_det_w - g.log_det_w).abs() < 1e-12);
    }

    #[test]
    fn constant_data_have_no_r_squared() {
        let y = ndarray::arr1(&[0.1, 0.1, 0.1]);
        assert_eq!(DataSummary::diagonal(y.view(), None).tss, 0.0);
        assert_eq!(DataSummary::diagonal(y.view(), Some(&[1.0, 2.0, 3.0])).tss, 0.0);
        let w = Array2::from_diag(&ndarray::arr1(&[1.0, 2.0, 3.0]));
        assert_eq!(DataSummary::whitened(y.view(), &w).tss, 0.0);
        let s = FitStatistics::new(1e-30, 3, 1, Some(DataSummary::diagonal(y.view(), None)));
        assert_eq!((s.r_squared, s.adj_r_squared), (None, None));
    }

    #[test]
    fn unscaling_matches_the_statistics_computed_in_the_callers_units() {
        let d = DataSummary {
            tss: 10.0,
            log_det_w: 0.3,
        };
        let u = 2f64.powi(64);
        let mut scaled = FitStatistics::new(2.5 * u * u, 12, 3, Some(DataSummary { tss: 10.0 * u * u, ..d }));
        scaled.unscale(u);
        let direct = FitStatistics::new(2.5, 12, 3, Some(d));
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(1.0);
        assert!(close(scaled.chisqr, direct.chisqr) && close(scaled.residual_se, direct.residual_se));
        assert!(close(scaled.aic, direct.aic) && close(scaled.bic, direct.bic));
        assert!(close(scaled.chisqr_aic, direct.chisqr_aic) && close(scaled.log_likelihood, direct.log_likelihood));
        assert_eq!(scaled.r_squared, direct.r_squared);
    }
}
