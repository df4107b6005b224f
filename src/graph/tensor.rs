//! [`Tensor`]: a cheap handle to a traced value, with operator overloading.
//!
//! Operators and methods never fail: a shape or dtype error is recorded in the [`Graph`]
//! (the first one wins) and a placeholder is returned, so model code reads like maths.
//! Binary operations broadcast numpy-style (scalars, trailing axes, size-1 axes) by inserting
//! explicit `broadcast_in_dim` nodes; operands must share a dtype (no implicit promotion),
//! except `f64` literals, which take the dtype of the tensor they meet.

use std::ops;

use crate::error::Error;
use crate::graph::builder::{Graph, Tensor};
use crate::graph::ops::{
    Binary, BinaryOp, BroadcastInDim, CmpDir, Compare, Concat, Convert, DotGeneral, DynamicSlice, DynamicUpdateSlice,
    Op, Reduce, ReduceKind, Reshape, Select, Slice, Take, Transpose, Unary, UnaryOp,
};
use crate::graph::types::{DType, Shape, TensorType};

/// Something that can stand on the other side of a binary op: a [`Tensor`] or a number.
///
/// Numbers become scalar constants of the tensor's dtype (an integer tensor accepts only
/// integral numbers; a bool tensor accepts none).
pub trait Operand {
    /// The operand as a tensor on `g`; numbers become scalars of `dtype`.
    fn lift(self, g: &Graph, dtype: DType) -> Tensor;
    /// The dtype, if the operand is a tensor.
    fn tensor_dtype(&self) -> Option<DType>;
}

impl Operand for Tensor {
    fn lift(self, _g: &Graph, _dtype: DType) -> Tensor {
        self
    }
    fn tensor_dtype(&self) -> Option<DType> {
        Some(self.dtype())
    }
}

impl Operand for &Tensor {
    fn lift(self, _g: &Graph, _dtype: DType) -> Tensor {
        self.clone()
    }
    fn tensor_dtype(&self) -> Option<DType> {
        Some(self.dtype())
    }
}

impl Operand for f64 {
    fn lift(self, g: &Graph, dtype: DType) -> Tensor {
        let bad = match dtype {
            DType::Bool => Some("a number cannot be combined with a bool tensor"),
            DType::I32 | DType::I64 if self.fract() != 0.0 || !self.is_finite() => {
                Some("a non-integral number cannot be combined with an integer tensor")
            }
            _ => None,
        };
        if let Some(reason) = bad {
            g.record(Error::InvalidOp {
                op: "literal",
                reason: format!("{reason} ({self})"),
            });
        }
        g.scalar(dtype, self)
    }
    fn tensor_dtype(&self) -> Option<DType> {
        None
    }
}

impl Operand for i64 {
    fn lift(self, g: &Graph, dtype: DType) -> Tensor {
        (self as f64).lift(g, dtype)
    }
    fn tensor_dtype(&self) -> Option<DType> {
        None
    }
}

impl Operand for i32 {
    fn lift(self, g: &Graph, dtype: DType) -> Tensor {
        f64::from(self).lift(g, dtype)
    }
    fn tensor_dtype(&self) -> Option<DType> {
        None
    }
}

/// An index for [`Tensor::at`] and friends: a static integer or an integer scalar tensor.
pub trait IndexArg {
    /// The index as an `i64` scalar tensor on `g`.
    fn to_index(self, g: &Graph) -> Tensor;
}

impl IndexArg for i64 {
    fn to_index(self, g: &Graph) -> Tensor {
        g.scalar(DType::I64, self as f64)
    }
}

impl IndexArg for i32 {
    fn to_index(self, g: &Graph) -> Tensor {
        g.scalar(DType::I64, f64::from(self))
    }
}

impl IndexArg for usize {
    fn to_index(self, g: &Graph) -> Tensor {
        g.scalar(DType::I64, self as f64)
    }
}

impl IndexArg for &Tensor {
    fn to_index(self, _g: &Graph) -> Tensor {
        if self.dtype() == DType::I64 {
            self.clone()
        } else {
            self.convert(DType::I64)
        }
    }
}

impl IndexArg for Tensor {
    fn to_index(self, g: &Graph) -> Tensor {
        (&self).to_index(g)
    }
}

/// numpy broadcasting of two shapes.
pub(crate) fn broadcast_shapes(op: &'static str, a: &Shape, b: &Shape) -> crate::Result<Shape> {
    let r = a.rank().max(b.rank());
    let dim = |s: &Shape, i: usize| {
        if i + s.rank() >= r {
            s.dims()[i + s.rank() - r]
        } else {
            1
        }
    };
    (0..r)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (da, db) if da == db || db == 1 => Ok(da),
            (1, db) => Ok(db),
            _ => Err(Error::ShapeMismatch {
                op,
                lhs: a.clone(),
                rhs: b.clone(),
            }),
        })
        .collect::<crate::Result<Vec<i64>>>()
        .map(Shape)
}

/// Normalises possibly negative axes; sorted and deduplicated.
fn norm_axes(g: &Graph, op: &'static str, axes: &[i64], rank: usize) -> Option<Vec<i64>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let b = if a < 0 { a + rank as i64 } else { a };
        if b < 0 || b >= rank as i64 {
            g.record(Error::InvalidAxis { op, axis: a, rank });
            return None;
        }
        out.push(b);
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

fn norm_axis(g: &Graph, op: &'static str, axis: i64, rank: usize) -> Option<i64> {
    norm_axes(g, op, &[axis], rank).map(|v| v[0])
}

fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Tensor {
    let g = &a.graph;
    match a.broadcast_pair(op.name(), b) {
        Some((x, y)) => g.node(Op::Binary(Binary(op)), &[&x, &y]),
        None => g.poison(a.ty()),
    }
}

macro_rules! impl_binop {
    ($Trait:ident, $method:ident, $Assign:ident, $assign:ident, $op:expr) => {
        impl ops::$Trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                binary($op, self, rhs)
            }
        }
        impl ops::$Trait<Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                binary($op, self, &rhs)
            }
        }
        impl ops::$Trait<&Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                binary($op, &self, rhs)
            }
        }
        impl ops::$Trait<Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                binary($op, &self, &rhs)
            }
        }
        impl ops::$Trait<f64> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f64) -> Tensor {
                binary($op, self, &rhs.lift(&self.graph, self.dtype()))
            }
        }
        impl ops::$Trait<f64> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f64) -> Tensor {
                binary($op, &self, &rhs.lift(&self.graph, self.dtype()))
            }
        }
        impl ops::$Trait<&Tensor> for f64 {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                binary($op, &self.lift(&rhs.graph, rhs.dtype()), rhs)
            }
        }
        impl ops::$Trait<Tensor> for f64 {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                binary($op, &self.lift(&rhs.graph, rhs.dtype()), &rhs)
            }
        }
        impl ops::$Assign<&Tensor> for Tensor {
            fn $assign(&mut self, rhs: &Tensor) {
                *self = binary($op, self, rhs);
            }
        }
        impl ops::$Assign<Tensor> for Tensor {
            fn $assign(&mut self, rhs: Tensor) {
                *self = binary($op, self, &rhs);
            }
        }
        impl ops::$Assign<f64> for Tensor {
            fn $assign(&mut self, rhs: f64) {
                let r = rhs.lift(&self.graph, self.dtype());
                *self = binary($op, self, &r);
            }
        }
    };
}

impl_binop!(Add, add, AddAssign, add_assign, BinaryOp::Add);
impl_binop!(Sub, sub, SubAssign, sub_assign, BinaryOp::Sub);
impl_binop!(Mul, mul, MulAssign, mul_assign, BinaryOp::Mul);
impl_binop!(Div, div, DivAssign, div_assign, BinaryOp::Div);
impl_binop!(Rem, rem, RemAssign, rem_assign, BinaryOp::Rem);

impl ops::Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        self.unary(UnaryOp::Neg)
    }
}

impl ops::Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        self.unary(UnaryOp::Neg)
    }
}

impl ops::Not for &Tensor {
    type Output = Tensor;
    fn not(self) -> Tensor {
        self.unary(UnaryOp::Not)
    }
}

impl ops::Not for Tensor {
    type Output = Tensor;
    fn not(self) -> Tensor {
        self.unary(UnaryOp::Not)
    }
}

macro_rules! unary_methods {
    ($( $(#[$doc:meta])* $method:ident => $op:ident; )*) => {
        $( $(#[$doc])* pub fn $method(&self) -> Tensor { self.unary(UnaryOp::$op) } )*
    };
}

impl Tensor {
    // ---- elementwise ---------------------------------------------------------------------

    fn unary(&self, op: UnaryOp) -> Tensor {
        self.graph.node(Op::Unary(Unary(op)), &[self])
    }

    fn binop(&self, op: BinaryOp, other: impl Operand) -> Tensor {
        let o = other.lift(&self.graph, self.dtype());
        binary(op, self, &o)
    }

    /// Broadcasts `self` and `other` to their common shape (None: error recorded).
    fn broadcast_pair(&self, op: &'static str, other: &Tensor) -> Option<(Tensor, Tensor)> {
        let g = &self.graph;
        if !g.same(&other.graph) {
            g.record(Error::InvalidOp {
                op,
                reason: "operands belong to different graphs".into(),
            });
            return None;
        }
        let (a, b) = (self.ty(), other.ty());
        if a.dtype != b.dtype {
            g.record(Error::DTypeMismatch {
                op,
                lhs: a.dtype,
                rhs: b.dtype,
            });
            return None;
        }
        match broadcast_shapes(op, &a.shape, &b.shape) {
            Ok(s) => Some((self.broadcast_to(s.clone()), other.broadcast_to(s))),
            Err(e) => {
                g.record(e);
                None
            }
        }
    }

    /// The same values through `stablehlo.optimization_barrier`: XLA computes this tensor once
    /// and does not fuse its producer into its consumers (which it would otherwise recompute
    /// per consumer, e.g. a model's `exp` once per Gram-matrix sum).
    pub(crate) fn barrier(&self) -> Tensor {
        self.unary(UnaryOp::Barrier)
    }

    unary_methods! {
        /// `e^x`.
        exp => Exp;
        /// `e^x - 1`, accurate near 0.
        expm1 => Expm1;
        /// Natural logarithm.
        ln => Ln;
        /// `ln(1 + x)`, accurate near 0.
        ln_1p => Ln1p;
        /// Square root.
        sqrt => Sqrt;
        /// `1 / sqrt(x)`.
        rsqrt => Rsqrt;
        /// Cube root.
        cbrt => Cbrt;
        /// Sine.
        sin => Sin;
        /// Cosine.
        cos => Cos;
        /// Tangent.
        tan => Tan;
        /// Arcsine.
        asin => Asin;
        /// Arccosine.
        acos => Acos;
        /// Arctangent.
        atan => Atan;
        /// Hyperbolic sine.
        sinh => Sinh;
        /// Hyperbolic cosine.
        cosh => Cosh;
        /// Hyperbolic tangent.
        tanh => Tanh;
        /// Absolute value (derivative `signum(x)`, 0 at 0).
        abs => Abs;
        /// Sign: -1, 0 or 1 (derivative 0).
        signum => Sign;
        /// Round down (derivative 0).
        floor => Floor;
        /// Round up (derivative 0).
        ceil => Ceil;
        /// Round half away from zero, like `f64::round` (derivative 0).
        round => Round;
        /// Error function.
        erf => Erf;
        /// Complementary error function `1 - erf(x)`.
        erfc => Erfc;
        /// Logistic sigmoid `1 / (1 + e^-x)`.
        logistic => Logistic;
    }

    /// `1 / x`.
    pub fn recip(&self) -> Tensor {
        1.0 / self
    }

    /// `x * x`.
    pub fn square(&self) -> Tensor {
        self * self
    }

    /// `x^n` for an integer `n`, by repeated squaring (exact for small `n`, any sign of `x`).
    pub fn powi(&self, n: i32) -> Tensor {
        let mut k = n.unsigned_abs();
        let mut base = self.clone();
        let mut acc: Option<Tensor> = None;
        while k > 0 {
            if k & 1 == 1 {
                acc = Some(match acc {
                    None => base.clone(),
                    Some(a) => a * &base,
                });
            }
            k >>= 1;
            if k > 0 {
                base = &base * &base;
            }
        }
        let acc = acc.unwrap_or_else(|| self.graph.full(self.dtype(), self.shape(), 1.0));
        if n < 0 {
            acc.recip()
        } else {
            acc
        }
    }

    /// `x^e` for a constant exponent.
    pub fn powf(&self, e: f64) -> Tensor {
        self.binop(BinaryOp::Pow, e)
    }

    /// `x^y` elementwise (`stablehlo.power`).
    pub fn pow(&self, y: impl Operand) -> Tensor {
        self.binop(BinaryOp::Pow, y)
    }

    /// Four-quadrant arctangent of `self / x` (like `f64::atan2`).
    pub fn atan2(&self, x: impl Operand) -> Tensor {
        self.binop(BinaryOp::Atan2, x)
    }

    /// Elementwise maximum (at ties the tangent follows `self`).
    pub fn max(&self, other: impl Operand) -> Tensor {
        self.binop(BinaryOp::Max, other)
    }

    /// Elementwise minimum (at ties the tangent follows `self`).
    pub fn min(&self, other: impl Operand) -> Tensor {
        self.binop(BinaryOp::Min, other)
    }

    /// `min(max(self, lo), hi)`.
    pub fn clamp(&self, lo: impl Operand, hi: impl Operand) -> Tensor {
        self.max(lo).min(hi)
    }

    fn compare(&self, dir: CmpDir, other: impl Operand) -> Tensor {
        let o = other.lift(&self.graph, self.dtype());
        match self.broadcast_pair("compare", &o) {
            Some((a, b)) => self.graph.node(Op::Compare(Compare(dir)), &[&a, &b]),
            None => self.graph.poison(self.ty().with_dtype(DType::Bool)),
        }
    }

    /// `self < other` as a bool tensor.
    pub fn lt(&self, other: impl Operand) -> Tensor {
        self.compare(CmpDir::Lt, other)
    }

    /// `self <= other` as a bool tensor.
    pub fn le(&self, other: impl Operand) -> Tensor {
        self.compare(CmpDir::Le, other)
    }

    /// `self > other` as a bool tensor.
    pub fn gt(&self, other: impl Operand) -> Tensor {
        self.compare(CmpDir::Gt, other)
    }

    /// `self >= other` as a bool tensor.
    pub fn ge(&self, other: impl Operand) -> Tensor {
        self.compare(CmpDir::Ge, other)
    }

    /// `self == other` as a bool tensor.
    pub fn eq(&self, other: impl Operand) -> Tensor {
        self.compare(CmpDir::Eq, other)
    }

    /// `self != other` as a bool tensor.
    pub fn ne(&self, other: impl Operand) -> Tensor {
        self.compare(CmpDir::Ne, other)
    }

    /// Logical (bool) or bitwise (integer) and.
    pub fn and(&self, other: &Tensor) -> Tensor {
        binary(BinaryOp::And, self, other)
    }

    /// Logical (bool) or bitwise (integer) or.
    pub fn or(&self, other: &Tensor) -> Tensor {
        binary(BinaryOp::Or, self, other)
    }

    /// Logical (bool) or bitwise (integer) not.
    pub fn not(&self) -> Tensor {
        self.unary(UnaryOp::Not)
    }

    /// `where(self, on_true, on_false)` for a bool `self`, broadcasting all three. Tangents
    /// follow the chosen branch.
    pub fn select(&self, on_true: impl Operand, on_false: impl Operand) -> Tensor {
        let g = &self.graph;
        let dtype = on_true.tensor_dtype().or(on_false.tensor_dtype()).unwrap_or(DType::F64);
        let (t, f) = (on_true.lift(g, dtype), on_false.lift(g, dtype));
        let Some((t, f)) = t.broadcast_pair("select", &f) else {
            return g.poison(self.ty().with_dtype(dtype));
        };
        let shape = match broadcast_shapes("select", &self.shape(), &t.shape()) {
            Ok(s) => s,
            Err(e) => {
                g.record(e);
                return g.poison(t.ty());
            }
        };
        let (p, t, f) = (
            self.broadcast_to(shape.clone()),
            t.broadcast_to(shape.clone()),
            f.broadcast_to(shape),
        );
        g.node(Op::Select(Select), &[&p, &t, &f])
    }

    /// Converts the element type (`stablehlo.convert`); float-to-float keeps tangents.
    pub fn convert(&self, dtype: DType) -> Tensor {
        if self.dtype() == dtype {
            return self.clone();
        }
        self.graph.node(Op::Convert(Convert(dtype)), &[self])
    }

    // ---- shape ---------------------------------------------------------------------------

    /// Reshape to a shape with the same number of elements (row-major order).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        if shape == self.shape() {
            return self.clone();
        }
        self.graph.node(Op::Reshape(Reshape(shape)), &[self])
    }

    /// Broadcast with explicit axis mapping: axis `i` of `self` becomes axis `dims[i]` of the
    /// result; axes of size 1 stretch.
    pub fn broadcast_in_dim(&self, shape: impl Into<Shape>, dims: &[i64]) -> Tensor {
        let shape = shape.into();
        self.graph.node(
            Op::Broadcast(BroadcastInDim {
                shape,
                dims: dims.to_vec(),
            }),
            &[self],
        )
    }

    /// numpy-style broadcast to `shape` (trailing axes aligned, size-1 axes stretch).
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Tensor {
        let shape = shape.into();
        let mine = self.shape();
        if mine == shape {
            return self.clone();
        }
        if mine.rank() > shape.rank() {
            self.graph.record(Error::ShapeMismatch {
                op: "broadcast_to",
                lhs: mine,
                rhs: shape.clone(),
            });
            return self.graph.poison(self.ty().with_shape(shape));
        }
        let off = (shape.rank() - mine.rank()) as i64;
        let dims: Vec<i64> = (0..mine.rank() as i64).map(|i| i + off).collect();
        self.broadcast_in_dim(shape, &dims)
    }

    /// Static slice `start..limit` on every axis (step 1).
    pub fn slice(&self, start: &[i64], limit: &[i64]) -> Tensor {
        self.slice_strided(start, limit, &vec![1; start.len()])
    }

    /// Static slice with steps.
    pub fn slice_strided(&self, start: &[i64], limit: &[i64], stride: &[i64]) -> Tensor {
        let op = Slice {
            start: start.to_vec(),
            limit: limit.to_vec(),
            stride: stride.to_vec(),
        };
        self.graph.node(Op::Slice(op), &[self])
    }

    /// Static slice `start..end` along one axis, everything along the others.
    pub fn slice_axis(&self, axis: i64, start: i64, end: i64) -> Tensor {
        let dims = self.dims();
        let Some(a) = norm_axis(&self.graph, "slice", axis, dims.len()) else {
            return self.graph.poison(self.ty());
        };
        let mut lo = vec![0; dims.len()];
        let mut hi = dims;
        lo[a as usize] = start;
        hi[a as usize] = end;
        self.slice(&lo, &hi)
    }

    /// Element `i` along `axis` (static), dropping that axis.
    pub fn index_axis(&self, axis: i64, i: i64) -> Tensor {
        let dims = self.dims();
        let Some(a) = norm_axis(&self.graph, "index", axis, dims.len()) else {
            return self.graph.poison(self.ty());
        };
        let mut rest = dims;
        rest.remove(a as usize);
        self.slice_axis(a, i, i + 1).reshape(rest)
    }

    /// Row `i` (static index along axis 0), e.g. `x.row(0)` of an independent variable of
    /// shape `[k, m]` is the first coordinate of all `m` points. On a vector: element `i`.
    pub fn row(&self, i: i64) -> Tensor {
        self.index_axis(0, i)
    }

    /// Column `j` (static index along axis 1).
    pub fn col(&self, j: i64) -> Tensor {
        self.index_axis(1, j)
    }

    /// Element `i` along axis 0 (alias of [`Tensor::row`], reads better on vectors).
    pub fn get(&self, i: i64) -> Tensor {
        self.index_axis(0, i)
    }

    /// Transpose: output axis `i` is input axis `perm[i]`.
    pub fn transpose(&self, perm: &[i64]) -> Tensor {
        if perm.iter().enumerate().all(|(i, &p)| p == i as i64) && perm.len() == self.rank() {
            return self.clone();
        }
        self.graph.node(Op::Transpose(Transpose(perm.to_vec())), &[self])
    }

    /// Swaps the last two axes (matrix transpose); identity on rank < 2.
    pub fn t(&self) -> Tensor {
        let r = self.rank() as i64;
        if r < 2 {
            return self.clone();
        }
        let mut perm: Vec<i64> = (0..r).collect();
        perm.swap(r as usize - 2, r as usize - 1);
        self.transpose(&perm)
    }

    // ---- reductions ----------------------------------------------------------------------

    fn reduce(&self, kind: ReduceKind, axes: &[i64]) -> Tensor {
        let op = match kind {
            ReduceKind::Sum => "reduce_sum",
            ReduceKind::Prod => "reduce_prod",
            ReduceKind::Max => "reduce_max",
            ReduceKind::Min => "reduce_min",
        };
        let Some(axes) = norm_axes(&self.graph, op, axes, self.rank()) else {
            return self.graph.poison(self.ty());
        };
        if axes.is_empty() {
            return self.clone();
        }
        self.graph.node(Op::Reduce(Reduce { kind, axes }), &[self])
    }

    /// Sum over `axes` (negative axes count from the end).
    pub fn reduce_sum(&self, axes: &[i64]) -> Tensor {
        self.reduce(ReduceKind::Sum, axes)
    }

    /// Product over `axes`.
    pub fn reduce_prod(&self, axes: &[i64]) -> Tensor {
        self.reduce(ReduceKind::Prod, axes)
    }

    /// Maximum over `axes`.
    pub fn reduce_max(&self, axes: &[i64]) -> Tensor {
        self.reduce(ReduceKind::Max, axes)
    }

    /// Minimum over `axes`.
    pub fn reduce_min(&self, axes: &[i64]) -> Tensor {
        self.reduce(ReduceKind::Min, axes)
    }

    /// Sum of all elements (a scalar).
    pub fn sum(&self) -> Tensor {
        let all: Vec<i64> = (0..self.rank() as i64).collect();
        self.reduce_sum(&all)
    }

    /// Mean over `axes`.
    pub fn mean(&self, axes: &[i64]) -> Tensor {
        let dims = self.dims();
        let Some(axes) = norm_axes(&self.graph, "mean", axes, dims.len()) else {
            return self.graph.poison(self.ty());
        };
        let count: i64 = axes.iter().map(|&a| dims[a as usize]).product();
        self.reduce_sum(&axes) / count as f64
    }

    // ---- contraction ---------------------------------------------------------------------

    pub(crate) fn dot_general_with(&self, other: &Tensor, dims: DotGeneral) -> Tensor {
        self.graph.node(Op::Dot(dims), &[self, other])
    }

    /// General contraction (`stablehlo.dot_general`). Output axes: batch axes, then the free
    /// axes of `self`, then the free axes of `other`.
    pub fn dot_general(
        &self,
        other: &Tensor,
        lhs_batch: &[i64],
        rhs_batch: &[i64],
        lhs_contract: &[i64],
        rhs_contract: &[i64],
    ) -> Tensor {
        self.dot_general_with(
            other,
            DotGeneral {
                lhs_batch: lhs_batch.to_vec(),
                rhs_batch: rhs_batch.to_vec(),
                lhs_contract: lhs_contract.to_vec(),
                rhs_contract: rhs_contract.to_vec(),
            },
        )
    }

    /// numpy `dot`/`matmul`: vector·vector → scalar, matrix·vector → vector,
    /// vector·matrix → vector, matrix·matrix → matrix; for rank > 2 both operands must have
    /// the same rank and leading (batch) axes, and the last two axes multiply as matrices.
    pub fn dot(&self, other: &Tensor) -> Tensor {
        let (ra, rb) = (self.rank() as i64, other.rank() as i64);
        match (ra, rb) {
            (1, 1) | (1, 2) => self.dot_general(other, &[], &[], &[0], &[0]),
            (2, 1) | (2, 2) => self.dot_general(other, &[], &[], &[1], &[0]),
            (a, b) if a == b && a > 2 => {
                let batch: Vec<i64> = (0..a - 2).collect();
                self.dot_general(other, &batch, &batch, &[a - 1], &[a - 2])
            }
            _ => {
                self.graph.record(Error::ShapeMismatch {
                    op: "dot",
                    lhs: self.shape(),
                    rhs: other.shape(),
                });
                self.graph.poison(self.ty())
            }
        }
    }

    /// Alias of [`Tensor::dot`].
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        self.dot(other)
    }

    // ---- dynamic indexing ----------------------------------------------------------------

    /// `stablehlo.dynamic_slice`: a block of `sizes` starting at the integer scalar `starts`
    /// (one per axis). Starts are clamped so the block stays in bounds.
    pub fn dynamic_slice(&self, starts: &[Tensor], sizes: &[i64]) -> Tensor {
        let mut args: Vec<&Tensor> = vec![self];
        args.extend(starts);
        self.graph.node(Op::DynamicSlice(DynamicSlice(sizes.to_vec())), &args)
    }

    /// `stablehlo.dynamic_update_slice`: `self` with the block `update` written at `starts`
    /// (clamped so the block stays in bounds).
    pub fn dynamic_update_slice(&self, update: &Tensor, starts: &[Tensor]) -> Tensor {
        let mut args: Vec<&Tensor> = vec![self, update];
        args.extend(starts);
        self.graph.node(Op::DynamicUpdateSlice(DynamicUpdateSlice), &args)
    }

    /// Element (or sub-tensor) `i` along `axis`, with a static or traced index; drops the axis.
    pub fn at_axis(&self, axis: i64, i: impl IndexArg) -> Tensor {
        let g = &self.graph;
        let dims = self.dims();
        let Some(a) = norm_axis(g, "at", axis, dims.len()) else {
            return g.poison(self.ty());
        };
        let idx = i.to_index(g);
        let zero = g.scalar(DType::I64, 0.0);
        let starts: Vec<Tensor> = (0..dims.len() as i64)
            .map(|k| if k == a { idx.clone() } else { zero.clone() })
            .collect();
        let mut sizes = dims.clone();
        sizes[a as usize] = 1;
        let mut rest = dims;
        rest.remove(a as usize);
        self.dynamic_slice(&starts, &sizes).reshape(rest)
    }

    /// Element (or row) `i` along axis 0 with a static or traced index: `v.at(&k)` is
    /// `v[k]`, `a.at(&k)` is row `k` of a matrix. Out-of-range indices are clamped.
    pub fn at(&self, i: impl IndexArg) -> Tensor {
        self.at_axis(0, i)
    }

    /// `self` with sub-tensor `i` along `axis` replaced by `value` (broadcast to fit).
    pub fn set_axis(&self, axis: i64, i: impl IndexArg, value: &Tensor) -> Tensor {
        let g = &self.graph;
        let dims = self.dims();
        let Some(a) = norm_axis(g, "set", axis, dims.len()) else {
            return g.poison(self.ty());
        };
        let idx = i.to_index(g);
        let zero = g.scalar(DType::I64, 0.0);
        let starts: Vec<Tensor> = (0..dims.len() as i64)
            .map(|k| if k == a { idx.clone() } else { zero.clone() })
            .collect();
        let mut rest = dims.clone();
        rest.remove(a as usize);
        let mut block = dims;
        block[a as usize] = 1;
        let update = value.broadcast_to(rest).reshape(block);
        self.dynamic_update_slice(&update, &starts)
    }

    /// `self` with element (or row) `i` along axis 0 replaced by `value`.
    pub fn set(&self, i: impl IndexArg, value: &Tensor) -> Tensor {
        self.set_axis(0, i, value)
    }

    /// numpy `take(self, idx, axis)`: gathers along `axis` with an integer index tensor; the
    /// result has shape `self[..axis] ++ idx.shape ++ self[axis+1..]`. Indices are clamped.
    pub fn take(&self, axis: i64, idx: &Tensor) -> Tensor {
        let Some(a) = norm_axis(&self.graph, "take", axis, self.rank()) else {
            return self.graph.poison(self.ty());
        };
        self.graph.node(Op::Take(Take(a)), &[self, idx])
    }
}

impl Graph {
    /// The `n x n` identity matrix (a literal for `n <= 64`, iota-built above).
    pub fn eye(&self, dtype: DType, n: i64) -> Tensor {
        if (0..=64).contains(&n) {
            let nu = n as usize;
            let data: Vec<f64> = (0..nu * nu).map(|k| if k / nu == k % nu { 1.0 } else { 0.0 }).collect();
            return self.constant_array_of(dtype, &data, [n, n]);
        }
        let r = self.iota(DType::I64, [n, n], 0);
        let c = self.iota(DType::I64, [n, n], 1);
        r.eq(&c).convert(dtype)
    }

    /// Concatenates `parts` (same dtype, equal shapes except along `axis`).
    pub fn concat(&self, parts: &[Tensor], axis: i64) -> Tensor {
        let Some(first) = parts.first() else {
            self.record(Error::InvalidOp {
                op: "concat",
                reason: "no operands".into(),
            });
            return self.poison(TensorType::scalar(DType::F64));
        };
        let Some(a) = norm_axis(self, "concat", axis, first.rank()) else {
            return self.poison(first.ty());
        };
        if parts.len() == 1 {
            return first.clone();
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        self.node(Op::Concat(Concat(a)), &refs)
    }
}
