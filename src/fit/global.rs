//! Global fits: one model over several datasets, some parameters shared by all of them and the
//! others local to each (lmfit's "fitting several datasets with common parameters", Ceres'
//! shared parameter blocks).
//!
//! [`curve_fit_global`] fits `D` datasets of possibly different lengths as one least-squares
//! problem in one executable. Its solver parameters are the varying shared parameters, then each
//! dataset's varying local ones (`s + D·l`); fixed parameters (the same in every dataset) are a
//! program input as in [`curve_fit_parameters`](super::curve_fit_parameters), and ties are
//! evaluated per dataset from that dataset's parameters.
//!
//! Two paths ([`GlobalPath`], chosen by size unless forced):
//!
//! * **Dense**, up to [`DENSE_MAX_PARAMS`] solver parameters: the datasets laid end to end with
//!   a row of dataset indices beside `x`, the model seeing at each point its dataset's local
//!   parameters (gathered by the index) and the shared ones, fitted by `curve_fit` itself (every
//!   method, bound, loss and multistart; the Jacobian has a column per solver parameter).
//! * **Schur**, above: the datasets padded into `[D, M]` rows, the model evaluated on all of
//!   them with each dataset's locals as a column, and Levenberg–Marquardt on the Schur
//!   complement of the local blocks (`solve::schur`): the block-arrow Jacobian is never formed,
//!   and the covariance of every parameter comes from the same blocks. LM without bounds and with
//!   the linear loss.

use std::fmt;

use ndarray::{Array2, ArrayView1};

use super::options::{FitOptions, XData};
use super::parameters::{FittedParameter, Layout, ParameterKind, Parameters};
use super::result::CurveFit;
use crate::error::{Error, Result};
use crate::graph::{Params, Tensor};
use crate::types::DType;

/// The most solver parameters (varying shared ones plus every dataset's varying local ones) a
/// global fit takes: it forms the whole Jacobian, one column per parameter.
pub const DENSE_MAX_PARAMS: usize = 64;

/// One dataset of a global fit: `x` (`[m]`, or `[k, m]` for `k` variables), `y` (`[m]`), optional
/// standard deviations, and optional starts of its local parameters.
#[derive(Clone, Debug)]
pub struct Dataset<'a> {
    x: XData<'a>,
    y: ArrayView1<'a, f64>,
    sigma: Option<ArrayView1<'a, f64>>,
    starts: Vec<(String, f64)>,
}

impl<'a> Dataset<'a> {
    /// The dataset `(x, y)`.
    pub fn new(x: impl Into<XData<'a>>, y: impl Into<ArrayView1<'a, f64>>) -> Dataset<'a> {
        Dataset {
            x: x.into(),
            y: y.into(),
            sigma: None,
            starts: Vec::new(),
        }
    }

    /// Standard deviations of `y` (every dataset has them, or none).
    pub fn with_sigma(mut self, sigma: impl Into<ArrayView1<'a, f64>>) -> Dataset<'a> {
        self.sigma = Some(sigma.into());
        self
    }

    /// Starts the local parameter `name` at `value` in this dataset (the others start at their
    /// value in the [`Parameters`]).
    pub fn with_start(mut self, name: impl Into<String>, value: f64) -> Dataset<'a> {
        self.starts.push((name.into(), value));
        self
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True without points.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// The result of [`curve_fit_global`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GlobalFit {
    /// The fit of every solver parameter (`popt`, `pcov`, `dof`, statistics over all points,
    /// status, counts), named by [`GlobalFit::names`].
    pub fit: CurveFit,
    /// The names of `fit.popt`: a shared parameter's own (`k`), a local one's with its dataset
    /// (`a[2]`).
    pub names: Vec<String>,
    /// The shared parameters' names (those that vary or are fixed).
    pub shared: Vec<String>,
    /// Every parameter of each dataset, in the order of the [`Parameters`]: its value, error and
    /// kind in that dataset (shared ones repeat their one value; ties are evaluated per dataset).
    pub datasets: Vec<Vec<FittedParameter>>,
}

impl GlobalFit {
    /// The parameter called `name` in dataset `d`.
    pub fn get(&self, d: usize, name: &str) -> Option<&FittedParameter> {
        self.datasets.get(d)?.iter().find(|p| p.name == name)
    }

    /// The value of `name` in dataset `d`.
    pub fn value(&self, d: usize, name: &str) -> Option<f64> {
        self.get(d, name).map(|p| p.value)
    }
}

impl fmt::Display for GlobalFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, p: &FittedParameter| {
            let err = match (&p.kind, p.stderr) {
                (ParameterKind::Fixed, _) => "fixed".to_string(),
                _ if !p.determined => "not determined".to_string(),
                (_, Some(s)) => format!("{s:.6e}"),
                (_, None) => String::new(),
            };
            write!(f, "{:<12}{:>22.12e}{:>22}", p.name, p.value, err)?;
            match &p.kind {
                ParameterKind::Tied(t) => writeln!(f, "  = {t}"),
                _ => writeln!(f),
            }
        };
        writeln!(f, "shared{:>28}{:>22}", "value", "std error")?;
        if let Some(first) = self.datasets.first() {
            for p in first.iter().filter(|p| self.shared.contains(&p.name)) {
                row(f, p)?;
            }
        }
        for (d, params) in self.datasets.iter().enumerate() {
            writeln!(f, "dataset {d}")?;
            for p in params.iter().filter(|p| !self.shared.contains(&p.name)) {
                row(f, p)?;
            }
        }
        write!(f, "{}", self.fit.result.brief_report())
    }
}

/// Fits `model(x, p)` to several datasets at once, the parameters named in `shared` common to
/// all of them and the others local to each (see the [module docs](self)). `params` gives every
/// parameter's start, bounds, and whether it is fixed or tied, as for
/// [`curve_fit_parameters`](super::curve_fit_parameters); a dataset may start its local ones
/// elsewhere ([`Dataset::with_start`]).
///
/// With nothing shared the popt are those of fitting each dataset on its own (the covariance
/// then pools the residual variance over all datasets, unless `absolute_sigma`).
///
/// # Errors
/// Those of [`curve_fit_parameters`](super::curve_fit_parameters) for `params`;
/// [`Error::InvalidParameter`] for a shared name the parameters lack, a shared tied parameter,
/// a start of a parameter that is not local and varying (or not finite, or outside its bounds);
/// [`Error::InvalidInput`] for no datasets, datasets of different kinds of `x`, a dataset with
/// fewer points than its local parameters, sigma for some datasets only, more than
/// [`DENSE_MAX_PARAMS`] solver parameters; [`Error::InvalidOption`] for `sigma` in `options`
/// (each dataset has its own); and those of [`curve_fit`](super::curve_fit).
///
/// # Examples
/// ```no_run
/// use nlsq::fit::global::{curve_fit_global, Dataset};
/// use nlsq::fit::{FitOptions, Parameter, Parameters};
/// use nlsq::graph::{Params, Tensor};
///
/// let x: Vec<f64> = (0..50).map(|i| i as f64 * 0.1).collect();
/// let ys: Vec<Vec<f64>> = [1.0, 2.0, 3.0]
///     .iter()
///     .map(|a| x.iter().map(|x| a * (-1.3 * x).exp()).collect())
///     .collect();
/// let model = |x: &Tensor, p: &Params| &p["a"] * (-&p["k"] * x).exp();
/// let params = Parameters::new().with(Parameter::new("a", 1.0)).with(Parameter::new("k", 1.0));
/// let data: Vec<Dataset> = ys.iter().map(|y| Dataset::new(&x, y)).collect();
/// let fit = curve_fit_global(&model, &data, &params, &["k"], &FitOptions::default())?;
/// assert!((fit.value(0, "k").unwrap() - 1.3).abs() < 1e-8);
/// assert!((fit.value(2, "a").unwrap() - 3.0).abs() < 1e-8);
/// # Ok::<(), nlsq::Error>(())
/// ```
pub fn curve_fit_global<M>(
    model: &M,
    datasets: &[Dataset<'_>],
    params: &Parameters,
    shared: &[&str],
    options: &FitOptions,
) -> Result<GlobalFit>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    curve_fit_global_with(model, datasets, params, shared, options, GlobalPath::Auto)
}

/// How a global fit solves its problem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GlobalPath {
    /// Dense up to [`DENSE_MAX_PARAMS`] solver parameters, the Schur complement above.
    #[default]
    Auto,
    /// The whole Jacobian, one column per solver parameter (at most [`DENSE_MAX_PARAMS`]): every
    /// method, bound, loss and multistart of `curve_fit`.
    Dense,
    /// LM on the Schur complement of the local blocks (see the [module docs](self)): unbounded,
    /// linear loss, one start; 1–8 varying shared and 1–8 varying local parameters.
    Schur,
}

/// [`curve_fit_global`] on the path `path` (automatic in `curve_fit_global`).
///
/// # Errors
/// Those of [`curve_fit_global`]; [`Error::InvalidInput`] for the dense path above
/// [`DENSE_MAX_PARAMS`]; [`Error::InvalidOption`] for what the Schur path does not take (bounds,
/// `trf`, a robust loss, `starts > 1`, no shared or no local varying parameter, more than 8 of
/// either).
pub fn curve_fit_global_with<M>(
    model: &M,
    datasets: &[Dataset<'_>],
    params: &Parameters,
    shared: &[&str],
    options: &FitOptions,
    path: GlobalPath,
) -> Result<GlobalFit>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let layout = Layout::of(params)?;
    let plan = GlobalPlan::of(&layout, params, datasets, shared)?;
    let n = plan.slots.len();
    let schur_path = match path {
        GlobalPath::Auto => n > DENSE_MAX_PARAMS,
        GlobalPath::Schur => true,
        GlobalPath::Dense => false,
    };
    if !schur_path && n > DENSE_MAX_PARAMS {
        return Err(Error::InvalidInput {
            field: "datasets",
            reason: format!(
                "{} datasets with {} local and {} shared varying parameters make {n} solver parameters; the \
                 dense path takes at most {DENSE_MAX_PARAMS} (it forms the whole Jacobian: use the Schur path)",
                plan.d,
                plan.local_varying.len(),
                plan.shared_varying.len(),
            ),
        });
    }
    if options.sigma.is_some() {
        return Err(Error::InvalidOption {
            field: "sigma",
            value: "set".into(),
            constraint: "unset in a global fit (each Dataset has its own: Dataset::with_sigma)",
        });
    }
    if options.check_finite {
        for (k, set) in datasets.iter().enumerate() {
            check_dataset_finite(k, set)?;
        }
    }
    let mut opts = layout.options_for(params, options, &plan.slots)?;
    if schur_path {
        let p0 = plan.starts(params, datasets)?;
        let fixed: Vec<f64> = layout.fixed.iter().map(|&i| params.list[i].value).collect();
        let rows: Vec<super::schur::Rows> = datasets
            .iter()
            .map(|set| super::schur::Rows {
                x: &set.x,
                y: set.y,
                sigma: set.sigma,
            })
            .collect();
        let spec = super::schur::SchurSpec {
            layout: &layout,
            shared: &plan.shared_varying,
            local: &plan.local_varying,
            x_rows: plan.x_rows,
        };
        let fit = super::schur::fit(model, &spec, &rows, &p0, &fixed, &opts)?;
        return Ok(plan.result(&layout, params, fit));
    }
    let data = plan.stack(datasets);
    if let Some(s) = data.sigma {
        opts = opts.with_sigma(s);
    }
    let p0 = plan.starts(params, datasets)?;
    let fixed: Vec<f64> = layout.fixed.iter().map(|&i| params.list[i].value).collect();
    let wrapped = |x: &Tensor, p: &Params| plan.trace(&layout, model, x, p);
    let x = XData::D2(data.x.view());
    let y = ArrayView1::from(data.y.as_slice());
    let fit = if opts.starts > 1 {
        super::multistart::fit(&wrapped, x, y, Some(&p0), &opts, None, &fixed)?
    } else {
        super::fit_one(&wrapped, x, y, Some(&p0), &opts, &fixed)?
    };
    Ok(plan.result(&layout, params, fit))
}

/// Where each solver parameter of a global fit comes from.
struct GlobalPlan {
    /// Datasets.
    d: usize,
    /// Positions (in the parameters) of the varying shared ones, in order.
    shared_varying: Vec<usize>,
    /// Positions of the varying local ones, in order.
    local_varying: Vec<usize>,
    /// The position of each solver parameter: the shared varying ones, then the local varying
    /// ones once per dataset.
    slots: Vec<usize>,
    /// The shared names (varying or fixed).
    shared: Vec<String>,
    /// `Some(k)` for `[k, m]` x, `None` for `[m]`.
    x_rows: Option<usize>,
}

/// The datasets end to end: x with a last row of dataset indices, y, sigma.
struct Stacked {
    x: Array2<f64>,
    y: Vec<f64>,
    sigma: Option<Vec<f64>>,
}

impl GlobalPlan {
    fn of(layout: &Layout, params: &Parameters, datasets: &[Dataset<'_>], shared: &[&str]) -> Result<GlobalPlan> {
        let bad = |name: &str, reason: String| Error::InvalidParameter {
            name: name.to_string(),
            reason,
        };
        let invalid = |reason: String| Error::InvalidInput {
            field: "datasets",
            reason,
        };
        if datasets.is_empty() {
            return Err(invalid("no datasets".into()));
        }
        let names = params.names();
        for s in shared {
            let Some(p) = params.get(s) else {
                return Err(bad(
                    s,
                    format!(
                        "listed as shared, but the parameters have no such name (they are {})",
                        names.join(", ")
                    ),
                ));
            };
            if let ParameterKind::Tied(t) = p.kind() {
                return Err(bad(
                    s,
                    format!("tied to '{t}', so it follows its tie in each dataset: share the parameters it names"),
                ));
            }
        }
        let is_shared = |i: usize| shared.contains(&params.list[i].name.as_str());
        let shared_varying: Vec<usize> = layout.varying.iter().copied().filter(|&i| is_shared(i)).collect();
        let local_varying: Vec<usize> = layout.varying.iter().copied().filter(|&i| !is_shared(i)).collect();
        let d = datasets.len();
        let slots: Vec<usize> = shared_varying
            .iter()
            .copied()
            .chain((0..d).flat_map(|_| local_varying.iter().copied()))
            .collect();
        let x_rows = match &datasets[0].x {
            XData::D1(_) => None,
            XData::D2(x) => Some(x.nrows()),
        };
        let local_names: Vec<&str> = local_varying.iter().map(|&i| names[i]).collect();
        for (k, set) in datasets.iter().enumerate() {
            let rows = match &set.x {
                XData::D1(_) => None,
                XData::D2(x) => Some(x.nrows()),
            };
            if rows != x_rows {
                return Err(invalid(format!(
                    "dataset {k} has x of {} but dataset 0 of {}",
                    describe(rows),
                    describe(x_rows)
                )));
            }
            if set.x.len() != set.len() {
                return Err(invalid(format!(
                    "dataset {k}: x has {} points but y has {}",
                    set.x.len(),
                    set.len()
                )));
            }
            if set.len() < local_varying.len().max(1) {
                return Err(invalid(format!(
                    "dataset {k} has {} point{}, fewer than its {} local parameters ({})",
                    set.len(),
                    if set.len() == 1 { "" } else { "s" },
                    local_varying.len(),
                    local_names.join(", ")
                )));
            }
            if set.sigma.is_some() != datasets[0].sigma.is_some() {
                return Err(invalid(format!(
                    "dataset {k} {} sigma but dataset 0 {}: give every dataset sigma, or none",
                    if set.sigma.is_some() { "has" } else { "has no" },
                    if datasets[0].sigma.is_some() { "has" } else { "has none" }
                )));
            }
            if let Some(s) = &set.sigma {
                if s.len() != set.len() {
                    return Err(invalid(format!(
                        "dataset {k}: sigma has {} values but y has {}",
                        s.len(),
                        set.len()
                    )));
                }
            }
        }
        Ok(GlobalPlan {
            d,
            shared_varying,
            local_varying,
            slots,
            shared: shared.iter().map(|s| s.to_string()).collect(),
            x_rows,
        })
    }

    /// The datasets end to end, with the row of dataset indices.
    fn stack(&self, datasets: &[Dataset<'_>]) -> Stacked {
        let m: usize = datasets.iter().map(Dataset::len).sum();
        let k = self.x_rows.unwrap_or(1);
        let mut x = Array2::<f64>::zeros((k + 1, m));
        let (mut y, mut sigma) = (Vec::with_capacity(m), Vec::new());
        let mut at = 0;
        for (d, set) in datasets.iter().enumerate() {
            let n = set.len();
            match &set.x {
                XData::D1(v) => x.row_mut(0).slice_mut(ndarray::s![at..at + n]).assign(v),
                XData::D2(v) => x.slice_mut(ndarray::s![..k, at..at + n]).assign(v),
            }
            x.row_mut(k).slice_mut(ndarray::s![at..at + n]).fill(d as f64);
            y.extend(set.y.iter());
            if let Some(s) = &set.sigma {
                sigma.extend(s.iter());
            }
            at += n;
        }
        let sigma = datasets[0].sigma.is_some().then_some(sigma);
        Stacked { x, y, sigma }
    }

    /// The solver's starting point: the parameters' values, a dataset's own starts for its
    /// local ones.
    fn starts(&self, params: &Parameters, datasets: &[Dataset<'_>]) -> Result<Vec<f64>> {
        let mut p0: Vec<f64> = self.slots.iter().map(|&i| params.list[i].value).collect();
        let s = self.shared_varying.len();
        let l = self.local_varying.len();
        for (d, set) in datasets.iter().enumerate() {
            for (name, v) in &set.starts {
                let bad = |reason: String| Error::InvalidParameter {
                    name: name.clone(),
                    reason: format!("start {v} for dataset {d}: {reason}"),
                };
                let Some(q) = self.local_varying.iter().position(|&i| params.list[i].name == *name) else {
                    return Err(bad(
                        "not a local varying parameter (shared, fixed, tied or unknown)".into()
                    ));
                };
                let p = &params.list[self.local_varying[q]];
                if !v.is_finite() || *v < p.lower || *v > p.upper {
                    return Err(bad(format!("must be finite and within [{}, {}]", p.lower, p.upper)));
                }
                p0[s + d * l + q] = *v;
            }
        }
        Ok(p0)
    }

    /// The model at the stacked `x` (last row: dataset indices) for the solver parameters `p`
    /// (then the fixed ones): at each point the shared parameters and its dataset's locals.
    fn trace<M>(&self, layout: &Layout, model: &M, x: &Tensor, p: &Params) -> Tensor
    where
        M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        let g = x.graph();
        let k = self.x_rows.unwrap_or(1) as i64;
        let index = x.row(k).convert(DType::I64);
        let xs = match self.x_rows {
            None => x.row(0),
            Some(_) => x.slice_axis(0, 0, k),
        };
        let (s, l) = (self.shared_varying.len(), self.local_varying.len());
        let mut elems: Vec<Option<Tensor>> = vec![None; layout.names.len()];
        for (j, &i) in self.shared_varying.iter().enumerate() {
            elems[i] = Some(p[j].clone());
        }
        for (q, &i) in self.local_varying.iter().enumerate() {
            let per_dataset: Vec<Tensor> = (0..self.d).map(|d| p[s + d * l + q].reshape([1])).collect();
            elems[i] = Some(g.concat(&per_dataset, 0).take(0, &index));
        }
        for (f, &i) in layout.fixed.iter().enumerate() {
            elems[i] = Some(p[self.slots.len() + f].clone());
        }
        // Ties take the shape of the per-point values when they name a local parameter.
        let stand_in = index.convert(DType::F64);
        model(&xs, &layout.assemble(elems, &stand_in))
    }

    /// Every dataset's parameters from the fit of the solver parameters.
    fn result(&self, layout: &Layout, params: &Parameters, fit: CurveFit) -> GlobalFit {
        let (s, l) = (self.shared_varying.len(), self.local_varying.len());
        let names: Vec<String> = self
            .slots
            .iter()
            .enumerate()
            .map(|(j, &i)| {
                let name = &params.list[i].name;
                if j < s {
                    name.clone()
                } else {
                    format!("{name}[{}]", (j - s) / l)
                }
            })
            .collect();
        let datasets = (0..self.d)
            .map(|d| {
                // The solver parameters of dataset d, in the order of the layout's varying ones.
                let slots: Vec<usize> = layout
                    .varying
                    .iter()
                    .map(|i| match self.shared_varying.iter().position(|v| v == i) {
                        Some(j) => j,
                        None => s + d * l + self.local_varying.iter().position(|v| v == i).expect("local"),
                    })
                    .collect();
                let pv: Vec<f64> = slots.iter().map(|&j| fit.popt[j]).collect();
                let perr: Vec<f64> = slots.iter().map(|&j| fit.perr[j]).collect();
                let pcov = Array2::from_shape_fn((slots.len(), slots.len()), |(a, b)| fit.pcov[[slots[a], slots[b]]]);
                let nd: Vec<usize> = (0..slots.len())
                    .filter(|&a| fit.result.not_determined.contains(&slots[a]))
                    .collect();
                layout.fitted(params, &pv, &pcov, &perr, &nd).0
            })
            .collect();
        let shared = params
            .list
            .iter()
            .filter(|p| self.shared.contains(&p.name))
            .map(|p| p.name.clone())
            .collect();
        GlobalFit {
            fit,
            names,
            shared,
            datasets,
        }
    }
}

/// A non-finite value of dataset `k`, named by the dataset and its index there.
fn check_dataset_finite(k: usize, set: &Dataset<'_>) -> Result<()> {
    let bad = |what: &str, i: usize, v: f64| Error::InvalidInput {
        field: "datasets",
        reason: format!("dataset {k}: {what}[{i}] is {v} (set check_finite = false to allow it)"),
    };
    let first_bad = |v: &mut dyn Iterator<Item = f64>| v.enumerate().find(|(_, x)| !x.is_finite());
    let xs: Option<(usize, f64)> = match &set.x {
        XData::D1(x) => first_bad(&mut x.iter().copied()),
        XData::D2(x) => first_bad(&mut x.iter().copied()),
    };
    if let Some((i, v)) = xs {
        return Err(bad("x", i, v));
    }
    if let Some((i, v)) = first_bad(&mut set.y.iter().copied()) {
        return Err(bad("y", i, v));
    }
    if let Some((i, v)) = set.sigma.and_then(|s| first_bad(&mut s.iter().copied())) {
        return Err(bad("sigma", i, v));
    }
    Ok(())
}

fn describe(rows: Option<usize>) -> String {
    match rows {
        None => "one variable ([m])".into(),
        Some(k) => format!("{k} variables ([{k}, m])"),
    }
}
