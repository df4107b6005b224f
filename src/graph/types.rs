//! The type of a traced value: element type plus shape.

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
