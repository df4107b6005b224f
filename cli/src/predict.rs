//! Evaluating a fitted model at new points, through the same tracer and runtime as the fit.
//!
//! The library has no `predict` yet, so this traces `model(x, p)` alone into a small program
//! (x and p are inputs), takes it from the executable cache (memory, disk) or compiles it, and
//! runs it once.

use anyhow::{Context, Result};
use nlsq::expr::Expr;
use nlsq::fit::ExecutableCache;
use nlsq::graph::{eval_model, Graph};
use nlsq::DType;

/// `model(x, popt)` at the points `x`, given as `k` rows of `m` values.
pub fn evaluate(expr: &Expr, x_rows: &[Vec<f64>], popt: &[f64]) -> Result<Vec<f64>> {
    let k = x_rows.len();
    let m = x_rows.first().map_or(0, Vec::len);
    let n = popt.len();
    let x_dims: Vec<i64> = if k == 1 {
        vec![m as i64]
    } else {
        vec![k as i64, m as i64]
    };
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, x_dims.clone());
    let p = g.parameter("p", DType::F64, [n as i64]);
    let model = expr.model();
    let f = eval_model(&model, &x, &p).context("tracing the model for evaluation")?;
    let program = g.finish([&f]).context("tracing the model for evaluation")?;
    let client = nlsq::runtime::client()?;
    let exe = ExecutableCache::global()
        .get_or_compile(&client, &program.text)?
        .executable;
    let flat: Vec<f64> = x_rows.concat();
    let xb = client.buffer_from_host(&flat, &x_dims)?;
    let pb = client.buffer_from_host(popt, &[n as i64])?;
    let out = exe.execute(&[&xb, &pb])?;
    Ok(out[0].to_vec::<f64>()?)
}
