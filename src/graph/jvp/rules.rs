//! The JVP rules: for each primitive, the tangent of its result from its operands, its
//! result and the operands' tangents, written as traced code on [`Tensor`]s.
//!
//! Tangents carry a leading basis axis of size `n` (all `n` directions at once) and `None`
//! stands for a symbolic zero; a rule like `t * y` broadcasts the primal `y: [s]` against
//! `t: [n, s]`. The driver (`mod.rs`) only calls a rule when some operand tangent is non-zero
//! and the result is a float.
//!
//! Conventions at non-differentiable points: `abs'(0) = 0` (via `signum(0) = 0`),
//! `signum' = floor' = ceil' = round' = 0`, `max`/`min` route the whole tangent to the first
//! operand at ties (`a >= b` picks `a` for max, `a <= b` for min), `pow(x, y)` uses
//! `d/dx = 0` where `y == 0` and `d/dy = 0` where `x == 0`, `reduce_max`/`reduce_min` average
//! over tied elements, `select(pred, a, b)` takes the tangent of the branch it picks at
//! each element (none through `pred`). Comparisons, logical ops and integer results have zero
//! tangents.

use std::f64::consts::FRAC_2_SQRT_PI;

use crate::graph::builder::Tensor;
use crate::graph::ops::dot::free_axes;
use crate::graph::ops::{
    Binary, BinaryOp, BroadcastInDim, Concat, Convert, DotGeneral, DynamicSlice, DynamicUpdateSlice, Op, Reduce,
    ReduceKind, Reshape, Slice, Take, Transpose, Unary, UnaryOp,
};
use crate::graph::types::Shape;

/// A tangent: `Some(t)` with `t` of shape `[n, ...primal shape]`, or `None` for a symbolic zero.
pub(crate) type Tangent = Option<Tensor>;

/// The basis size `n` of a tangent (its leading dimension).
pub(crate) fn basis_size(t: &Tensor) -> i64 {
    t.dims().first().copied().unwrap_or(1)
}

/// A tangent as a tensor, zeros of shape `[n, ...primal]` for a symbolic zero.
pub(crate) fn materialize(t: &Tangent, primal: &Tensor, n: i64) -> Tensor {
    match t {
        Some(t) => t.clone(),
        None => {
            let mut dims = vec![n];
            dims.extend(primal.dims());
            primal.graph().zeros(primal.dtype(), dims)
        }
    }
}

/// Sum of two optional tangents.
fn add_t(a: Tangent, b: Tangent) -> Tangent {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

/// `select(mask, ta, tb)` with symbolic zeros.
fn pick(mask: &Tensor, ta: Option<&Tensor>, tb: Option<&Tensor>) -> Tangent {
    match (ta, tb) {
        (Some(ta), Some(tb)) => Some(mask.select(ta, tb)),
        (Some(ta), None) => Some(mask.select(ta, 0.0)),
        (None, Some(tb)) => Some(mask.select(0.0, tb)),
        (None, None) => None,
    }
}

/// `dims` with every entry shifted by one (tangents carry a leading basis axis).
fn shifted(dims: &[i64]) -> Vec<i64> {
    dims.iter().map(|d| d + 1).collect()
}

/// `[head] ++ rest`.
fn cons(head: i64, rest: &[i64]) -> Vec<i64> {
    let mut v = Vec::with_capacity(rest.len() + 1);
    v.push(head);
    v.extend_from_slice(rest);
    v
}

/// Moves axis `from` of `t` to the front.
fn to_front(t: Tensor, from: usize) -> Tensor {
    if from == 0 {
        return t;
    }
    let r = t.rank() as i64;
    let mut perm = vec![from as i64];
    perm.extend((0..r).filter(|&a| a != from as i64));
    t.transpose(&perm)
}

/// The tangent of node `op` applied to operands `x` with result `y`, from the operand
/// tangents `t`; `None` for ops without a tangent (sources, comparisons, structural nodes,
/// which the driver handles itself).
pub(crate) fn jvp(op: &Op, x: &[Tensor], y: &Tensor, t: &[Tangent]) -> Tangent {
    match op {
        Op::Unary(Unary(u)) => unary(*u, &x[0], y, t[0].as_ref()?),
        Op::Binary(Binary(b)) => binary(*b, &x[0], &x[1], y, t[0].as_ref(), t[1].as_ref()),
        Op::Select(_) => pick(&x[0], t[1].as_ref(), t[2].as_ref()),
        Op::Convert(Convert(to)) if x[0].dtype().is_float() && to.is_float() => t[0].as_ref().map(|t| t.convert(*to)),
        Op::Reshape(Reshape(shape)) => {
            let t = t[0].as_ref()?;
            Some(t.reshape(cons(basis_size(t), shape.dims())))
        }
        Op::Broadcast(BroadcastInDim { shape, dims }) => {
            let t = t[0].as_ref()?;
            Some(t.broadcast_in_dim(cons(basis_size(t), shape.dims()), &cons(0, &shifted(dims))))
        }
        Op::Slice(Slice { start, limit, stride }) => {
            let t = t[0].as_ref()?;
            Some(t.slice_strided(&cons(0, start), &cons(basis_size(t), limit), &cons(1, stride)))
        }
        Op::Concat(Concat(axis)) => {
            let n = t.iter().flatten().next().map(basis_size)?;
            let parts: Vec<Tensor> = x.iter().zip(t).map(|(x, t)| materialize(t, x, n)).collect();
            Some(x[0].graph().concat(&parts, axis + 1))
        }
        Op::Transpose(Transpose(perm)) => Some(t[0].as_ref()?.transpose(&cons(0, &shifted(perm)))),
        Op::Reduce(r) => reduce(r, &x[0], y, t[0].as_ref()?),
        Op::Dot(d) => dot(d, &x[0], &x[1], t[0].as_ref(), t[1].as_ref()),
        Op::DynamicSlice(DynamicSlice(sizes)) => {
            let t = t[0].as_ref()?;
            let zero = x[0].graph().full(x[1].dtype(), Shape::scalar(), 0.0);
            let starts: Vec<Tensor> = std::iter::once(zero).chain(x[1..].iter().cloned()).collect();
            Some(t.dynamic_slice(&starts, &cons(basis_size(t), sizes)))
        }
        Op::DynamicUpdateSlice(DynamicUpdateSlice) => {
            let n = t[..2].iter().flatten().next().map(basis_size)?;
            let zero = x[0].graph().full(x[2].dtype(), Shape::scalar(), 0.0);
            let starts: Vec<Tensor> = std::iter::once(zero).chain(x[2..].iter().cloned()).collect();
            Some(materialize(&t[0], &x[0], n).dynamic_update_slice(&materialize(&t[1], &x[1], n), &starts))
        }
        Op::Take(Take(axis)) => Some(t[0].as_ref()?.take(axis + 1, &x[1])),
        Op::Convert(_)
        | Op::Compare(_)
        | Op::Constant(_)
        | Op::Iota(_)
        | Op::Parameter { .. }
        | Op::Poison { .. }
        | Op::While { .. }
        | Op::Call { .. }
        | Op::Get { .. } => None,
    }
}

/// Tangent of `y = op(x)` given the (non-zero) tangent `t` of `x`.
#[allow(unused_variables)]
fn unary(op: UnaryOp, x: &Tensor, y: &Tensor, t: &Tensor) -> Tangent {
    use UnaryOp::*;
    match op {
        Neg => Some(-t),
        Abs => Some(t * x.signum()),
        Sign => None,
        Exp => Some(t * y),
        Expm1 => Some(t * (y + 1.0)),
        Ln => Some(t / x),
        Ln1p => Some(t / (x + 1.0)),
        Sqrt => Some(t * (0.5 / y)),
        Rsqrt => Some(t * (y / x * -0.5)),
        Cbrt => Some(t / (y * y * 3.0)),
        Sin => Some(t * x.cos()),
        Cos => Some(t * -x.sin()),
        Tan => Some(t * (y * y + 1.0)),
        Asin => Some(t * (1.0 - x * x).rsqrt()),
        Acos => Some(t * -(1.0 - x * x).rsqrt()),
        Atan => Some(t / (x * x + 1.0)),
        Sinh => Some(t * x.cosh()),
        Cosh => Some(t * x.sinh()),
        Tanh => Some(t * (1.0 - y * y)),
        Floor => None,
        Ceil => None,
        Round => None,
        Erf => Some(t * ((-(x * x)).exp() * FRAC_2_SQRT_PI)),
        Erfc => Some(t * ((-(x * x)).exp() * -FRAC_2_SQRT_PI)),
        Logistic => Some(t * (y * (1.0 - y))),
        Not => None,
        Barrier => Some(t.barrier()),
    }
}

/// Tangent of `y = op(a, b)` from the operand tangents (`None`: zero).
#[allow(unused_variables)]
fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, y: &Tensor, ta: Option<&Tensor>, tb: Option<&Tensor>) -> Tangent {
    use BinaryOp::*;
    match op {
        Add => add_t(ta.cloned(), tb.cloned()),
        Sub => add_t(ta.cloned(), tb.map(|t| -t)),
        Mul => add_t(ta.map(|t| t * b), tb.map(|t| t * a)),
        Div => add_t(ta.map(|t| t / b), tb.map(|t| t * -(y / b))),
        Rem => add_t(ta.cloned(), tb.map(|t| t * ((y - a) / b))),
        Pow => add_t(
            ta.map(|t| t * b.eq(0.0).select(0.0, b * a.pow(b - 1.0))),
            tb.map(|t| t * (y * a.eq(0.0).select(1.0, a).ln())),
        ),
        Atan2 => {
            let r2 = a * a + b * b;
            add_t(ta.map(|t| t * (b / &r2)), tb.map(|t| t * -(a / &r2)))
        }
        Max => pick(&a.ge(b), ta, tb),
        Min => pick(&a.le(b), ta, tb),
        And => None,
        Or => None,
    }
}

/// Tangent of a reduction `y` of `x` over `r.axes`.
fn reduce(r: &Reduce, x: &Tensor, y: &Tensor, t: &Tensor) -> Tangent {
    let shifted = shifted(&r.axes);
    let back = |v: &Tensor| v.broadcast_in_dim(x.shape().dims().to_vec(), &r.kept(x.rank()));
    Some(match r.kind {
        ReduceKind::Sum => t.reduce_sum(&shifted),
        ReduceKind::Prod => (t * (back(y) / x)).reduce_sum(&shifted),
        ReduceKind::Max | ReduceKind::Min => {
            let mask = x.eq(back(y)).convert(x.dtype());
            (t * &mask).reduce_sum(&shifted) / mask.reduce_sum(&r.axes)
        }
    })
}

/// Tangent of `dot_general(a, b)`: the product rule, with the basis axis moved back to the
/// front of each term.
fn dot(d: &DotGeneral, a: &Tensor, b: &Tensor, ta: Option<&Tensor>, tb: Option<&Tensor>) -> Tangent {
    let nb = d.lhs_batch.len();
    let da = ta.map(|ta| {
        let shifted_lhs = DotGeneral {
            lhs_batch: shifted(&d.lhs_batch),
            rhs_batch: d.rhs_batch.clone(),
            lhs_contract: shifted(&d.lhs_contract),
            rhs_contract: d.rhs_contract.clone(),
        };
        to_front(ta.dot_general_with(b, shifted_lhs), nb)
    });
    let db = tb.map(|tb| {
        let shifted_rhs = DotGeneral {
            lhs_batch: d.lhs_batch.clone(),
            rhs_batch: shifted(&d.rhs_batch),
            lhs_contract: d.lhs_contract.clone(),
            rhs_contract: shifted(&d.rhs_contract),
        };
        let a_free = free_axes(a.rank(), &d.lhs_batch, &d.lhs_contract).len();
        to_front(a.dot_general_with(tb, shifted_rhs), nb + a_free)
    });
    add_t(da, db)
}
