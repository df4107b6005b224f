//! Forward-mode autodiff as a graph transformation.
//!
//! [`jvp`] walks the nodes between the seeds and the outputs in trace order and applies each
//! op's JVP rule (`rules.rs`, one arm per op). A tangent is either a symbolic zero or a
//! tensor with a leading *basis axis* of size `n`: all `n` directional derivatives are
//! carried at once, so the Jacobian of `f: R^n -> R^m` costs one pass over the model with
//! `[n, m]`-shaped tangents. Rules never run when every operand tangent is zero, and
//! non-float results (comparisons, integer arithmetic) always have zero tangents.
//!
//! A call of a private function is differentiated by tracing a derivative function once per
//! (function, set of non-zero input tangents, `n`) — the body is replayed and transformed —
//! and calling it, so derivative code stays outlined too. Differentiating through a
//! `while_loop` is an error (the solver differentiates the model, not itself).

mod rules;

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::graph::builder::Graph;
use crate::graph::builder::Tensor;
use crate::graph::ops::Op;
use crate::graph::types::{NodeId, Shape, TensorType};
use rules::{materialize, Tangent};

/// Pushes tangents from `seeds` to `outputs`. Errors are recorded in the graph.
pub(crate) fn tangents(g: &Graph, outputs: &[NodeId], seeds: &HashMap<NodeId, Tensor>, n: i64) -> Vec<Tangent> {
    let mut order = Vec::new();
    {
        let inner = g.inner.borrow();
        let mut seen = HashSet::new();
        let mut stack = outputs.to_vec();
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            order.push(id);
            if !seeds.contains_key(&id) {
                stack.extend_from_slice(&inner.nodes[id].args);
            }
        }
    }
    order.sort_unstable();

    let mut tan: HashMap<NodeId, Tensor> = HashMap::new();
    let mut multi: HashMap<NodeId, Vec<Tangent>> = HashMap::new();
    for id in order {
        if let Some(s) = seeds.get(&id) {
            tan.insert(id, s.clone());
            continue;
        }
        let (op, args, float) = {
            let inner = g.inner.borrow();
            let node = &inner.nodes[id];
            let active = node.args.iter().any(|a| tan.contains_key(a) || multi.contains_key(a));
            let captured = match node.op {
                Op::While { cond, body } => inner.while_captures(cond, body).iter().any(|a| tan.contains_key(a)),
                _ => false,
            };
            if !(active || captured) {
                continue;
            }
            (node.op.clone(), node.args.clone(), node.ty.dtype.is_float())
        };
        let ts: Vec<Tangent> = args.iter().map(|a| tan.get(a).cloned()).collect();
        let out = match &op {
            Op::Get { index } => multi.get(&args[0]).and_then(|v| v.get(*index).cloned().flatten()),
            Op::While { .. } => {
                g.record(Error::InvalidOp {
                    op: "jvp",
                    reason: "cannot differentiate through a while_loop".into(),
                });
                None
            }
            Op::Call { func } => {
                let v = call_jvp(g, *func, &args, &ts, n);
                multi.insert(id, v);
                None
            }
            Op::Parameter { .. } | Op::Poison { .. } => None,
            op if float => {
                let x: Vec<Tensor> = args.iter().map(|&a| g.wrap(a)).collect();
                rules::jvp(op, &x, &g.wrap(id), &ts)
            }
            _ => None,
        };
        if let Some(t) = out {
            tan.insert(id, t);
        }
    }
    outputs.iter().map(|o| tan.get(o).cloned()).collect()
}

/// Tangents of the results of `func` called on `args` with tangents `ts`, through a traced
/// derivative function (cached).
fn call_jvp(g: &Graph, func: usize, args: &[NodeId], ts: &[Tangent], n: i64) -> Vec<Tangent> {
    let mask: Vec<bool> = ts.iter().map(Option::is_some).collect();
    let key = (func, mask.clone(), n);
    let cached = g.inner.borrow().jvp_funcs.get(&key).copied();
    let derived = match cached {
        Some(d) => d,
        None => match derive_function(g, func, &mask, n) {
            Ok(d) => {
                g.inner.borrow_mut().jvp_funcs.insert(key, d);
                d
            }
            Err(e) => {
                g.record(e);
                return vec![None; g.inner.borrow().funcs[func].results.len()];
            }
        },
    };
    let mut call_args: Vec<Tensor> = args.iter().map(|&a| g.wrap(a)).collect();
    call_args.extend(ts.iter().flatten().cloned());
    let refs: Vec<&Tensor> = call_args.iter().collect();
    let f = crate::graph::builder::Function {
        graph: g.clone(),
        id: derived,
    };
    f.call(&refs).into_iter().map(Some).collect()
}

/// Traces `@name_jvp(inputs..., tangents of the masked inputs...) -> result tangents`.
fn derive_function(g: &Graph, func: usize, mask: &[bool], n: i64) -> Result<usize> {
    let (name, scope, param_names, results, params) = {
        let inner = g.inner.borrow();
        let def = &inner.funcs[func];
        (
            def.name.clone(),
            def.scope,
            def.param_names.clone(),
            def.results.clone(),
            inner.scopes[def.scope].params.clone(),
        )
    };
    let types: Vec<TensorType> = params.iter().map(|&p| g.wrap(p).ty()).collect();
    let mut inputs: Vec<(String, TensorType)> = param_names.iter().cloned().zip(types.iter().cloned()).collect();
    for (i, m) in mask.iter().enumerate() {
        if *m {
            let mut dims = vec![n];
            dims.extend(types[i].dims());
            inputs.push((
                format!("d_{}", param_names[i]),
                TensorType::new(types[i].dtype, Shape(dims)),
            ));
        }
    }
    let refs: Vec<(&str, TensorType)> = inputs.iter().map(|(s, t)| (s.as_str(), t.clone())).collect();
    let f = g.function(&format!("{name}_jvp"), &refs, |a| {
        let mut map: HashMap<NodeId, NodeId> = params.iter().zip(a).map(|(&p, t)| (p, t.id)).collect();
        let replayed = match g.inner.borrow_mut().replay(scope, &results, &mut map) {
            Ok(r) => r,
            Err(e) => {
                g.record(e);
                return Vec::new();
            }
        };
        let mut seeds = HashMap::new();
        let mut k = params.len();
        for (i, m) in mask.iter().enumerate() {
            if *m {
                seeds.insert(map[&params[i]], a[k].clone());
                k += 1;
            }
        }
        let outs = tangents(g, &replayed, &seeds, n);
        outs.iter()
            .zip(&replayed)
            .map(|(t, &r)| materialize(t, &g.wrap(r), n))
            .collect()
    })?;
    Ok(f.id)
}

/// Jacobian-vector products of `outputs` with respect to the seeded tensors.
///
/// Each seed is `(primal, tangent)` where `tangent` has shape `[n, ...primal.shape]`: `n`
/// directions pushed forward at once. Returns one tangent per output, of shape
/// `[n, ...output.shape]` (zeros where the output does not depend on any seed). Tensors that
/// the outputs use but that are not downstream of a seed are constants for the derivative.
pub fn jvp(outputs: &[Tensor], seeds: &[(Tensor, Tensor)]) -> Result<Vec<Tensor>> {
    const OP: &str = "jvp";
    let Some((first, _)) = seeds.first() else {
        return Err(Error::InvalidOp {
            op: OP,
            reason: "no seeds".into(),
        });
    };
    let g = first.graph().clone();
    let mut n = None;
    let mut map = HashMap::new();
    for (p, t) in seeds {
        if !g.same(p.graph()) || !g.same(t.graph()) {
            return Err(Error::InvalidOp {
                op: OP,
                reason: "seeds belong to different graphs".into(),
            });
        }
        let (pt, tt) = (p.ty(), t.ty());
        if !pt.dtype.is_float() || tt.dtype != pt.dtype {
            return Err(Error::DTypeMismatch {
                op: OP,
                lhs: pt.dtype,
                rhs: tt.dtype,
            });
        }
        let ok = tt.rank() == pt.rank() + 1 && tt.dims()[1..] == *pt.dims() && n.map_or(true, |n| tt.dims()[0] == n);
        if !ok {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: pt.shape,
                rhs: tt.shape,
            });
        }
        n = Some(tt.dims()[0]);
        map.insert(p.id, t.clone());
    }
    let n = n.unwrap_or(1);
    for o in outputs {
        if !g.same(o.graph()) {
            return Err(Error::InvalidOp {
                op: OP,
                reason: "outputs belong to different graphs".into(),
            });
        }
    }
    g.try_with(|| {
        let ids: Vec<NodeId> = outputs.iter().map(|o| o.id).collect();
        let ts = tangents(&g, &ids, &map, n);
        ts.iter().zip(outputs).map(|(t, o)| materialize(t, o, n)).collect()
    })
}

/// Jacobian of `f` with respect to the vector `p` (shape `[n]`), by forward mode with the
/// `n` unit vectors as seeds. The result has shape `[...f.shape, n]`: for residuals
/// `f: [m]` it is `J: [m, n]`.
pub fn jacfwd(f: &Tensor, p: &Tensor) -> Result<Tensor> {
    let t = jacfwd_t(f, p)?;
    let r = t.rank() as i64;
    let perm: Vec<i64> = (1..r).chain(std::iter::once(0)).collect();
    p.graph().try_with(|| t.transpose(&perm))
}

/// The transposed Jacobian of `f` with respect to the vector `p` (shape `[n]`): shape
/// `[n, ...f.shape]`, one row per parameter (for residuals `f: [m]`, `Jᵀ: [n, m]`). This is the
/// layout forward mode produces; code that reads the Jacobian a parameter at a time should
/// take it, since XLA:CPU does not vectorise a loop over a column of the transposed copy.
pub fn jacfwd_t(f: &Tensor, p: &Tensor) -> Result<Tensor> {
    let pt = p.ty();
    if pt.rank() != 1 {
        return Err(Error::InvalidOp {
            op: "jacfwd",
            reason: format!("parameters must be a vector, got {pt}"),
        });
    }
    let n = pt.dims()[0];
    let g = p.graph();
    let seed = g.try_with(|| g.eye(pt.dtype, n))?;
    Ok(jvp(std::slice::from_ref(f), &[(p.clone(), seed)])?.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ops::Op;
    use crate::types::DType;

    #[test]
    fn independent_outputs_get_symbolic_zero_tangents() {
        let g = Graph::new();
        let x = g.parameter("x", DType::F64, [4]);
        let p = g.parameter("p", DType::F64, [2]);
        let before = g.num_nodes();
        let t = jvp(&[x.sin()], &[(p.clone(), g.eye(DType::F64, 2))]).unwrap().remove(0);
        assert_eq!(t.dims(), vec![2, 4]);
        // Only the primal, the seed and a zero literal were built: no rule ran.
        assert!(matches!(g.inner.borrow().nodes[t.id].op, Op::Constant(ref l) if l.is_splat()));
        assert!(g.num_nodes() - before <= 3);
    }

    #[test]
    fn jacobian_has_data_by_parameter_layout() {
        let g = Graph::new();
        let x = g.parameter("x", DType::F64, [2, 7]);
        let p = g.parameter("p", DType::F64, [3]);
        let f = (&x * &p.get(0)).sum() + p.get(1) * p.get(2);
        assert_eq!(jacfwd(&f, &p).unwrap().dims(), vec![3]);
        let f = x.row(1) * p.get(2);
        assert_eq!(jacfwd(&f, &p).unwrap().dims(), vec![7, 3]);
        assert_eq!(jacfwd(&(&x * p.get(0)), &p).unwrap().dims(), vec![2, 7, 3]);
        // The transposed form keeps the parameter axis first, as forward mode produces it.
        assert_eq!(jacfwd_t(&f, &p).unwrap().dims(), vec![3, 7]);
        assert_eq!(jacfwd_t(&(&x * p.get(0)), &p).unwrap().dims(), vec![3, 2, 7]);
    }

    #[test]
    fn optimization_barrier_is_the_identity_with_its_tangent() {
        let g = Graph::new();
        let x = g.parameter("x", DType::F64, [3]);
        let p = g.parameter("p", DType::F64, [2]);
        let f = (&x * p.get(0)).exp().barrier() * p.get(1);
        let j = jacfwd_t(&f, &p).unwrap();
        let text = g.finish([&f, &j]).unwrap().text;
        assert!(text.contains("stablehlo.optimization_barrier"), "{text}");
        let (xs, ps) = ([0.5, 1.0, -2.0], [0.3, 1.5]);
        let out = crate::test_util::prepare(&g, &[f, j], &[(&xs[..], vec![3]), (&ps[..], vec![2])]).run();
        for (i, &xv) in xs.iter().enumerate() {
            let e = (ps[0] * xv).exp();
            assert!((out[0][i] - e * ps[1]).abs() < 1e-15 * e * ps[1], "f[{i}]");
            // ∂f/∂p0 = x p1 e^{p0 x}, ∂f/∂p1 = e^{p0 x}.
            assert!((out[1][i] - xv * ps[1] * e).abs() < 1e-14, "Jᵀ[0, {i}]");
            assert!((out[1][3 + i] - e).abs() < 1e-14, "Jᵀ[1, {i}]");
        }
    }

    #[test]
    fn transposed_jacobian_has_the_same_values() {
        let g = Graph::new();
        let x = g.parameter("x", DType::F64, [5]);
        let p = g.parameter("p", DType::F64, [2]);
        let f = (&x * p.get(0)).sin() + p.get(1) * x.square();
        let j = jacfwd(&f, &p).unwrap();
        let jt = jacfwd_t(&f, &p).unwrap();
        let xs = [0.1, 0.5, 1.0, 2.0, 3.5];
        let ps = [0.7, -1.2];
        let out = crate::test_util::prepare(&g, &[j, jt], &[(&xs[..], vec![5]), (&ps[..], vec![2])]).run();
        for (i, &xv) in xs.iter().enumerate() {
            // d/dp0 = x cos(p0 x), d/dp1 = x².
            let want = [xv * (ps[0] * xv).cos(), xv * xv];
            for (k, w) in want.iter().enumerate() {
                assert!((out[0][i * 2 + k] - w).abs() < 1e-14, "J[{i}, {k}]");
                assert_eq!(out[1][k * 5 + i], out[0][i * 2 + k], "Jᵀ[{k}, {i}]");
            }
        }
    }
}
