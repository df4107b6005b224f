//! Structural ops: reshape, broadcast_in_dim, slice, concatenate, transpose, dynamic_slice,
//! dynamic_update_slice and take (a `gather` along one axis).
//!
//! All are linear, so each JVP rule applies the same op to the tangent with the basis axis
//! prepended (axis numbers shift by one).

use crate::error::{Error, Result};
use crate::graph::emitter::{Attr, Emitter};
use crate::graph::ops::literal::check_dims;
use crate::graph::ops::Primitive;
use crate::graph::types::{Shape, TensorType};

fn check_axis(op: &'static str, axis: i64, rank: usize) -> Result<usize> {
    if axis < 0 || axis as usize >= rank {
        return Err(Error::InvalidAxis { op, axis, rank });
    }
    Ok(axis as usize)
}

/// Index operands of dynamic ops: scalar integers, all of one dtype.
fn check_indices(op: &'static str, idx: &[&TensorType], rank: usize) -> Result<()> {
    if idx.len() != rank {
        return Err(Error::InvalidOp {
            op,
            reason: format!("{} start indices for rank {rank}", idx.len()),
        });
    }
    for t in idx {
        if t.rank() != 0 || !t.dtype.is_int() {
            return Err(Error::InvalidOp {
                op,
                reason: format!("start indices must be integer scalars, got {t}"),
            });
        }
        if t.dtype != idx[0].dtype {
            return Err(Error::DTypeMismatch {
                op,
                lhs: idx[0].dtype,
                rhs: t.dtype,
            });
        }
    }
    Ok(())
}

/// `stablehlo.reshape` to a shape with the same number of elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Reshape(pub Shape);

impl Primitive for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        check_dims("reshape", &self.0)?;
        if ins[0].shape.num_elements() != self.0.num_elements() {
            return Err(Error::ShapeMismatch {
                op: "reshape",
                lhs: ins[0].shape.clone(),
                rhs: self.0.clone(),
            });
        }
        Ok(ins[0].with_shape(self.0.clone()))
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic("stablehlo.reshape", args, ins, &[], out)
    }
}

/// `stablehlo.broadcast_in_dim`: operand axis `i` becomes output axis `dims[i]`; operand axes
/// of size 1 stretch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BroadcastInDim {
    pub shape: Shape,
    pub dims: Vec<i64>,
}

impl Primitive for BroadcastInDim {
    fn name(&self) -> &'static str {
        "broadcast_in_dim"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        const OP: &str = "broadcast_in_dim";
        check_dims(OP, &self.shape)?;
        let x = ins[0];
        if self.dims.len() != x.rank() {
            return Err(Error::InvalidOp {
                op: OP,
                reason: format!("{} broadcast dimensions for operand rank {}", self.dims.len(), x.rank()),
            });
        }
        let mut seen = vec![false; self.shape.rank()];
        for (i, &d) in self.dims.iter().enumerate() {
            let d = check_axis(OP, d, self.shape.rank())?;
            if std::mem::replace(&mut seen[d], true) {
                return Err(Error::InvalidOp {
                    op: OP,
                    reason: format!("output axis {d} used twice"),
                });
            }
            let (from, to) = (x.dims()[i], self.shape.dims()[d]);
            if from != 1 && from != to {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    lhs: x.shape.clone(),
                    rhs: self.shape.clone(),
                });
            }
        }
        Ok(x.with_shape(self.shape.clone()))
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic(
            "stablehlo.broadcast_in_dim",
            args,
            ins,
            &[("broadcast_dimensions", Attr::I64s(self.dims.clone()))],
            out,
        )
    }
}

/// `stablehlo.slice` with static bounds and strides.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Slice {
    pub start: Vec<i64>,
    pub limit: Vec<i64>,
    pub stride: Vec<i64>,
}

impl Primitive for Slice {
    fn name(&self) -> &'static str {
        "slice"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        let x = ins[0];
        let r = x.rank();
        if self.start.len() != r || self.limit.len() != r || self.stride.len() != r {
            return Err(Error::InvalidOp {
                op: "slice",
                reason: format!("bounds of length {} for rank {r}", self.start.len()),
            });
        }
        let mut out = Vec::with_capacity(r);
        for i in 0..r {
            let (s, l, st, d) = (self.start[i], self.limit[i], self.stride[i], x.dims()[i]);
            if s < 0 || s > l || l > d || st < 1 {
                return Err(Error::InvalidOp {
                    op: "slice",
                    reason: format!("bounds {s}..{l} step {st} invalid for axis {i} of shape {}", x.shape),
                });
            }
            out.push((l - s + st - 1) / st);
        }
        Ok(x.with_shape(out))
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic(
            "stablehlo.slice",
            args,
            ins,
            &[
                ("start_indices", Attr::I64s(self.start.clone())),
                ("limit_indices", Attr::I64s(self.limit.clone())),
                ("strides", Attr::I64s(self.stride.clone())),
            ],
            out,
        )
    }
}

/// `stablehlo.concatenate` along one axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Concat(pub i64);

impl Primitive for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        let first = ins.first().ok_or(Error::InvalidOp {
            op: "concat",
            reason: "no operands".into(),
        })?;
        let axis = check_axis("concat", self.0, first.rank())?;
        let mut dims = first.dims().to_vec();
        dims[axis] = 0;
        for t in ins {
            if t.dtype != first.dtype {
                return Err(Error::DTypeMismatch {
                    op: "concat",
                    lhs: first.dtype,
                    rhs: t.dtype,
                });
            }
            let ok = t.rank() == first.rank() && (0..t.rank()).all(|i| i == axis || t.dims()[i] == first.dims()[i]);
            if !ok {
                return Err(Error::ShapeMismatch {
                    op: "concat",
                    lhs: first.shape.clone(),
                    rhs: t.shape.clone(),
                });
            }
            dims[axis] += t.dims()[axis];
        }
        Ok(first.with_shape(dims))
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic(
            "stablehlo.concatenate",
            args,
            ins,
            &[("dimension", Attr::I64(self.0))],
            out,
        )
    }
}

/// `stablehlo.transpose`: output axis `i` is operand axis `perm[i]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Transpose(pub Vec<i64>);

impl Primitive for Transpose {
    fn name(&self) -> &'static str {
        "transpose"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        let x = ins[0];
        let mut seen = vec![false; x.rank()];
        if self.0.len() != x.rank() {
            return Err(Error::InvalidOp {
                op: "transpose",
                reason: format!("permutation {:?} for rank {}", self.0, x.rank()),
            });
        }
        let mut out = Vec::with_capacity(x.rank());
        for &p in &self.0 {
            let p = check_axis("transpose", p, x.rank())?;
            if std::mem::replace(&mut seen[p], true) {
                return Err(Error::InvalidOp {
                    op: "transpose",
                    reason: format!("{:?} is not a permutation", self.0),
                });
            }
            out.push(x.dims()[p]);
        }
        Ok(x.with_shape(out))
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic(
            "stablehlo.transpose",
            args,
            ins,
            &[("permutation", Attr::I64s(self.0.clone()))],
            out,
        )
    }
}

/// `stablehlo.dynamic_slice`: args are the operand then one integer scalar start per axis.
/// Starts are clamped so that the slice stays in bounds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DynamicSlice(pub Vec<i64>);

impl Primitive for DynamicSlice {
    fn name(&self) -> &'static str {
        "dynamic_slice"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        let x = ins[0];
        check_indices("dynamic_slice", &ins[1..], x.rank())?;
        if self.0.len() != x.rank() || self.0.iter().zip(x.dims()).any(|(&s, &d)| s < 0 || s > d) {
            return Err(Error::InvalidOp {
                op: "dynamic_slice",
                reason: format!("slice sizes {:?} invalid for shape {}", self.0, x.shape),
            });
        }
        Ok(x.with_shape(self.0.clone()))
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic(
            "stablehlo.dynamic_slice",
            args,
            ins,
            &[("slice_sizes", Attr::I64s(self.0.clone()))],
            out,
        )
    }
}

/// `stablehlo.dynamic_update_slice`: args are operand, update, then one start per axis.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DynamicUpdateSlice;

impl Primitive for DynamicUpdateSlice {
    fn name(&self) -> &'static str {
        "dynamic_update_slice"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        const OP: &str = "dynamic_update_slice";
        let (x, u) = (ins[0], ins[1]);
        if x.dtype != u.dtype {
            return Err(Error::DTypeMismatch {
                op: OP,
                lhs: x.dtype,
                rhs: u.dtype,
            });
        }
        if x.rank() != u.rank() || u.dims().iter().zip(x.dims()).any(|(a, b)| a > b) {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: x.shape.clone(),
                rhs: u.shape.clone(),
            });
        }
        check_indices(OP, &ins[2..], x.rank())?;
        Ok(x.clone())
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic("stablehlo.dynamic_update_slice", args, ins, &[], out)
    }
}

/// numpy `take(x, idx, axis)`: output shape `x[..axis] ++ idx.shape ++ x[axis+1..]`, emitted
/// as `stablehlo.gather`. Out-of-range indices are clamped (gather semantics).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Take(pub i64);

impl Primitive for Take {
    fn name(&self) -> &'static str {
        "take"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        let (x, idx) = (ins[0], ins[1]);
        let a = check_axis("take", self.0, x.rank())?;
        if !idx.dtype.is_int() {
            return Err(Error::InvalidOp {
                op: "take",
                reason: format!("indices must be integers, got {idx}"),
            });
        }
        let mut dims = x.dims()[..a].to_vec();
        dims.extend_from_slice(idx.dims());
        dims.extend_from_slice(&x.dims()[a + 1..]);
        Ok(x.with_shape(dims))
    }
    /// Emitted as the canonical batch-major gather (index axes first, then the operand's
    /// remaining axes) followed by a transpose into numpy order when `axis > 0`. The pinned
    /// XLA CPU plugin mis-lays-out the result of a gather whose offset axes come before its
    /// batch axes when the gather is constant-folded (an all-constant tangent gathered
    /// along axis 1, then added, came back transposed); the canonical form avoids that.
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        let (x, idx) = (ins[0], ins[1]);
        let (a, r, ir) = (self.0, x.rank() as i64, idx.rank() as i64);
        let mut slice_sizes = x.dims().to_vec();
        slice_sizes[a as usize] = 1;
        let mut canonical = idx.dims().to_vec();
        canonical.extend(
            x.dims()
                .iter()
                .enumerate()
                .filter(|&(i, _)| i as i64 != a)
                .map(|(_, &d)| d),
        );
        let gathered_ty = out.with_shape(canonical);
        let gathered = e.generic(
            "stablehlo.gather",
            args,
            ins,
            &[
                (
                    "dimension_numbers",
                    Attr::Gather {
                        offset_dims: (ir..ir + r - 1).collect(),
                        collapsed_slice_dims: vec![a],
                        start_index_map: vec![a],
                        index_vector_dim: ir,
                    },
                ),
                ("indices_are_sorted", Attr::Bool(false)),
                ("slice_sizes", Attr::I64s(slice_sizes)),
            ],
            &gathered_ty,
        );
        if a == 0 || ir == 0 {
            return gathered;
        }
        let perm: Vec<i64> = (ir..ir + a).chain(0..ir).chain(ir + a..ir + r - 1).collect();
        e.generic(
            "stablehlo.transpose",
            &[&gathered],
            &[&gathered_ty],
            &[("permutation", Attr::I64s(perm))],
            out,
        )
    }
}
