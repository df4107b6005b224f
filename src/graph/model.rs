//! The model-facing API: a model is `Fn(&Tensor, &Params) -> Tensor`.
//!
//! ```
//! use nlsq::graph::{Graph, Params, TensorType, jacfwd_model};
//! use nlsq::DType;
//!
//! let model = |x: &nlsq::graph::Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2];
//! let g = Graph::new();
//! let x = g.parameter("x", DType::F64, [100]);
//! let p = g.parameter("p", DType::F64, [3]);
//! let (f, jac) = jacfwd_model(&model, &x, &p).unwrap();
//! assert_eq!(f.dims(), vec![100]);
//! assert_eq!(jac.dims(), vec![100, 3]);
//! let program = g.finish([&f, &jac]).unwrap();
//! assert!(program.text.starts_with("func.func @main(%x: tensor<100xf64>, %p: tensor<3xf64>)"));
//! ```

use std::ops::Index;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::builder::{Function, Graph, Tensor};
use crate::graph::jvp::{jacfwd, jacfwd_t};
use crate::graph::types::{Shape, TensorType};

/// The parameter vector as seen by a model: `p[i]` is the scalar tensor of parameter `i`, and
/// for a fit of named parameters ([`crate::fit::Parameters`]) `p["k"]` the one named `k`.
///
/// Built from a traced vector of shape `[n]`; the scalars are static slices of it (unused
/// ones are dropped at emission). Indexing out of range, or by a name the parameters do not
/// have, records an error in the graph (returned by the fit as a trace error) and yields a
/// placeholder.
#[derive(Clone, Debug)]
pub struct Params {
    vector: Tensor,
    elems: Vec<Tensor>,
    poison: Tensor,
    names: Option<Arc<[String]>>,
}

impl Params {
    /// Splits a parameter vector `[n]` into `n` scalars.
    pub fn new(p: &Tensor) -> Params {
        Self::split(p, 1, "parameters must be a vector", |i| p.get(i))
    }

    /// Parameters of a batch of problems: `p` is `[B, n]` and element `i` is its column
    /// `i` as a `[B, 1]` tensor, so that an elementwise model of `x [m]` (or `[B, m]`)
    /// evaluates all problems at once as a `[B, m]` result.
    pub fn from_columns(p: &Tensor) -> Params {
        Self::split(p, 2, "batched parameters must be [B, n]", |i| p.slice_axis(1, i, i + 1))
    }

    /// `p` of rank `rank` split along its last axis by `element`; an error recorded in the
    /// graph (`must`, then the type) and no elements for another rank.
    fn split(p: &Tensor, rank: usize, must: &str, element: impl Fn(i64) -> Tensor) -> Params {
        let g = p.graph();
        let ty = p.ty();
        let poison = g.poison(TensorType::scalar(ty.dtype));
        let elems = if ty.rank() == rank {
            (0..ty.dims()[rank - 1]).map(element).collect()
        } else {
            g.record(Error::InvalidOp {
                op: "params",
                reason: format!("{must}, got {ty}"),
            });
            Vec::new()
        };
        Params {
            vector: p.clone(),
            elems,
            poison,
            names: None,
        }
    }

    /// Named values `elems[i]` called `names[i]` (equal lengths, at least one; scalars, the
    /// `[B, 1]` columns of a batch, or a global fit's per-point values): the parameters of a fit
    /// of [`crate::fit::Parameters`], assembled from its varying, fixed and tied ones.
    pub(crate) fn named(elems: Vec<Tensor>, names: Arc<[String]>) -> Params {
        let first = elems.first().expect("at least one parameter").clone();
        let g = first.graph();
        let poison = g.poison(TensorType::scalar(first.ty().dtype));
        // Scalars of one problem make a vector [n]; the [B, 1] columns of a batch make [B, n];
        // values of other shapes (a global fit's per-point ones among scalars) are broadcast to
        // the largest and stacked along a new last axis.
        let widest = elems.iter().max_by_key(|e| e.rank()).expect("at least one").dims();
        let vector = if widest.is_empty() {
            let parts: Vec<Tensor> = elems.iter().map(|e| e.reshape([1])).collect();
            g.concat(&parts, 0)
        } else if elems.iter().all(|e| e.dims() == widest) {
            g.concat(&elems, widest.len() as i64 - 1)
        } else {
            let column = [widest.clone(), vec![1]].concat();
            let parts: Vec<Tensor> = elems
                .iter()
                .map(|e| e.broadcast_to(widest.clone()).reshape(column.clone()))
                .collect();
            g.concat(&parts, widest.len() as i64)
        };
        Params {
            vector,
            elems,
            poison,
            names: Some(names),
        }
    }

    /// These parameters called `names` (one per parameter): the same tensors, so a model traced
    /// through them emits the same program as through the positional ones.
    pub(crate) fn with_names(self, names: Arc<[String]>) -> Params {
        Params {
            names: Some(names),
            ..self
        }
    }

    /// The parameters' names, for parameters by name ([`crate::fit::Parameters`]); `None` for
    /// positional ones.
    pub fn names(&self) -> Option<&[String]> {
        self.names.as_deref()
    }

    /// The parameter called `name`, or `None` (positional parameters have no names).
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        let i = self.names.as_ref()?.iter().position(|n| n == name)?;
        self.elems.get(i)
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.elems.len()
    }

    /// True when there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    /// The whole parameter vector `[n]`.
    pub fn vector(&self) -> &Tensor {
        &self.vector
    }

    /// The scalars in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Tensor> {
        self.elems.iter()
    }
}

impl Index<usize> for Params {
    type Output = Tensor;
    fn index(&self, i: usize) -> &Tensor {
        match self.elems.get(i) {
            Some(t) => t,
            None => {
                self.vector.graph().record(Error::InvalidOp {
                    op: "params",
                    reason: format!("parameter index {i} out of range for {} parameters", self.elems.len()),
                });
                &self.poison
            }
        }
    }
}

impl Index<&str> for Params {
    type Output = Tensor;
    fn index(&self, name: &str) -> &Tensor {
        match self.get(name) {
            Some(t) => t,
            None => {
                let reason = match &self.names {
                    Some(names) => format!("no parameter is named '{name}' (the parameters: {})", names.join(", ")),
                    None => format!(
                        "parameter '{name}' asked by name, but these parameters are positional (p[0], p[1], ...; \
                         names come with fit::Parameters)"
                    ),
                };
                self.vector.graph().record(Error::InvalidOp { op: "params", reason });
                &self.poison
            }
        }
    }
}

/// The residual shape a model must produce for the independent variable `x`: `[m]` for
/// `x: [m]` or `x: [k, m]` (the last axis indexes data points), `[]` for a scalar `x`.
fn data_shape(x: &Tensor) -> Shape {
    Shape(x.dims().last().map(|&m| vec![m]).unwrap_or_default())
}

/// Traces `model(x, p)`. A scalar result (a model that ignores `x`) is broadcast to the data
/// shape; any other shape than `[m]` is an error.
pub fn eval_model<F>(model: &F, x: &Tensor, p: &Tensor) -> Result<Tensor>
where
    F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let g = p.graph();
    let want = data_shape(x);
    let f = g.try_with(|| model(x, &Params::new(p)))?;
    let have = f.shape();
    if have == want {
        return Ok(f);
    }
    if have.rank() == 0 {
        return g.try_with(|| f.broadcast_to(want));
    }
    Err(Error::ShapeMismatch {
        op: "model",
        lhs: have,
        rhs: want,
    })
}

/// Residuals `f [m]` and Jacobian `J [m, n]` of `model` at `(x, p)`, by forward mode.
pub fn jacfwd_model<F>(model: &F, x: &Tensor, p: &Tensor) -> Result<(Tensor, Tensor)>
where
    F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let f = eval_model(model, x, p)?;
    let j = jacfwd(&f, p)?;
    Ok((f, j))
}

/// Residuals `f [m]` and the transposed Jacobian `Jᵀ [n, m]` of `model` at `(x, p)` (see
/// [`jacfwd_t`](crate::graph::jacfwd_t)).
pub fn jacfwd_model_t<F>(model: &F, x: &Tensor, p: &Tensor) -> Result<(Tensor, Tensor)>
where
    F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let f = eval_model(model, x, p)?;
    let jt = crate::graph::jacfwd_t(&f, p)?;
    Ok((f, jt))
}

impl Graph {
    /// Traces `model` into `func.func private @name(%x, %p) -> f` for `x` of type `x` and
    /// `n` parameters of `x`'s dtype.
    pub fn model_function<F>(&self, name: &str, model: &F, x: TensorType, n: i64) -> Result<Function>
    where
        F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        self.model_function_fixed(name, model, x, n, 0)
    }

    /// As [`Graph::model_function`] for a model of `n + fixed` parameters of which the last
    /// `fixed` are held fixed: `func.func private @name(%x, %p, %fixed) -> f` with `p: [n]`
    /// and `fixed: [fixed]` (no `%fixed` when `fixed` is 0); the model sees `[p, fixed]`.
    pub(crate) fn model_function_fixed<F>(
        &self,
        name: &str,
        model: &F,
        x: TensorType,
        n: i64,
        fixed: i64,
    ) -> Result<Function>
    where
        F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        self.checked_function(name, &model_inputs(x, n, fixed), |a| {
            Ok(vec![eval_model(model, &a[0], &with_fixed(&a[1], a.get(2)))?])
        })
    }

    /// Traces `model` and its Jacobian into `func.func private @name(%x, %p) -> (f, J)`
    /// with `f: [m]`, `J: [m, n]`.
    pub fn model_jac_function<F>(&self, name: &str, model: &F, x: TensorType, n: i64) -> Result<Function>
    where
        F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        self.model_derivative_function(name, model, x, n, 0, jacfwd)
    }

    /// As [`Graph::model_jac_function`], with the Jacobian transposed: `(f, Jᵀ)` with
    /// `f: [m]`, `Jᵀ: [n, m]` (one row per parameter).
    pub fn model_jac_t_function<F>(&self, name: &str, model: &F, x: TensorType, n: i64) -> Result<Function>
    where
        F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        self.model_derivative_function(name, model, x, n, 0, jacfwd_t)
    }

    /// As [`Graph::model_jac_t_function`] for `n` varying and `fixed` fixed parameters (see
    /// [`Graph::model_function_fixed`]): `Jᵀ` is `[n, m]`, the derivatives by the varying ones.
    pub(crate) fn model_jac_t_function_fixed<F>(
        &self,
        name: &str,
        model: &F,
        x: TensorType,
        n: i64,
        fixed: i64,
    ) -> Result<Function>
    where
        F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        self.model_derivative_function(name, model, x, n, fixed, jacfwd_t)
    }

    fn model_derivative_function<F>(
        &self,
        name: &str,
        model: &F,
        x: TensorType,
        n: i64,
        fixed: i64,
        derive: fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<Function>
    where
        F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        self.checked_function(name, &model_inputs(x, n, fixed), |a| {
            let f = eval_model(model, &a[0], &with_fixed(&a[1], a.get(2)))?;
            let j = derive(&f, &a[1])?;
            Ok(vec![f, j])
        })
    }
}

/// The inputs of a traced model function: `x`, the `n` varying parameters and, when there are
/// any, the `fixed` fixed ones.
fn model_inputs(x: TensorType, n: i64, fixed: i64) -> Vec<(&'static str, TensorType)> {
    let dtype = x.dtype;
    let mut inputs = vec![("x", x), ("p", TensorType::new(dtype, [n]))];
    if fixed > 0 {
        inputs.push(("fixed", TensorType::new(dtype, [fixed])));
    }
    inputs
}

/// The parameter vector a model sees: the varying `p`, then the `fixed` ones if any.
fn with_fixed(p: &Tensor, fixed: Option<&Tensor>) -> Tensor {
    match fixed {
        Some(c) => p.graph().concat(&[p.clone(), c.clone()], 0),
        None => p.clone(),
    }
}
