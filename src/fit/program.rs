//! The contract between the host and a fit program: what goes in and what comes out, defined
//! once and used by the host (encoding inputs, decoding outputs) and by the tracer (decoding
//! inputs, encoding outputs), for single fits and for batches.
//!
//! * **Inputs** ([`SolverArgs`]): all solver inputs of a problem in one `f64` vector of
//!   `4n + 6` values (one host-to-device copy instead of ten): `p0, lower, upper, x_scale`
//!   (`n` each), then `ftol, xtol, gtol, f_scale, max_nfev, m_valid`. A batch passes one row per
//!   problem (`[B, 4n + 6]`); its options are those of row 0.
//! * **Outputs** ([`Summary`]): everything but the residuals and the Jacobian in one `f64`
//!   vector (one device-to-host copy), laid out by [`part_lens`]; a batch returns one row per
//!   problem with the padded residuals after the summary.

use super::execute::HostArg;
use super::validate::internal;
use super::HISTORY_LEN;
use crate::error::Result;
use crate::graph::{Graph, Tensor};
use crate::solve::{self, Inputs};
use crate::types::DType;

/// Host values of the solver inputs.
pub(super) struct SolverArgs {
    pub p0: Vec<f64>,
    pub lb: Vec<f64>,
    pub ub: Vec<f64>,
    pub x_scale: Vec<f64>,
    pub ftol: f64,
    pub xtol: f64,
    pub gtol: f64,
    pub f_scale: f64,
    pub max_nfev: i64,
    pub m_valid: f64,
}

impl SolverArgs {
    /// Length of the packed values of `n` parameters: `4n + 6`.
    pub fn packed_len(n: usize) -> usize {
        4 * n + 6
    }

    /// Declares the packed `solver_args` parameter of a program: `[4n + 6]`, or `[lead.., 4n + 6]`
    /// for the rows of a batch.
    pub fn declare(g: &Graph, lead: &[i64], n: i64) -> Tensor {
        let dims = [lead, &[Self::packed_len(n as usize) as i64]].concat();
        g.parameter("solver_args", DType::F64, dims)
    }

    /// Appends the one packed `solver_args` input.
    pub fn push(self, args: &mut Vec<HostArg<'_>>) {
        let mut v = Vec::with_capacity(Self::packed_len(self.p0.len()));
        self.pack_into(&mut v);
        let len = v.len() as i64;
        args.push(HostArg::F64(v, vec![len]));
    }

    /// Appends the packed values to `v` (one row of a batch's input).
    pub fn pack_into(&self, v: &mut Vec<f64>) {
        for part in [&self.p0, &self.lb, &self.ub, &self.x_scale] {
            v.extend_from_slice(part);
        }
        // `max_nfev` travels as f64: exact up to 2^53, far beyond any evaluation budget.
        let max_nfev = self.max_nfev.clamp(0, 1 << 53) as f64;
        v.extend([self.ftol, self.xtol, self.gtol, self.f_scale, max_nfev, self.m_valid]);
    }

    /// The traced [`Inputs`] from the packed values: `[4n + 6]` for one problem; `[B, 4n + 6]`
    /// for a batch (per-problem `x0`, bounds and `m_valid`; `x_scale` and the scalars from row
    /// 0), whose lanes `[0, count)` hold problems.
    pub fn decode(packed: &Tensor, n: i64, count: Option<&Tensor>) -> Inputs {
        let width = Self::packed_len(n as usize) as i64;
        let (lead, shared): (Vec<i64>, Tensor) = match packed.rank() {
            1 => (vec![], packed.clone()),
            _ => {
                let b = packed.dims()[0];
                (vec![b], packed.slice(&[0, 0], &[1, width]).reshape([width]))
            }
        };
        let last = lead.len() as i64;
        let columns = |from: i64, to: i64| packed.slice_axis(last, from, to);
        let vec = |i: i64| columns(i * n, (i + 1) * n);
        let scalar = |i: i64| shared.slice(&[4 * n + i], &[4 * n + i + 1]).reshape([]);
        let active = count.map(|count| packed.graph().iota(DType::I64, lead.clone(), 0).lt(count));
        Inputs {
            x0: vec(0),
            lb: vec(1),
            ub: vec(2),
            x_scale: shared.slice(&[3 * n], &[4 * n]),
            ftol: scalar(0),
            xtol: scalar(1),
            gtol: scalar(2),
            f_scale: scalar(3),
            max_nfev: scalar(4).convert(DType::I64),
            m_valid: columns(width - 1, width).reshape(lead.clone()),
            active,
        }
    }
}

/// Declares the packed `solver_args` parameter of one problem and runs `solve` on it inside a
/// `while` loop that runs exactly once (its trip count comes from an input, so XLA cannot remove
/// it): XLA:CPU then compiles the set-up and output packing around the solver's own loop into
/// the same single kernel instead of a score of small ones. Returns the program's outputs: the
/// packed [`Summary`], the residuals, the Jacobian (`jac_rows` rows: `m`, or 1 when chunked).
pub(super) fn solve_once(g: &Graph, n: i64, jac_rows: i64, solve: impl Fn(&Inputs) -> solve::Outputs) -> Vec<Tensor> {
    let packed = SolverArgs::declare(g, &[], n);
    // `m_valid`, the last value, is never negative: a trip count of one XLA cannot see.
    let once = packed
        .at(SolverArgs::packed_len(n as usize) as i64 - 1)
        .ge(0.0)
        .select(1.0, 0.0)
        .convert(DType::I64);
    let init = [
        g.scalar(DType::I64, 0.0),
        packed,
        g.zeros(DType::F64, [summary_len(n as usize) as i64]),
        g.zeros(DType::F64, [jac_rows]),
        g.zeros(DType::F64, [jac_rows, n]),
    ];
    let res = g.while_loop(
        &init,
        |st| st[0].lt(&once),
        |st| {
            let o = solve(&SolverArgs::decode(&st[1], n, None));
            let summary = pack(&summary_parts(&o), &[]);
            // The arguments change (their new value is never used), so no part of the body is
            // loop-invariant and hoisted out again.
            vec![&st[0] + 1.0, &st[1] * 2.0, summary, o.fun, o.jac]
        },
    );
    res[2..].to_vec()
}

/// Number of parts of the [`Summary`].
const SUMMARY_PARTS: usize = 14;

/// The [`Summary`] parts of a solve's outputs, in the summary's order.
fn summary_parts(o: &solve::Outputs) -> [&Tensor; SUMMARY_PARTS] {
    [
        &o.x,
        &o.cost,
        &o.grad,
        &o.optimality,
        &o.active_mask,
        &o.nfev,
        &o.njev,
        &o.nit,
        &o.status,
        &o.history,
        &o.initial_cost,
        &o.cov,
        &o.rank,
        &o.null_weight,
    ]
}

/// Length of each [`summary_parts`] entry for `n` parameters.
fn part_lens(n: usize) -> [usize; SUMMARY_PARTS] {
    let h = HISTORY_LEN as usize;
    [n, 1, n, 1, n, 1, 1, 1, 1, h, 1, n * n, 1, n]
}

/// Length of the packed [`Summary`] of `n` parameters.
pub(super) fn summary_len(n: usize) -> usize {
    part_lens(n).iter().sum()
}

/// A batch's outputs: per problem (leading axis `[B]`) the packed summary followed by the
/// residuals, `[B, summary_len + m]`.
pub(super) fn pack_rows(o: &solve::Outputs) -> Tensor {
    let lead = [o.x.dims()[0]];
    let mut parts = summary_parts(o).to_vec();
    parts.push(&o.fun);
    pack(&parts, &lead)
}

/// One problem's outputs of a sequential batch program: the packed summary followed by the
/// residuals, `[summary_len + m]`.
pub(super) fn pack_row(o: &solve::Outputs) -> Tensor {
    let mut parts = summary_parts(o).to_vec();
    parts.push(&o.fun);
    pack(&parts, &[])
}

/// `parts`, each with the leading dimensions `lead` (`[]` for one problem, `[B]` for a batch),
/// converted to `f64`, flattened past `lead` and joined along the last axis: `[lead.., total]`.
fn pack(parts: &[&Tensor], lead: &[i64]) -> Tensor {
    let flat: Vec<Tensor> = parts
        .iter()
        .map(|t| {
            let t = if t.dtype() == DType::F64 {
                (*t).clone()
            } else {
                t.convert(DType::F64)
            };
            let len: i64 = t.dims()[lead.len()..].iter().product();
            t.reshape([lead, &[len]].concat())
        })
        .collect();
    parts[0].graph().concat(&flat, lead.len() as i64)
}

/// The packed summary output of a fit program, decoded ([`summary_parts`] order). Counts and
/// codes travel as `f64`, exact for every value they can take.
pub(super) struct Summary {
    pub x: Vec<f64>,
    pub cost: f64,
    pub grad: Vec<f64>,
    pub optimality: f64,
    pub active_mask: Vec<i64>,
    pub nfev: i64,
    pub njev: i64,
    pub nit: i64,
    pub status: i64,
    pub history: Vec<f64>,
    pub initial_cost: f64,
    pub cov: Vec<f64>,
    pub rank: i64,
    pub null_weight: Vec<f64>,
}

impl Summary {
    /// Decodes the packed summary of `n` parameters.
    pub fn decode(v: &[f64], n: usize) -> Result<Summary> {
        let expected = summary_len(n);
        if v.len() != expected {
            return Err(internal(
                "program outputs",
                format!("summary has {} values, expected {expected}", v.len()),
            ));
        }
        let mut parts = part_lens(n).into_iter().scan(0, |at, len| {
            let part = &v[*at..*at + len];
            *at += len;
            Some(part)
        });
        // (Struct fields are evaluated in the order written: the parts' order.)
        let mut next = || parts.next().expect("one slice per part");
        let int = |x: f64| x as i64;
        Ok(Summary {
            x: next().to_vec(),
            cost: next()[0],
            grad: next().to_vec(),
            optimality: next()[0],
            active_mask: next().iter().map(|&x| int(x)).collect(),
            nfev: int(next()[0]),
            njev: int(next()[0]),
            nit: int(next()[0]),
            status: int(next()[0]),
            history: next().to_vec(),
            initial_cost: next()[0],
            cov: next().to_vec(),
            rank: int(next()[0]),
            null_weight: next().to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_of_the_wrong_length_is_an_internal_error() {
        let n = 3;
        let ok = vec![0.0; summary_len(n)];
        let s = Summary::decode(&ok, n).unwrap();
        assert_eq!(
            (s.x.len(), s.cov.len(), s.history.len()),
            (n, n * n, HISTORY_LEN as usize)
        );
        match Summary::decode(&ok[1..], n) {
            Err(crate::Error::Internal { what, .. }) => assert_eq!(what, "program outputs"),
            other => panic!("expected an internal error, got {:?}", other.map(|s| s.x)),
        }
    }

    #[test]
    fn the_summary_layout_round_trips() {
        // Each part's values, in order, come back in the field of that part.
        let n = 2;
        let v: Vec<f64> = (0..summary_len(n)).map(|i| i as f64).collect();
        let s = Summary::decode(&v, n).unwrap();
        let h = HISTORY_LEN as usize;
        assert_eq!(s.x, vec![0.0, 1.0]);
        assert_eq!(s.cost, 2.0);
        assert_eq!(s.grad, vec![3.0, 4.0]);
        assert_eq!(s.optimality, 5.0);
        assert_eq!(s.active_mask, vec![6, 7]);
        assert_eq!((s.nfev, s.njev, s.nit, s.status), (8, 9, 10, 11));
        assert_eq!(s.history.first(), Some(&12.0));
        assert_eq!(s.initial_cost, (12 + h) as f64);
        assert_eq!(s.cov.first(), Some(&((13 + h) as f64)));
        assert_eq!(s.rank, (13 + h + 4) as i64);
        assert_eq!(s.null_weight, vec![(14 + h + 4) as f64, (15 + h + 4) as f64]);
    }
}
