//! Sources without operands: literals (`stablehlo.constant`) and `stablehlo.iota`.
//!
//! Both are *rematerialisable*: the emitter writes them inside whichever function or loop
//! region uses them instead of threading them through loop state or function arguments.

use crate::error::{Error, Result};
use crate::graph::emit::{Attr, Emitter};
use crate::graph::ops::{Primitive, Tangent};
use crate::graph::tensor::Tensor;
use crate::graph::types::{DType, Shape, TensorType};

/// A constant: one value broadcast to `shape` (a splat), or one value per element.
///
/// Values are stored as raw bits so that the literal is `Hash + Eq` and equal literals are
/// merged: floats as `f64` bits (f32 values widened exactly), integers as `i64`, bools as 0/1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Literal {
    pub ty: TensorType,
    pub bits: Vec<u64>,
}

impl Literal {
    /// Encodes an f64 value for `dtype` (truncating to integers is the caller's check).
    pub(crate) fn encode(dtype: DType, v: f64) -> u64 {
        match dtype {
            DType::F64 => v.to_bits(),
            DType::F32 => (v as f32 as f64).to_bits(),
            DType::I64 | DType::I32 => (v as i64) as u64,
            DType::Bool => u64::from(v != 0.0),
        }
    }

    /// Decodes raw bits of `dtype` to f64.
    pub(crate) fn decode(dtype: DType, bits: u64) -> f64 {
        match dtype {
            DType::F64 | DType::F32 => f64::from_bits(bits),
            DType::I64 | DType::I32 => bits as i64 as f64,
            DType::Bool => (bits != 0) as u8 as f64,
        }
    }

    /// A splat of `v` (already encoded) with type `ty`.
    pub(crate) fn splat(ty: TensorType, bits: u64) -> Self {
        Literal { ty, bits: vec![bits] }
    }

    /// True when all elements share one value.
    pub(crate) fn is_splat(&self) -> bool {
        self.bits.len() == 1
    }
}

impl Primitive for Literal {
    fn name(&self) -> &'static str {
        "constant"
    }
    fn infer(&self, _ins: &[&TensorType]) -> Result<TensorType> {
        check_dims("constant", &self.ty.shape)?;
        let n = self.ty.shape.num_elements();
        if self.bits.len() != 1 && self.bits.len() != n {
            return Err(Error::InvalidOp {
                op: "constant",
                reason: format!("{} values for shape {}", self.bits.len(), self.ty.shape),
            });
        }
        Ok(self.ty.clone())
    }
    fn jvp(&self, _x: &[Tensor], _y: &Tensor, _t: &[Tangent]) -> Tangent {
        None
    }
    fn emit(&self, e: &mut Emitter, _args: &[&str], _ins: &[&TensorType], _out: &TensorType) -> String {
        e.constant(self)
    }
}

/// `stablehlo.iota`: values `0, 1, 2, ...` along `axis`, repeated along the other axes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Iota {
    pub ty: TensorType,
    pub axis: usize,
}

impl Primitive for Iota {
    fn name(&self) -> &'static str {
        "iota"
    }
    fn infer(&self, _ins: &[&TensorType]) -> Result<TensorType> {
        if self.axis >= self.ty.rank() {
            return Err(Error::InvalidAxis {
                op: "iota",
                axis: self.axis as i64,
                rank: self.ty.rank(),
            });
        }
        if self.ty.dtype == DType::Bool {
            return Err(Error::InvalidOp {
                op: "iota",
                reason: "needs a numeric dtype, got bool".into(),
            });
        }
        check_dims("iota", &self.ty.shape)?;
        Ok(self.ty.clone())
    }
    fn jvp(&self, _x: &[Tensor], _y: &Tensor, _t: &[Tangent]) -> Tangent {
        None
    }
    fn emit(&self, e: &mut Emitter, _args: &[&str], _ins: &[&TensorType], out: &TensorType) -> String {
        e.generic(
            "stablehlo.iota",
            &[],
            &[],
            &[("iota_dimension", Attr::I64(self.axis as i64))],
            out,
        )
    }
}

/// Rejects negative dimensions.
pub(crate) fn check_dims(op: &'static str, s: &Shape) -> Result<()> {
    if s.dims().iter().any(|&d| d < 0) {
        return Err(Error::InvalidOp {
            op,
            reason: format!("negative dimension in shape {s}"),
        });
    }
    Ok(())
}
