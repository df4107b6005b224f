//! Levenberg–Marquardt on the Schur complement of a block-arrow least-squares problem: `D`
//! datasets, `s` parameters shared by all of them and `l` local to each (a global fit with many
//! datasets), as one traced `while` loop that never forms the `(s + D·l)`-column Jacobian.
//!
//! Per evaluation the residuals `r [D, M]` and the two Jacobian blocks `J_s [s, D, M]`
//! (by the shared parameters) and `J_l [l, D, M]` (by each dataset's own locals; one tangent per
//! local parameter serves every dataset, since dataset `d`'s residuals depend only on its own)
//! reduce to the blocks of the normal equations:
//!
//! ```text
//!   U = Σ_d J_sᵀ J_s  [s, s]     W_d = J_sᵀ J_l  [D, s, l]     V_d = J_lᵀ J_l  [D, l, l]
//!   g_s = Σ_d J_sᵀ r  [s]        g_l = J_lᵀ r  [D, l]
//! ```
//!
//! A step solves `(JᵀJ + μ D²) δ = −g` (Marquardt's scaling: `D` the running maximum of the
//! column norms, as MINPACK's `mode = 1`) by eliminating the local blocks, as Ceres does for
//! bundle adjustment:
//!
//! ```text
//!   Ṽ_d = V_d + μ D_l²,  Z_d = Ṽ_d⁻¹ W_dᵀ,  S = U + μ D_s² − Σ_d W_d Z_d
//!   S δ_s = −g_s + Σ_d W_d Ṽ_d⁻¹ g_l,d,    δ_l,d = −Ṽ_d⁻¹ g_l,d − Z_d δ_s
//! ```
//!
//! with small Cholesky factorizations only (`l × l` per dataset, `s × s` once). μ follows
//! Nielsen's rule (accept when the gain ratio exceeds 1e-4, `μ ← μ·max(1/3, 1 − (2ρ − 1)³)`;
//! else `μ ← μν, ν ← 2ν`). Stopping is MINPACK's tests: the gradient cosine against `gtol`,
//! actual and predicted relative reductions against `ftol`, the scaled step against `xtol`.
//! The covariance `(JᵀJ)⁻¹` comes from the same blocks at μ = 0 (`covariance_blocks`).
//!
//! # References
//! - B. Triggs, P. McLauchlan, R. Hartley, A. Fitzgibbon, "Bundle adjustment — a modern
//!   synthesis", Vision Algorithms 1999 (the Schur complement of the point blocks).
//! - H. B. Nielsen, "Damping parameter in Marquardt's method", IMM-REP-1999-05, DTU.
//! - J. J. Moré, "The Levenberg–Marquardt algorithm: implementation and theory", 1978.

use super::lanes::{loop_state, Lanes};
use super::termination::RUNNING;
use crate::graph::Tensor;
use crate::types::DType;

/// A pivot of a Cholesky factorization at or below this fraction of its diagonal entry (the
/// squared sine of the angle between that column and the span of the ones before it) counts
/// as singular: the parameter is not determined (about a 1e-7 component in a null direction).
pub(crate) const PIVOT_TOL: f64 = 1e-14;

/// The block-arrow problem.
pub(crate) struct SchurProblem<'a> {
    /// `(p_s [s], p_l [D, l]) -> (r [D, M], J [s + l, D, M])`: weighted residuals (0 on padding)
    /// and their tangents by the shared parameters, then by each local one.
    pub fun_jac: &'a dyn Fn(&Tensor, &Tensor) -> (Tensor, Tensor),
    pub s: i64,
    pub l: i64,
    pub d: i64,
}

/// The solver's inputs.
pub(crate) struct SchurInputs {
    pub ps0: Tensor,
    pub pl0: Tensor,
    pub ftol: Tensor,
    pub xtol: Tensor,
    pub gtol: Tensor,
    /// i64 scalar.
    pub max_nfev: Tensor,
}

/// The normal-equation blocks at a point.
#[derive(Clone)]
struct Blocks {
    cost: Tensor,
    u: Tensor,
    w: Tensor,
    v: Tensor,
    gs: Tensor,
    gl: Tensor,
}

loop_state! {
    struct State {
        ps: Tensor,
        pl: Tensor,
        cost: Tensor,
        u: Tensor,
        w: Tensor,
        v: Tensor,
        gs: Tensor,
        gl: Tensor,
        /// Column scales.
        ds: Tensor,
        dl: Tensor,
        mu: Tensor,
        nu: Tensor,
        nfev: Tensor,
        nit: Tensor,
        status: Tensor,
    }
}

/// What the solve returns (the blocks at the solution for the covariance).
pub(crate) struct SchurOutputs {
    pub ps: Tensor,
    pub pl: Tensor,
    pub cost: Tensor,
    pub initial_cost: Tensor,
    pub nfev: Tensor,
    pub nit: Tensor,
    pub status: Tensor,
    pub gs: Tensor,
    pub gl: Tensor,
    /// `S⁻¹ [s, s]` of the Schur complement at μ = 0.
    pub s_inv: Tensor,
    /// `V_d⁻¹ [D, l, l]`.
    pub v_inv: Tensor,
    /// `Z_d = V_d⁻¹ W_dᵀ [D, l, s]`.
    pub z: Tensor,
    /// Per dataset and local parameter, 1 where the data do not determine it `[D, l]`
    /// ([`undetermined`] of its block; the Schur complement is exact without it).
    pub v_nd: Tensor,
    /// The Schur complement was nonsingular (f64 1/0).
    pub s_ok: Tensor,
}

/// `x` with `v` added to the diagonal of its last two axes (`v` `[.., k]`).
fn add_diag(x: &Tensor, v: &Tensor) -> Tensor {
    let k = v.dims()[v.rank() - 1];
    let g = x.graph();
    let eye = g.eye(DType::F64, k);
    let lead = v.dims()[..v.rank() - 1].to_vec();
    let vv = v.reshape([lead.clone(), vec![1, k]].concat());
    x + eye.broadcast_to([lead, vec![k, k]].concat()) * vv
}

/// Solves the symmetric positive definite systems `a x = b`, batched over leading axes: `a`
/// `[.., k, k]`, `b` `[.., k, c]`, by Cholesky written out entry by entry (`k` is small). Returns
/// `x` and, per system, whether every pivot stayed above [`PIVOT_TOL`] of its diagonal (bool
/// `[..]`). A column whose pivot does not is dropped (its factor entry is `inf`, so its unknown
/// is 0 and the others solve the system without it): the solution then spans the same columns,
/// so `W V⁻¹ Wᵀ` in the Schur complement stays the projection it must be.
pub(crate) fn spd_solve(a: &Tensor, b: &Tensor) -> (Tensor, Tensor) {
    let r = a.rank();
    let k = a.dims()[r - 1] as usize;
    let lead = a.dims()[..r - 2].to_vec();
    let g = a.graph();
    // A lead-shaped value as a column multiplier of a [.., c] row.
    let col = |t: &Tensor| t.reshape([lead.clone(), vec![1]].concat());
    let row_of_b = |i: usize| {
        let c = b.dims()[r - 1];
        b.slice_axis(r as i64 - 2, i as i64, i as i64 + 1)
            .reshape([lead.clone(), vec![c]].concat())
    };
    let f = Factor::of(a);
    let l = &f.l;
    let ok = f
        .good
        .iter()
        .fold(g.constant(1.0).broadcast_to(lead.clone()).gt(0.0), |ok, gj| ok.and(gj));
    // L z = b, then Lᵀ x = z.
    let mut z: Vec<Tensor> = Vec::with_capacity(k);
    for (i, li) in l.iter().enumerate() {
        let acc = z.iter().zip(li).fold(row_of_b(i), |acc, (zp, lip)| acc - col(lip) * zp);
        z.push(acc / col(&li[i]));
    }
    let mut x: Vec<Option<Tensor>> = vec![None; k];
    for i in (0..k).rev() {
        let acc = (i + 1..k).fold(z[i].clone(), |acc, p| {
            acc - col(&l[p][i]) * x[p].as_ref().expect("solved")
        });
        x[i] = Some(acc / col(&l[i][i]));
    }
    let c = b.dims()[r - 1];
    let parts: Vec<Tensor> = x
        .into_iter()
        .map(|xi| xi.expect("solved").reshape([lead.clone(), vec![1, c]].concat()))
        .collect();
    (g.concat(&parts, r as i64 - 2), ok)
}

/// The Cholesky factor of `a [.., k, k]` entry by entry (lead-shaped entries), with the columns
/// whose pivot is at or below [`PIVOT_TOL`] of its diagonal dropped (`L_jj = inf`).
struct Factor {
    /// `l[i][j]`, `j <= i`.
    l: Vec<Vec<Tensor>>,
    /// Per column, its pivot was kept (bool, lead-shaped).
    good: Vec<Tensor>,
    /// The diagonal of `a`.
    diag: Vec<Tensor>,
}

impl Factor {
    fn of(a: &Tensor) -> Factor {
        let r = a.rank();
        let k = a.dims()[r - 1] as usize;
        let lead = a.dims()[..r - 2].to_vec();
        let entry = |i: usize, j: usize| {
            a.slice_axis(r as i64 - 2, i as i64, i as i64 + 1)
                .slice_axis(r as i64 - 1, j as i64, j as i64 + 1)
                .reshape(lead.clone())
        };
        let (mut l, mut good, mut diag): (Vec<Vec<Tensor>>, Vec<Tensor>, Vec<Tensor>) = (vec![], vec![], vec![]);
        for i in 0..k {
            let mut row: Vec<Tensor> = Vec::with_capacity(i + 1);
            for (j, lj) in l.iter().enumerate() {
                let acc = row.iter().zip(lj).fold(entry(i, j), |acc, (lip, ljp)| acc - lip * ljp);
                row.push(acc / &lj[j]);
            }
            let d = entry(i, i);
            let pivot = row.iter().fold(d.clone(), |acc, lip| acc - lip.square());
            let kept = pivot.gt(&(d.abs() * PIVOT_TOL)).and(&d.gt(0.0));
            row.push(kept.select(pivot.sqrt(), f64::INFINITY));
            l.push(row);
            good.push(kept);
            diag.push(d);
        }
        Factor { l, good, diag }
    }
}

/// Per column of the positive semidefinite `a [.., k, k]`, 1 where its parameter is not
/// determined, else 0 (`[.., k]`): where a pivot of the factorization fails, column `j` lies in
/// the span of the columns before it, and the null direction `v = [−L⁻ᵀ L_j ; 1]` (of the
/// columns scaled to unit norm) names the parameters with a component above
/// [`NULL_SPACE_TOL`](crate::solve::covariance::NULL_SPACE_TOL) — the dense path's rule.
pub(crate) fn undetermined(a: &Tensor) -> Tensor {
    let r = a.rank();
    let k = a.dims()[r - 1] as usize;
    let lead = a.dims()[..r - 2].to_vec();
    let g = a.graph();
    let f = Factor::of(a);
    let tol = crate::solve::covariance::NULL_SPACE_TOL;
    let zero = g.constant(0.0).broadcast_to(lead.clone());
    let mut flags: Vec<Tensor> = vec![zero.clone(); k];
    for j in 0..k {
        // u solves L_{<j}ᵀ u = L_{j,<j}ᵀ (dropped columns give 0); v = [−u, 1].
        let mut u: Vec<Tensor> = vec![zero.clone(); j];
        for i in (0..j).rev() {
            let acc = (i + 1..j).fold(f.l[j][i].clone(), |acc, p| acc - &f.l[p][i] * &u[p]);
            u[i] = acc / &f.l[i][i];
        }
        let w: Vec<Tensor> = (0..=j)
            .map(|i| {
                let v = if i == j {
                    g.constant(1.0).broadcast_to(lead.clone())
                } else {
                    -&u[i]
                };
                // Unit columns; a zero column's scale is 1 (its own direction is the null one).
                v * f.diag[i].gt(0.0).select(f.diag[i].max(0.0).sqrt(), 1.0)
            })
            .collect();
        let norm = w.iter().fold(zero.clone(), |acc, wi| acc + wi.square()).sqrt();
        let failed = f.good[j].not();
        for (i, wi) in w.iter().enumerate() {
            let hit = failed.and(&wi.abs().gt(&(&norm * tol)));
            flags[i] = hit.select(1.0, &flags[i]);
        }
    }
    let parts: Vec<Tensor> = flags
        .iter()
        .map(|t| t.reshape([lead.clone(), vec![1]].concat()))
        .collect();
    g.concat(&parts, r as i64 - 2)
}

/// The blocks of the normal equations from `r [D, M]` and `J [s + l, D, M]`: all products of
/// two tangent rows summed over the points at once (`[K, K, D]`, one fused reduction, which
/// XLA:CPU runs faster than batched `dot_general`s of these thin shapes), then split.
fn blocks(r: &Tensor, j: &Tensor, s: i64, l: i64) -> Blocks {
    let dims = j.dims();
    let (k, d, m) = (dims[0], dims[1], dims[2]);
    let gram = (j.reshape([k, 1, d, m]) * j.reshape([1, k, d, m])).reduce_sum(&[3]); // [K, K, D]
    let grad = (j * r.reshape([1, d, m])).reduce_sum(&[2]); // [K, D]
    let block = |r0: i64, r1: i64, c0: i64, c1: i64| gram.slice_axis(0, r0, r1).slice_axis(1, c0, c1);
    Blocks {
        cost: r.square().sum() * 0.5,
        u: block(0, s, 0, s).reduce_sum(&[2]),
        w: block(0, s, s, s + l).transpose(&[2, 0, 1]),
        v: block(s, s + l, s, s + l).transpose(&[2, 0, 1]),
        gs: grad.slice_axis(0, 0, s).reduce_sum(&[1]),
        gl: grad.slice_axis(0, s, s + l).t(),
    }
}

/// Diagonal of the last two axes.
fn diag(x: &Tensor) -> Tensor {
    let k = x.dims()[x.rank() - 1];
    let eye = x.graph().eye(DType::F64, k);
    (x * eye.broadcast_to(x.dims())).reduce_sum(&[x.rank() as i64 - 1])
}

/// The damped step `(δ_s [s], δ_l [D, l])` at μ, and whether its systems were nonsingular.
fn step(st: &State, mu: &Tensor, s: i64) -> (Tensor, Tensor, Tensor) {
    let vt = add_diag(&st.v, &(st.dl.square() * mu));
    let ut = add_diag(&st.u, &(st.ds.square() * mu));
    // Ṽ⁻¹ [Wᵀ | g_l]: [D, l, s + 1].
    let wt = st.w.transpose(&[0, 2, 1]);
    let gl = st.gl.reshape([st.gl.dims(), vec![1]].concat());
    let (zg, v_ok) = spd_solve(&vt, &st.ps.graph().concat(&[wt, gl], 2));
    let z = zg.slice_axis(2, 0, s);
    let vg = zg.slice_axis(2, s, s + 1).reshape(st.gl.dims());
    // S = Ũ − Σ_d W_d Z_d; rhs = −g_s + Σ_d W_d Ṽ⁻¹ g_l.
    let wz = st.w.dot_general(&z, &[0], &[0], &[2], &[1]).reduce_sum(&[0]);
    let schur = ut - wz;
    let rhs = -&st.gs + st.w.dot_general(&vg, &[0], &[0], &[2], &[1]).reduce_sum(&[0]);
    let (dsm, s_ok) = spd_solve(&schur, &rhs.reshape([s, 1]));
    let ds = dsm.reshape([s]);
    let dl = -vg - z.dot_general(&ds, &[], &[], &[2], &[0]);
    (ds, dl, all(&v_ok).and(&s_ok))
}

/// True where `t` is finite (NaN compares false).
fn finite(t: &Tensor) -> Tensor {
    t.abs().lt(f64::INFINITY)
}

/// True when every element of the bool `t` is (a bool scalar).
fn all(t: &Tensor) -> Tensor {
    let axes: Vec<i64> = (0..t.rank() as i64).collect();
    t.select(1.0, 0.0).reduce_min(&axes).gt(0.5)
}

/// MINPACK's gradient test: `max_j |g_j| / (‖r‖ ‖J_j‖)`, 0 for a zero residual.
fn gradient_cosine(b: &Blocks) -> Tensor {
    let fnorm = (&b.cost * 2.0).sqrt();
    let cos = |g: &Tensor, d: &Tensor| {
        let norm = d.sqrt();
        let axes: Vec<i64> = (0..g.rank() as i64).collect();
        norm.gt(0.0)
            .select(
                g.abs() / (norm.max(f64::MIN_POSITIVE) * fnorm.max(f64::MIN_POSITIVE)),
                0.0,
            )
            .reduce_max(&axes)
    };
    let c = cos(&b.gs, &diag(&b.u)).max(cos(&b.gl, &diag(&b.v)));
    fnorm.gt(0.0).select(c, 0.0)
}

/// Builds the solve.
pub(crate) fn solve(pb: &SchurProblem<'_>, inp: &SchurInputs) -> SchurOutputs {
    let (s, l) = (pb.s, pb.l);
    let g = inp.ps0.graph().clone();
    let lanes = Lanes::one(&g);
    let (r0, j0) = (pb.fun_jac)(&inp.ps0, &inp.pl0);
    let b0 = blocks(&r0, &j0, s, l);
    // Column scales: the norms, 1 where a column is zero (MINPACK).
    let scale = |d: Tensor| {
        let n = d.sqrt();
        n.gt(0.0).select(&n, 1.0)
    };
    let ds0 = scale(diag(&b0.u));
    let dl0 = scale(diag(&b0.v));
    let gtol0 = gradient_cosine(&b0).le(&inp.gtol);
    let finite0 = finite(&b0.cost);
    let init = State {
        ps: inp.ps0.clone(),
        pl: inp.pl0.clone(),
        cost: b0.cost.clone(),
        u: b0.u,
        w: b0.w,
        v: b0.v,
        gs: b0.gs,
        gl: b0.gl,
        ds: ds0,
        dl: dl0,
        mu: g.constant(1e-3),
        nu: g.constant(2.0),
        nfev: g.scalar(DType::I64, 1.0),
        nit: g.scalar(DType::I64, 0.0),
        status: finite0
            .not()
            .select(-1.0, gtol0.select(1.0, RUNNING as f64))
            .convert(DType::I64),
    };
    let initial_cost = b0.cost;
    let out = lanes.while_loop(
        init,
        |st| st.status.eq(RUNNING as f64),
        |st| {
            let (ds, dl, ok) = step(st, &st.mu, s);
            let (ps1, pl1) = (&st.ps + &ds, &st.pl + &dl);
            let (r1, j1) = (pb.fun_jac)(&ps1, &pl1);
            let b1 = blocks(&r1, &j1, s, l);
            let nfev = &st.nfev + 1.0;
            // Predicted reduction ½(μ‖Dδ‖² − gᵀδ) and the actual one.
            let step_sq = (st.ds.square() * ds.square()).sum() + (st.dl.square() * dl.square()).sum();
            let gd = (&st.gs * &ds).sum() + (&st.gl * &dl).sum();
            let pred = (&st.mu * &step_sq - &gd) * 0.5;
            let actual = &st.cost - &b1.cost;
            let rho = &actual / pred.max(f64::MIN_POSITIVE);
            let accept = ok.and(&finite(&b1.cost)).and(&rho.gt(1e-4));
            let shrink = ((&rho * 2.0 - 1.0).powi(3) * -1.0 + 1.0).max(1.0 / 3.0);
            let mu = accept.select(&st.mu * &shrink, &st.mu * &st.nu);
            let nu = accept.select(2.0, &st.nu * 2.0);
            let xnorm = ((st.ds.square() * st.ps.square()).sum() + (st.dl.square() * st.pl.square()).sum()).sqrt();
            let ftol_ok = accept
                .and(&actual.abs().le(&(&inp.ftol * &st.cost)))
                .and(&pred.le(&(&inp.ftol * &st.cost)));
            // Only a step from nonsingular systems says the iteration has converged.
            let xtol_ok = ok.and(&step_sq.sqrt().le(&(&inp.xtol * &xnorm)));
            let pick = |new: &Tensor, old: &Tensor| accept.select(new, old);
            let cost = pick(&b1.cost, &st.cost);
            let nb = Blocks {
                cost: cost.clone(),
                u: pick(&b1.u, &st.u),
                w: pick(&b1.w, &st.w),
                v: pick(&b1.v, &st.v),
                gs: pick(&b1.gs, &st.gs),
                gl: pick(&b1.gl, &st.gl),
            };
            let gtol_ok = accept.and(&gradient_cosine(&nb).le(&inp.gtol));
            let zero_cost = cost.eq(0.0);
            // μ beyond any scale: no step the arithmetic can take reduces the cost.
            let stuck = mu.gt(1e300).or(&finite(&mu).not());
            let status = gtol_ok.or(&zero_cost).select(
                1.0,
                ftol_ok.and(&xtol_ok).select(
                    4.0,
                    ftol_ok.select(
                        2.0,
                        xtol_ok
                            .or(&stuck)
                            .select(3.0, nfev.ge(&inp.max_nfev).select(0.0, RUNNING as f64)),
                    ),
                ),
            );
            State {
                ps: pick(&ps1, &st.ps),
                pl: pick(&pl1, &st.pl),
                cost,
                u: nb.u,
                w: nb.w,
                v: nb.v,
                gs: nb.gs,
                gl: nb.gl,
                ds: pick(&st.ds.max(diag(&b1.u).sqrt()), &st.ds),
                dl: pick(&st.dl.max(diag(&b1.v).sqrt()), &st.dl),
                mu,
                nu,
                nfev,
                nit: accept.select(&st.nit + 1.0, &st.nit),
                status: status.convert(DType::I64),
            }
        },
    );
    // (JᵀJ)⁻¹ from the blocks at the solution: V⁻¹, Z = V⁻¹Wᵀ, S = U − Σ W Z.
    let d = pb.d;
    let eye_l = g.eye(DType::F64, l).broadcast_to([d, l, l]);
    let wt = out.w.transpose(&[0, 2, 1]);
    let (vz, _) = spd_solve(&out.v, &g.concat(&[eye_l, wt], 2));
    let v_nd = undetermined(&out.v);
    let v_inv = vz.slice_axis(2, 0, l);
    let z = vz.slice_axis(2, l, l + s);
    let schur = &out.u - out.w.dot_general(&z, &[0], &[0], &[2], &[1]).reduce_sum(&[0]);
    let (s_inv, s_ok) = spd_solve(&schur, &g.eye(DType::F64, s));
    SchurOutputs {
        ps: out.ps,
        pl: out.pl,
        cost: out.cost,
        initial_cost,
        nfev: out.nfev,
        nit: out.nit,
        status: out.status,
        gs: out.gs,
        gl: out.gl,
        s_inv,
        v_inv,
        z,
        v_nd,
        s_ok: s_ok.select(1.0, 0.0),
    }
}
