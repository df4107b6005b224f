//! Element types and shapes shared by the runtime (`pjrt`) and the graph builder (`graph`).
//!
//! Both layers need to agree on what an `f64[3,1000]` is, so the two small value types live
//! here, below both of them.

use std::fmt;

/// Element type of a tensor or device buffer.
///
/// `F64` is the default everywhere in nlsq: the solver needs double precision to reach the
/// NIST certified values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE 754 binary64.
    F64,
    /// IEEE 754 binary32.
    F32,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Boolean (`i1` in StableHLO, `PRED` in XLA).
    Bool,
}

impl DType {
    /// Size of one element in bytes as laid out in a host buffer (`bool` is one byte).
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::Bool => 1,
        }
    }

    /// The StableHLO / MLIR spelling of the element type (`f64`, `i1`, ...).
    pub fn mlir_name(self) -> &'static str {
        match self {
            DType::F64 => "f64",
            DType::F32 => "f32",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::Bool => "i1",
        }
    }

    /// True for `F64` and `F32`.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32)
    }

    /// True for `I64` and `I32`.
    pub fn is_int(self) -> bool {
        matches!(self, DType::I64 | DType::I32)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F64 => "f64",
            DType::F32 => "f32",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::Bool => "bool",
        })
    }
}

/// Dimensions of a tensor, outermost first. A scalar has no dimensions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape(pub Vec<i64>);

impl Shape {
    /// The shape of a scalar (rank 0).
    pub fn scalar() -> Self {
        Shape(Vec::new())
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Dimensions as a slice.
    pub fn dims(&self) -> &[i64] {
        &self.0
    }

    /// Number of elements (1 for a scalar). Negative dimensions count as zero.
    pub fn num_elements(&self) -> usize {
        self.0.iter().map(|&d| d.max(0) as usize).product()
    }
}

impl From<&[i64]> for Shape {
    fn from(d: &[i64]) -> Self {
        Shape(d.to_vec())
    }
}

impl From<Vec<i64>> for Shape {
    fn from(d: Vec<i64>) -> Self {
        Shape(d)
    }
}

impl<const N: usize> From<[i64; N]> for Shape {
    fn from(d: [i64; N]) -> Self {
        Shape(d.to_vec())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// A Rust scalar type that can be copied to and from a device buffer.
pub trait NativeType: Copy + Default + Send + Sync + 'static {
    /// The element type this Rust type maps to.
    const DTYPE: DType;
}

impl NativeType for f64 {
    const DTYPE: DType = DType::F64;
}
impl NativeType for f32 {
    const DTYPE: DType = DType::F32;
}
impl NativeType for i64 {
    const DTYPE: DType = DType::I64;
}
impl NativeType for i32 {
    const DTYPE: DType = DType::I32;
}
impl NativeType for bool {
    const DTYPE: DType = DType::Bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_counts_elements_and_prints() {
        assert_eq!(Shape::scalar().num_elements(), 1);
        assert_eq!(Shape::from([3, 4]).num_elements(), 12);
        assert_eq!(Shape::from([3, 4]).to_string(), "[3, 4]");
        assert_eq!(Shape::scalar().to_string(), "[]");
    }

    #[test]
    fn dtype_sizes_match_host_layout() {
        assert_eq!(DType::F64.size_in_bytes(), std::mem::size_of::<f64>());
        assert_eq!(DType::F32.size_in_bytes(), std::mem::size_of::<f32>());
        assert_eq!(DType::Bool.size_in_bytes(), std::mem::size_of::<bool>());
        assert_eq!(DType::Bool.mlir_name(), "i1");
    }
}
