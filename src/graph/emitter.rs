//! StableHLO syntax: attribute and value spelling and the line writer with SSA numbering
//! ([`Emitter`]) that each op's emission writes through. Ops never write syntax themselves;
//! the walk over a graph that calls them is `emit.rs`.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::graph::types::{DType, Literal, TensorType};

/// A typed attribute value; formatted here so ops never write syntax themselves.
#[derive(Clone, Debug)]
pub(crate) enum Attr {
    I64(i64),
    I64s(Vec<i64>),
    Bool(bool),
    Comparison(&'static str),
    Dot {
        lhs_batch: Vec<i64>,
        rhs_batch: Vec<i64>,
        lhs_contract: Vec<i64>,
        rhs_contract: Vec<i64>,
    },
    Gather {
        offset_dims: Vec<i64>,
        collapsed_slice_dims: Vec<i64>,
        start_index_map: Vec<i64>,
        index_vector_dim: i64,
    },
}

pub(crate) fn list(v: &[i64]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(", "))
}

impl Attr {
    pub(crate) fn format(&self) -> String {
        match self {
            Attr::I64(v) => format!("{v} : i64"),
            Attr::I64s(v) if v.is_empty() => "array<i64>".to_string(),
            Attr::I64s(v) => {
                let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
                format!("array<i64: {}>", items.join(", "))
            }
            Attr::Bool(b) => b.to_string(),
            Attr::Comparison(d) => format!("#stablehlo<comparison_direction {d}>"),
            Attr::Dot {
                lhs_batch,
                rhs_batch,
                lhs_contract,
                rhs_contract,
            } => {
                let mut f = Vec::new();
                if !lhs_batch.is_empty() {
                    f.push(format!("lhs_batching_dimensions = {}", list(lhs_batch)));
                    f.push(format!("rhs_batching_dimensions = {}", list(rhs_batch)));
                }
                f.push(format!("lhs_contracting_dimensions = {}", list(lhs_contract)));
                f.push(format!("rhs_contracting_dimensions = {}", list(rhs_contract)));
                format!("#stablehlo.dot<{}>", f.join(", "))
            }
            Attr::Gather {
                offset_dims,
                collapsed_slice_dims,
                start_index_map,
                index_vector_dim,
            } => {
                let mut f = Vec::new();
                if !offset_dims.is_empty() {
                    f.push(format!("offset_dims = {}", list(offset_dims)));
                }
                f.push(format!("collapsed_slice_dims = {}", list(collapsed_slice_dims)));
                f.push(format!("start_index_map = {}", list(start_index_map)));
                f.push(format!("index_vector_dim = {index_vector_dim}"));
                format!("#stablehlo.gather<{}>", f.join(", "))
            }
        }
    }
}

/// A float in MLIR syntax: shortest round-trip decimal, hex bits for non-finite values.
pub(crate) fn float(v: f64, dtype: DType) -> String {
    if !v.is_finite() {
        return if dtype == DType::F32 {
            format!("0x{:08X}", (v as f32).to_bits())
        } else {
            format!("0x{:016X}", v.to_bits())
        };
    }
    let mut s = if dtype == DType::F32 {
        format!("{:?}", v as f32)
    } else {
        format!("{v:?}")
    };
    if !s.contains('.') {
        match s.find('e') {
            Some(p) => s.insert_str(p, ".0"),
            None => s.push_str(".0"),
        }
    }
    s
}

pub(crate) fn element(bits: u64, dtype: DType) -> String {
    match dtype {
        DType::F64 | DType::F32 => float(f64::from_bits(bits), dtype),
        DType::I64 | DType::I32 => (bits as i64).to_string(),
        DType::Bool => (bits != 0).to_string(),
    }
}

pub(crate) fn dense(lit: &Literal) -> String {
    let d = lit.ty.dtype;
    if lit.is_splat() {
        return format!("dense<{}>", element(lit.bits[0], d));
    }
    fn nest(out: &mut String, dims: &[i64], vals: &[u64], d: DType) {
        match dims.split_first() {
            None => out.push_str(&element(vals[0], d)),
            Some((&n, rest)) => {
                let stride: usize = rest.iter().map(|&x| x as usize).product();
                out.push('[');
                for i in 0..n as usize {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    nest(out, rest, &vals[i * stride..(i + 1) * stride], d);
                }
                out.push(']');
            }
        }
    }
    let mut s = String::from("dense<");
    nest(&mut s, lit.ty.dims(), &lit.bits, d);
    s.push('>');
    s
}

pub(crate) fn types(ts: &[&TensorType]) -> String {
    let v: Vec<String> = ts.iter().map(|t| t.mlir()).collect();
    v.join(", ")
}

pub(crate) fn result_list(ts: &[&TensorType]) -> String {
    if ts.len() == 1 {
        ts[0].mlir()
    } else {
        format!("({})", types(ts))
    }
}

/// Line writer with SSA numbering, handed to each op's `emit`.
pub(crate) struct Emitter {
    pub(crate) out: String,
    pub(crate) indent: usize,
    next: usize,
    next_arg: usize,
}

impl Emitter {
    pub(crate) fn new() -> Self {
        Emitter {
            out: String::with_capacity(4096),
            indent: 2,
            next: 0,
            next_arg: 0,
        }
    }

    pub(crate) fn fresh(&mut self) -> String {
        let s = format!("%{}", self.next);
        self.next += 1;
        s
    }

    pub(crate) fn fresh_arg(&mut self) -> String {
        let s = format!("%arg{}", self.next_arg);
        self.next_arg += 1;
        s
    }

    pub(crate) fn line(&mut self, s: &str) {
        for _ in 0..self.indent {
            self.out.push(' ');
        }
        self.out.push_str(s);
        self.out.push('\n');
    }

    /// Same-type elementwise `stablehlo.*` ops in pretty form, others generic.
    pub(crate) fn elementwise(&mut self, op: &str, args: &[&str], ins: &[&TensorType], out: &TensorType) -> String {
        if op.starts_with("stablehlo.") && ins.iter().all(|t| *t == out) {
            let name = self.fresh();
            self.line(&format!("{name} = {op} {} : {}", args.join(", "), out.mlir()));
            name
        } else {
            self.generic(op, args, ins, &[], out)
        }
    }

    /// `%n = "op"(args) {attrs} : (ins) -> out`.
    pub(crate) fn generic(
        &mut self,
        op: &str,
        args: &[&str],
        ins: &[&TensorType],
        attrs: &[(&str, Attr)],
        out: &TensorType,
    ) -> String {
        let name = self.fresh();
        let mut s = format!("{name} = \"{op}\"({})", args.join(", "));
        if !attrs.is_empty() {
            let a: Vec<String> = attrs.iter().map(|(k, v)| format!("{k} = {}", v.format())).collect();
            let _ = write!(s, " {{{}}}", a.join(", "));
        }
        let _ = write!(s, " : ({}) -> {}", types(ins), out.mlir());
        self.line(&s);
        name
    }

    /// `%n = stablehlo.constant dense<...> : type`.
    pub(crate) fn constant(&mut self, lit: &Literal) -> String {
        let name = self.fresh();
        self.line(&format!(
            "{name} = stablehlo.constant {} : {}",
            dense(lit),
            lit.ty.mlir()
        ));
        name
    }

    /// `stablehlo.reduce` of `x` over `axes` with a scalar combiner op.
    pub(crate) fn reduce(
        &mut self,
        x: &str,
        x_ty: &TensorType,
        combiner: &str,
        init: &Literal,
        axes: &[i64],
        out: &TensorType,
    ) -> String {
        let init_name = self.constant(init);
        let name = self.fresh();
        let s = &init.ty;
        self.line(&format!("{name} = \"stablehlo.reduce\"({x}, {init_name}) ({{"));
        let (a, b) = (self.fresh_arg(), self.fresh_arg());
        self.line(&format!("^bb0({a}: {}, {b}: {}):", s.mlir(), s.mlir()));
        self.indent += 2;
        let r = self.fresh();
        self.line(&format!("{r} = {combiner} {a}, {b} : {}", s.mlir()));
        self.line(&format!("\"stablehlo.return\"({r}) : ({}) -> ()", s.mlir()));
        self.indent -= 2;
        self.line(&format!(
            "}}) {{dimensions = {}}} : ({}, {}) -> {}",
            Attr::I64s(axes.to_vec()).format(),
            x_ty.mlir(),
            s.mlir(),
            out.mlir()
        ));
        name
    }
}

/// Valid, unique SSA/symbol identifiers from user names.
pub(crate) fn sanitize(name: &str, used: &mut HashSet<String>) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    if s.is_empty() {
        s.push_str("in");
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    if s.starts_with("arg") && s.len() > 3 && s[3..].chars().all(|c| c.is_ascii_digit()) {
        s.push('_');
    }
    while used.contains(&s) {
        s.push('_');
    }
    used.insert(s.clone());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_in_mlir_syntax() {
        assert_eq!(float(1.0, DType::F64), "1.0");
        assert_eq!(float(0.1, DType::F64), "0.1");
        assert_eq!(float(1e-7, DType::F64), "1.0e-7");
        assert_eq!(float(-2.5e300, DType::F64), "-2.5e300");
        assert_eq!(float(f64::NEG_INFINITY, DType::F64), "0xFFF0000000000000");
        assert_eq!(float(f64::INFINITY, DType::F32), "0x7F800000");
        for v in [0.1, 1.0 / 3.0, 6.02214076e23, -1e-300, 5e-324] {
            assert_eq!(float(v, DType::F64).parse::<f64>().unwrap(), v);
        }
    }

    #[test]
    fn attributes_format() {
        assert_eq!(Attr::I64s(vec![]).format(), "array<i64>");
        assert_eq!(Attr::I64s(vec![0, 2]).format(), "array<i64: 0, 2>");
        assert_eq!(Attr::Comparison("LT").format(), "#stablehlo<comparison_direction LT>");
    }

    #[test]
    fn names_are_sanitised_and_unique() {
        let mut used = HashSet::new();
        assert_eq!(sanitize("x", &mut used), "x");
        assert_eq!(sanitize("x", &mut used), "x_");
        assert_eq!(sanitize("1st value", &mut used), "_1st_value");
        assert_eq!(sanitize("arg0", &mut used), "arg0_");
    }
}
