//! StableHLO text emission. All textual syntax lives here.
//!
//! A [`Program`] is `@main` followed by the private functions it calls (in first-call
//! order). Values are numbered `%0, %1, ...` per function in node order, inputs keep their
//! (sanitised) names and loop/reduce block arguments are `%argN`, so the same graph always
//! gives the same bytes — the text is the compile-cache key.
//!
//! Only nodes reachable from the outputs are written (dead code is dropped); constants and
//! other rematerialisable nodes are written once per function or region that uses them.
//! Values that a loop region captures from enclosing code are appended to the loop state
//! (passed through unchanged), so regions never refer to outer SSA values.
//!
//! Op spellings: the pretty form for same-type elementwise `stablehlo.*` ops, constants,
//! `func.call` and `return`, whose syntax has been stable across StableHLO releases; the
//! generic form `"dialect.op"(...) {attrs} : (types) -> types` for everything else (reduce,
//! while, compare, dot_general, broadcast_in_dim, slice, gather, CHLO ops), whose pretty
//! syntax drifts between releases.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::graph::builder::Inner;
use crate::graph::ops::{Literal, Op};
use crate::graph::types::{DType, NodeId, ScopeId, TensorType, ROOT};

/// Emitted StableHLO text with its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// The MLIR text, defining `func.func @main` and the private functions it calls.
    pub text: String,
    /// Inputs of `@main` in order: the names given to [`Graph::parameter`](crate::graph::Graph::parameter) and their types.
    pub inputs: Vec<(String, TensorType)>,
    /// Result types of `@main` in order.
    pub outputs: Vec<TensorType>,
}

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

fn list(v: &[i64]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(", "))
}

impl Attr {
    fn format(&self) -> String {
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
fn float(v: f64, dtype: DType) -> String {
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

fn element(bits: u64, dtype: DType) -> String {
    match dtype {
        DType::F64 | DType::F32 => float(f64::from_bits(bits), dtype),
        DType::I64 | DType::I32 => (bits as i64).to_string(),
        DType::Bool => (bits != 0).to_string(),
    }
}

fn dense(lit: &Literal) -> String {
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

fn types(ts: &[&TensorType]) -> String {
    let v: Vec<String> = ts.iter().map(|t| t.mlir()).collect();
    v.join(", ")
}

fn result_list(ts: &[&TensorType]) -> String {
    if ts.len() == 1 {
        ts[0].mlir()
    } else {
        format!("({})", types(ts))
    }
}

/// Line writer with SSA numbering, handed to each op's `emit`.
pub(crate) struct Emitter {
    out: String,
    indent: usize,
    next: usize,
    next_arg: usize,
}

impl Emitter {
    fn new() -> Self {
        Emitter {
            out: String::with_capacity(4096),
            indent: 2,
            next: 0,
            next_arg: 0,
        }
    }

    fn fresh(&mut self) -> String {
        let s = format!("%{}", self.next);
        self.next += 1;
        s
    }

    fn fresh_arg(&mut self) -> String {
        let s = format!("%arg{}", self.next_arg);
        self.next_arg += 1;
        s
    }

    fn line(&mut self, s: &str) {
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
fn sanitize(name: &str, used: &mut HashSet<String>) -> String {
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

fn internal(reason: &str) -> Error {
    Error::InvalidOp {
        op: "emit",
        reason: reason.to_string(),
    }
}

struct ProgramEmitter<'a> {
    g: &'a Inner,
    symbols: Vec<String>,
    called: Vec<usize>,
    /// Number of results each emitted multi-result node has (state + captures for loops).
    multi: HashMap<NodeId, usize>,
}

impl crate::graph::Graph {
    /// Emits `@main` returning `outputs` (and every private function it calls) as StableHLO
    /// text, or returns the first error recorded while tracing.
    ///
    /// # Errors
    /// The first error recorded while tracing, outputs of another graph, or a loop body or
    /// function trace still open.
    pub fn finish<'a>(&self, outputs: impl IntoIterator<Item = &'a crate::graph::Tensor>) -> Result<Program> {
        let outs: Vec<_> = outputs.into_iter().collect();
        let (g, ids) = self.ready_to_emit(&outs)?;
        program(&g, &ids)
    }
}

/// Emits `@main` returning `outputs`, then every private function reachable from it.
pub(crate) fn program(g: &Inner, outputs: &[NodeId]) -> Result<Program> {
    let mut used: HashSet<String> = ["main".to_string()].into_iter().collect();
    let symbols = g.funcs.iter().map(|f| sanitize(&f.name, &mut used)).collect();
    let mut pe = ProgramEmitter {
        g,
        symbols,
        called: Vec::new(),
        multi: HashMap::new(),
    };
    let mut text = pe.function("main", false, ROOT, &g.param_names, outputs)?;
    let mut done = 0;
    while done < pe.called.len() {
        let f = pe.called[done];
        done += 1;
        let def = &g.funcs[f];
        let sym = pe.symbols[f].clone();
        text.push_str(&pe.function(&sym, true, def.scope, &def.param_names, &def.results)?);
    }
    let inputs = g.scopes[ROOT]
        .params
        .iter()
        .zip(&g.param_names)
        .map(|(&p, n)| (n.clone(), g.nodes[p].ty.clone()))
        .collect();
    let outputs = outputs.iter().map(|&o| g.nodes[o].ty.clone()).collect();
    Ok(Program { text, inputs, outputs })
}

impl ProgramEmitter<'_> {
    fn function(
        &mut self,
        sym: &str,
        private: bool,
        scope: ScopeId,
        names: &[String],
        results: &[NodeId],
    ) -> Result<String> {
        let g = self.g;
        let mut e = Emitter::new();
        let mut used = HashSet::new();
        let mut env = HashMap::new();
        let mut sig = Vec::new();
        for (&p, n) in g.scopes[scope].params.iter().zip(names) {
            let name = format!("%{}", sanitize(n, &mut used));
            sig.push(format!("{name}: {}", g.nodes[p].ty.mlir()));
            env.insert(p, name);
        }
        let outs = self.region(&mut e, scope, env, results)?;
        let tys: Vec<&TensorType> = results.iter().map(|&r| &g.nodes[r].ty).collect();
        let mut text = format!(
            "func.func {}@{sym}({}) -> {} {{\n",
            if private { "private " } else { "" },
            sig.join(", "),
            if tys.is_empty() {
                "()".to_string()
            } else {
                result_list(&tys)
            }
        );
        text.push_str(&e.out);
        if outs.is_empty() {
            text.push_str("  return\n");
        } else {
            let _ = writeln!(text, "  return {} : {}", outs.join(", "), types(&tys));
        }
        text.push_str("}\n");
        Ok(text)
    }

    /// Emits the nodes of `scope` needed for `results`; `env` holds the block arguments.
    fn region(
        &mut self,
        e: &mut Emitter,
        scope: ScopeId,
        mut env: HashMap<NodeId, String>,
        results: &[NodeId],
    ) -> Result<Vec<String>> {
        let g = self.g;
        let mut needed = BTreeSet::new();
        let mut stack: Vec<NodeId> = results.to_vec();
        while let Some(n) = stack.pop() {
            if env.contains_key(&n) || needed.contains(&n) {
                continue;
            }
            let node = &g.nodes[n];
            if !(node.remat || node.scope == scope) {
                return Err(internal(
                    "value from an enclosing scope reached a region without being threaded",
                ));
            }
            needed.insert(n);
            stack.extend_from_slice(&node.args);
            if let Op::While { cond, body } = node.op {
                stack.extend(g.while_captures(cond, body));
            }
        }
        for n in needed {
            let name = self.node(e, n, &env)?;
            env.insert(n, name);
        }
        Ok(results.iter().map(|r| env[r].clone()).collect())
    }

    fn node(&mut self, e: &mut Emitter, n: NodeId, env: &HashMap<NodeId, String>) -> Result<String> {
        let g = self.g;
        let node = &g.nodes[n];
        let args: Vec<&str> = node.args.iter().map(|a| env[a].as_str()).collect();
        let ins: Vec<&TensorType> = node.args.iter().map(|&a| &g.nodes[a].ty).collect();
        match &node.op {
            Op::Get { index } => {
                let base = &env[&node.args[0]];
                Ok(if self.multi.get(&node.args[0]) == Some(&1) {
                    base.clone()
                } else {
                    format!("{base}#{index}")
                })
            }
            Op::Parameter { .. } => Err(internal("parameter of another scope")),
            Op::Poison { .. } => Err(Error::InvalidOp {
                op: "emit",
                reason: "an output depends on a value whose tracing failed".into(),
            }),
            Op::Call { func } => {
                if !self.called.contains(func) {
                    self.called.push(*func);
                }
                let rt = &g.funcs[*func].result_types;
                let rts: Vec<&TensorType> = rt.iter().collect();
                let name = e.fresh();
                let count = if rt.len() == 1 {
                    String::new()
                } else {
                    format!(":{}", rt.len())
                };
                e.line(&format!(
                    "{name}{count} = func.call @{}({}) : ({}) -> {}",
                    self.symbols[*func],
                    args.join(", "),
                    types(&ins),
                    if rts.is_empty() {
                        "()".to_string()
                    } else {
                        result_list(&rts)
                    }
                ));
                self.multi.insert(n, rt.len());
                Ok(name)
            }
            Op::While { cond, body } => self.while_loop(e, n, *cond, *body, env),
            op => match op.primitive() {
                Some(p) => Ok(p.emit(e, &args, &ins, &node.ty)),
                None => Err(internal("unknown op")),
            },
        }
    }

    fn while_loop(
        &mut self,
        e: &mut Emitter,
        n: NodeId,
        cond: usize,
        body: usize,
        env: &HashMap<NodeId, String>,
    ) -> Result<String> {
        let g = self.g;
        let node = &g.nodes[n];
        let caps = g.while_captures(cond, body);
        let all: Vec<NodeId> = node.args.iter().chain(&caps).copied().collect();
        let operands: Vec<&str> = all.iter().map(|a| env[a].as_str()).collect();
        let tys: Vec<&TensorType> = all.iter().map(|&a| &g.nodes[a].ty).collect();
        let name = e.fresh();
        let count = if all.len() == 1 {
            String::new()
        } else {
            format!(":{}", all.len())
        };
        e.line(&format!(
            "{name}{count} = \"stablehlo.while\"({}) ({{",
            operands.join(", ")
        ));
        let state = node.args.len();
        for (k, &r) in [cond, body].iter().enumerate() {
            if k == 1 {
                e.line("}, {");
            }
            let region = &g.regions[r];
            let block: Vec<String> = all.iter().map(|_| e.fresh_arg()).collect();
            let header: Vec<String> = block
                .iter()
                .zip(&tys)
                .map(|(b, t)| format!("{b}: {}", t.mlir()))
                .collect();
            e.line(&format!("^bb0({}):", header.join(", ")));
            let mut inner = HashMap::new();
            for (i, &p) in g.scopes[region.scope].params.iter().enumerate() {
                inner.insert(p, block[i].clone());
            }
            for (i, &c) in caps.iter().enumerate() {
                inner.insert(c, block[state + i].clone());
            }
            e.indent += 2;
            let mut outs = self.region(e, region.scope, inner, &region.results)?;
            let mut out_tys: Vec<&TensorType> = region.results.iter().map(|&r| &g.nodes[r].ty).collect();
            if k == 1 {
                outs.extend_from_slice(&block[state..]);
                out_tys.extend_from_slice(&tys[state..]);
            }
            e.line(&format!(
                "\"stablehlo.return\"({}) : ({}) -> ()",
                outs.join(", "),
                types(&out_tys)
            ));
            e.indent -= 2;
        }
        e.line(&format!("}}) : ({}) -> {}", types(&tys), result_list(&tys)));
        self.multi.insert(n, all.len());
        Ok(name)
    }
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
