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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::cache;
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
    Ok(text_fingerprint(&g.finish([&f])?.text, spec))
}

/// sha256 of the emitted text of a traced residual function and the program `spec`: the one
/// fingerprint of every kind of fit program.
pub(super) fn text_fingerprint(residuals: &str, spec: &impl Debug) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(residuals.as_bytes());
    h.update(format!("{spec:?}").as_bytes());
    h.finalize().into()
}

/// What is kept per fingerprint.
#[derive(Clone)]
enum Kept {
    /// The executable of a single fit (`curve_fit`, `least_squares`).
    Executable(cache::CachedExecutable),
    /// A batch program and its executables, one per client that runs it.
    Batch(Arc<BatchExecutables>),
}

/// The traced programs of this process, by fingerprint.
pub(super) static PROGRAMS: Programs = Programs::new(256);

/// A bounded map from fingerprints to programs, cleared when full.
pub(super) struct Programs {
    map: once_cell::sync::Lazy<Mutex<HashMap<[u8; 32], Kept>>>,
    capacity: usize,
}

impl Programs {
    /// An empty map that holds at most `capacity` programs.
    const fn new(capacity: usize) -> Self {
        Programs {
            map: once_cell::sync::Lazy::new(Default::default),
            capacity,
        }
    }

    fn get(&self, key: &[u8; 32]) -> Option<Kept> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    /// Keeps `value` for `key` (clearing the map first when it is full).
    fn insert(&self, key: [u8; 32], value: Kept) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, value);
    }

    /// The executable of the single-fit program of `key`, if kept.
    pub fn executable(&self, key: &[u8; 32]) -> Option<cache::CachedExecutable> {
        match self.get(key)? {
            Kept::Executable(exe) => Some(exe),
            Kept::Batch(_) => None,
        }
    }

    /// Keeps the executable of a single-fit program.
    pub fn insert_executable(&self, key: [u8; 32], exe: cache::CachedExecutable) {
        self.insert(key, Kept::Executable(exe));
    }

    /// The batch program of `key`: the kept one, or `trace()`'s text with `slots` empty
    /// executable slots, kept from now on.
    pub fn batch(
        &self,
        key: [u8; 32],
        slots: usize,
        trace: impl FnOnce() -> Result<String>,
    ) -> Result<Arc<BatchExecutables>> {
        if let Some(Kept::Batch(program)) = self.get(&key) {
            return Ok(program);
        }
        let program = Arc::new(BatchExecutables::new(trace()?, slots));
        self.insert(key, Kept::Batch(program.clone()));
        Ok(program)
    }
}

/// A traced batch program and its executables, one slot per client that may run it (the
/// default client, then each `runtime::cpu_workers` client), each loaded on first use.
pub(super) struct BatchExecutables {
    text: String,
    loaded: Vec<once_cell::sync::OnceCell<cache::CachedExecutable>>,
}

impl BatchExecutables {
    fn new(text: String, slots: usize) -> BatchExecutables {
        BatchExecutables {
            text,
            loaded: (0..slots).map(|_| Default::default()).collect(),
        }
    }

    /// The executable of each `(slot, client)`, loading the missing ones through the executable
    /// cache: all side by side from memory or disk; when the program is in neither, compiled for
    /// the first client and then loaded from that one for the others, side by side. Also returns
    /// the time spent: zero when all were loaded before, and then each executable reports
    /// [`super::ExecutableSource::Memory`].
    pub(super) fn for_clients(
        &self,
        targets: &[(usize, &crate::pjrt::Client)],
    ) -> Result<(Vec<cache::CachedExecutable>, Duration)> {
        if targets.iter().all(|&(slot, _)| self.loaded[slot].get().is_some()) {
            let exes = targets
                .iter()
                .filter_map(|&(slot, _)| self.loaded[slot].get().cloned())
                .map(|exe| cache::CachedExecutable {
                    source: super::ExecutableSource::Memory,
                    load_time: Duration::ZERO,
                    ..exe
                })
                .collect();
            return Ok((exes, Duration::ZERO));
        }
        let t = Instant::now();
        let options = crate::pjrt::CompileOptions {
            portable: true,
            ..Default::default()
        };
        let cache = cache::ExecutableCache::global();
        let load = |&(slot, client): &(usize, &crate::pjrt::Client),
                    compile: bool|
         -> Result<Option<cache::CachedExecutable>> {
            if let Some(exe) = self.loaded[slot].get() {
                return Ok(Some(exe.clone()));
            }
            let exe = if compile {
                Some(cache.get_or_compile_with(client, &self.text, &options)?)
            } else {
                cache.get_or_load_with(client, &self.text, &options)?
            };
            Ok(exe.map(|e| self.loaded[slot].get_or_init(|| e).clone()))
        };
        let side_by_side = |targets: &[(usize, &crate::pjrt::Client)], compile: bool| {
            std::thread::scope(|s| {
                let loads: Vec<_> = targets
                    .iter()
                    .map(|target| s.spawn(move || load(target, compile)))
                    .collect();
                loads
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect::<Result<Vec<_>>>()
            })
        };
        let mut exes = side_by_side(targets, false)?;
        if exes.iter().any(Option::is_none) {
            exes[0] = load(&targets[0], true)?;
            exes.splice(1.., side_by_side(&targets[1..], true)?);
        }
        Ok((exes.into_iter().flatten().collect(), t.elapsed()))
    }
}
