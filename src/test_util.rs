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

    /// Median wall time in milliseconds of 15 executions (each reading its first output).
    pub(crate) fn median_ms(&self) -> f64 {
        let refs: Vec<_> = self.inputs.iter().collect();
        let mut ts: Vec<f64> = (0..15)
            .map(|_| {
                let t = std::time::Instant::now();
                let out = self.exe.executable.execute(&refs).unwrap();
                let _ = out[0].to_vec::<f64>().unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ts.sort_by(|a, b| a.total_cmp(b));
        ts[ts.len() / 2]
    }
}
