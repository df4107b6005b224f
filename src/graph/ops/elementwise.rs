//! Elementwise ops: one table row per op (name, StableHLO op, dtype class).
//!
//! Operands of binary ops have equal shapes here: numpy-style broadcasting happens in the
//! tensor layer, which inserts explicit `broadcast_in_dim` nodes.

use crate::error::{Error, Result};
use crate::graph::emitter::{Attr, Emitter};
use crate::graph::ops::Primitive;
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
    ($( $V:ident : $name:literal => $mlir:literal, $class:ident; )*) => {
        /// Elementwise unary ops.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum UnaryOp { $( $V, )* }

        impl UnaryOp {
            pub(crate) fn name(self) -> &'static str { match self { $( UnaryOp::$V => $name, )* } }
            pub(crate) fn mlir(self) -> &'static str { match self { $( UnaryOp::$V => $mlir, )* } }
            pub(crate) fn class(self) -> Class { match self { $( UnaryOp::$V => Class::$class, )* } }
        }
    };
}

unary_table! {
    Neg:      "neg"                  => "stablehlo.negate",                Numeric;
    Abs:      "abs"                  => "stablehlo.abs",                   Numeric;
    Sign:     "signum"               => "stablehlo.sign",                  Numeric;
    Exp:      "exp"                  => "stablehlo.exponential",           Float;
    Expm1:    "expm1"                => "stablehlo.exponential_minus_one", Float;
    Ln:       "ln"                   => "stablehlo.log",                   Float;
    Ln1p:     "ln_1p"                => "stablehlo.log_plus_one",          Float;
    Sqrt:     "sqrt"                 => "stablehlo.sqrt",                  Float;
    Rsqrt:    "rsqrt"                => "stablehlo.rsqrt",                 Float;
    Cbrt:     "cbrt"                 => "stablehlo.cbrt",                  Float;
    Sin:      "sin"                  => "stablehlo.sine",                  Float;
    Cos:      "cos"                  => "stablehlo.cosine",                Float;
    Tan:      "tan"                  => "stablehlo.tan",                   Float;
    Asin:     "asin"                 => "chlo.asin",                       Float;
    Acos:     "acos"                 => "chlo.acos",                       Float;
    Atan:     "atan"                 => "chlo.atan",                       Float;
    Sinh:     "sinh"                 => "chlo.sinh",                       Float;
    Cosh:     "cosh"                 => "chlo.cosh",                       Float;
    Tanh:     "tanh"                 => "stablehlo.tanh",                  Float;
    Floor:    "floor"                => "stablehlo.floor",                 Float;
    Ceil:     "ceil"                 => "stablehlo.ceil",                  Float;
    Round:    "round"                => "stablehlo.round_nearest_afz",     Float;
    Erf:      "erf"                  => "chlo.erf",                        Float;
    Erfc:     "erfc"                 => "chlo.erfc",                       Float;
    Logistic: "logistic"             => "stablehlo.logistic",              Float;
    Not:      "not"                  => "stablehlo.not",                   Logical;
    Barrier:  "optimization_barrier" => "stablehlo.optimization_barrier",  Numeric;
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
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.elementwise(self.0.mlir(), args, ins, out)
    }
}

macro_rules! binary_table {
    ($( $V:ident : $name:literal => $mlir:literal, $class:ident; )*) => {
        /// Elementwise binary ops.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub(crate) enum BinaryOp { $( $V, )* }

        impl BinaryOp {
            pub(crate) fn name(self) -> &'static str { match self { $( BinaryOp::$V => $name, )* } }
            pub(crate) fn mlir(self) -> &'static str { match self { $( BinaryOp::$V => $mlir, )* } }
            pub(crate) fn class(self) -> Class { match self { $( BinaryOp::$V => Class::$class, )* } }
        }
    };
}

binary_table! {
    Add:   "add"   => "stablehlo.add",       Numeric;
    Sub:   "sub"   => "stablehlo.subtract",  Numeric;
    Mul:   "mul"   => "stablehlo.multiply",  Numeric;
    Div:   "div"   => "stablehlo.divide",    Numeric;
    Rem:   "rem"   => "stablehlo.remainder", Numeric;
    Pow:   "pow"   => "stablehlo.power",     Numeric;
    Atan2: "atan2" => "stablehlo.atan2",     Float;
    Max:   "max"   => "stablehlo.maximum",   Numeric;
    Min:   "min"   => "stablehlo.minimum",   Numeric;
    And:   "and"   => "stablehlo.and",       Logical;
    Or:    "or"    => "stablehlo.or",        Logical;
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
    fn emit(&self, e: &mut Emitter, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        e.generic("stablehlo.convert", args, ins, &[], out)
    }
}
