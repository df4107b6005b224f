//! The Schur-complement path of a global fit (`fit::global`): the datasets padded into `[D, M]`
//! rows, the model evaluated on all of them at once with each dataset's local parameters as a
//! column, and LM on the reduced system in the shared parameters (`solve::schur`). The
//! covariance of every parameter is assembled here from the blocks the program returns.

use std::time::Instant;

use ndarray::{Array1, Array2};

use super::execute::HostArg;
use super::parameters::Layout;
use super::programs::{text_fingerprint, PROGRAMS};
use super::result::{CurveFit, ExecutableSource, FitResult, Timings};
use super::statistics::DataSummary;
use super::validate::internal;
use super::{cache, memory, FitOptions, XData};
use crate::error::{Error, Result};
use crate::graph::{jvp, Graph, Params, Tensor, TensorType};
use crate::solve::schur::{self, SchurInputs, SchurProblem};
use crate::solve::{Loss, Method, Status};
use crate::types::DType;

/// What the Schur path needs to know of a global fit.
pub(super) struct SchurSpec<'p> {
    pub(super) layout: &'p Layout,
    /// Positions (in the parameters) of the varying shared and local ones.
    pub(super) shared: &'p [usize],
    pub(super) local: &'p [usize],
    pub(super) x_rows: Option<usize>,
}

/// One dataset's host data.
pub(super) struct Rows<'r, 'a> {
    pub(super) x: &'r XData<'a>,
    pub(super) y: ndarray::ArrayView1<'a, f64>,
    pub(super) sigma: Option<ndarray::ArrayView1<'a, f64>>,
}

/// Fits by the Schur path from `p0` (the shared varying values, then each dataset's locals),
/// with the `fixed` values: the `CurveFit` of every solver parameter in that order.
pub(super) fn fit<M>(
    model: &M,
    spec: &SchurSpec<'_>,
    data: &[Rows<'_, '_>],
    p0: &[f64],
    fixed: &[f64],
    options: &FitOptions,
) -> Result<CurveFit>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let refuse = |field: &'static str, value: String, constraint: &'static str| Error::InvalidOption {
        field,
        value,
        constraint,
    };
    let (s, l, d) = (spec.shared.len(), spec.local.len(), data.len());
    if s == 0 || l == 0 {
        return Err(refuse(
            "shared",
            format!("{s} shared and {l} local varying parameters"),
            "at least one of each for the Schur path (with nothing shared, fit each dataset on its own: \
             curve_fit_batch; with nothing local, the problem is small enough for the dense path)",
        ));
    }
    if s > 8 || l > 8 {
        return Err(refuse(
            "shared",
            format!("{s} shared and {l} local varying parameters"),
            "at most 8 of each for the Schur path (its blocks are factored entry by entry)",
        ));
    }
    if options.starts > 1 {
        return Err(refuse("starts", options.starts.to_string(), "1 on the Schur path"));
    }
    if let Some(crate::solve::XScale::Values(v)) = &options.solver.x_scale {
        return Err(refuse(
            "x_scale",
            format!("{} values", v.len()),
            "unset (the Jacobian's column norms) on the Schur path",
        ));
    }
    let t_runtime = Instant::now();
    crate::runtime::client()?;
    let runtime = t_runtime.elapsed();
    let t0 = Instant::now();
    let m_total: usize = data.iter().map(|r| r.y.len()).sum();
    let plan = super::validate::plan(p0.to_vec(), m_total, options)?;
    if plan.method != Method::Lm || plan.loss != Loss::Linear || options.bounds.is_some() {
        return Err(refuse(
            "method",
            format!(
                "{} with loss {}{}",
                plan.method,
                plan.loss,
                if options.bounds.is_some() { " and bounds" } else { "" }
            ),
            "lm without bounds and with the linear loss on the Schur path (many datasets)",
        ));
    }
    let n = p0.len();
    let m_pad = super::bucket(data.iter().map(|r| r.y.len()).max().unwrap_or(1));
    let k = spec.x_rows.unwrap_or(1);
    // [k, D, M] (or [D, M]) x padded with each dataset's first point, y and weights with zeros.
    let mut x = vec![0.0; k * d * m_pad];
    let mut y = vec![0.0; d * m_pad];
    let mut w = vec![0.0; d * m_pad];
    let (mut y_all, mut w_all) = (Vec::with_capacity(m_total), Vec::with_capacity(m_total));
    for (b, r) in data.iter().enumerate() {
        let m = r.y.len();
        for row in 0..k {
            let xs: Vec<f64> = match r.x {
                XData::D1(v) => v.to_vec(),
                XData::D2(v) => v.row(row).to_vec(),
            };
            let at = (row * d + b) * m_pad;
            x[at..at + m].copy_from_slice(&xs);
            x[at + m..at + m_pad].fill(xs[0]);
        }
        for i in 0..m {
            let wi = r.sigma.map_or(1.0, |s| 1.0 / s[i]);
            y[b * m_pad + i] = r.y[i];
            w[b * m_pad + i] = wi;
            y_all.push(r.y[i]);
            w_all.push(wi);
        }
        if let Some(s) = r.sigma {
            if let Some(i) = s.iter().position(|v| !(*v > 0.0 && v.is_finite())) {
                return Err(Error::InvalidInput {
                    field: "sigma",
                    reason: format!("dataset {b}: sigma[{i}] = {}: must be finite and > 0", s[i]),
                });
            }
        }
    }
    let x_dims: Vec<i64> = match spec.x_rows {
        None => vec![d as i64, m_pad as i64],
        Some(k) => vec![k as i64, d as i64, m_pad as i64],
    };
    let shape = Shape {
        x_dims: x_dims.clone(),
        s,
        l,
        d,
        m: m_pad,
        fixed: fixed.len(),
        shared: spec.shared.to_vec(),
        local: spec.local.to_vec(),
        fixed_at: spec.layout.fixed.clone(),
    };
    // The model's own text and the shape identify the program: a repeated call skips tracing
    // the solver (as `curve_fit` does).
    let fingerprint = fingerprint(model, spec, &shape)?;
    let (exe, compile, trace_time) = match PROGRAMS.executable(&fingerprint) {
        Some(exe) => (
            cache::CachedExecutable {
                source: ExecutableSource::Memory,
                load_time: std::time::Duration::ZERO,
                ..exe
            },
            std::time::Duration::ZERO,
            t0.elapsed(),
        ),
        None => {
            let program = trace(model, spec, &shape)?;
            let trace_time = t0.elapsed();
            let exe = cache::portable_executable(&program.text)?;
            PROGRAMS.insert_executable(fingerprint, exe.clone());
            let compile = exe.load_time;
            (exe, compile, trace_time)
        }
    };
    let a = &plan.args;
    let pl0: Vec<f64> = p0[s..].to_vec();
    let mut args = vec![
        HostArg::F64(x, x_dims.clone()),
        HostArg::F64(y, vec![d as i64, m_pad as i64]),
        HostArg::F64(w, vec![d as i64, m_pad as i64]),
        HostArg::F64(p0[..s].to_vec(), vec![s as i64]),
        HostArg::F64(pl0, vec![d as i64, l as i64]),
        HostArg::F64(
            vec![a.ftol, a.xtol, a.gtol, a.max_nfev.clamp(0, 1 << 53) as f64],
            vec![4],
        ),
    ];
    if !fixed.is_empty() {
        args.push(HostArg::F64(fixed.to_vec(), vec![fixed.len() as i64]));
    }
    let t2 = Instant::now();
    let client = exe.executable.client().clone();
    let device = client.lease_device()?;
    memory::check_capacity(&exe.executable, &device, memory::FIT_ADVICE)?;
    let buffers = args
        .into_iter()
        .map(|a| a.upload_to(&client, &device))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<_> = buffers.iter().collect();
    memory::check_free(&exe.executable, &device, memory::FIT_ADVICE)?;
    let out = exe.executable.execute_on(&device, &refs)?;
    let v = out[0].to_vec::<f64>()?;
    let execute = t2.elapsed();
    let o = Decoded::of(&v, s, l, d)?;

    // (JᵀJ)⁻¹ from the blocks: S⁻¹; −S⁻¹ Zᵀ_d; δ_de V_d⁻¹ + Z_d S⁻¹ Z_eᵀ, with Z the Z_d
    // stacked [D·l, s].
    use ndarray::s as at;
    let z_all = Array2::from_shape_vec((d * l, s), o.z.clone()).map_err(|e| internal("Z", e.to_string()))?;
    let zs = z_all.dot(&o.s_inv);
    let mut cov = Array2::<f64>::zeros((n, n));
    cov.slice_mut(at![..s, ..s]).assign(&o.s_inv);
    cov.slice_mut(at![s.., ..s]).assign(&zs.mapv(|v| -v));
    cov.slice_mut(at![..s, s..]).assign(&zs.t().mapv(|v| -v));
    // The local block in place (it is most of the matrix): Z S⁻¹ Zᵀ, plus V_d⁻¹ on its diagonal.
    ndarray::linalg::general_mat_mul(1.0, &zs, &z_all.t(), 0.0, &mut cov.slice_mut(at![s.., s..]));
    for b in 0..d {
        let at0 = s + b * l;
        let mut block = cov.slice_mut(at![at0..at0 + l, at0..at0 + l]);
        block += &o.v_inv(b);
    }
    // A local block's null directions name its parameters (`solve::schur::undetermined`, the
    // dense path's rule); a singular Schur complement, a dependency through the shared
    // parameters, marks every parameter.
    let not_determined: Vec<usize> = if o.s_ok {
        (0..d * l).filter(|&j| o.v_nd[j]).map(|j| s + j).collect()
    } else {
        (0..n).collect()
    };
    let status = Status::from_code(o.status).ok_or_else(|| internal("status", format!("code {}", o.status)))?;
    let x_out = Array1::from(o.p.clone());
    let grad = Array1::from(o.grad.clone());
    let result = FitResult {
        optimality: grad.iter().fold(0.0, |m: f64, g| m.max(g.abs())),
        x: x_out,
        cost: o.cost,
        fun: None,
        jac: None,
        grad,
        active_mask: Array1::zeros(n),
        nfev: o.nfev,
        njev: o.nfev,
        nit: o.nit,
        status,
        initial_cost: o.initial_cost,
        history: vec![o.initial_cost, o.cost],
        rank: n - not_determined.len(),
        not_determined,
        method: Method::Lm,
        loss: Loss::Linear,
        timings: Timings {
            runtime,
            trace: trace_time,
            compile,
            execute,
            total: t0.elapsed(),
        },
        executable: exe.source,
        device: device.to_string(),
    };
    let summary = DataSummary::diagonal(ndarray::ArrayView1::from(y_all.as_slice()), Some(&w_all));
    Ok(super::outcome::curve_fit_result(
        result,
        cov,
        m_total,
        n,
        options.absolute_sigma,
        Some(summary),
    ))
}

/// The program's packed output, decoded.
struct Decoded {
    p: Vec<f64>,
    cost: f64,
    initial_cost: f64,
    nfev: usize,
    nit: usize,
    status: i64,
    grad: Vec<f64>,
    s_inv: Array2<f64>,
    v_inv: Vec<f64>,
    z: Vec<f64>,
    /// Per local solver parameter (dataset-major), not determined.
    v_nd: Vec<bool>,
    s_ok: bool,
    l: usize,
}

impl Decoded {
    fn of(v: &[f64], s: usize, l: usize, d: usize) -> Result<Decoded> {
        let want = s + d * l + 5 + s + d * l + s * s + d * l * l + d * l * s + d * l + 1;
        if v.len() != want {
            return Err(internal(
                "schur outputs",
                format!("{} values, expected {want}", v.len()),
            ));
        }
        let mut at = 0;
        let mut take = |k: usize| {
            let part = v[at..at + k].to_vec();
            at += k;
            part
        };
        let p = take(s + d * l);
        let scalars = take(5);
        let grad = take(s + d * l);
        let s_inv = Array2::from_shape_vec((s, s), take(s * s)).map_err(|e| internal("S⁻¹", e.to_string()))?;
        let v_inv = take(d * l * l);
        let z = take(d * l * s);
        let v_nd = take(d * l).iter().map(|&x| x > 0.5).collect();
        let s_ok = take(1)[0] > 0.5;
        Ok(Decoded {
            p,
            cost: scalars[0],
            initial_cost: scalars[1],
            nfev: scalars[2] as usize,
            nit: scalars[3] as usize,
            status: scalars[4] as i64,
            grad,
            s_inv,
            v_inv,
            z,
            v_nd,
            s_ok,
            l,
        })
    }

    /// `V_d⁻¹` `[l, l]`.
    fn v_inv(&self, d: usize) -> Array2<f64> {
        let l = self.l;
        Array2::from_shape_vec((l, l), self.v_inv[d * l * l..(d + 1) * l * l].to_vec()).expect("l x l")
    }
}

/// The program: the model on `x [.., D, M]` with the shared parameters as scalars and each
/// dataset's locals as a column `[D, 1]`, its tangents by both, and the Schur solve.
/// What shapes a Schur program besides the model (hashed through `Debug`).
#[derive(Debug)]
#[allow(dead_code)]
struct Shape {
    x_dims: Vec<i64>,
    s: usize,
    l: usize,
    d: usize,
    m: usize,
    fixed: usize,
    /// Where the shared, local and fixed parameters sit among all of them.
    shared: Vec<usize>,
    local: Vec<usize>,
    fixed_at: Vec<usize>,
}

/// The model on `x` (`[D, M]`, or `[k, D, M]`) at the shared `ps [s]`, local `pl [D, l]` and
/// fixed parameters, as `[D, M]`. The model sees the points of all datasets in a row, `x` as
/// `[D·M]` (or `[k, D·M]`) as `curve_fit` gives it (so expression models and closures alike
/// work), the shared and fixed parameters as scalars and each local one as its dataset's value
/// at every point (`[D·M]`).
fn evaluate<M>(
    model: &M,
    spec: &SchurSpec<'_>,
    x: &Tensor,
    ps: &Tensor,
    pl: &Tensor,
    fixed: Option<&Tensor>,
) -> Result<Tensor>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let g = x.graph();
    let d = pl.dims()[0];
    let m = x.dims()[x.rank() - 1];
    let flat = match spec.x_rows {
        None => x.reshape([d * m]),
        Some(k) => x.reshape([k as i64, d * m]),
    };
    let layout = spec.layout;
    let mut elems: Vec<Option<Tensor>> = vec![None; layout.names.len()];
    for (j, &i) in spec.shared.iter().enumerate() {
        elems[i] = Some(ps.get(j as i64));
    }
    let per_point = |q: i64| pl.slice_axis(1, q, q + 1).broadcast_to([d, m]).reshape([d * m]);
    for (q, &i) in spec.local.iter().enumerate() {
        elems[i] = Some(per_point(q as i64));
    }
    if let Some(c) = fixed {
        for (f, &i) in layout.fixed.iter().enumerate() {
            elems[i] = Some(c.get(f as i64));
        }
    }
    let f = g.try_with(|| model(&flat, &layout.assemble(elems, &per_point(0))))?;
    let f = match f.dims().as_slice() {
        [n] if *n == d * m => f.reshape([d, m]),
        [] => f.broadcast_to([d, m]),
        _ => {
            return Err(Error::ShapeMismatch {
                op: "model",
                lhs: f.shape(),
                rhs: crate::types::Shape(vec![d * m]),
            })
        }
    };
    Ok(f)
}

/// sha256 of the model traced on the program's shapes, with the shape.
fn fingerprint<M>(model: &M, spec: &SchurSpec<'_>, shape: &Shape) -> Result<[u8; 32]>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, shape.x_dims.clone());
    let ps = g.parameter("p_shared", DType::F64, [shape.s as i64]);
    let pl = g.parameter("p_local", DType::F64, [shape.d as i64, shape.l as i64]);
    let fixed = (shape.fixed > 0).then(|| g.parameter("fixed", DType::F64, [shape.fixed as i64]));
    let f = evaluate(model, spec, &x, &ps, &pl, fixed.as_ref())?;
    Ok(text_fingerprint(&g.finish([&f])?.text, &("schur", shape)))
}

fn trace<M>(model: &M, spec: &SchurSpec<'_>, shape: &Shape) -> Result<crate::graph::Program>
where
    M: Fn(&Tensor, &Params) -> Tensor + ?Sized,
{
    let (x_dims, d, m, n_fixed) = (&shape.x_dims, shape.d as i64, shape.m as i64, shape.fixed as i64);
    let (s, l) = (spec.shared.len() as i64, spec.local.len() as i64);
    let g = Graph::new();
    let f64t = |dims: Vec<i64>| TensorType::new(DType::F64, dims);
    let xt = g.parameter("x", DType::F64, x_dims.to_vec());
    let yt = g.parameter("y", DType::F64, [d, m]);
    let wt = g.parameter("w", DType::F64, [d, m]);
    let ps0 = g.parameter("p_shared", DType::F64, [s]);
    let pl0 = g.parameter("p_local", DType::F64, [d, l]);
    let tol = g.parameter("tolerances", DType::F64, [4]);
    let fixed = (n_fixed > 0).then(|| g.parameter("fixed", DType::F64, [n_fixed]));
    let mut inputs = vec![
        ("x", f64t(x_dims.to_vec())),
        ("y", f64t(vec![d, m])),
        ("w", f64t(vec![d, m])),
        ("p_shared", f64t(vec![s])),
        ("p_local", f64t(vec![d, l])),
    ];
    if n_fixed > 0 {
        inputs.push(("fixed", f64t(vec![n_fixed])));
    }
    let fj = g.checked_function("model_jac", &inputs, |a| {
        let (x, y, w, ps, pl) = (&a[0], &a[1], &a[2], &a[3], &a[4]);
        let f = evaluate(model, spec, x, ps, pl, a.get(5))?;
        // Tangents: the shared parameters' unit vectors, then one per local parameter that is 1
        // in its column for every dataset.
        let seed_s = g.concat(&[g.eye(DType::F64, s), g.zeros(DType::F64, [l, s])], 0);
        let local_units = g.eye(DType::F64, l).reshape([l, 1, l]).broadcast_to([l, d, l]);
        let seed_l = g.concat(&[g.zeros(DType::F64, [s, d, l]), local_units], 0);
        let t = jvp(std::slice::from_ref(&f), &[(ps.clone(), seed_s), (pl.clone(), seed_l)])?.remove(0);
        let r = (&f - y) * w;
        let j = t * w.reshape([1, d, m]);
        Ok(vec![r, j])
    })?;
    let call = |ps: &Tensor, pl: &Tensor| {
        let mut args: Vec<&Tensor> = vec![&xt, &yt, &wt, ps, pl];
        if let Some(c) = &fixed {
            args.push(c);
        }
        let mut out = fj.call(&args);
        let j = out.pop().expect("two results");
        (out.pop().expect("two results"), j)
    };
    let problem = SchurProblem {
        fun_jac: &call,
        s,
        l,
        d,
    };
    let inputs = SchurInputs {
        ps0: ps0.clone(),
        pl0: pl0.clone(),
        ftol: tol.get(0),
        xtol: tol.get(1),
        gtol: tol.get(2),
        max_nfev: tol.get(3).convert(DType::I64),
    };
    let o = schur::solve(&problem, &inputs);
    let flat = |t: &Tensor| {
        let size: i64 = t.dims().iter().product();
        t.convert(DType::F64).reshape([size])
    };
    let scalars = g.concat(
        &[
            flat(&o.cost.reshape([1])),
            flat(&o.initial_cost.reshape([1])),
            flat(&o.nfev.reshape([1])),
            flat(&o.nit.reshape([1])),
            flat(&o.status.reshape([1])),
        ],
        0,
    );
    let packed = g.concat(
        &[
            flat(&o.ps),
            flat(&o.pl),
            scalars,
            flat(&o.gs),
            flat(&o.gl),
            flat(&o.s_inv),
            flat(&o.v_inv),
            flat(&o.z),
            flat(&o.v_nd),
            flat(&o.s_ok.reshape([1])),
        ],
        0,
    );
    g.finish([&packed])
}
