//! Solver options, with scipy's names, defaults and meanings.

// `!(v > 0.0)` is deliberate throughout: it is true for NaN, which must be rejected too.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::fmt;

use crate::error::{Error, Result};

/// The algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// Trust Region Reflective (Branch, Coleman & Li 1999); supports bounds and robust losses.
    Trf,
    /// Levenberg–Marquardt (Moré 1978, as in MINPACK's `lmder`); unbounded, linear loss only.
    Lm,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Trf => "trf",
            Method::Lm => "lm",
        })
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Method> {
        match s {
            "trf" => Ok(Method::Trf),
            "lm" => Ok(Method::Lm),
            other => Err(Error::InvalidOption {
                field: "method",
                value: other.to_string(),
                constraint: "one of trf, lm",
            }),
        }
    }
}

/// Robust loss `rho(z)` applied to `z = (f / f_scale)^2`, as in scipy's `least_squares`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Loss {
    /// `rho(z) = z`: ordinary least squares.
    Linear,
    /// `rho(z) = 2 ((1 + z)^0.5 - 1)`: smooth approximation of l1.
    SoftL1,
    /// `rho(z) = z` if `z <= 1` else `2 z^0.5 - 1`.
    Huber,
    /// `rho(z) = ln(1 + z)`.
    Cauchy,
    /// `rho(z) = arctan(z)`.
    Arctan,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Loss::Linear => "linear",
            Loss::SoftL1 => "soft_l1",
            Loss::Huber => "huber",
            Loss::Cauchy => "cauchy",
            Loss::Arctan => "arctan",
        })
    }
}

impl std::str::FromStr for Loss {
    type Err = Error;
    fn from_str(s: &str) -> Result<Loss> {
        Ok(match s {
            "linear" => Loss::Linear,
            "soft_l1" => Loss::SoftL1,
            "huber" => Loss::Huber,
            "cauchy" => Loss::Cauchy,
            "arctan" => Loss::Arctan,
            other => {
                return Err(Error::InvalidOption {
                    field: "loss",
                    value: other.to_string(),
                    constraint: "one of linear, soft_l1, huber, cauchy, arctan",
                })
            }
        })
    }
}

/// Characteristic scale of each variable.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum XScale {
    /// Fixed scales, one per parameter (or one for all), each > 0.
    Values(Vec<f64>),
    /// Inverse column norms of the Jacobian, updated as the maximum seen (scipy's `'jac'`,
    /// MINPACK's `mode = 1`).
    Jac,
}

/// Options of a solve. Tolerances, `max_nfev` and `f_scale` are inputs of the compiled
/// program (changing them does not recompile); `method`, `loss` and the kind of `x_scale`
/// shape the program.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SolverOptions {
    /// Algorithm. Default: `None` = LM without bounds, TRF with bounds (like `curve_fit`) or with a
    /// robust loss (which LM does not support).
    pub method: Option<Method>,
    /// Stop when `dF < ftol * F` and the step's reduction ratio `> 0.25` (TRF); MINPACK's
    /// relative-reduction test for LM. Default `1e-8`.
    pub ftol: f64,
    /// Stop when `‖D dx‖ <= xtol * ‖D x‖` (TRF: the step; LM: the trust radius), with `D` the
    /// variable scaling (the Jacobian's column norms by default, `1 / x_scale` when given).
    /// scipy's TRF tests `‖dx‖ < xtol * (xtol + ‖x‖)` in the units of x instead, which depends on
    /// them. Default `1e-8`.
    pub xtol: f64,
    /// Stop when the largest cosine between `f` and a column of `J` is below gtol (LM: MINPACK's
    /// test; TRF: the same with each column's term cut by how far its parameter is from the
    /// bound the gradient points at, see `solve::common::gradient_cosine`). scipy's TRF tests
    /// the Coleman–Li scaled gradient `‖g v‖_inf < gtol`, which has the units of the cost and
    /// stops at p0 for small data. Default `1e-8`.
    pub gtol: f64,
    /// Maximum number of residual evaluations. Default `None` = `100 * n`.
    pub max_nfev: Option<usize>,
    /// Robust loss (TRF only). Default [`Loss::Linear`].
    pub loss: Loss,
    /// Soft margin between inlier and outlier residuals. Default `1.0`.
    pub f_scale: f64,
    /// Variable scaling. Default `None`: automatic Jacobian scaling ([`XScale::Jac`]) with both
    /// methods, so that a fit does not depend on the units of its parameters (scipy uses it for
    /// LM but `1.0` for every parameter with TRF).
    pub x_scale: Option<XScale>,
}

impl Default for SolverOptions {
    fn default() -> Self {
        SolverOptions {
            method: None,
            ftol: 1e-8,
            xtol: 1e-8,
            gtol: 1e-8,
            max_nfev: None,
            loss: Loss::Linear,
            f_scale: 1.0,
            x_scale: None,
        }
    }
}

fn invalid(field: &'static str, value: impl fmt::Display, constraint: &'static str) -> Error {
    Error::InvalidOption {
        field,
        value: value.to_string(),
        constraint,
    }
}

/// The setters of the solver options, for [`SolverOptions`] itself (`solver_setters!()`) and
/// for option types that hold one in a field (`solver_setters!(solver)`), so that every option
/// type has the same setters with the same meaning.
macro_rules! solver_setters {
    ($($field:ident)?) => {
        /// Sets the method (see [`SolverOptions::method`](crate::solve::SolverOptions::method)).
        pub fn with_method(mut self, m: $crate::solve::Method) -> Self {
            self$(.$field)?.method = Some(m);
            self
        }
        /// Sets `ftol` (see [`SolverOptions::ftol`](crate::solve::SolverOptions::ftol)).
        pub fn with_ftol(mut self, v: f64) -> Self {
            self$(.$field)?.ftol = v;
            self
        }
        /// Sets `xtol` (see [`SolverOptions::xtol`](crate::solve::SolverOptions::xtol)).
        pub fn with_xtol(mut self, v: f64) -> Self {
            self$(.$field)?.xtol = v;
            self
        }
        /// Sets `gtol` (see [`SolverOptions::gtol`](crate::solve::SolverOptions::gtol)).
        pub fn with_gtol(mut self, v: f64) -> Self {
            self$(.$field)?.gtol = v;
            self
        }
        /// Sets `ftol`, `xtol` and `gtol` at once.
        pub fn with_tol(self, v: f64) -> Self {
            self.with_ftol(v).with_xtol(v).with_gtol(v)
        }
        /// Sets `max_nfev` (see [`SolverOptions::max_nfev`](crate::solve::SolverOptions::max_nfev)).
        pub fn with_max_nfev(mut self, v: usize) -> Self {
            self$(.$field)?.max_nfev = Some(v);
            self
        }
        /// Sets the robust loss (see [`SolverOptions::loss`](crate::solve::SolverOptions::loss)).
        pub fn with_loss(mut self, l: $crate::solve::Loss) -> Self {
            self$(.$field)?.loss = l;
            self
        }
        /// Sets `f_scale` (see [`SolverOptions::f_scale`](crate::solve::SolverOptions::f_scale)).
        pub fn with_f_scale(mut self, v: f64) -> Self {
            self$(.$field)?.f_scale = v;
            self
        }
        /// Sets `x_scale` (see [`SolverOptions::x_scale`](crate::solve::SolverOptions::x_scale)).
        pub fn with_x_scale(mut self, s: $crate::solve::XScale) -> Self {
            self$(.$field)?.x_scale = Some(s);
            self
        }
    };
}
pub(crate) use solver_setters;

impl SolverOptions {
    solver_setters!();

    /// Checks every field; `n` is the number of parameters.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the field and its constraint.
    pub fn validate(&self, n: usize) -> Result<()> {
        for (field, v) in [("ftol", self.ftol), ("xtol", self.xtol), ("gtol", self.gtol)] {
            if !(v >= 0.0) || !v.is_finite() {
                return Err(invalid(field, v, "finite and >= 0"));
            }
        }
        if self.ftol < f64::EPSILON && self.xtol < f64::EPSILON && self.gtol < f64::EPSILON {
            return Err(invalid(
                "ftol",
                self.ftol,
                "at least one of ftol, xtol, gtol >= machine epsilon (2.2e-16)",
            ));
        }
        if self.max_nfev == Some(0) {
            return Err(invalid("max_nfev", 0, ">= 1"));
        }
        if !(self.f_scale > 0.0) || !self.f_scale.is_finite() {
            return Err(invalid("f_scale", self.f_scale, "finite and > 0"));
        }
        if let Some(XScale::Values(v)) = &self.x_scale {
            if v.len() != 1 && v.len() != n {
                return Err(invalid(
                    "x_scale",
                    format!("{} values", v.len()),
                    "1 value or one per parameter",
                ));
            }
            if let Some(bad) = v.iter().find(|s| !(**s > 0.0) || !s.is_finite()) {
                return Err(invalid("x_scale", bad, "finite and > 0"));
            }
        }
        if self.method == Some(Method::Lm) && self.loss != Loss::Linear {
            return Err(invalid(
                "loss",
                self.loss,
                "linear with method lm: lm supports only the linear loss, a robust loss needs method trf",
            ));
        }
        Ok(())
    }

    /// `max_nfev` or its default `100 * n`.
    pub fn max_nfev_or_default(&self, n: usize) -> usize {
        self.max_nfev.unwrap_or(100 * n.max(1))
    }

    /// `x_scale` for `method` expanded to `n` values, or `None` for Jacobian scaling.
    pub fn x_scale_values(&self, method: Method, n: usize) -> Option<Vec<f64>> {
        match (&self.x_scale, method) {
            (None, _) | (Some(XScale::Jac), _) => None,
            (Some(XScale::Values(v)), _) if v.len() == 1 => Some(vec![v[0]; n]),
            (Some(XScale::Values(v)), _) => Some(v.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_field() {
        let e = SolverOptions::default().with_ftol(-1.0).validate(3).unwrap_err();
        assert!(e.to_string().contains("ftol"), "{e}");
        let e = SolverOptions::default().with_f_scale(0.0).validate(3).unwrap_err();
        assert!(e.to_string().contains("f_scale"), "{e}");
        let e = SolverOptions::default()
            .with_x_scale(XScale::Values(vec![1.0, 2.0]))
            .validate(3)
            .unwrap_err();
        assert!(e.to_string().contains("x_scale"), "{e}");
        let e = SolverOptions::default()
            .with_method(Method::Lm)
            .with_loss(Loss::Huber)
            .validate(3)
            .unwrap_err();
        assert!(e.to_string().contains("loss"), "{e}");
        assert!(SolverOptions::default().with_tol(0.0).validate(3).is_err());
        assert!(SolverOptions::default().validate(3).is_ok());
        assert_eq!(SolverOptions::default().max_nfev_or_default(3), 300);
    }

    #[test]
    fn names_parse() {
        assert_eq!("soft_l1".parse::<Loss>().unwrap(), Loss::SoftL1);
        assert_eq!("lm".parse::<Method>().unwrap(), Method::Lm);
        assert!("dogleg".parse::<Method>().is_err());
    }
}
