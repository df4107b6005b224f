//! Elementwise ops: one table row per op (name, StableHLO op, dtype class, JVP rule).
//!
//! Operands of binary ops have equal shapes here: numpy-style broadcasting happens in the
//! [`Tensor`] layer, which inserts explicit `broadcast_in_dim` nodes. Tangents have a leading
//! basis axis, so a rule like `t * y` broadcasts the primal `y: [s]` against `t: [n, s]`.
//!
//! Conventions at non-differentiable points: `abs'(0) = 0` (via `signum(0) = 0`),
//! `signum' = floor' = ceil' = round' = 0`, `max`/`min` route the whole tangent to the first
//! operand at ties (`a >= b` picks `a` for max, `a <= b` for min), `pow(x, y)` uses
//! `d/dx = 0` where `y == 0` and `d/dy = 0` where `x == 0`. Comparisons, logical ops and
//! integer results have zero tangents.

use std::f64::consts::FRAC_2_SQRT_PI;

use crate::error::{Error, Result};
use crate::graph::emit::{Attr, Emitter};
use crate::graph::ops::{Primitive, Tangent};
use crate::graph::tensor::Tensor;
use crate::graph::types::{DType, TensorType};

/// Which element types an op accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// f32, f64.
    Float,
    /// Floats and signed integers.
    Numeric,
    /// bool and integers.
    Logical,
}

impl Class {
    fn accepts(self, d: DType) -> bool {
        match self {
            Class::Float => d.is_float(),
            Class::Numeric => d.is_float() || d.is_int(),
            Class::Logical => d == DType::Bool || d.is_int(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Class::Float => "a float tensor (f32 or f64)",
            Class::Numeric => "a numeric tensor (float or integer)",
            Class::Logical => "a bool or integer tensor",
        }
    }
}

fn check_class(op: &'static str, class: Class, d: DType) -> Result<()> {
    if class.accepts(d) {
        Ok(())
    } else {
        Err(Error::InvalidOp {
            op,
            reason: format!("needs {}, got {d}", class.describe()),
        })
    }
}

/// Requires two operands of equal dtype and shape.
pub(crate) fn same_type(op: &'static str, a: &TensorType, b: &TensorType) -> Result<()> {
    if a.dtype != b.dtype {
        return Err(Error::DTypeMismatch {
            op,
            lhs: a.dtype,
            rhs: b.dtype,
        });
    }
    if a.shape != b.shape {
        return Err(Error::ShapeMismatch {
            op,
            lhs: a.shape.clone(),
            rhs: b.shape.clone(),
        });
    }
    Ok(())
}

macro_rules! unary_table {
    ($( $V:ident : $name:literal => $mlir:literal, $class:ident, |$x:ident, $y:ident, $t:ident| $jvp:expr; )*) => {
        /// Elementwise unary ops.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum UnaryOp { $( $V, )* }

        impl UnaryOp {
            pub(crate) fn name(self) -> &'static str { match self { $( UnaryOp::$V => $name, )* } }
            pub(crate) fn mlir(self) -> &'static str { match self { $( UnaryOp::$V => $mlir, )* } }
            pub(crate) fn class(self) -> Class { match self { $( UnaryOp::$V => Class::$class, )* } }
            /// Tangent of `y = op(x)` given the tangent `t` of `x` (`None`: zero).
            #[allow(unused_variables)]
            pub(crate) fn jvp_rule(self, x: &Tensor, y: &Tensor, t: &Tensor) -> Option<Tensor> {
                match self { $( UnaryOp::$V => { let ($x, $y, $t) = (x, y, t); $jvp } )* }
            }
        }
    };
}

unary_table! {
    Neg:      "neg"      => "stablehlo.negate",                Numeric, |x, y, t| Some(-t);
    Abs:      "abs"      => "stablehlo.abs",                   Numeric, |x, y, t| Some(t * x.signum());
    Sign:     "signum"   => "stablehlo.sign",                  Numeric, |x, y, t| None;
    Exp:      "exp"      => "stablehlo.exponential",           Float,   |x, y, t| Some(t * y);
    Expm1:    "expm1"    => "stablehlo.exponential_minus_one", Float,   |x, y, t| Some(t * (y + 1.0));
    Ln:       "ln"       => "stablehlo.log",                   Float,   |x, y, t| Some(t / x);
    Ln1p:     "ln_1p"    => "stablehlo.log_plus_one",          Float,   |x, y, t| Some(t / (x + 1.0));
    Sqrt:     "sqrt"     => "stablehlo.sqrt",                  Float,   |x, y, t| Some(t * (0.5 / y));
    Rsqrt:    "rsqrt"    => "stablehlo.rsqrt",                 Float,   |x, y, t| Some(t * (y / x * -0.5));
    Cbrt:     "cbrt"     => "stablehlo.cbrt",                  Float,   |x, y, t| Some(t / (y * y * 3.0));
    Sin:      "sin"      => "stablehlo.sine",                  Float,   |x, y, t| Some(t * x.cos());
    Cos:      "cos"      => "stablehlo.cosine",                Float,   |x, y, t| Some(t * -x.sin());
    Tan:      "tan"      => "stablehlo.tan",                   Float,   |x, y, t| Some(t * (y * y + 1.0));
    Asin:     "asin"     => "chlo.asin",                       Float,   |x, y, t| Some(t * (1.0 - x * x).rsqrt());
    Acos:     "acos"     => "chlo.acos",                       Float,   |x, y, t| Some(t * -(1.0 - x * x).rsqrt());
    Atan:     "atan"     => "chlo.atan",                       Float,   |x, y, t| Some(t / (x * x + 1.0));
    Sinh:     "sinh"     => "chlo.sinh",                       Float,   |x, y, t| Some(t * x.cosh());
    Cosh:     "cosh"     => "chlo.cosh",                       Float,   |x, y, t| Some(t * x.sinh());
    Tanh:     "tanh"     => "stablehlo.tanh",                  Float,   |x, y, t| Some(t * (1.0 - y * y));
    Floor:    "floor"    => "stablehlo.floor",                 Float,   |x, y, t| None;
    Ceil:     "ceil"     => "stablehlo.ceil",                  Float,   |x, y, t| None;
    Round:    "round"    => "stablehlo.round_nearest_afz",     Float,   |x, y, t| None;
    Erf:      "erf"      => "chlo.erf",                        Float,   |x, y, t| Some(t * ((-(x * x)).exp() * FRAC_2_SQRT_PI));
    Erfc:     "erfc"     => "chlo.erfc",                       Float,   |x, y, t| Some(t * ((-(x * x)).exp() * -FRAC_2_SQRT_PI));
    Logistic: "logistic" => "stablehlo.logistic",              Float,   |x, y, t| Some(t * (y * (1.0 - y)));
    Not:      "not"      => "stablehlo.not",                   Logical, |x, y, t| None;
    Barrier:  "optimization_barrier" => "stablehlo.optimization_barrier", Numeric, |x, y, t| Some(t.barrier());
}

/// An elementwise unary op node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Unary(pub UnaryOp);

impl Primitive for Unary {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        check_class(self.0.name(), self.0.class(), ins[0].dtype)?;
        Ok(ins[0].clone())
    }
    fn jvp(&self, x: &[Tensor], y: &Tensor, t: &[Tangent]) -> Tangent {
        t[0].as_ref().and_then(|t| self.0.jvp_rule(&x[0], y, t))
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.elementwise(self.0.mlir(), args, ins, out)
    }
}

macro_rules! binary_table {
    ($( $V:ident : $name:literal => $mlir:literal, $class:ident, |$a:ident, $b:ident, $y:ident, $ta:ident, $tb:ident| $jvp:expr; )*) => {
        /// Elementwise binary ops.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum BinaryOp { $( $V, )* }

        impl BinaryOp {
            pub(crate) fn name(self) -> &'static str { match self { $( BinaryOp::$V => $name, )* } }
            pub(crate) fn mlir(self) -> &'static str { match self { $( BinaryOp::$V => $mlir, )* } }
            pub(crate) fn class(self) -> Class { match self { $( BinaryOp::$V => Class::$class, )* } }
            /// Tangent of `y = op(a, b)` from the operand tangents (`None`: zero).
            #[allow(unused_variables)]
            pub(crate) fn jvp_rule(self, a: &Tensor, b: &Tensor, y: &Tensor,
                                   ta: Option<&Tensor>, tb: Option<&Tensor>) -> Option<Tensor> {
                match self { $( BinaryOp::$V => { let ($a, $b, $y, $ta, $tb) = (a, b, y, ta, tb); $jvp } )* }
            }
        }
    };
}

/// Sum of two optional tangents.
pub(crate) fn add_t(a: Option<Tensor>, b: Option<Tensor>) -> Option<Tensor> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}

binary_table! {
    Add:   "add"   => "stablehlo.add",       Numeric, |a, b, y, ta, tb| add_t(ta.cloned(), tb.cloned());
    Sub:   "sub"   => "stablehlo.subtract",  Numeric, |a, b, y, ta, tb| add_t(ta.cloned(), tb.map(|t| -t));
    Mul:   "mul"   => "stablehlo.multiply",  Numeric, |a, b, y, ta, tb| add_t(ta.map(|t| t * b), tb.map(|t| t * a));
    Div:   "div"   => "stablehlo.divide",    Numeric, |a, b, y, ta, tb| add_t(ta.map(|t| t / b), tb.map(|t| t * -(y / b)));
    Rem:   "rem"   => "stablehlo.remainder", Numeric, |a, b, y, ta, tb| add_t(ta.cloned(), tb.map(|t| t * ((y - a) / b)));
    Pow:   "pow"   => "stablehlo.power",     Numeric, |a, b, y, ta, tb| add_t(
        ta.map(|t| t * b.eq(0.0).select(0.0, b * a.pow(b - 1.0))),
        tb.map(|t| t * (y * a.eq(0.0).select(1.0, a).ln())));
    Atan2: "atan2" => "stablehlo.atan2",     Float,   |a, b, y, ta, tb| {
        let r2 = a * a + b * b;
        add_t(ta.map(|t| t * (b / &r2)), tb.map(|t| t * -(a / &r2)))
    };
    Max:   "max"   => "stablehlo.maximum",   Numeric, |a, b, y, ta, tb| pick(&a.ge(b), ta, tb);
    Min:   "min"   => "stablehlo.minimum",   Numeric, |a, b, y, ta, tb| pick(&a.le(b), ta, tb);
    And:   "and"   => "stablehlo.and",       Logical, |a, b, y, ta, tb| None;
    Or:    "or"    => "stablehlo.or",        Logical, |a, b, y, ta, tb| None;
}

/// `select(mask, ta, tb)` with symbolic zeros.
fn pick(mask: &Tensor, ta: Option<&Tensor>, tb: Option<&Tensor>) -> Option<Tensor> {
    match (ta, tb) {
        (Some(ta), Some(tb)) => Some(mask.select(ta, tb)),
        (Some(ta), None) => Some(mask.select(ta, 0.0)),
        (None, Some(tb)) => Some(mask.select(0.0, tb)),
        (None, None) => None,
    }
}

/// An elementwise binary op node (operands of equal type).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Binary(pub BinaryOp);

impl Primitive for Binary {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        same_type(self.0.name(), ins[0], ins[1])?;
        check_class(self.0.name(), self.0.class(), ins[0].dtype)?;
        Ok(ins[0].clone())
    }
    fn jvp(&self, x: &[Tensor], y: &Tensor, t: &[Tangent]) -> Tangent {
        self.0.jvp_rule(&x[0], &x[1], y, t[0].as_ref(), t[1].as_ref())
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.elementwise(self.0.mlir(), args, ins, out)
    }
}

/// Comparison direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CmpDir {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpDir {
    fn mlir(self) -> &'static str {
        match self {
            CmpDir::Eq => "EQ",
            CmpDir::Ne => "NE",
            CmpDir::Lt => "LT",
            CmpDir::Le => "LE",
            CmpDir::Gt => "GT",
            CmpDir::Ge => "GE",
        }
    }
}

/// Elementwise comparison producing a bool tensor (zero tangent).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Compare(pub CmpDir);

impl Primitive for Compare {
    fn name(&self) -> &'static str {
        "compare"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        same_type("compare", ins[0], ins[1])?;
        Ok(ins[0].with_dtype(DType::Bool))
    }
    fn jvp(&self, _x: &[Tensor], _y: &Tensor, _t: &[Tangent]) -> Tangent {
        None
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic(
            "stablehlo.compare",
            args,
            ins,
            &[("comparison_direction", Attr::Comparison(self.0.mlir()))],
            out,
        )
    }
}

/// `select(pred, on_true, on_false)`; `pred` is bool with the operands' shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Select;

impl Primitive for Select {
    fn name(&self) -> &'static str {
        "select"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        same_type("select", ins[1], ins[2])?;
        if ins[0].dtype != DType::Bool {
            return Err(Error::DTypeMismatch {
                op: "select",
                lhs: ins[0].dtype,
                rhs: DType::Bool,
            });
        }
        if ins[0].shape != ins[1].shape {
            return Err(Error::ShapeMismatch {
                op: "select",
                lhs: ins[0].shape.clone(),
                rhs: ins[1].shape.clone(),
            });
        }
        Ok(ins[1].clone())
    }
    fn jvp(&self, x: &[Tensor], _y: &Tensor, t: &[Tangent]) -> Tangent {
        pick(&x[0], t[1].as_ref(), t[2].as_ref())
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic("stablehlo.select", args, ins, &[], out)
    }
}

/// Element type conversion.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Convert(pub DType);

impl Primitive for Convert {
    fn name(&self) -> &'static str {
        "convert"
    }
    fn infer(&self, ins: &[&TensorType]) -> Result<TensorType> {
        Ok(ins[0].with_dtype(self.0))
    }
    fn jvp(&self, x: &[Tensor], _y: &Tensor, t: &[Tangent]) -> Tangent {
        if x[0].dtype().is_float() && self.0.is_float() {
            t[0].as_ref().map(|t| t.convert(self.0))
        } else {
            None
        }
    }
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic("stablehlo.convert", args, ins, &[], out)
    }
}
