//! The outer loop both solvers share: one pass per Jacobian, at the current point, until every
//! lane is done. Its state is the point, a [`Record`] (counters, status, the cost history, the
//! evaluation at the point and its covariance), the factorization carried between passes, and
//! the method's own state (radius, λ, scaling).

use super::covariance::Covariance;
use super::evaluate::Evaluation;
use super::lanes::{loop_state, pick, Lanes, LoopState};
use super::termination::{NONFINITE_START, RUNNING, TINY_JACOBIAN_START};
use super::{Carried, Config, Factored, Inputs, Loss, Outputs, Problem, TrialFactors};
use crate::graph::Tensor;
use crate::types::DType;

/// A column of the Jacobian at the start (of its `R`) whose largest entry is below this
/// (2⁻⁴⁶⁰, about 3e-139) but not zero stops the solve: its squares, and so its norm, the QR
/// and the SVD, lose their digits to underflow, and the tests read it as a zero gradient
/// (a "converged" p0). The residuals are already in units where they are not tiny (see
/// `fit::units`), so such a column says the parameter's start is some 140 orders of magnitude
/// off the scale at which it changes the residuals. An exactly zero column is a parameter
/// the residuals do not depend on, and is reported as not determined instead.
pub(crate) const TINY_COLUMN: f64 = 3.0e-139;

loop_state! {
    /// Per lane, the bookkeeping of an outer loop (one pass per Jacobian).
    pub(crate) struct Record {
        /// Residuals at the current point (unscaled).
        f: Tensor,
        /// Jacobian at the current point (a placeholder when chunked or batched).
        jac: Tensor,
        /// The gradient `Jᵀ f` at the current point.
        grad: Tensor,
        /// Gradient norm the solver reports (its own measure).
        optimality: Tensor,
        nfev: Tensor,
        njev: Tensor,
        nit: Tensor,
        /// RUNNING until the lane terminates, then scipy's status code.
        status: Tensor,
        /// Cost at the start and after each iteration (NaN beyond `nit`).
        history: Tensor,
        done: Tensor,
        /// The first pass (at the start point) has not run yet.
        first: Tensor,
        initial_cost: Tensor,
        /// Covariance `(JᵀJ)⁺` at the current point.
        cov: Tensor,
        rank: Tensor,
        null_weight: Tensor,
    }
}

impl Record {
    /// The record before the first pass: nothing evaluated, lanes that are inactive at the start
    /// already done.
    pub(super) fn start(pb: &Problem<'_>, inp: &Inputs, cfg: &Config) -> Record {
        let (lanes, n) = (&pb.lanes, pb.n);
        Record {
            f: lanes.zeros(&[pb.f_rows()]),
            jac: lanes.zeros(&[pb.jac_rows(), n]),
            grad: lanes.zeros(&[n]),
            optimality: lanes.scalar(0.0),
            nfev: lanes.int(0),
            njev: lanes.int(0),
            nit: lanes.int(0),
            status: lanes.int(RUNNING),
            history: lanes.full(DType::F64, &[cfg.history], f64::NAN),
            done: inp.done_at_start(lanes),
            first: lanes.flag(true),
            initial_cost: lanes.scalar(0.0),
            cov: lanes.zeros(&[n, n]),
            rank: lanes.int(0),
            null_weight: lanes.zeros(&[n]),
        }
    }

    /// At the top of a pass that evaluated `ev` with cost `cost`: on the first pass, counts the
    /// evaluation, records the initial cost and, when the start is not finite, the status
    /// `NONFINITE_START`, or when a column of its Jacobian is too small to compute with,
    /// `TINY_JACOBIAN_START` (see [`TINY_COLUMN`]).
    pub(super) fn opened(&self, lanes: &Lanes, ev: &Evaluation, cost: &Tensor) -> Record {
        let first = &self.first;
        let r = &ev.r;
        let largest = r.abs().reduce_max(&[r.rank() as i64 - 2]);
        let tiny = largest
            .gt(0.0)
            .and(&largest.lt(TINY_COLUMN))
            .select(1.0, 0.0)
            .reduce_max(&[largest.rank() as i64 - 1])
            .gt(0.0);
        let status = first.and(&tiny).select(lanes.int(TINY_JACOBIAN_START), &self.status);
        Record {
            nfev: first.select(lanes.int(1), &self.nfev),
            initial_cost: first.select(cost, &self.initial_cost),
            history: pick(
                first,
                &lanes.set_entry(&self.history, &lanes.int(0), cost),
                &self.history,
            ),
            status: (first.and(&ev.finite.not())).select(lanes.int(NONFINITE_START), &status),
            ..self.clone()
        }
    }

    /// At the end of a pass at the point of `ev`: `status` (RUNNING to go on), `done` whether the
    /// lane stopped at the top of this pass, `cost` the cost after the iteration (recorded in
    /// the history when the lane iterated) and `cv` the covariance at the point of `ev`.
    /// Counters other than `nit` and the gradient are the caller's to set.
    pub(super) fn closed(
        &self,
        lanes: &Lanes,
        ev: &Evaluation,
        cv: Covariance,
        done: Tensor,
        status: Tensor,
        cost: &Tensor,
    ) -> Record {
        let nit = &self.nit + done.not().select(1.0, 0.0).convert(DType::I64);
        Record {
            f: ev.f.clone(),
            jac: ev.jac.clone(),
            history: pick(&done, &self.history, lanes.set_entry(&self.history, &nit, cost)),
            nit,
            status,
            done,
            first: lanes.flag(false),
            cov: cv.cov,
            rank: cv.rank,
            null_weight: cv.null_weight,
            ..self.clone()
        }
    }

    /// The solve's outputs at the final point `x` with cost `cost`.
    pub(super) fn outputs(self, x: Tensor, cost: Tensor, active_mask: Tensor) -> Outputs {
        Outputs {
            x,
            cost,
            active_mask,
            fun: self.f,
            jac: self.jac,
            grad: self.grad,
            optimality: self.optimality,
            nfev: self.nfev,
            njev: self.njev,
            nit: self.nit,
            status: self.status,
            history: self.history,
            initial_cost: self.initial_cost,
            cov: self.cov,
            rank: self.rank,
            null_weight: self.null_weight,
        }
    }
}

/// The state of a solver's outer loop: the current point, its record, the factorization
/// carried from the accepted trial (when trials are factored), and the method's own state `M`.
#[derive(Clone)]
pub(super) struct Outer<M> {
    pub x: Tensor,
    pub rec: Record,
    pub factored: Option<Factored>,
    pub own: M,
}

impl<M: LoopState> LoopState for Outer<M> {
    fn push_to(&self, out: &mut Vec<Tensor>) {
        self.x.push_to(out);
        self.rec.push_to(out);
        self.factored.push_to(out);
        self.own.push_to(out);
    }

    fn rebuild(&self, from: &mut dyn Iterator<Item = Tensor>) -> Self {
        Outer {
            x: self.x.rebuild(from),
            rec: self.rec.rebuild(from),
            factored: self.factored.rebuild(from),
            own: self.own.rebuild(from),
        }
    }
}

/// Runs the outer loop from `inp.x0` with the method state `own`: each pass evaluates the
/// residuals and Jacobian at the current point once (or takes the factorization carried from
/// the accepted trial), and `pass(state, evaluation, eval_only)` returns the next state and the
/// factorization at its point, when trials are factored. `eval_only` marks the pass that only
/// evaluates the point a factored trial accepted.
pub(super) fn outer_loop<M: LoopState>(
    pb: &Problem<'_>,
    inp: &Inputs,
    cfg: &Config,
    trials: &TrialFactors,
    loss: Loss,
    own: M,
    pass: impl FnOnce(&Outer<M>, &Evaluation, &Tensor) -> (Outer<M>, Option<Carried>),
) -> Outer<M> {
    let init = Outer {
        x: inp.x0.clone(),
        rec: Record::start(pb, inp, cfg),
        factored: trials.init(&pb.lanes, pb.n),
        own,
    };
    pb.lanes.while_loop(
        init,
        |st| st.rec.done.not(),
        |st| {
            let (ev, eval_only) = trials.current(pb, &st.factored, &st.x, loss, &inp.f_scale);
            let (next, carried) = pass(st, &ev, &eval_only);
            trials.next(next, st, carried, &eval_only, |s| &mut s.factored)
        },
    )
}
