//! Traced fit programs kept in memory by model fingerprint, for single fits and batches alike.
//!
//! The solver part of a fit program is a function of its spec (shapes, method, loss, what is
//! weighted or bounded) alone, so the model's own emitted text, which is cheap to trace, plus the
//! spec identifies the whole program: a repeated call skips tracing the solver. What is kept
//! per fingerprint is the caller's (a loaded executable, or a program text and its per-client
//! executables); the executables themselves come from `cache::ExecutableCache` (memory and
//! disk, by program text).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::graph::{Graph, Params, Tensor};
use crate::types::DType;

/// sha256 of `model` traced on `x [x_dims]` and parameters `p [n]` (or `[B, n]`: one column per
/// parameter, a batch) with the program `spec`.
pub(super) fn fingerprint<M>(model: &M, x_dims: Vec<i64>, p_dims: Vec<i64>, spec: &impl Debug) -> Result<[u8; 32]>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, x_dims);
    let p = g.parameter("p", DType::F64, p_dims);
    // The residual graph alone: the Jacobian and the solver follow from it and the spec.
    let f = if p.rank() == 1 {
        crate::graph::eval_model(model, &x, &p)?
    } else {
        g.try_with(|| model(&x, &Params::from_columns(&p)))?
    };
    let text = g.finish([&f])?.text;
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    h.update(format!("{spec:?}").as_bytes());
    Ok(h.finalize().into())
}

/// A bounded map from fingerprints to programs, cleared when full.
pub(super) struct Programs<V> {
    map: once_cell::sync::Lazy<Mutex<HashMap<[u8; 32], V>>>,
    capacity: usize,
}

impl<V: Clone> Programs<V> {
    /// An empty map that holds at most `capacity` programs.
    pub const fn new(capacity: usize) -> Self {
        Programs {
            map: once_cell::sync::Lazy::new(Default::default),
            capacity,
        }
    }

    /// The program of `key`, if kept.
    pub fn get(&self, key: &[u8; 32]) -> Option<V> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    /// Keeps `value` for `key` (clearing the map first when it is full).
    pub fn insert(&self, key: [u8; 32], value: V) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, value);
    }
}
