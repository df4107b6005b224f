//! Tracing: the model and the solver loop as one program for the spec of a fit.

use super::program::solve_once;
use super::residuals::{Residuals, Weights};
use super::validate::CurveSpec;
use crate::error::Result;
use crate::graph::{Graph, Params, Program, Tensor, TensorType};
use crate::solve;
use crate::types::DType;

/// Traces model and solver into the program of `spec`.
pub(super) fn trace_curve<M>(model: &M, spec: &CurveSpec) -> Result<Program>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let (m_pad, n) = (spec.m_pad as i64, spec.n as i64);
    let x_dims: Vec<i64> = match spec.x_rows {
        None => vec![m_pad],
        Some(k) => vec![k as i64, m_pad],
    };
    let g = Graph::new();
    let x_ty = TensorType::new(DType::F64, x_dims.clone());
    let xt = g.parameter("x", DType::F64, x_dims);
    let yt = g.parameter("y", DType::F64, [m_pad]);
    let wt = spec.weighted.then(|| g.parameter("w", DType::F64, [m_pad]));
    let wmat = spec
        .cov_sigma
        .then(|| g.parameter("whiten", DType::F64, [m_pad, m_pad]));
    let k = spec.fixed as i64;
    let fixed = (k > 0).then(|| g.parameter("fixed", DType::F64, [k]));
    let model_f = g.model_function_fixed("model", model, x_ty.clone(), n, k)?;
    // The Jacobian as forward mode makes it, one row per parameter (see `fun_jac` below).
    let model_fj = g.model_jac_t_function_fixed("model_jac", model, x_ty, n, k)?;
    // Chunked Jacobian: the model and its Jacobian traced for one chunk of rows.
    let chunk_fj = match spec.chunk {
        Some(c) => {
            let c_dims: Vec<i64> = match spec.x_rows {
                None => vec![c as i64],
                Some(k) => vec![k as i64, c as i64],
            };
            Some((
                c as i64,
                g.model_jac_t_function_fixed("model_jac_chunk", model, TensorType::new(DType::F64, c_dims), n, k)?,
            ))
        }
        None => None,
    };
    let jac_rows = if spec.chunk.is_some() && !spec.materialize {
        1
    } else {
        m_pad
    };
    let outs = solve_once(&g, n, jac_rows, |inputs| {
        let weights = match (&wmat, &wt) {
            (Some(w), _) => Weights::Whiten(w.clone()),
            (None, Some(w)) => Weights::Diagonal(w.clone()),
            (None, None) => Weights::None,
        };
        let data = Residuals::new(xt.clone(), yt.clone(), weights, &inputs.m_valid).with_fixed(fixed.clone());
        let fun = |p: &Tensor| data.fun(&model_f, p);
        // J is masked and weighted as Jᵀ [n, m] and transposed last: the factorization of
        // `[J | f]` transposes it back (XLA cancels the two), so J [m, n] itself is only made
        // where the fit returns it.
        let fun_jac = |p: &Tensor| {
            let (f, jt) = data.fun_jac_t(&model_fj, p);
            (f, jt.t())
        };
        let fun_jac_chunk = |p: &Tensor, start: &Tensor| {
            let (c, fj) = chunk_fj.as_ref().expect("chunked");
            data.rows(start, *c).fun_jac_t(fj, p)
        };
        let chunks = chunk_fj.as_ref().map(|(c, _)| solve::Chunks {
            size: *c,
            count: m_pad / *c,
            fun_jac: &fun_jac_chunk,
            // Large fits only: below, it measured no faster (`docs/kernels.md`).
            factor_trials: !spec.materialize,
        });
        let problem = solve::Problem {
            chunks,
            ..solve::Problem::new(&fun, &fun_jac, m_pad, n, solve::Lanes::one(&g))
        };
        let mut out = solve::solve(&problem, inputs, &spec.config);
        if spec.chunk.is_some() && spec.materialize {
            // The chunked solve never held `fun` and `jac`: evaluate them once at the solution
            // (the Jacobian loss-scaled, as an unchunked fit returns it).
            let (f, j) = fun_jac(&out.x);
            let (_, js, _) = solve::loss::scale_for_loss(spec.config.loss, &f, &j, &inputs.f_scale);
            out.fun = f;
            out.jac = js;
        }
        out
    });
    g.finish(outs.iter())
}
