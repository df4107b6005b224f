//! Built-in models with data-driven starting values and natural bounds.
//!
//! A built-in is an expression of the [expression language](crate::expr) in one variable `x`
//! with named parameters (lmfit's names where lmfit has the model). [`parse`] reads a model
//! name, or several joined by `+` (`"gaussian+gaussian+linear"`), into a [`Model`]: the sum as
//! one [`Expr`], the parameter names, lower and upper bounds per parameter, and
//! [`Model::guess`], a starting point estimated from the data. [`Model::fit`] fits with that
//! starting point and those bounds through [`curve_fit`].
//!
//! | name | formula | parameters (bounds) |
//! |---|---|---|
//! | `gaussian` | `amplitude/(sigma √(2π)) · exp(−(x−center)²/(2 sigma²))` | amplitude, center, sigma ≥ 0 |
//! | `lorentzian` | `amplitude/π · sigma/((x−center)² + sigma²)` | amplitude, center, sigma ≥ 0 |
//! | `pseudo_voigt` | `(1−fraction) · G + fraction · L`, G a Gaussian of σ_g = sigma/√(2 ln 2), L the Lorentzian above, both of area `amplitude` and FWHM `2 sigma` | amplitude, center, sigma ≥ 0, 0 ≤ fraction ≤ 1 |
//! | `exp_decay` | `amplitude · exp(−x/decay) + c` | amplitude, decay ≥ 0, c |
//! | `exp_decay2` | `amplitude1 · exp(−x/decay1) + amplitude2 · exp(−x/decay2) + c` | amplitude1, decay1 ≥ 0, amplitude2, decay2 ≥ 0, c |
//! | `logistic` | `amplitude · logistic((x−center)/sigma)` (a step from 0 to `amplitude`) | amplitude, center, sigma ≥ 0 |
//! | `hill` | `vmax · xⁿ/(kⁿ + xⁿ)` (x ≥ 0) | vmax, k ≥ 0, n ≥ 0 |
//! | `michaelis_menten` | `vmax · x/(km + x)` (x ≥ 0) | vmax, km ≥ 0 |
//! | `power_law` | `amplitude · x^exponent` (x > 0) | amplitude, exponent |
//! | `polynomial(k)`, k = 0…7 | `c0 + c1 x + … + ck xᵏ` | c0 … ck |
//! | `damped_sine` | `amplitude · exp(−x/decay) · sin(frequency · x + shift)` (`frequency` in radians per unit of x) | amplitude, frequency ≥ 0, shift, decay ≥ 0 |
//! | `linear` | `slope · x + intercept` | slope, intercept |
//! | `constant` | `c` | c |
//!
//! The peak models' `amplitude` is the **area** under the peak, as in lmfit (the height of a
//! Gaussian is `amplitude/(sigma √(2π))`, of a Lorentzian `amplitude/(π sigma)`); `sigma` is
//! the Gaussian's standard deviation and the Lorentzian's and pseudo-Voigt's half width at half
//! maximum. A lower bound of 0 keeps a width or a time constant positive: the TRF solver stays
//! strictly inside its bounds. A constant (or `polynomial(0)`) alone is `c + 0 * x`, so that it
//! has one value per point.
//!
//! # Composition
//! `a+b+…` sums the components. A model of one component keeps the plain names; in a sum each
//! component's parameters get the prefix of its kind ([`Builtin::prefix`]: `g` for
//! `gaussian`, `l` lorentzian, `pv` pseudo_voigt, `exp` exp_decay, `exp2` exp_decay2,
//! `logistic`, `hill`, `mm` michaelis_menten, `power` power_law, `poly` polynomial, `sine`
//! damped_sine, `linear`, `constant`), numbered from 1 when the kind appears more than once,
//! and `_`: `gaussian+gaussian+linear` has `g1_amplitude, g1_center, g1_sigma, g2_amplitude,
//! g2_center, g2_sigma, linear_slope, linear_intercept`.
//!
//! # Starting values
//! [`Model::guess`] works on the finite points sorted by x. Every estimate is a closed form or
//! a grid search with the linear parameters solved by least squares at each grid point
//! (variable projection), so it needs no starting value of its own:
//! - **peaks** (`gaussian`, `lorentzian`, `pseudo_voigt`): the largest absolute value of the
//!   data smoothed by a moving average over about 2% of the points gives the sign and the
//!   height; the half-maximum crossings on either side (interpolated) give the FWHM and the
//!   center (their midpoint); then `sigma` and the area follow from the formula (`fraction`
//!   starts at ½).
//! - **`exp_decay`**: a log-spaced grid of `decay` from 1/100 to 10 times the x range, with
//!   `amplitude` and `c` by linear least squares at each. A log-linear regression, as often
//!   suggested, needs the offset first and the logarithm of noisy values near the offset;
//!   the grid needs neither. **`exp_decay2`**: the same over pairs `decay1 < decay2`.
//! - **`logistic`**: a grid of centers between the 5% and 95% x quantiles and of log-spaced
//!   widths, the amplitude by least squares (the least-squares version of the half-maximum
//!   crossing, not misled by noise around the midpoint).
//! - **`hill`**: a grid over `k` (log-spaced over the positive x range) and `n` (0.3 to 8),
//!   `vmax` by least squares; **`michaelis_menten`**: the same over `km`.
//! - **`power_law`**: a grid of exponents from −4 to 4 in steps of 0.02 on the points with
//!   x > 0, the amplitude by least squares (a log-log regression would need y > 0 and be
//!   biased by noise near 0).
//! - **`damped_sine`**: the period from the zero crossings of the smoothed data about its
//!   mean (counted with hysteresis at 20% of the largest swing, so noise near zero does not
//!   add crossings): `frequency = π (crossings − 1)/(last − first)`; then a grid of ±30% around
//!   it (a log-spaced scan up to the Nyquist frequency when there are fewer than two
//!   crossings) and of `decay`, with the sine and cosine amplitudes by least squares, which
//!   give `amplitude` and `shift`.
//! - **`constant`, `linear`, `polynomial(k)`**: linear least squares (in x centered and
//!   scaled, converted back).
//!
//! In a sum: with peaks, the first background component (`constant`, `linear`,
//! `polynomial`) is fitted to the data's edges (the first and last fifth of the points by x),
//! the other components are estimated in order on what remains, and then each peak component,
//! in order, takes the largest peak left in the residual, whose guessed curve is then
//! subtracted; a peak's search skips x within one FWHM of the peaks found before, so that two
//! components never start on the same peak. Without peaks, the components other than the
//! background are estimated in order on the residual, and the first background component is
//! fitted to what remains. A component estimated when there is a background in the sum allows
//! for an offset in its own grid search. Further background components start at 0 (a sum of
//! two backgrounds is not determined by the data). Every value is then moved strictly inside
//! its bounds.
//!
//! # Examples
//! ```no_run
//! use nlsq::fit::FitOptions;
//!
//! let model = nlsq::models::parse("gaussian+linear")?;
//! assert_eq!(model.param_names()[..3], ["g_amplitude", "g_center", "g_sigma"]);
//! let x: Vec<f64> = (0..200).map(|i| i as f64 * 0.05).collect();
//! let y: Vec<f64> = x
//!     .iter()
//!     .map(|x| 3.0 * (-(x - 4.0f64).powi(2) / 0.5).exp() + 0.1 * x + 1.0)
//!     .collect();
//! let fit = model.fit(&x, &y, &FitOptions::default())?;
//! assert!(fit.success());
//! assert!((fit.popt[1] - 4.0).abs() < 1e-6);
//! # Ok::<(), nlsq::Error>(())
//! ```
//!
//! # References
//! - lmfit's built-in models (`lmfit.models`: GaussianModel, LorentzianModel,
//!   PseudoVoigtModel, ExponentialModel, StepModel with `form='logistic'`, PowerLawModel,
//!   PolynomialModel, SineModel, LinearModel, ConstantModel) for the formulas and names.
//! - G. Golub and V. Pereyra, "Separable nonlinear least squares: the variable projection
//!   method and its applications", Inverse Problems 19 (2003) R1–R26, for the grid searches
//!   with the linear parameters eliminated.

mod guess;
pub(crate) mod host;

use std::fmt;

use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::fit::{curve_fit, default_start, CurveFit, FitOptions};
use crate::solve::Method;

/// The highest degree of `polynomial(k)` (as lmfit's `PolynomialModel`).
pub const MAX_POLYNOMIAL_DEGREE: usize = 7;

/// The names [`parse`] knows, in the order of the module documentation.
pub const BUILTIN_NAMES: [&str; 13] = [
    "gaussian",
    "lorentzian",
    "pseudo_voigt",
    "exp_decay",
    "exp_decay2",
    "logistic",
    "hill",
    "michaelis_menten",
    "power_law",
    "polynomial(k)",
    "damped_sine",
    "linear",
    "constant",
];

/// One built-in model (see the [module documentation](self) for the formulas).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Builtin {
    /// `amplitude/(sigma √(2π)) · exp(−(x−center)²/(2 sigma²))`; `amplitude` is the area.
    Gaussian,
    /// `amplitude/π · sigma/((x−center)² + sigma²)`; `amplitude` is the area.
    Lorentzian,
    /// `(1−fraction)` Gaussian plus `fraction` Lorentzian of the same area and FWHM `2 sigma`.
    PseudoVoigt,
    /// `amplitude · exp(−x/decay) + c`.
    ExpDecay,
    /// `amplitude1 · exp(−x/decay1) + amplitude2 · exp(−x/decay2) + c`.
    ExpDecay2,
    /// `amplitude · logistic((x−center)/sigma)`.
    Logistic,
    /// `vmax · xⁿ/(kⁿ + xⁿ)`.
    Hill,
    /// `vmax · x/(km + x)`.
    MichaelisMenten,
    /// `amplitude · x^exponent`.
    PowerLaw,
    /// `c0 + c1 x + … + ck xᵏ` with the degree `k` (0 to [`MAX_POLYNOMIAL_DEGREE`]).
    Polynomial(usize),
    /// `amplitude · exp(−x/decay) · sin(frequency · x + shift)`.
    DampedSine,
    /// `slope · x + intercept`.
    Linear,
    /// `c`.
    Constant,
}

/// What a component is for the composite starting values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Peak,
    Background,
    Other,
}

impl Builtin {
    /// The built-in called `name` (`"gaussian"`, `"polynomial(3)"`; surrounding whitespace is
    /// ignored).
    ///
    /// # Errors
    /// [`Error::UnknownModel`] for a name that is not a built-in; [`Error::InvalidInput`]
    /// (field `model`) for `polynomial` without a degree or with one above
    /// [`MAX_POLYNOMIAL_DEGREE`], or a degree given to another model.
    pub fn from_name(name: &str) -> Result<Builtin> {
        let name = name.trim();
        let (base, degree) = match name.split_once('(') {
            Some((base, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(|| {
                    invalid_model(format!(
                        "'{name}': a degree is written polynomial(k), e.g. polynomial(2)"
                    ))
                })?;
                (base.trim(), Some(inner.trim()))
            }
            None => (name, None),
        };
        let kind = match base {
            "gaussian" => Builtin::Gaussian,
            "lorentzian" => Builtin::Lorentzian,
            "pseudo_voigt" => Builtin::PseudoVoigt,
            "exp_decay" => Builtin::ExpDecay,
            "exp_decay2" => Builtin::ExpDecay2,
            "logistic" => Builtin::Logistic,
            "hill" => Builtin::Hill,
            "michaelis_menten" => Builtin::MichaelisMenten,
            "power_law" => Builtin::PowerLaw,
            "polynomial" => {
                let text = degree.ok_or_else(|| {
                    invalid_model(format!(
                        "polynomial needs a degree: polynomial(k) with k from 0 to {MAX_POLYNOMIAL_DEGREE}"
                    ))
                })?;
                let k = text
                    .parse::<usize>()
                    .ok()
                    .filter(|k| *k <= MAX_POLYNOMIAL_DEGREE)
                    .ok_or_else(|| {
                        invalid_model(format!(
                            "polynomial({text}): the degree must be an integer from 0 to {MAX_POLYNOMIAL_DEGREE}"
                        ))
                    })?;
                return Ok(Builtin::Polynomial(k));
            }
            "damped_sine" => Builtin::DampedSine,
            "linear" => Builtin::Linear,
            "constant" => Builtin::Constant,
            _ => {
                return Err(Error::UnknownModel {
                    name: name.to_string(),
                    builtins: BUILTIN_NAMES.join(", "),
                })
            }
        };
        if degree.is_some() {
            return Err(invalid_model(format!(
                "'{name}': only polynomial takes a degree in parentheses"
            )));
        }
        Ok(kind)
    }

    /// The name [`Builtin::from_name`] reads (`polynomial(3)` with its degree).
    pub fn name(self) -> String {
        match self {
            Builtin::Polynomial(k) => format!("polynomial({k})"),
            other => BUILTIN_NAMES[other.index()].to_string(),
        }
    }

    /// Position in [`BUILTIN_NAMES`].
    fn index(self) -> usize {
        match self {
            Builtin::Gaussian => 0,
            Builtin::Lorentzian => 1,
            Builtin::PseudoVoigt => 2,
            Builtin::ExpDecay => 3,
            Builtin::ExpDecay2 => 4,
            Builtin::Logistic => 5,
            Builtin::Hill => 6,
            Builtin::MichaelisMenten => 7,
            Builtin::PowerLaw => 8,
            Builtin::Polynomial(_) => 9,
            Builtin::DampedSine => 10,
            Builtin::Linear => 11,
            Builtin::Constant => 12,
        }
    }

    /// The prefix of this kind's parameters in a sum (before the number and the `_`).
    pub fn prefix(self) -> &'static str {
        match self {
            Builtin::Gaussian => "g",
            Builtin::Lorentzian => "l",
            Builtin::PseudoVoigt => "pv",
            Builtin::ExpDecay => "exp",
            Builtin::ExpDecay2 => "exp2",
            Builtin::Logistic => "logistic",
            Builtin::Hill => "hill",
            Builtin::MichaelisMenten => "mm",
            Builtin::PowerLaw => "power",
            Builtin::Polynomial(_) => "poly",
            Builtin::DampedSine => "sine",
            Builtin::Linear => "linear",
            Builtin::Constant => "constant",
        }
    }

    /// The parameter names, unprefixed, in parameter order.
    pub fn params(self) -> Vec<String> {
        let names: &[&str] = match self {
            Builtin::Gaussian | Builtin::Lorentzian | Builtin::Logistic => &["amplitude", "center", "sigma"],
            Builtin::PseudoVoigt => &["amplitude", "center", "sigma", "fraction"],
            Builtin::ExpDecay => &["amplitude", "decay", "c"],
            Builtin::ExpDecay2 => &["amplitude1", "decay1", "amplitude2", "decay2", "c"],
            Builtin::Hill => &["vmax", "k", "n"],
            Builtin::MichaelisMenten => &["vmax", "km"],
            Builtin::PowerLaw => &["amplitude", "exponent"],
            Builtin::Polynomial(k) => return (0..=k).map(|i| format!("c{i}")).collect(),
            Builtin::DampedSine => &["amplitude", "frequency", "shift", "decay"],
            Builtin::Linear => &["slope", "intercept"],
            Builtin::Constant => &["c"],
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    /// Lower and upper bounds per parameter (±inf where there is none).
    pub fn bounds(self) -> (Vec<f64>, Vec<f64>) {
        let n = self.params().len();
        let (mut lo, mut hi) = (vec![f64::NEG_INFINITY; n], vec![f64::INFINITY; n]);
        let positive: &[usize] = match self {
            Builtin::Gaussian | Builtin::Lorentzian | Builtin::Logistic | Builtin::PseudoVoigt => &[2],
            Builtin::ExpDecay => &[1],
            Builtin::ExpDecay2 => &[1, 3],
            Builtin::Hill => &[1, 2],
            Builtin::MichaelisMenten => &[1],
            Builtin::DampedSine => &[1, 3],
            _ => &[],
        };
        for &i in positive {
            lo[i] = 0.0;
        }
        if self == Builtin::PseudoVoigt {
            (lo[3], hi[3]) = (0.0, 1.0);
        }
        (lo, hi)
    }

    /// The formula in the expression language, in the variable `x`, with each parameter named
    /// by `name(plain name)`.
    pub fn template(self, name: impl Fn(&str) -> String) -> String {
        let n = |s: &str| name(s);
        match self {
            Builtin::Gaussian => format!(
                "{a} / ({s} * sqrt(2 * pi)) * exp(-(x - {c})^2 / (2 * {s}^2))",
                a = n("amplitude"),
                c = n("center"),
                s = n("sigma")
            ),
            Builtin::Lorentzian => format!(
                "{a} / pi * {s} / ((x - {c})^2 + {s}^2)",
                a = n("amplitude"),
                c = n("center"),
                s = n("sigma")
            ),
            Builtin::PseudoVoigt => format!(
                "(1 - {f}) * {a} / ({s} / sqrt(2 * ln(2)) * sqrt(2 * pi)) * exp(-(x - {c})^2 * ln(2) / {s}^2) \
                 + {f} * {a} / pi * {s} / ((x - {c})^2 + {s}^2)",
                a = n("amplitude"),
                c = n("center"),
                s = n("sigma"),
                f = n("fraction")
            ),
            Builtin::ExpDecay => format!(
                "{a} * exp(-x / {d}) + {c}",
                a = n("amplitude"),
                d = n("decay"),
                c = n("c")
            ),
            Builtin::ExpDecay2 => format!(
                "{a1} * exp(-x / {d1}) + {a2} * exp(-x / {d2}) + {c}",
                a1 = n("amplitude1"),
                d1 = n("decay1"),
                a2 = n("amplitude2"),
                d2 = n("decay2"),
                c = n("c")
            ),
            Builtin::Logistic => format!(
                "{a} * logistic((x - {c}) / {s})",
                a = n("amplitude"),
                c = n("center"),
                s = n("sigma")
            ),
            Builtin::Hill => format!("{v} * x^{e} / ({k}^{e} + x^{e})", v = n("vmax"), k = n("k"), e = n("n")),
            Builtin::MichaelisMenten => format!("{v} * x / ({k} + x)", v = n("vmax"), k = n("km")),
            Builtin::PowerLaw => format!("{a} * x^{b}", a = n("amplitude"), b = n("exponent")),
            Builtin::Polynomial(k) => (0..=k)
                .map(|i| match i {
                    0 => n("c0"),
                    1 => format!("{} * x", n("c1")),
                    _ => format!("{} * x^{i}", n(&format!("c{i}"))),
                })
                .collect::<Vec<_>>()
                .join(" + "),
            Builtin::DampedSine => format!(
                "{a} * exp(-x / {d}) * sin({w} * x + {p})",
                a = n("amplitude"),
                w = n("frequency"),
                p = n("shift"),
                d = n("decay")
            ),
            Builtin::Linear => format!("{} * x + {}", n("slope"), n("intercept")),
            Builtin::Constant => n("c"),
        }
    }

    fn role(self) -> Role {
        match self {
            Builtin::Gaussian | Builtin::Lorentzian | Builtin::PseudoVoigt => Role::Peak,
            Builtin::Polynomial(_) | Builtin::Linear | Builtin::Constant => Role::Background,
            _ => Role::Other,
        }
    }
}

fn invalid_model(reason: String) -> Error {
    Error::InvalidInput { field: "model", reason }
}

/// One term of a [`Model`]: its kind, its parameters' prefix and its own expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    kind: Builtin,
    prefix: String,
    expr: Expr,
    first: usize,
}

impl Component {
    /// The kind of model.
    pub fn kind(&self) -> Builtin {
        self.kind
    }

    /// The prefix of its parameter names (`"g1_"`; empty for a model of one component).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The component alone as an expression in `x` (its parameters prefixed).
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The indices of its parameters in the model's parameter vector.
    pub fn param_range(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.expr.params().len()
    }
}

/// A built-in model or a sum of them: the expression, parameter names, bounds and
/// starting-value estimate (see the [module documentation](self)).
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    spec: String,
    text: String,
    components: Vec<Component>,
    expr: Expr,
    lower: Vec<f64>,
    upper: Vec<f64>,
}

/// Parses a built-in model name or a sum of names: `"gaussian"`, `"polynomial(3)"`,
/// `"gaussian + gaussian + linear"` (whitespace around names is ignored).
///
/// # Errors
/// [`Error::UnknownModel`] (listing the built-ins) for a name that is not one;
/// [`Error::InvalidInput`] (field `model`) for an empty spec or component, or a bad
/// polynomial degree.
///
/// # Examples
/// ```
/// let m = nlsq::models::parse("lorentzian+constant").unwrap();
/// assert_eq!(m.param_names(), ["l_amplitude", "l_center", "l_sigma", "constant_c"]);
/// assert_eq!(m.lower()[2], 0.0);
/// assert!(nlsq::models::parse("gausian").is_err());
/// ```
pub fn parse(spec: &str) -> Result<Model> {
    let parts: Vec<&str> = spec.split('+').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(invalid_model(if spec.trim().is_empty() {
            "the model is empty".to_string()
        } else {
            format!("'{}' has an empty component", spec.trim())
        }));
    }
    let kinds: Vec<Builtin> = parts.iter().map(|p| Builtin::from_name(p)).collect::<Result<_>>()?;
    let single = kinds.len() == 1;
    let mut components = Vec::with_capacity(kinds.len());
    let (mut names, mut lower, mut upper, mut terms) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, &kind) in kinds.iter().enumerate() {
        let prefix = if single {
            String::new()
        } else {
            let same = kinds.iter().filter(|k| k.prefix() == kind.prefix()).count();
            if same > 1 {
                let number = kinds[..=i].iter().filter(|k| k.prefix() == kind.prefix()).count();
                format!("{}{number}_", kind.prefix())
            } else {
                format!("{}_", kind.prefix())
            }
        };
        let own: Vec<String> = kind.params().iter().map(|p| format!("{prefix}{p}")).collect();
        let text = kind.template(|p| format!("{prefix}{p}"));
        let own_refs: Vec<&str> = own.iter().map(String::as_str).collect();
        let expr = Expr::parse_with_params(&text, &["x"], &own_refs)?;
        let (lo, hi) = kind.bounds();
        components.push(Component {
            kind,
            prefix,
            expr,
            first: names.len(),
        });
        names.extend(own);
        lower.extend(lo);
        upper.extend(hi);
        terms.push(text);
    }
    let mut text = terms.join(" + ");
    if kinds
        .iter()
        .all(|k| matches!(k, Builtin::Constant | Builtin::Polynomial(0)))
    {
        // One value per point, like every other model.
        text.push_str(" + 0 * x");
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let expr = Expr::parse_with_params(&text, &["x"], &refs)?;
    Ok(Model {
        spec: kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join("+"),
        text,
        components,
        expr,
        lower,
        upper,
    })
}

/// Whether `text` is meant as built-in models rather than an expression: names (or
/// `name(k)`) joined by `+`, at least one of which is a built-in. The `nlsq` command uses it
/// to tell `--model gaussian+linear` from `--model 'a*x + b'`; [`parse`] then reports a
/// misspelt name among real ones (`gausian+linear`).
///
/// # Examples
/// ```
/// use nlsq::models::is_builtin_spec;
/// assert!(is_builtin_spec("gaussian + linear") && is_builtin_spec("polynomial(9)"));
/// assert!(is_builtin_spec("gausian+linear"));
/// assert!(!is_builtin_spec("a*x + b") && !is_builtin_spec("a + b"));
/// ```
pub fn is_builtin_spec(text: &str) -> bool {
    let parts: Vec<&str> = text.split('+').map(str::trim).collect();
    let base = |p: &str| -> Option<String> {
        let (name, rest) = match p.split_once('(') {
            Some((n, r)) => (n.trim(), Some(r)),
            None => (p, None),
        };
        let ident = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let args_ok = rest.map_or(true, |r| {
            r.strip_suffix(')')
                .is_some_and(|d| d.trim().chars().all(|c| c.is_ascii_digit()))
        });
        (ident && args_ok).then(|| name.to_string())
    };
    let bases: Option<Vec<String>> = parts.iter().map(|p| base(p)).collect();
    bases.is_some_and(|b| {
        b.iter()
            .any(|n| BUILTIN_NAMES.iter().any(|k| k.split('(').next() == Some(n.as_str())))
    })
}

impl Model {
    /// The model's name as [`parse`] normalizes it (`"gaussian+gaussian+linear"`).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The model's formula as the templates write it (`pi` by name; [`Expr`]'s `Display` of
    /// [`Model::expr`] prints the same tree with constants as numbers).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The whole model as one expression in `x`; [`Expr::model`] makes it a `curve_fit` model.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The parameter names in parameter order.
    pub fn param_names(&self) -> &[String] {
        self.expr.params()
    }

    /// The components, in the order of the spec.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Lower bounds per parameter (−inf where there is none).
    pub fn lower(&self) -> &[f64] {
        &self.lower
    }

    /// Upper bounds per parameter (inf where there is none).
    pub fn upper(&self) -> &[f64] {
        &self.upper
    }

    /// The index of the parameter called `name`.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.param_names().iter().position(|n| n == name)
    }

    /// A starting point estimated from the data (see the [module
    /// documentation](self#starting-values)), strictly inside the model's bounds. Points with a
    /// non-finite x or y are left out of the estimate.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `x` and `y` differ in length or fewer than two points are
    /// finite.
    pub fn guess(&self, x: &[f64], y: &[f64]) -> Result<Vec<f64>> {
        self.guess_within(x, y, &self.lower, &self.upper)
    }

    /// [`Model::guess`] moved strictly inside the bounds `lower` and `upper` (one value per
    /// parameter) instead of the model's: the start for a fit with the user's bounds.
    ///
    /// # Errors
    /// As [`Model::guess`], and [`Error::InvalidInput`] when the bounds do not have one value
    /// per parameter or a lower bound is not below its upper bound.
    pub fn guess_within(&self, x: &[f64], y: &[f64], lower: &[f64], upper: &[f64]) -> Result<Vec<f64>> {
        let n = self.param_names().len();
        if lower.len() != n
            || upper.len() != n
            || lower
                .iter()
                .zip(upper)
                .any(|(l, h)| l.partial_cmp(h) != Some(std::cmp::Ordering::Less))
        {
            return Err(Error::InvalidInput {
                field: "bounds",
                reason: format!("need {n} values each, every lower bound below its upper bound"),
            });
        }
        if x.len() != y.len() {
            return Err(Error::InvalidInput {
                field: "ydata",
                reason: format!("has {} points but xdata has {}", y.len(), x.len()),
            });
        }
        let mut points: Vec<(f64, f64)> = x
            .iter()
            .zip(y)
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|(a, b)| (*a, *b))
            .collect();
        if points.len() < 2 {
            return Err(Error::InvalidInput {
                field: "ydata",
                reason: format!("a starting value needs at least 2 finite points, got {}", points.len()),
            });
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (xs, ys): (Vec<f64>, Vec<f64>) = points.into_iter().unzip();
        let mut p = guess::composite(&self.components, n, &xs, &ys);
        inside(&mut p, lower, upper);
        Ok(p)
    }

    /// `options` with the model's bounds when they give none (and do not ask for `lm`, which
    /// takes no bounds). The method then defaults to `trf` as in [`curve_fit`].
    pub fn options(&self, options: &FitOptions) -> FitOptions {
        let mut o = options.clone();
        let bounded = self.lower.iter().chain(&self.upper).any(|v| v.is_finite());
        if o.bounds.is_none() && bounded && o.solver.method != Some(Method::Lm) {
            o.bounds = Some((self.lower.clone(), self.upper.clone()));
        }
        o
    }

    /// Fits the model to `(x, y)` from [`Model::guess`] with [`Model::options`] (the user's
    /// bounds replace the model's; the guess is moved strictly inside whichever apply).
    ///
    /// # Errors
    /// As [`Model::guess`] and [`curve_fit`].
    pub fn fit(&self, x: &[f64], y: &[f64], options: &FitOptions) -> Result<CurveFit> {
        let options = self.options(options);
        let n = self.param_names().len();
        let p0 = match &options.bounds {
            Some((lo, hi)) => {
                let expand = |v: &[f64]| if v.len() == 1 { vec![v[0]; n] } else { v.to_vec() };
                let (lo, hi) = (expand(lo), expand(hi));
                // Bounds curve_fit will refuse: the model's start, and curve_fit's error.
                if lo.len() == n && hi.len() == n && lo.iter().zip(&hi).all(|(l, h)| l < h) {
                    self.guess_within(x, y, &lo, &hi)?
                } else {
                    self.guess(x, y)?
                }
            }
            None => self.guess(x, y)?,
        };
        curve_fit(&self.expr.model(), x, y, Some(&p0), &options)
    }

    /// Fits from the starting point `p0` (e.g. [`Model::guess`] with some values replaced)
    /// with [`Model::options`].
    ///
    /// # Errors
    /// As [`curve_fit`] (`p0` of the wrong length or outside the bounds included).
    pub fn fit_from(&self, x: &[f64], y: &[f64], p0: &[f64], options: &FitOptions) -> Result<CurveFit> {
        curve_fit(&self.expr.model(), x, y, Some(p0), &self.options(options))
    }
}

/// The normalized spec (`gaussian+linear`).
impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl std::str::FromStr for Model {
    type Err = Error;

    /// [`parse`].
    fn from_str(s: &str) -> Result<Model> {
        parse(s)
    }
}

/// Moves each value strictly inside `[lower, upper]` (a non-finite value to the bounds'
/// default start): a value on or beyond a finite bound moves in by 0.1% of the interval, or of
/// its magnitude (1e-6 at least) when the other side is open.
fn inside(p: &mut [f64], lower: &[f64], upper: &[f64]) {
    for ((v, &lo), &hi) in p.iter_mut().zip(lower).zip(upper) {
        if !v.is_finite() {
            *v = default_start(lo, hi);
        }
        let step = |bound: f64| {
            if lo.is_finite() && hi.is_finite() {
                1e-3 * (hi - lo)
            } else {
                (1e-3 * bound.abs()).max(1e-6)
            }
        };
        if *v <= lo {
            *v = lo + step(lo);
        }
        if *v >= hi {
            *v = hi - step(hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_model_keeps_plain_names_and_repeated_kinds_are_numbered() {
        let g = parse("gaussian").unwrap();
        assert_eq!(g.param_names(), ["amplitude", "center", "sigma"]);
        assert_eq!((g.lower()[2], g.upper()[2]), (0.0, f64::INFINITY));
        let m = parse(" gaussian + gaussian+linear ").unwrap();
        assert_eq!(m.spec(), "gaussian+gaussian+linear");
        assert_eq!(
            m.param_names(),
            [
                "g1_amplitude",
                "g1_center",
                "g1_sigma",
                "g2_amplitude",
                "g2_center",
                "g2_sigma",
                "linear_slope",
                "linear_intercept"
            ]
        );
        assert_eq!(m.components()[1].prefix(), "g2_");
        assert_eq!(m.components()[2].param_range(), 6..8);
        assert_eq!(m.lower().len(), 8);
        assert_eq!((m.lower()[5], m.lower()[6]), (0.0, f64::NEG_INFINITY));
        let p = parse("polynomial(2)+polynomial(1)").unwrap();
        assert_eq!(
            p.param_names(),
            ["poly1_c0", "poly1_c1", "poly1_c2", "poly2_c0", "poly2_c1"]
        );
    }

    #[test]
    fn unknown_names_list_the_builtins() {
        let e = parse("gaussian+gausian").unwrap_err();
        assert!(
            matches!(&e, Error::UnknownModel { name, .. } if name == "gausian"),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with("unknown built-in model 'gausian' (built-ins: gaussian, lorentzian,")
                && text.contains("polynomial(k)")
                && text.contains("constant)")
                && !text.contains('\n'),
            "{text}"
        );
    }

    #[test]
    fn polynomial_degrees_out_of_range_or_missing_are_errors() {
        assert_eq!(parse("polynomial(7)").unwrap().param_names().len(), 8);
        assert_eq!(parse("polynomial( 0 )").unwrap().expr().to_string(), "c0 + 0 * x");
        for (bad, want) in [
            ("polynomial(8)", "integer from 0 to 7"),
            ("polynomial(-1)", "integer from 0 to 7"),
            ("polynomial(x)", "integer from 0 to 7"),
            ("polynomial", "needs a degree"),
            ("polynomial(2", "polynomial(k)"),
            ("gaussian(2)", "only polynomial takes a degree"),
            ("gaussian++linear", "empty component"),
            ("  ", "empty"),
        ] {
            match parse(bad) {
                Err(Error::InvalidInput { field: "model", reason }) => {
                    assert!(reason.contains(want), "{bad}: {reason}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_builtin_parses_with_its_bounds_and_prints_back() {
        for name in BUILTIN_NAMES {
            let name = name.replace("(k)", "(3)");
            let m = parse(&name).unwrap();
            assert_eq!(m.spec(), name);
            let n = m.param_names().len();
            assert!(m.lower().len() == n && m.upper().len() == n, "{name}");
            assert!(m.lower().iter().zip(m.upper()).all(|(l, h)| l < h), "{name}");
            let refs: Vec<&str> = m.param_names().iter().map(String::as_str).collect();
            let again = Expr::parse_with_params(&m.expr().to_string(), &["x"], &refs).unwrap();
            assert_eq!(&again, m.expr(), "{name}");
        }
        assert_eq!(
            parse("exp_decay").unwrap().expr().to_string(),
            "amplitude * exp(-x / decay) + c"
        );
    }

    #[test]
    fn builtin_specs_are_told_from_expressions() {
        for yes in [
            "gaussian",
            "gaussian+linear",
            "polynomial(3)",
            "gausian + linear",
            "polynomial(12)",
        ] {
            assert!(is_builtin_spec(yes), "{yes}");
        }
        for no in [
            "a*x+b",
            "a + b",
            "gausian",
            "exp(x)",
            "linear*2",
            "gaussian - linear",
            "",
        ] {
            assert!(!is_builtin_spec(no), "{no}");
        }
    }

    #[test]
    fn values_are_moved_strictly_inside_their_bounds() {
        let mut p = [0.0, 2.0, f64::NAN, -5.0];
        inside(
            &mut p,
            &[0.0, 0.0, 0.0, f64::NEG_INFINITY],
            &[f64::INFINITY, 1.0, 1.0, f64::INFINITY],
        );
        assert_eq!(p, [1e-6, 0.999, 0.5, -5.0]);
    }
}
