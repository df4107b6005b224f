//! StableHLO text emission: the walk over a graph's nodes that writes `@main`, the private
//! functions it calls and their loop regions, through the [`Emitter`] (all textual syntax is
//! in `emitter.rs`).
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
use crate::graph::emitter::{result_list, sanitize, types, Emitter};
use crate::graph::ops::Op;
use crate::graph::types::{NodeId, ScopeId, TensorType, ROOT};

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
