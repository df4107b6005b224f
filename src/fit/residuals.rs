//! The residuals of a traced model, masked and weighted: one builder for every fit program
//! (single, chunked, sequential and lockstep batches).
//!
//! For data `x`, `y` of padded length `m` (or `[B, m]` for a batch) the residuals are
//! `valid ? W (model(x, p) - y) : 0`: rows at or past the real point count are padding and
//! contribute nothing, and `W` is a diagonal of weights `1/σ` or the whitening matrix of a
//! covariance σ. The Jacobian is handled as forward mode makes it, transposed (`Jᵀ [.., n, m]`,
//! one row per parameter), masked and weighted the same way.

use crate::graph::{Function, Tensor};
use crate::types::DType;

/// How the residuals are weighted.
#[derive(Clone)]
pub(super) enum Weights {
    /// Unweighted.
    None,
    /// Times `w [.., m]` (`1/σ`).
    Diagonal(Tensor),
    /// Times the lower-triangular whitening matrix `[m, m]` of a covariance σ (one problem,
    /// unchunked).
    Whiten(Tensor),
}

/// The data a model's residuals are computed against.
#[derive(Clone)]
pub(super) struct Residuals {
    /// Independent variable(s): `[m]`, `[k, m]` for `k` variables, or `[B, m]` per problem.
    pub x: Tensor,
    /// Observations `[.., m]`.
    pub y: Tensor,
    pub weights: Weights,
    /// True on the real rows `[.., m]`.
    pub valid: Tensor,
    /// The values of the fixed parameters, an input of the model functions after `p` (see
    /// `Graph::model_function_fixed`); `None` when every parameter varies.
    pub fixed: Option<Tensor>,
}

impl Residuals {
    /// Residuals for data whose real rows are those below `m_valid` (`[]`, or `[B]` per problem).
    pub fn new(x: Tensor, y: Tensor, weights: Weights, m_valid: &Tensor) -> Self {
        let dims = y.dims();
        let rows = y.graph().iota(DType::F64, dims.clone(), dims.len() - 1);
        let bound = if m_valid.rank() == 0 {
            m_valid.clone()
        } else {
            m_valid.reshape([m_valid.dims(), vec![1]].concat())
        };
        let valid = rows.lt(&bound);
        Residuals {
            x,
            y,
            weights,
            valid,
            fixed: None,
        }
    }

    /// The same residuals of a model with fixed parameters `fixed` (`[k]`, or `None`).
    pub fn with_fixed(self, fixed: Option<Tensor>) -> Self {
        Residuals { fixed, ..self }
    }

    /// The `len` rows from `start` (one problem, diagonal weights or none).
    pub fn rows(&self, start: &Tensor, len: i64) -> Self {
        let g = self.y.graph();
        let zero = g.scalar(DType::I64, 0.0);
        let along_last = |t: &Tensor| {
            let mut starts = vec![zero.clone(); t.rank() - 1];
            starts.push(start.clone());
            let mut sizes = t.dims();
            *sizes.last_mut().expect("rank >= 1") = len;
            t.dynamic_slice(&starts, &sizes)
        };
        let weights = match &self.weights {
            Weights::Diagonal(w) => Weights::Diagonal(along_last(w)),
            other => other.clone(),
        };
        Residuals {
            x: along_last(&self.x),
            y: along_last(&self.y),
            weights,
            valid: along_last(&self.valid),
            fixed: self.fixed.clone(),
        }
    }

    /// `valid ? W (f - y) : 0` for the model's values `f`.
    pub fn of(&self, f: Tensor) -> Tensor {
        let d = f - &self.y;
        let d = match &self.weights {
            Weights::None => d,
            Weights::Diagonal(w) => d * w,
            Weights::Whiten(w) => w.dot(&d),
        };
        self.valid.select(d, 0.0)
    }

    /// The transposed Jacobian `jt [.., n, m]` of the model, weighted and masked like [`of`].
    ///
    /// [`of`]: Residuals::of
    pub fn jac_t(&self, jt: Tensor) -> Tensor {
        let row = |t: &Tensor| {
            let d = t.dims();
            t.reshape([&d[..d.len() - 1], &[1, d[d.len() - 1]]].concat())
        };
        let jw = match &self.weights {
            Weights::None => jt,
            Weights::Diagonal(w) => jt * row(w),
            Weights::Whiten(w) => w.dot(&jt.t()).t(),
        };
        row(&self.valid).select(jw, 0.0)
    }

    /// The residuals at `p` of `model` (`(x, p) -> [f]`).
    pub fn fun(&self, model: &Function, p: &Tensor) -> Tensor {
        self.of(model.call(&self.args(p)).remove(0))
    }

    /// The arguments of a model function at `p`.
    fn args<'a>(&'a self, p: &'a Tensor) -> Vec<&'a Tensor> {
        [&self.x, p].into_iter().chain(self.fixed.as_ref()).collect()
    }

    /// The residuals and the transposed Jacobian at `p` of `model_jac` (`(x, p) -> [f, Jᵀ]`).
    pub fn fun_jac_t(&self, model_jac: &Function, p: &Tensor) -> (Tensor, Tensor) {
        let mut v = model_jac.call(&self.args(p));
        let jt = v.pop().expect("two results");
        let f = v.pop().expect("two results");
        (self.of(f), self.jac_t(jt))
    }
}
