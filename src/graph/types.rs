//! The type of a traced value (element type plus shape), node and scope ids, and literal
//! values.

use std::fmt;

pub use crate::types::{DType, Shape};

/// Element type and shape of a traced tensor, e.g. `f64[3, 1000]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, outermost first.
    pub shape: Shape,
}

impl TensorType {
    /// A tensor type from an element type and dimensions.
    pub fn new(dtype: DType, shape: impl Into<Shape>) -> Self {
        TensorType {
            dtype,
            shape: shape.into(),
        }
    }

    /// A rank-0 tensor type.
    pub fn scalar(dtype: DType) -> Self {
        TensorType {
            dtype,
            shape: Shape::scalar(),
        }
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    /// Dimensions as a slice.
    pub fn dims(&self) -> &[i64] {
        self.shape.dims()
    }

    /// The same shape with another element type.
    pub fn with_dtype(&self, dtype: DType) -> Self {
        TensorType {
            dtype,
            shape: self.shape.clone(),
        }
    }

    /// The same element type with another shape.
    pub fn with_shape(&self, shape: impl Into<Shape>) -> Self {
        TensorType {
            dtype: self.dtype,
            shape: shape.into(),
        }
    }

    /// The MLIR spelling, e.g. `tensor<3x1000xf64>` or `tensor<f64>`.
    pub fn mlir(&self) -> String {
        let mut s = String::with_capacity(16);
        s.push_str("tensor<");
        for d in self.dims() {
            s.push_str(&d.to_string());
            s.push('x');
        }
        s.push_str(self.dtype.mlir_name());
        s.push('>');
        s
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

/// Index of a traced node in a graph's arena.
pub(crate) type NodeId = usize;
/// Index of a scope (`@main`, a loop body, a function being traced).
pub(crate) type ScopeId = usize;
/// The scope of `@main`.
pub(crate) const ROOT: ScopeId = 0;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlir_spelling() {
        assert_eq!(TensorType::new(DType::F64, [3, 4]).mlir(), "tensor<3x4xf64>");
        assert_eq!(TensorType::scalar(DType::Bool).mlir(), "tensor<i1>");
        assert_eq!(TensorType::new(DType::F32, [2]).to_string(), "f32[2]");
    }
}
