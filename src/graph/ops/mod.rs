//! The op table: every primitive's data, shape rule and emission, one place per op.
//!
//! This is the graph's IR: the builder stores [`Op`]s and asks them for their result types,
//! the emitter asks them to write themselves, and nothing here knows about tensors or
//! graphs. Each primitive is a small value type implementing [`Primitive`]:
//!
//! * `infer` — the shape/dtype rule, returning an [`Error`](crate::Error) that names the op
//!   and the operand shapes when the operands do not fit;
//! * `emit` — the StableHLO op name and attributes, handed to the [`Emitter`], which owns all
//!   textual syntax.
//!
//! The forward-mode rules are traced code on tensors, so they sit above the tensor layer, in
//! `jvp/rules.rs` (one `match` over [`Op`], which the compiler keeps complete).
//!
//! Elementwise unary and binary ops are rows of the tables in [`elementwise`]; structural ops
//! live in [`shape`], reductions in [`reduce`], `dot_general` in [`dot`], and literals/iota in
//! [`literal`]. Control flow (`while`, `func.call`) is structural and handled by the builder,
//! the JVP driver and the emitter directly.

pub(crate) mod dot;
pub(crate) mod elementwise;
pub(crate) mod literal;
pub(crate) mod reduce;
pub(crate) mod shape;

use crate::error::Result;
use crate::graph::emitter::Emitter;
use crate::graph::types::{Literal, ScopeId, TensorType};

pub(crate) use dot::DotGeneral;
pub(crate) use elementwise::{Binary, BinaryOp, CmpDir, Compare, Convert, Select, Unary, UnaryOp};
pub(crate) use literal::Iota;
pub(crate) use reduce::{Reduce, ReduceKind};
pub(crate) use shape::{BroadcastInDim, Concat, DynamicSlice, DynamicUpdateSlice, Reshape, Slice, Take, Transpose};

/// One primitive op: its shape rule and its emission (its JVP rule is in `jvp/rules.rs`).
pub(crate) trait Primitive {
    /// The op's name in error messages.
    fn name(&self) -> &'static str;
    /// Result type from operand types, or an error naming the op and shapes.
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType>;
    /// Writes the op; returns the SSA name of its result.
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String;
}

/// A node's operation. Hash + Eq so that nodes can be hash-consed on `(op, args)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// Argument of `@main`, of a private function, or block argument of a loop region.
    Parameter {
        scope: ScopeId,
        index: usize,
        ty: TensorType,
    },
    /// Placeholder returned after a trace-time error; never emitted.
    Poison {
        id: usize,
        ty: TensorType,
    },
    Constant(Literal),
    Iota(Iota),
    Unary(Unary),
    Binary(Binary),
    Compare(Compare),
    Select(Select),
    Convert(Convert),
    Reshape(Reshape),
    Broadcast(BroadcastInDim),
    Slice(Slice),
    Concat(Concat),
    Transpose(Transpose),
    Reduce(Reduce),
    Dot(DotGeneral),
    DynamicSlice(DynamicSlice),
    DynamicUpdateSlice(DynamicUpdateSlice),
    Take(Take),
    /// `stablehlo.while`; args are the initial state; regions are indices into the builder's
    /// region table. Multi-result: read through [`Op::Get`].
    While {
        cond: usize,
        body: usize,
    },
    /// `func.call` of a private function. Multi-result: read through [`Op::Get`].
    Call {
        func: usize,
    },
    /// Result `index` of a multi-result node (its only arg).
    Get {
        index: usize,
    },
}

impl Op {
    /// The primitive behind this op, or `None` for structural nodes.
    pub(crate) fn primitive(&self) -> Option<&dyn Primitive> {
        Some(match self {
            Op::Constant(p) => p,
            Op::Iota(p) => p,
            Op::Unary(p) => p,
            Op::Binary(p) => p,
            Op::Compare(p) => p,
            Op::Select(p) => p,
            Op::Convert(p) => p,
            Op::Reshape(p) => p,
            Op::Broadcast(p) => p,
            Op::Slice(p) => p,
            Op::Concat(p) => p,
            Op::Transpose(p) => p,
            Op::Reduce(p) => p,
            Op::Dot(p) => p,
            Op::DynamicSlice(p) => p,
            Op::DynamicUpdateSlice(p) => p,
            Op::Take(p) => p,
            Op::Parameter { .. } | Op::Poison { .. } | Op::While { .. } | Op::Call { .. } | Op::Get { .. } => {
                return None
            }
        })
    }

    /// The op's name in error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Op::Parameter { .. } => "parameter",
            Op::Poison { .. } => "poison",
            Op::While { .. } => "while_loop",
            Op::Call { .. } => "call",
            Op::Get { .. } => "get",
            other => other.primitive().map_or("op", |p| p.name()),
        }
    }

    /// Ops that must never be merged with an equal-looking node.
    pub(crate) fn is_unique(&self) -> bool {
        matches!(self, Op::Parameter { .. } | Op::Poison { .. } | Op::While { .. })
    }
}
