//! Sources without operands: literals (`stablehlo.constant`) and `stablehlo.iota`.
//!
//! Both are *rematerialisable*: the emitter writes them inside whichever function or loop
//! region uses them instead of threading them through loop state or function arguments.

use crate::error::{Error, Result};
use crate::graph::emitter::{Attr, Emitter};
use crate::graph::ops::Primitive;
use crate::graph::types::{DType, Literal, Shape, TensorType};

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
