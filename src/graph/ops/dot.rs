//! `stablehlo.dot_general`: batched tensor contraction.
//!
//! Output axes: batch axes (in `lhs_batch` order), then the free axes of the lhs, then the free
//! axes of the rhs. The JVP rule is the product rule `dot(ta, b) + dot(a, tb)`; the basis axis
//! of each tangent term lands after the batch (and lhs free) axes and is moved to the front.

use crate::error::{Error, Result};
use crate::graph::emitter::{Attr, Emitter};
use crate::graph::ops::Primitive;
use crate::graph::types::TensorType;

/// Dimension numbers of a `dot_general`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct DotGeneral {
    pub lhs_batch: Vec<i64>,
    pub rhs_batch: Vec<i64>,
    pub lhs_contract: Vec<i64>,
    pub rhs_contract: Vec<i64>,
}

pub(crate) fn free_axes(rank: usize, batch: &[i64], contract: &[i64]) -> Vec<i64> {
    (0..rank as i64)
        .filter(|a| !batch.contains(a) && !contract.contains(a))
        .collect()
}

fn check_axes(op: &'static str, rank: usize, batch: &[i64], contract: &[i64]) -> Result<()> {
    let mut seen = vec![false; rank];
    for &a in batch.iter().chain(contract) {
        if a < 0 || a as usize >= rank {
            return Err(Error::InvalidAxis { op, axis: a, rank });
        }
        if std::mem::replace(&mut seen[a as usize], true) {
            return Err(Error::InvalidOp {
                op,
                reason: format!("axis {a} used twice"),
            });
        }
    }
    Ok(())
}

impl Primitive for DotGeneral {
    fn name(&self) -> &'static str {
        "dot_general"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        const OP: &str = "dot_general";
        let (a, b) = (ins[0], ins[1]);
        if a.dtype != b.dtype {
            return Err(Error::DTypeMismatch {
                op: OP,
                lhs: a.dtype,
                rhs: b.dtype,
            });
        }
        if a.dtype == crate::types::DType::Bool {
            return Err(Error::InvalidOp {
                op: OP,
                reason: "needs numeric operands, got bool".into(),
            });
        }
        check_axes(OP, a.rank(), &self.lhs_batch, &self.lhs_contract)?;
        check_axes(OP, b.rank(), &self.rhs_batch, &self.rhs_contract)?;
        let mismatch = || Error::ShapeMismatch {
            op: OP,
            lhs: a.shape.clone(),
            rhs: b.shape.clone(),
        };
        if self.lhs_batch.len() != self.rhs_batch.len() || self.lhs_contract.len() != self.rhs_contract.len() {
            return Err(mismatch());
        }
        let pairs = self
            .lhs_batch
            .iter()
            .zip(&self.rhs_batch)
            .chain(self.lhs_contract.iter().zip(&self.rhs_contract));
        for (&i, &j) in pairs {
            if a.dims()[i as usize] != b.dims()[j as usize] {
                return Err(mismatch());
            }
        }
        let mut dims: Vec<i64> = self.lhs_batch.iter().map(|&i| a.dims()[i as usize]).collect();
        dims.extend(
            free_axes(a.rank(), &self.lhs_batch, &self.lhs_contract)
                .iter()
                .map(|&i| a.dims()[i as usize]),
        );
        dims.extend(
            free_axes(b.rank(), &self.rhs_batch, &self.rhs_contract)
                .iter()
                .map(|&i| b.dims()[i as usize]),
        );
        Ok(a.with_shape(dims))
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic(
            "stablehlo.dot_general",
            args,
            ins,
            &[(
                "dot_dimension_numbers",
                Attr::Dot {
                    lhs_batch: self.lhs_batch.clone(),
                    rhs_batch: self.rhs_batch.clone(),
                    lhs_contract: self.lhs_contract.clone(),
                    rhs_contract: self.rhs_contract.clone(),
                },
            )],
            out,
        )
    }
}
