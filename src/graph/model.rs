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

use crate::error::{Error, Result};
use crate::graph::builder::{Function, Graph, Tensor};
use crate::graph::jvp::jacfwd;
use crate::graph::types::{Shape, TensorType};

/// The parameter vector as seen by a model: `p[i]` is the scalar tensor of parameter `i`.
///
/// Built from a traced vector of shape `[n]`; the scalars are static slices of it (unused
/// ones are dropped at emission). Indexing out of range records an error in the graph and
/// yields a placeholder.
#[derive(Clone, Debug)]
pub struct Params {
    vector: Tensor,
    elems: Vec<Tensor>,
    poison: Tensor,
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
        }
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
        let p = TensorType::new(x.dtype, [n]);
        let mut err = None;
        let f = self.function(name, &[("x", x), ("p", p)], |a| match eval_model(model, &a[0], &a[1]) {
            Ok(f) => vec![f],
            Err(e) => {
                err = Some(e);
                Vec::new()
            }
        })?;
        err.map_or(Ok(f), Err)
    }

    /// Traces `model` and its Jacobian into `func.func private @name(%x, %p) -> (f, J)`
    /// with `f: [m]`, `J: [m, n]`.
    pub fn model_jac_function<F>(&self, name: &str, model: &F, x: TensorType, n: i64) -> Result<Function>
    where
        F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        self.model_derivative_function(name, model, x, n, jacfwd_model)
    }

    /// As [`Graph::model_jac_function`], with the Jacobian transposed: `(f, Jᵀ)` with
    /// `f: [m]`, `Jᵀ: [n, m]` (one row per parameter).
    pub fn model_jac_t_function<F>(&self, name: &str, model: &F, x: TensorType, n: i64) -> Result<Function>
    where
        F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        self.model_derivative_function(name, model, x, n, jacfwd_model_t)
    }

    fn model_derivative_function<F>(
        &self,
        name: &str,
        model: &F,
        x: TensorType,
        n: i64,
        derive: fn(&F, &Tensor, &Tensor) -> Result<(Tensor, Tensor)>,
    ) -> Result<Function>
    where
        F: Fn(&Tensor, &Params) -> Tensor + ?Sized,
    {
        let p = TensorType::new(x.dtype, [n]);
        let mut err = None;
        let f = self.function(name, &[("x", x), ("p", p)], |a| match derive(model, &a[0], &a[1]) {
            Ok((f, j)) => vec![f, j],
            Err(e) => {
                err = Some(e);
                Vec::new()
            }
        })?;
        err.map_or(Ok(f), Err)
    }
}
