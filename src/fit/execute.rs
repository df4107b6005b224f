//! Execution: host arrays handed to a compiled fit program, the one `Execute`, and the
//! timings.

use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView1};

use super::outcome::curve_fit_result;
use super::program::Summary;
use super::units::Units;
use super::validate::{internal, CurveData, Plan};
use super::{cache, memory, CurveFit, FitResult, Timings};
use crate::error::Result;

/// A host array handed to the executable.
pub(super) enum HostArg<'a> {
    /// An owned array and its dimensions.
    F64(Vec<f64>, Vec<i64>),
    /// An i64 scalar.
    I64(i64),
    /// Borrowed rows (row-major `[rows, len]`, or `[len]` for one row with `dims` of rank 1),
    /// each padded to `len` with `fill` or, when `fill` is `None`, with its first value. Copied
    /// only when padding or layout requires it, one array at a time.
    Rows {
        rows: Vec<ArrayView1<'a, f64>>,
        len: usize,
        fill: Option<f64>,
        dims: Vec<i64>,
    },
}

impl HostArg<'_> {
    /// Uploads the array to `device` of `client`.
    pub(super) fn upload_to(
        self,
        client: &crate::pjrt::Client,
        device: &crate::pjrt::Device<'_>,
    ) -> Result<crate::pjrt::Buffer> {
        match self {
            HostArg::F64(v, dims) => client.buffer_from_host_on(device, &v, &dims),
            HostArg::I64(v) => client.buffer_from_host_on(device, &[v], &[]),
            HostArg::Rows { rows, len, fill, dims } => {
                if let [row] = rows.as_slice() {
                    if row.len() == len {
                        if let Some(slice) = row.as_slice() {
                            return client.buffer_from_host_on(device, slice, &dims);
                        }
                    }
                }
                // The padded copy is lent to the device, not copied again (CPU plugin).
                let count = rows.len().saturating_mul(len);
                let mut v = crate::pjrt::HostVec::try_filled(count, 0.0)?;
                for (row, out) in rows.iter().zip(v.as_mut_slice().chunks_exact_mut(len.max(1))) {
                    let pad = fill.unwrap_or_else(|| row.first().copied().unwrap_or(0.0));
                    for (o, &x) in out.iter_mut().zip(row.iter()) {
                        *o = x;
                    }
                    out[row.len()..].fill(pad);
                }
                client.buffer_from_host_vec_on(device, v, &dims)
            }
        }
    }
}

/// Runs the program and reads its results, after checking that it fits the device's memory
/// (`memory`).
pub(super) fn execute(
    exe: &cache::CachedExecutable,
    args: Vec<HostArg<'_>>,
    plan: &Plan,
    t0: Instant,
    trace: Duration,
    compile: Duration,
) -> Result<(FitResult, Array2<f64>)> {
    let (source, exe) = (exe.source, &exe.executable);
    let t2 = Instant::now();
    let client = exe.client().clone();
    // The least busy device: fits on other threads run side by side on the others.
    let device = client.lease_device()?;
    memory::check_capacity(exe, &device, memory::FIT_ADVICE)?;
    // Each host array is dropped as soon as it is on the device, to keep the peak low.
    let buffers = args
        .into_iter()
        .map(|a| a.upload_to(&client, &device))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<_> = buffers.iter().collect();
    memory::check_free(exe, &device, memory::FIT_ADVICE)?;
    let out = exe.execute_on(&device, &refs)?;
    let summary = Summary::decode(&out[0].to_vec::<f64>()?, plan.n)?;
    let (n, m_pad) = (plan.n, out[1].dims()?[0] as usize);
    // A chunked program returns one-row placeholders (real outputs have m_pad >= n + 1 >= 2 rows).
    let chunked = m_pad == 1;
    let execute = t2.elapsed();
    let m = plan.m;
    // A chunked fit above the size that returns them never materialised `fun` and `jac`.
    let (fun, jac) = if chunked {
        (None, None)
    } else {
        let mut fun = out[1].to_vec::<f64>()?;
        fun.truncate(m);
        let jac =
            Array2::from_shape_vec((m_pad, n), out[2].to_vec::<f64>()?).map_err(|e| internal("jac", e.to_string()))?;
        let jac = if m < m_pad {
            jac.slice(ndarray::s![..m, ..]).to_owned()
        } else {
            jac
        };
        (Some(fun), Some(jac))
    };
    let device = device.to_string();
    summary.into_result(fun, jac, plan, source, device, run_timings(trace, compile, execute, t0))
}

/// The timings of a run that started at `t0` and ends now.
pub(super) fn run_timings(trace: Duration, compile: Duration, execute: Duration, t0: Instant) -> Timings {
    Timings {
        trace,
        compile,
        execute,
        total: t0.elapsed(),
        ..Timings::default()
    }
}

/// Runs a prepared fit on an executable and applies scipy's covariance rules; the program
/// fitted in `units`, the result is in the caller's.
pub(super) fn run_curve(
    exe: &cache::CachedExecutable,
    data: CurveData<'_>,
    t0: Instant,
    trace: Duration,
    compile: Duration,
    units: &Units,
) -> Result<CurveFit> {
    let (m, n, absolute_sigma, summary) = (data.m, data.plan.n, data.absolute_sigma, data.summary);
    let (result, cov) = execute(exe, data.args, &data.plan, t0, trace, compile)?;
    let mut fit = curve_fit_result(result, cov, m, n, absolute_sigma, Some(summary));
    if !units.is_identity() {
        units.unscale(&mut fit, absolute_sigma);
    }
    Ok(fit)
}
