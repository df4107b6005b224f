//! Parameters by name: varying, bounded, fixed and tied parameters of a curve fit (lmfit's
//! `Parameters`, Ceres' constant parameter blocks).
//!
//! A [`Parameters`] value lists the model's parameters in order, each with a name, a value, bounds,
//! and whether it varies, is held fixed, or is tied to an expression of the others (`w2 = w1`,
//! `b = 2*a + c`). [`curve_fit_parameters`] fits the varying ones:
//!
//! * The model sees every parameter, by name (`p["k"]`) or position (`p[0]` is the first one
//!   listed), whatever its kind.
//! * The solver works in the space of the varying parameters only: `nfev`, the covariance, the
//!   degrees of freedom and every statistic of [`ParameterFit::fit`] count only them.
//! * Fixed values are an input of the compiled program, not constants in it: changing a fixed
//!   *value* never recompiles (changing *which* parameters vary does).
//! * A tied parameter is its expression of the others, traced into the model, so its derivatives
//!   reach the varying parameters it names; its error is propagated from their covariance
//!   (`σ² = a Σ aᵀ` with `a` its gradient, the linearisation lmfit's `uncertainties` makes).
//!   Ties may name fixed, varying and other tied parameters, but not form a cycle.
//!
//! Every check happens before anything is traced, with a typed error naming the parameter
//! ([`Error::InvalidParameter`]).

use std::fmt;
use std::sync::Arc;

use ndarray::{Array2, ArrayView1};

use super::options::{FitOptions, XData};
use super::result::CurveFit;
use crate::error::{Error, Result};
use crate::expr::{Expr, Func, Node};
use crate::graph::{Params, Tensor};
use crate::solve::XScale;

/// One named parameter: its starting (or fixed) value, its bounds, and whether it varies, is
/// held fixed or is tied to other parameters. Built with [`Parameter::new`] and the `with_`
/// setters.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Parameter {
    /// The name: letters, digits and `_`, not starting with a digit, not a function or constant
    /// of the expression language (`exp`, `pi`, ...).
    pub name: String,
    /// The starting value of a varying parameter, the value of a fixed one; ignored for a tied
    /// one.
    pub value: f64,
    /// Lower bound, `-inf` for none.
    pub lower: f64,
    /// Upper bound, `inf` for none.
    pub upper: f64,
    /// Whether the fit varies it (`false`: held at `value`).
    pub vary: bool,
    /// An expression of other parameters' names that this parameter equals (then `vary` is
    /// `false` and the bounds must be infinite).
    pub tie: Option<String>,
}

impl Parameter {
    /// A varying parameter called `name`, starting at `value`, without bounds.
    pub fn new(name: impl Into<String>, value: f64) -> Parameter {
        Parameter {
            name: name.into(),
            value,
            lower: f64::NEG_INFINITY,
            upper: f64::INFINITY,
            vary: true,
            tie: None,
        }
    }

    /// Sets the bounds (`±inf` for none).
    pub fn with_bounds(mut self, lower: f64, upper: f64) -> Parameter {
        self.lower = lower;
        self.upper = upper;
        self
    }

    /// Holds the parameter fixed at its value.
    pub fn fixed(mut self) -> Parameter {
        self.vary = false;
        self.tie = None;
        self
    }

    /// Ties the parameter to `expr`, an expression of other parameters' names (`"w1"`,
    /// `"2*a + c"`), in the expression language of [`crate::expr`].
    pub fn tied(mut self, expr: impl Into<String>) -> Parameter {
        self.vary = false;
        self.tie = Some(expr.into());
        self
    }

    /// What the fit does with it.
    pub(super) fn kind(&self) -> ParameterKind {
        match (&self.tie, self.vary) {
            (Some(t), _) => ParameterKind::Tied(t.clone()),
            (None, true) => ParameterKind::Varying,
            (None, false) => ParameterKind::Fixed,
        }
    }
}

/// The parameters of a model, in order (the order of `p[i]`). Adding a name again replaces it.
///
/// # Examples
/// ```
/// use nlsq::fit::{Parameter, Parameters};
///
/// let params = Parameters::new()
///     .with(Parameter::new("a", 1.0))
///     .with(Parameter::new("k", 0.5).with_bounds(0.0, f64::INFINITY))
///     .with(Parameter::new("c", 0.3).fixed());
/// assert_eq!(params.names(), ["a", "k", "c"]);
/// assert_eq!(params.get("c").map(|p| p.vary), Some(false));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parameters {
    pub(super) list: Vec<Parameter>,
}

impl Parameters {
    /// No parameters.
    pub fn new() -> Parameters {
        Parameters::default()
    }

    /// Varying parameters called `names`, starting at `values` (for an expression model, whose
    /// parameters are [`Expr::params`]); `values` shorter than `names` start the rest at 1.
    pub fn from_names<S: AsRef<str>>(names: &[S], values: &[f64]) -> Parameters {
        let list = names
            .iter()
            .enumerate()
            .map(|(i, n)| Parameter::new(n.as_ref(), values.get(i).copied().unwrap_or(1.0)))
            .collect();
        Parameters { list }
    }

    /// These parameters and `p` (replacing one of the same name, in its place).
    pub fn with(mut self, p: Parameter) -> Parameters {
        self.add(p);
        self
    }

    /// Adds `p`, or replaces the parameter of its name in its place.
    pub fn add(&mut self, p: Parameter) -> &mut Parameters {
        match self.list.iter_mut().find(|q| q.name == p.name) {
            Some(q) => *q = p,
            None => self.list.push(p),
        }
        self
    }

    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&Parameter> {
        self.list.iter().find(|p| p.name == name)
    }

    /// The parameter called `name`, to change (e.g. a fixed value between two fits: no
    /// recompile).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Parameter> {
        self.list.iter_mut().find(|p| p.name == name)
    }

    /// The names in order.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|p| p.name.as_str()).collect()
    }

    /// Number of parameters (of every kind).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The parameters in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Parameter> {
        self.list.iter()
    }
}

/// What a fit did with a parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParameterKind {
    /// Fitted.
    Varying,
    /// Held at its value.
    Fixed,
    /// Equal to this expression of other parameters.
    Tied(String),
}

/// One parameter of a [`ParameterFit`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct FittedParameter {
    /// Its name.
    pub name: String,
    /// The fitted value (the fixed value; a tie's value at the fitted parameters).
    pub value: f64,
    /// The standard error: `None` for a fixed parameter, `inf` for one the data do not
    /// determine (and for a tie naming one).
    pub stderr: Option<f64>,
    /// Varying, fixed or tied.
    pub kind: ParameterKind,
    /// False when the data do not determine it (see [`CurveFit::not_determined_warning`]); a tie
    /// is determined when every varying parameter it depends on is.
    pub determined: bool,
}

/// The result of [`curve_fit_parameters`]: every parameter by name, and the fit of the varying
/// ones.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ParameterFit {
    /// The fit of the varying parameters, in their order (`popt`, `pcov`, `dof`, statistics,
    /// status, counts): what `curve_fit` returns for them.
    pub fit: CurveFit,
    /// Every parameter, in the order given.
    pub params: Vec<FittedParameter>,
    /// The covariance of every parameter, in the order given: `pcov` for the varying ones,
    /// propagated for tied ones, 0 in the rows and columns of fixed ones.
    pub covariance: Array2<f64>,
}

impl ParameterFit {
    /// The parameter called `name`.
    pub fn get(&self, name: &str) -> Option<&FittedParameter> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The value of the parameter called `name`.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.get(name).map(|p| p.value)
    }

    /// All values in the order given (a model's `p` at the solution).
    pub fn values(&self) -> Vec<f64> {
        self.params.iter().map(|p| p.value).collect()
    }

    /// The correlation of the parameters called `a` and `b`: `None` for a name not there or a
    /// fixed parameter, NaN where an error is infinite or zero.
    pub fn correlation(&self, a: &str, b: &str) -> Option<f64> {
        let i = self.params.iter().position(|p| p.name == a)?;
        let j = self.params.iter().position(|p| p.name == b)?;
        let (si, sj) = (self.params[i].stderr?, self.params[j].stderr?);
        if !(si.is_finite() && sj.is_finite() && si > 0.0 && sj > 0.0) {
            return Some(f64::NAN);
        }
        if i == j {
            return Some(1.0);
        }
        let (i, j) = (i.min(j), i.max(j));
        Some((self.covariance[[i, j]] / si / sj).clamp(-1.0, 1.0))
    }

    /// Confidence intervals `[lower, upper]` at `level` of every parameter, in the order given
    /// (as [`CurveFit::confidence_intervals`]: the t quantile on the fit's degrees of freedom);
    /// `None` for fixed ones.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a level outside (0, 1).
    pub fn confidence_intervals(&self, level: f64) -> Result<Vec<Option<(f64, f64)>>> {
        let q = super::statistics::interval_quantile(level, self.fit.dof, self.fit.known_variance)?;
        Ok(self
            .params
            .iter()
            .map(|p| {
                p.stderr.map(|s| {
                    let half = if s.is_finite() { q * s } else { f64::INFINITY };
                    (p.value - half, p.value + half)
                })
            })
            .collect())
    }

    /// The fitted `model` at new points with its confidence and prediction bands at `level`, as
    /// [`predict`](super::predict) gives them for a `curve_fit`: the covariance of every
    /// parameter (0 for the fixed ones, propagated through the ties) on the fit's degrees of
    /// freedom. `model` is the one fitted (by name or position over every parameter).
    ///
    /// # Errors
    /// Those of [`predict`](super::predict).
    pub fn predict<'a, M>(
        &self,
        model: &M,
        xdata: impl Into<XData<'a>>,
        level: f64,
        sigma: Option<&[f64]>,
    ) -> Result<super::Prediction>
    where
        M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        let names: Arc<[String]> = self.params.iter().map(|p| p.name.clone()).collect();
        let named = |x: &Tensor, p: &Params| model(x, &p.clone().with_names(names.clone()));
        // The fit of every parameter: their values, their covariance; the rest as fitted.
        let mut all = self.fit.clone();
        all.popt = ndarray::Array1::from(self.values());
        all.pcov = self.covariance.clone();
        all.perr = self.covariance.diag().mapv(|v| v.max(0.0).sqrt());
        all.result.fun = None;
        all.result.jac = None;
        super::predict(&named, xdata, &all, level, sigma)
    }

    /// The warning line of [`CurveFit::not_determined_warning`] by name, with the tied
    /// parameters that depend on those; `None` when the data determine every parameter.
    pub fn not_determined_warning(&self) -> Option<String> {
        let varying: Vec<&FittedParameter> = self
            .params
            .iter()
            .filter(|p| p.kind == ParameterKind::Varying)
            .collect();
        self.fit.not_determined_warning(|j| varying[j].name.clone())
    }
}

impl fmt::Display for ParameterFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<12}{:>22}{:>22}", "param", "value", "std error")?;
        for p in &self.params {
            let err = match (&p.kind, p.stderr) {
                (ParameterKind::Fixed, _) => "fixed".to_string(),
                _ if !p.determined => "not determined".to_string(),
                (_, Some(s)) => format!("{s:.6e}"),
                (_, None) => String::new(),
            };
            write!(f, "{:<12}{:>22.12e}{:>22}", p.name, p.value, err)?;
            match &p.kind {
                ParameterKind::Tied(t) => writeln!(f, "  = {t}")?,
                _ => writeln!(f)?,
            }
        }
        write!(f, "{}", self.fit.result.brief_report())
    }
}

/// Fits `model(x, p)` to `ydata` over named parameters: the varying ones of `params` from their
/// values and within their bounds, the fixed ones held, the tied ones following their
/// expressions (see the [module docs](self)). `p["name"]` and `p[i]` in the model are the
/// parameters in the order of `params`.
///
/// `options` are those of [`curve_fit`](super::curve_fit), except that the bounds and the number
/// of parameters come from `params` (an `options` with either set is an error); an `x_scale` of
/// one value per parameter lists all of them (the fixed and tied ones' are not used). A
/// multistart fit (`starts > 1`) starts only the varying parameters elsewhere.
///
/// # Errors
/// [`Error::InvalidParameter`] for a parameter that cannot be fitted as given (a bad or
/// repeated name, a value that is not finite or outside its bounds, `lower >= upper`, bounds on a
/// tied parameter, a tie that does not parse, names an unknown parameter or forms a cycle),
/// [`Error::InvalidInput`] when no parameter varies, [`Error::InvalidOption`] for `bounds` or
/// `n_params` in `options`; and those of [`curve_fit`](super::curve_fit).
///
/// # Examples
/// ```no_run
/// use nlsq::fit::{curve_fit_parameters, FitOptions, Parameter, Parameters};
/// use nlsq::graph::{Params, Tensor};
///
/// let x: Vec<f64> = (0..50).map(|i| i as f64 * 0.1).collect();
/// let y: Vec<f64> = x.iter().map(|x| 2.5 * (-1.3 * x).exp() + 0.5).collect();
/// let model = |x: &Tensor, p: &Params| &p["a"] * (-&p["k"] * x).exp() + &p["c"];
/// let params = Parameters::new()
///     .with(Parameter::new("a", 1.0))
///     .with(Parameter::new("k", 1.0).with_bounds(0.0, 10.0))
///     .with(Parameter::new("c", 0.5).fixed());
/// let fit = curve_fit_parameters(&model, &x, &y, &params, &FitOptions::default())?;
/// assert!((fit.value("k").unwrap() - 1.3).abs() < 1e-8);
/// assert_eq!(fit.get("c").unwrap().stderr, None);
/// # Ok::<(), nlsq::Error>(())
/// ```
pub fn curve_fit_parameters<'a, M>(
    model: &M,
    xdata: impl Into<XData<'a>>,
    ydata: impl Into<ArrayView1<'a, f64>>,
    params: &Parameters,
    options: &FitOptions,
) -> Result<ParameterFit>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let layout = Layout::of(params)?;
    let opts = layout.options(params, options)?;
    let p0: Vec<f64> = layout.varying.iter().map(|&i| params.list[i].value).collect();
    let fixed: Vec<f64> = layout.fixed.iter().map(|&i| params.list[i].value).collect();
    let wrapped = |x: &Tensor, p: &Params| layout.trace(model, x, p);
    let (x, y) = (xdata.into(), ydata.into());
    let fit = if opts.starts > 1 {
        super::multistart::fit(&wrapped, x, y, Some(&p0), &opts, None, &fixed)?
    } else {
        super::fit_one(&wrapped, x, y, Some(&p0), &opts, &fixed)?
    };
    Ok(layout.result(params, fit))
}

/// Where each parameter comes from in a fit of [`Parameters`].
pub(super) struct Layout {
    pub(super) names: Arc<[String]>,
    /// Positions (in `params`) of the varying parameters, in order: the solver's `p`.
    pub(super) varying: Vec<usize>,
    /// Positions of the fixed ones, in order: the program's `fixed` input, after `p`.
    pub(super) fixed: Vec<usize>,
    /// The tied ones with their parsed expressions (over all names), in an order in which each
    /// names only parameters before it.
    ties: Vec<(usize, Expr)>,
}

impl Layout {
    /// Checks `params` and lays them out.
    pub(super) fn of(params: &Parameters) -> Result<Layout> {
        let bad = |p: &Parameter, reason: String| Error::InvalidParameter {
            name: p.name.clone(),
            reason,
        };
        if params.is_empty() {
            return Err(Error::InvalidInput {
                field: "parameters",
                reason: "no parameters".into(),
            });
        }
        let names: Vec<&str> = params.names();
        let (mut varying, mut fixed, mut tied) = (Vec::new(), Vec::new(), Vec::new());
        for (i, p) in params.list.iter().enumerate() {
            check_name(&p.name).map_err(|r| bad(p, r))?;
            if names[..i].contains(&p.name.as_str()) {
                return Err(bad(p, "listed twice".into()));
            }
            if !(p.lower < p.upper) {
                return Err(bad(
                    p,
                    format!("bounds [{}, {}]: lower must be < upper", p.lower, p.upper),
                ));
            }
            match p.kind() {
                ParameterKind::Tied(t) => {
                    if p.lower.is_finite() || p.upper.is_finite() {
                        return Err(bad(
                            p,
                            format!(
                                "tied to '{t}' with bounds [{}, {}]: a tied parameter takes none (bound the \
                                 parameters it is tied to)",
                                p.lower, p.upper
                            ),
                        ));
                    }
                    let expr = Expr::parse_with_params(&t, &[], &names)
                        .map_err(|e| bad(p, format!("tie '{t}' does not parse: {e}")))?;
                    tied.push((i, expr));
                }
                kind => {
                    if !p.value.is_finite() {
                        return Err(bad(p, format!("value {} is not finite", p.value)));
                    }
                    if p.value < p.lower || p.value > p.upper {
                        let what = if kind == ParameterKind::Fixed {
                            "fixed at"
                        } else {
                            "starts at"
                        };
                        return Err(bad(
                            p,
                            format!("{what} {}, outside its bounds [{}, {}]", p.value, p.lower, p.upper),
                        ));
                    }
                    if kind == ParameterKind::Fixed {
                        fixed.push(i);
                    } else {
                        varying.push(i);
                    }
                }
            }
        }
        if varying.is_empty() {
            return Err(Error::InvalidInput {
                field: "parameters",
                reason: format!(
                    "every parameter ({}) is fixed or tied: nothing is left to fit",
                    names.join(", ")
                ),
            });
        }
        let ties = tie_order(params, tied)?;
        Ok(Layout {
            names: params.list.iter().map(|p| p.name.clone()).collect(),
            varying,
            fixed,
            ties,
        })
    }

    /// `options` for the fit of the varying parameters: their bounds, their `x_scale`.
    fn options(&self, params: &Parameters, options: &FitOptions) -> Result<FitOptions> {
        self.options_for(params, options, &self.varying)
    }

    /// `options` for a fit whose solver parameters are the parameters at positions `slots` (the
    /// varying ones, some repeated: a global fit's local ones once per dataset).
    pub(super) fn options_for(&self, params: &Parameters, options: &FitOptions, slots: &[usize]) -> Result<FitOptions> {
        let refuse = |field: &'static str, value: String| Error::InvalidOption {
            field,
            value,
            constraint: "unset when fitting Parameters (each parameter has its own bounds; their number is \
                         the parameters')",
        };
        if let Some(b) = &options.bounds {
            return Err(refuse("bounds", format!("{b:?}")));
        }
        if let Some(n) = options.n_params {
            return Err(refuse("n_params", n.to_string()));
        }
        let mut opts = options.clone();
        let vary = |i: usize| &params.list[i];
        if slots
            .iter()
            .any(|&i| vary(i).lower.is_finite() || vary(i).upper.is_finite())
        {
            opts.bounds = Some((
                slots.iter().map(|&i| vary(i).lower).collect(),
                slots.iter().map(|&i| vary(i).upper).collect(),
            ));
        }
        if let Some(XScale::Values(v)) = &options.solver.x_scale {
            if v.len() == params.len() && v.len() != 1 {
                opts.solver.x_scale = Some(XScale::Values(slots.iter().map(|&i| v[i]).collect()));
            } else if v.len() != 1 {
                return Err(Error::InvalidOption {
                    field: "x_scale",
                    value: format!("{} values", v.len()),
                    constraint: "one value, or one per parameter (all of them, fixed and tied included)",
                });
            }
        }
        Ok(opts)
    }

    /// The model at `p` (the varying parameters, then the fixed ones): every parameter
    /// assembled by name, the ties traced from the others.
    fn trace<M>(&self, model: &M, x: &Tensor, p: &Params) -> Tensor
    where
        M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        if self.fixed.is_empty() && self.ties.is_empty() {
            // Every parameter varies, in order: names only, the program of `curve_fit`'s.
            return model(x, &p.clone().with_names(self.names.clone()));
        }
        let mut elems: Vec<Option<Tensor>> = vec![None; self.names.len()];
        for (j, &i) in self.varying.iter().chain(&self.fixed).enumerate() {
            elems[i] = Some(p[j].clone());
        }
        model(x, &self.assemble(elems, &p[0]))
    }

    /// Every parameter by name from the varying and fixed ones in `elems` (the tied ones `None`),
    /// with the ties traced from them. `stand_in` has the shape of a parameter (a scalar, a
    /// batch's column, a global fit's per-point values).
    pub(super) fn assemble(&self, mut elems: Vec<Option<Tensor>>, stand_in: &Tensor) -> Params {
        // The stand-in takes the place of the ties not yet traced: a tie names only parameters
        // before it in the order, never one of these.
        for (i, expr) in &self.ties {
            let now = elems
                .iter()
                .map(|e| e.clone().unwrap_or_else(|| stand_in.clone()))
                .collect();
            elems[*i] = Some(expr.trace(&[], &Params::named(now, self.names.clone())));
        }
        let all = elems
            .into_iter()
            .map(|e| e.expect("every parameter assembled"))
            .collect();
        Params::named(all, self.names.clone())
    }

    /// Every value at the varying values `pv`: the fixed ones from `params`, the ties evaluated.
    fn values(&self, params: &Parameters, pv: &[f64]) -> Vec<f64> {
        let mut v: Vec<f64> = params.list.iter().map(|p| p.value).collect();
        for (j, &i) in self.varying.iter().enumerate() {
            v[i] = pv[j];
        }
        for (i, expr) in &self.ties {
            v[*i] = crate::models::host::eval(expr, 0.0, &v);
        }
        v
    }

    /// The by-name result of the fit of the varying parameters.
    fn result(&self, params: &Parameters, fit: CurveFit) -> ParameterFit {
        let (popt, perr) = (fit.popt.to_vec(), fit.perr.to_vec());
        let (fitted, covariance) = self.fitted(params, &popt, &fit.pcov, &perr, &fit.result.not_determined);
        ParameterFit {
            fit,
            params: fitted,
            covariance,
        }
    }

    /// Every parameter and their covariance from the varying ones' values `pv`, covariance
    /// `pcov`, errors `perr` and the (positions among them) not determined, `nd`.
    pub(super) fn fitted(
        &self,
        params: &Parameters,
        pv: &[f64],
        pcov: &Array2<f64>,
        perr: &[f64],
        nd: &[usize],
    ) -> (Vec<FittedParameter>, Array2<f64>) {
        let (n, nv) = (params.len(), self.varying.len());
        let pv = pv.to_vec();
        let values = self.values(params, &pv);
        // a[i][j] = d value_i / d pv_j: unit rows for the varying, zero for the fixed, central
        // differences through the ties (exact for linear ties up to rounding).
        let mut a = Array2::<f64>::zeros((n, nv));
        for (j, &i) in self.varying.iter().enumerate() {
            a[[i, j]] = 1.0;
        }
        if !self.ties.is_empty() {
            for j in 0..nv {
                let h = f64::EPSILON.cbrt() * if pv[j] != 0.0 { pv[j].abs() } else { 1.0 };
                let (mut up, mut down) = (pv.clone(), pv.clone());
                up[j] += h;
                down[j] -= h;
                let (vu, vd) = (self.values(params, &up), self.values(params, &down));
                for (i, _) in &self.ties {
                    a[[*i, j]] = (vu[*i] - vd[*i]) / (up[j] - down[j]);
                }
            }
        }
        // Σ a_ij pcov_jk a_lk over the nonzero a only: an undetermined parameter's inf reaches
        // exactly the parameters that depend on it.
        let covariance = Array2::from_shape_fn((n, n), |(i, l)| {
            // One triangle's order of the sums for both, so the matrix is symmetric.
            let (i, l) = (i.min(l), i.max(l));
            let mut s = 0.0;
            for j in (0..nv).filter(|&j| a[[i, j]] != 0.0) {
                for k in (0..nv).filter(|&k| a[[l, k]] != 0.0) {
                    s += a[[i, j]] * pcov[[j, k]] * a[[l, k]];
                }
            }
            s
        });
        let fitted = params
            .list
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let kind = p.kind();
                let depends = (0..nv).filter(|&j| a[[i, j]] != 0.0);
                let determined = depends.clone().all(|j| !nd.contains(&j));
                let stderr = match kind {
                    ParameterKind::Fixed => None,
                    ParameterKind::Varying => {
                        let j = self.varying.iter().position(|&v| v == i).expect("varying");
                        Some(perr[j])
                    }
                    ParameterKind::Tied(_) if !determined => Some(f64::INFINITY),
                    ParameterKind::Tied(_) => Some(covariance[[i, i]].max(0.0).sqrt()),
                };
                FittedParameter {
                    name: p.name.clone(),
                    value: values[i],
                    stderr,
                    kind,
                    determined,
                }
            })
            .collect();
        (fitted, covariance)
    }
}

/// Why `name` cannot name a parameter, if it cannot.
fn check_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("a name is letters, digits and '_', not starting with a digit".into());
    }
    if Func::from_name(name).is_some() || name == "pi" || name == "e" {
        return Err("is a function or constant of the expression language".into());
    }
    Ok(())
}

/// The ties in an order in which each names only earlier ones (or varying and fixed
/// parameters); a tie that names itself, or a cycle of ties, is an error naming them.
fn tie_order(params: &Parameters, tied: Vec<(usize, Expr)>) -> Result<Vec<(usize, Expr)>> {
    let n = params.len();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, e) in &tied {
        collect_params(e.root(), &mut deps[*i]);
    }
    let is_tied: Vec<bool> = (0..n).map(|i| tied.iter().any(|(t, _)| *t == i)).collect();
    // Depth-first, iteratively: 0 unvisited, 1 on the path, 2 done.
    let mut state = vec![0u8; n];
    let mut order = Vec::new();
    for &(root, _) in &tied {
        if state[root] == 2 {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        while let Some(&mut (i, ref mut next)) = stack.last_mut() {
            if let Some(&d) = deps[i].get(*next) {
                *next += 1;
                if !is_tied[d] || state[d] == 2 {
                    continue;
                }
                if state[d] == 1 {
                    let at = stack.iter().position(|&(s, _)| s == d).expect("on the path");
                    let cycle: Vec<&str> = stack[at..]
                        .iter()
                        .map(|&(s, _)| params.list[s].name.as_str())
                        .chain([params.list[d].name.as_str()])
                        .collect();
                    return Err(Error::InvalidParameter {
                        name: params.list[d].name.clone(),
                        reason: format!("its tie forms a cycle: {}", cycle.join(" -> ")),
                    });
                }
                state[d] = 1;
                stack.push((d, 0));
            } else {
                state[i] = 2;
                order.push(i);
                stack.pop();
            }
        }
    }
    let mut tied: Vec<Option<(usize, Expr)>> = tied.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .filter_map(|i| {
            tied.iter_mut()
                .find(|t| t.as_ref().is_some_and(|(j, _)| *j == i))?
                .take()
        })
        .collect())
}

/// The parameters `node` names (positions).
fn collect_params(node: &Node, out: &mut Vec<usize>) {
    if let Node::Param(i) = node {
        if !out.contains(i) {
            out.push(*i);
        }
    }
    for c in node.children() {
        collect_params(c, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(params: &Parameters) -> Result<(Vec<usize>, Vec<usize>, Vec<usize>)> {
        let l = Layout::of(params)?;
        Ok((l.varying, l.fixed, l.ties.iter().map(|(i, _)| *i).collect()))
    }

    #[test]
    fn ties_are_ordered_after_what_they_name() {
        let params = Parameters::new()
            .with(Parameter::new("c", 0.0).tied("b + a"))
            .with(Parameter::new("a", 1.0))
            .with(Parameter::new("b", 0.0).tied("2*a"))
            .with(Parameter::new("d", 3.0).fixed());
        assert_eq!(kinds(&params).unwrap(), (vec![1], vec![3], vec![2, 0]));
        let l = Layout::of(&params).unwrap();
        assert_eq!(l.values(&params, &[1.5]), vec![4.5, 1.5, 3.0, 3.0]);
    }

    #[test]
    fn bad_parameters_are_errors_naming_them() {
        let named = |params: Parameters| match Layout::of(&params) {
            Err(Error::InvalidParameter { name, reason }) => format!("{name}: {reason}"),
            Err(e) => format!("other: {e}"),
            Ok(_) => "ok".into(),
        };
        let a = || Parameter::new("a", 1.0);
        let cycle = named(
            Parameters::new()
                .with(a())
                .with(Parameter::new("b", 0.0).tied("c"))
                .with(Parameter::new("c", 0.0).tied("2*b")),
        );
        assert!(cycle.contains("cycle: b -> c -> b"), "{cycle}");
        let own = named(Parameters::new().with(a()).with(Parameter::new("b", 0.0).tied("b + a")));
        assert!(own.starts_with("b: its tie forms a cycle: b -> b"), "{own}");
        let unknown = named(Parameters::new().with(a()).with(Parameter::new("b", 0.0).tied("z")));
        assert!(unknown.starts_with("b: tie 'z' does not parse"), "{unknown}");
        let bounded = named(
            Parameters::new()
                .with(a())
                .with(Parameter::new("b", 0.0).with_bounds(0.0, 1.0).tied("a")),
        );
        assert!(bounded.contains("takes none"), "{bounded}");
        assert!(named(Parameters::new().with(Parameter::new("2a", 1.0))).starts_with("2a:"));
        assert!(named(Parameters::new().with(Parameter::new("exp", 1.0))).contains("function or constant"));
        assert!(named(Parameters::new().with(Parameter::new("a", f64::NAN))).contains("not finite"));
        assert!(named(Parameters::new().with(a().with_bounds(2.0, 3.0))).contains("starts at 1"));
        assert!(named(Parameters::new().with(a().with_bounds(2.0, 3.0).fixed())).contains("fixed at 1"));
        assert!(named(Parameters::new().with(a().with_bounds(1.0, 1.0))).contains("lower must be < upper"));
        let all_fixed = named(
            Parameters::new()
                .with(a().fixed())
                .with(Parameter::new("b", 0.0).tied("a")),
        );
        assert!(
            all_fixed.starts_with("other:") && all_fixed.contains("nothing is left to fit"),
            "{all_fixed}"
        );
    }

    #[test]
    fn adding_a_name_again_replaces_it_in_place() {
        let params = Parameters::new()
            .with(Parameter::new("a", 1.0))
            .with(Parameter::new("b", 2.0))
            .with(Parameter::new("a", 3.0).fixed());
        assert_eq!(params.names(), ["a", "b"]);
        assert_eq!(params.get("a").map(|p| (p.value, p.vary)), Some((3.0, false)));
    }
}
