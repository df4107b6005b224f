//! `least_squares`: general residuals `fun(p, data)`, traced with the solver into one program
//! that is kept by fingerprint like a `curve_fit` program.

use std::time::{Duration, Instant};

use ndarray::ArrayViewD;

use super::execute::{execute, HostArg};
use super::options::LeastSquaresOptions;
use super::outcome::curve_fit_result;
use super::program::solve_once;
use super::programs::{text_fingerprint, PROGRAMS};
use super::validate::{check_all_finite, invalid, plan};
use super::{cache, CurveFit, ExecutableSource};
use crate::error::{Error, Result};
use crate::graph::{jacfwd, Graph, Params, Program, Tensor, TensorType};
use crate::solve;
use crate::types::DType;

/// Minimizes `0.5 * sum(rho(f(p, data)²))` for general residuals, like
/// `scipy.optimize.least_squares`, and estimates the covariance of the solution.
///
/// `fun(p, data)` takes the parameters as [`Params`] (the same kind `curve_fit`'s models take:
/// `p[i]` is parameter `i`, [`Params::vector`] the whole `[n]` vector) and the traced data
/// arrays (program inputs, never constants: one executable serves every dataset of the same
/// shapes), and returns the residuals `[m]`. The Jacobian comes from forward-mode autodiff.
/// A repeated call with the same `fun`, shapes and program-shaping options reuses the traced
/// and compiled program.
///
/// The result is a [`CurveFit`]: `popt` is the solution (`result.x`), and `pcov` is
/// `s² (JᵀJ)⁺` with `s² = 2·cost / (m − n)` (or `(JᵀJ)⁺` when
/// [`LeastSquaresOptions::absolute_sigma`]: the residuals are already divided by known
/// standard deviations), `inf` for the parameters the data do not determine
/// ([`crate::fit::FitResult::not_determined`]), as `curve_fit` reports it.
///
/// # Errors
/// As [`crate::fit::curve_fit`]; residuals that are not a vector are a trace error.
///
/// # Examples
/// ```no_run
/// use nlsq::fit::{least_squares, LeastSquaresOptions};
/// use nlsq::graph::{Params, Tensor};
///
/// // Rosenbrock's function as residuals.
/// let fun = |p: &Params, _data: &[Tensor]| {
///     let r0 = (&p[1] - &p[0] * &p[0]) * 10.0;
///     let r1 = -&p[0] + 1.0;
///     p[0].graph().concat(&[r0.reshape([1]), r1.reshape([1])], 0)
/// };
/// let fit = least_squares(&fun, &[-1.2, 1.0], &[], &LeastSquaresOptions::default())?;
/// assert!((fit.popt[0] - 1.0).abs() < 1e-8);
/// # Ok::<(), nlsq::Error>(())
/// ```
pub fn least_squares<F>(
    fun: &F,
    x0: &[f64],
    data: &[ArrayViewD<'_, f64>],
    options: &LeastSquaresOptions,
) -> Result<CurveFit>
where
    F: Fn(&Params, &[Tensor]) -> Tensor + ?Sized,
{
    let t_runtime = Instant::now();
    crate::runtime::client()?;
    let runtime = t_runtime.elapsed();
    let t0 = Instant::now();
    if options.check_finite {
        for d in data {
            check_all_finite("data", d.iter().copied())?;
        }
    }
    let n = x0.len();
    if n == 0 {
        return Err(invalid("x0", "there must be at least one parameter"));
    }
    let data_types: Vec<TensorType> = data.iter().map(|d| TensorType::new(DType::F64, dims(d))).collect();
    // The residuals alone, traced to learn m; their text and the spec identify the program.
    let probe = Graph::new();
    let p = probe.parameter("p", DType::F64, [n as i64]);
    let d: Vec<Tensor> = (data_types.iter().enumerate())
        .map(|(i, t)| probe.parameter(&format!("data{i}"), DType::F64, t.dims().to_vec()))
        .collect();
    let r = probe.try_with(|| fun(&Params::new(&p), &d))?;
    if r.rank() != 1 {
        return Err(Error::InvalidOp {
            op: "least_squares",
            reason: format!("residuals must be a vector, got shape {}", r.shape()),
        });
    }
    let m = r.dims()[0] as usize;
    if m == 0 {
        return Err(invalid("fun", "returns no residuals"));
    }
    let plan = plan(x0.to_vec(), m, options)?;
    let spec = Spec {
        n,
        m_pad: m.max(n + 1),
        data: data_types,
        config: plan.config.clone(),
    };
    let fingerprint = text_fingerprint(&probe.finish([&r])?.text, &spec);
    let (exe, compile) = match PROGRAMS.executable(&fingerprint) {
        Some(exe) => (
            cache::CachedExecutable {
                source: ExecutableSource::Memory,
                load_time: Duration::ZERO,
                ..exe
            },
            Duration::ZERO,
        ),
        None => {
            let exe = cache::portable_executable(&trace(fun, &spec)?.text)?;
            PROGRAMS.insert_executable(fingerprint, exe.clone());
            let load = exe.load_time;
            (exe, load)
        }
    };
    let trace_time = t0.elapsed() - compile;
    let mut args: Vec<HostArg> = data
        .iter()
        .map(|d| HostArg::F64(d.iter().copied().collect(), dims(d)))
        .collect();
    plan.args_clone_into(&mut args);
    let (mut result, cov) = execute(&exe, args, &plan, t0, trace_time, compile)?;
    result.timings.runtime = runtime;
    Ok(curve_fit_result(result, cov, m, n, options.absolute_sigma, None))
}

/// What shapes a `least_squares` program besides `fun`.
#[derive(Debug)]
struct Spec {
    n: usize,
    /// Residual rows: `m`, padded with zero rows to at least `n + 1`.
    m_pad: usize,
    data: Vec<TensorType>,
    config: solve::Config,
}

fn dims(d: &ArrayViewD<'_, f64>) -> Vec<i64> {
    d.shape().iter().map(|&s| s as i64).collect()
}

/// Traces `fun` and the solver into the program of `spec`.
fn trace<F>(fun: &F, spec: &Spec) -> Result<Program>
where
    F: Fn(&Params, &[Tensor]) -> Tensor + ?Sized,
{
    let (n, m_pad) = (spec.n as i64, spec.m_pad as i64);
    let g = Graph::new();
    let data: Vec<Tensor> = (spec.data.iter().enumerate())
        .map(|(i, t)| g.parameter(&format!("data{i}"), DType::F64, t.dims().to_vec()))
        .collect();
    let names: Vec<String> = std::iter::once("p".to_string())
        .chain((0..data.len()).map(|i| format!("data{i}")))
        .collect();
    let inputs: Vec<(&str, TensorType)> = std::iter::once(TensorType::new(DType::F64, [n]))
        .chain(spec.data.iter().cloned())
        .zip(&names)
        .map(|(t, name)| (name.as_str(), t))
        .collect();
    let pad_rows = |t: Tensor| -> Tensor {
        let mut dims = t.dims();
        let pad = m_pad - dims[0];
        if pad == 0 {
            return t;
        }
        dims[0] = pad;
        g.concat(&[t, g.zeros(DType::F64, dims)], 0)
    };
    let f_fn = g.checked_function("residuals", &inputs, |a| {
        Ok(vec![pad_rows(fun(&Params::new(&a[0]), &a[1..]))])
    })?;
    let fj_fn = g.checked_function("residuals_jac", &inputs, |a| {
        let r = fun(&Params::new(&a[0]), &a[1..]);
        let j = jacfwd(&r, &a[0])?;
        Ok(vec![pad_rows(r), pad_rows(j)])
    })?;
    let call = |p: &Tensor| -> Vec<Tensor> {
        let args: Vec<&Tensor> = std::iter::once(p).chain(&data).collect();
        f_fn.call(&args)
    };
    let call_jac = |p: &Tensor| -> (Tensor, Tensor) {
        let args: Vec<&Tensor> = std::iter::once(p).chain(&data).collect();
        let mut out = fj_fn.call(&args);
        let j = out.pop().expect("two results");
        (out.pop().expect("two results"), j)
    };
    let fun_g = |p: &Tensor| call(p).remove(0);
    let problem = solve::Problem::new(&fun_g, &call_jac, m_pad, n, solve::Lanes::one(&g));
    let outs = solve_once(&g, n, m_pad, |inputs| solve::solve(&problem, inputs, &spec.config));
    g.finish(outs.iter())
}
