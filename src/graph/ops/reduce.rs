//! Reductions over a set of axes: sum, product, max, min (`stablehlo.reduce`).
//!
//! JVP rules: sum is linear; product uses `sum(t * y / x)` (valid where no reduced factor is
//! zero); max/min spread the tangent evenly over the elements that attain the extremum
//! (`sum(t * [x == y]) / count`), which is the one-sided choice of jax at ties.

use crate::error::{Error, Result};
use crate::graph::emitter::Emitter;

use crate::graph::ops::Primitive;
use crate::graph::types::{DType, Literal, TensorType};

/// Which reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ReduceKind {
    Sum,
    Prod,
    Max,
    Min,
}

impl ReduceKind {
    fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "reduce_sum",
            ReduceKind::Prod => "reduce_prod",
            ReduceKind::Max => "reduce_max",
            ReduceKind::Min => "reduce_min",
        }
    }

    fn combiner(self) -> &'static str {
        match self {
            ReduceKind::Sum => "stablehlo.add",
            ReduceKind::Prod => "stablehlo.multiply",
            ReduceKind::Max => "stablehlo.maximum",
            ReduceKind::Min => "stablehlo.minimum",
        }
    }

    /// The identity element, as literal bits for `dtype`.
    fn init(self, dtype: DType) -> u64 {
        let float = dtype.is_float();
        match (self, float) {
            (ReduceKind::Sum, _) => Literal::encode(dtype, 0.0),
            (ReduceKind::Prod, _) => Literal::encode(dtype, 1.0),
            (ReduceKind::Max, true) => f64::NEG_INFINITY.to_bits(),
            (ReduceKind::Min, true) => f64::INFINITY.to_bits(),
            (ReduceKind::Max, false) => (if dtype == DType::I32 { i32::MIN as i64 } else { i64::MIN }) as u64,
            (ReduceKind::Min, false) => (if dtype == DType::I32 { i32::MAX as i64 } else { i64::MAX }) as u64,
        }
    }
}

/// A reduction over `axes` (sorted, unique).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Reduce {
    pub kind: ReduceKind,
    pub axes: Vec<i64>,
}

impl Reduce {
    /// Axes of the operand that survive, in order.
    pub(crate) fn kept(&self, rank: usize) -> Vec<i64> {
        (0..rank as i64).filter(|a| !self.axes.contains(a)).collect()
    }
}

impl Primitive for Reduce {
    fn name(&self) -> &'static str {
        self.kind.name()
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        let x = ins[0];
        let op = self.kind.name();
        if !(x.dtype.is_float() || x.dtype.is_int()) {
            return Err(Error::InvalidOp {
                op,
                reason: format!("needs a numeric tensor, got {x}"),
            });
        }
        for (i, &a) in self.axes.iter().enumerate() {
            if a < 0 || a as usize >= x.rank() {
                return Err(Error::InvalidAxis {
                    op,
                    axis: a,
                    rank: x.rank(),
                });
            }
            if i > 0 && self.axes[i - 1] >= a {
                return Err(Error::InvalidOp {
                    op,
                    reason: format!("axes {:?} must be sorted and unique", self.axes),
                });
            }
        }
        let dims: Vec<i64> = self.kept(x.rank()).iter().map(|&a| x.dims()[a as usize]).collect();
        Ok(x.with_shape(dims))
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        let init = Literal::splat(TensorType::scalar(ins[0].dtype), self.kind.init(ins[0].dtype));
        e.reduce(args[0], ins[0], self.kind.combiner(), &init, &self.axes, out)
    }
}
