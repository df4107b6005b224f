//! Helpers for the crate's unit tests: compile a traced graph and run it on host data.

use crate::graph::{Graph, Tensor};
use crate::pjrt::Buffer;

/// A compiled program with its input buffers uploaded.
pub(crate) struct Prepared {
    exe: crate::fit::cache::CachedExecutable,
    inputs: Vec<Buffer>,
}

/// Finishes `g` with `outs`, compiles it (through the executable cache) and uploads `inputs`
/// (`(values, dims)`, in parameter order).
pub(crate) fn prepare<V: AsRef<[f64]>>(g: &Graph, outs: &[Tensor], inputs: &[(V, Vec<i64>)]) -> Prepared {
    let program = g.finish(outs.iter()).unwrap();
    let exe = crate::fit::cache::executable(&program.text).unwrap();
    let client = exe.executable.client().clone();
    let inputs = inputs
        .iter()
        .map(|(v, d)| client.buffer_from_host(v.as_ref(), d).unwrap())
        .collect();
    Prepared { exe, inputs }
}

impl Prepared {
    /// Executes once and reads every output as f64.
    pub(crate) fn run(&self) -> Vec<Vec<f64>> {
        let refs: Vec<_> = self.inputs.iter().collect();
        let out = self.exe.executable.execute(&refs).unwrap();
        out.iter().map(|b| b.to_vec::<f64>().unwrap()).collect()
    }
}

/// Test data on `m` points `x` in `[0, 4)`: `Jᵀ` (`n × m`, row `j` from `col(j, x)`) and
/// `f = sin 3x + 0.3`.
pub(crate) fn columns(m: i64, n: i64, col: impl Fn(usize, f64) -> f64) -> (Vec<f64>, Vec<f64>) {
    let xs: Vec<f64> = (0..m).map(|i| 4.0 * i as f64 / m as f64).collect();
    let jt = (0..n as usize)
        .flat_map(|j| xs.iter().map(move |&x| (j, x)))
        .map(|(j, x)| col(j, x))
        .collect();
    let f = xs.iter().map(|x| (3.0 * x).sin() + 0.3).collect();
    (jt, f)
}

/// `(RᵀR, Rᵀ Qᵀf)`: unique also where `R` and `Qᵀf` are not (rank-deficient `J`).
pub(crate) fn triangle_invariants(r: Tensor, qtf: Tensor) -> (Tensor, Tensor) {
    (r.t().dot(&r), r.t().dot(&qtf))
}

/// Largest difference of `p` from `q`, relative to `q`'s largest entry; `p` must be finite.
pub(crate) fn max_rel(p: &[f64], q: &[f64]) -> f64 {
    assert!(p.iter().all(|v| v.is_finite()), "{p:?}");
    let scale = q.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    p.iter().zip(q).fold(0.0f64, |e, (u, v)| e.max((u - v).abs())) / scale
}
