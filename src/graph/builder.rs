//! The graph builder: node storage, hash-consing, scopes, the first error, control flow, and
//! [`Tensor`], the handle to a node (its operators and methods are in `tensor.rs`).
//!
//! Every traced value is a node `(op, args)` in one arena. Building a node that already exists
//! returns the existing one (hash-consing), so common subexpressions are merged as they are
//! traced and equal constants are stored once.
//!
//! **Scopes.** `@main`, each private function and each region of a `while_loop` is a scope.
//! Tracing a closure pushes a scope whose parameters are fresh nodes; the closure may use
//! tensors of enclosing scopes (captures). A node is placed in the innermost scope among its
//! operands, so loop-invariant code is hoisted out of loop bodies automatically. Nodes whose
//! operands are all constants (literals, iota and anything computed only from them) are
//! *rematerialisable*: they belong to no scope and are written wherever they are used.
//! Function scopes are isolated: a function body may not capture non-constant tensors (pass
//! them as arguments); loop regions may, and the emitter threads captured values through the
//! loop state explicitly.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::graph::ops::{Iota, Op};
use crate::graph::types::{DType, Literal, NodeId, ScopeId, Shape, TensorType, ROOT};

/// One traced value (or a multi-result op, read through `Op::Get`).
#[derive(Debug)]
pub(crate) struct Node {
    pub op: Op,
    pub args: Vec<NodeId>,
    pub ty: TensorType,
    pub scope: ScopeId,
    pub remat: bool,
}

/// What a scope belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScopeKind {
    Root,
    Function,
    Region,
}

/// A scope: `@main`, a private function body or a loop region.
#[derive(Debug)]
pub(crate) struct Scope {
    pub kind: ScopeKind,
    pub params: Vec<NodeId>,
}

/// A traced loop region (cond or body of a `while`).
#[derive(Debug)]
pub(crate) struct Region {
    pub scope: ScopeId,
    pub results: Vec<NodeId>,
}

/// A traced private function.
#[derive(Debug)]
pub(crate) struct FuncDef {
    pub name: String,
    pub scope: ScopeId,
    pub param_names: Vec<String>,
    pub results: Vec<NodeId>,
    pub result_types: Vec<TensorType>,
}

/// Arena and bookkeeping behind a [`Graph`].
pub(crate) struct Inner {
    pub nodes: Vec<Node>,
    cse: HashMap<(Op, Vec<NodeId>), NodeId>,
    pub scopes: Vec<Scope>,
    stack: Vec<ScopeId>,
    error: Option<Error>,
    failed: Option<String>,
    pub param_names: Vec<String>,
    pub regions: Vec<Region>,
    pub funcs: Vec<FuncDef>,
    /// Derivative functions already traced: (function, tangent mask, basis size) -> function.
    pub jvp_funcs: HashMap<(usize, Vec<bool>, i64), usize>,
}

/// A traced tensor: a node of a [`Graph`]. Clone is cheap (a reference count).
#[derive(Clone)]
pub struct Tensor {
    pub(crate) graph: Graph,
    pub(crate) id: NodeId,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor(#{}: {})", self.id, self.ty())
    }
}

impl Tensor {
    /// The graph this tensor belongs to.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Element type and shape.
    pub fn ty(&self) -> TensorType {
        self.graph.inner.borrow().nodes[self.id].ty.clone()
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.graph.inner.borrow().nodes[self.id].ty.dtype
    }

    /// Shape.
    pub fn shape(&self) -> Shape {
        self.graph.inner.borrow().nodes[self.id].ty.shape.clone()
    }

    /// Dimensions.
    pub fn dims(&self) -> Vec<i64> {
        self.shape().0
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.graph.inner.borrow().nodes[self.id].ty.rank()
    }
}

/// A tracing graph: the builder that every [`Tensor`] points into.
///
/// Cheap to clone (a reference-counted handle) and `!Send`. Operators on tensors never fail:
/// the first error (a shape or dtype mismatch, a bad axis, ...) is kept here and returned by
/// [`Graph::finish`] or [`Graph::try_with`].
///
/// ```
/// use nlsq::graph::Graph;
/// use nlsq::DType;
///
/// let g = Graph::new();
/// let x = g.parameter("x", DType::F64, [5]);
/// let y = (&x * 2.0).exp() + 1.0;
/// let program = g.finish([&y]).unwrap();
/// assert!(program.text.contains("func.func @main(%x: tensor<5xf64>) -> tensor<5xf64>"));
/// ```
///
/// Graphs are single-threaded (trace on one thread, then send the emitted text anywhere):
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<nlsq::graph::Graph>();
/// ```
#[derive(Clone)]
pub struct Graph {
    pub(crate) inner: Rc<RefCell<Inner>>,
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.inner.borrow();
        write!(f, "Graph {{ nodes: {}, functions: {} }}", g.nodes.len(), g.funcs.len())
    }
}

impl Inner {
    fn record(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Position in the scope stack of the innermost isolated scope (function or root).
    fn isolation(&self) -> usize {
        self.stack
            .iter()
            .rposition(|&s| self.scopes[s].kind != ScopeKind::Region)
            .unwrap_or(0)
    }

    /// Checks that `args` are visible here; returns the stack position of the innermost one
    /// that is not rematerialisable (`None`: all are).
    fn visible(&self, op: &'static str, args: &[NodeId]) -> Result<Option<usize>> {
        let iso = self.isolation();
        let mut depth = None;
        for &a in args {
            let n = &self.nodes[a];
            if n.remat {
                continue;
            }
            match self.stack.iter().rposition(|&s| s == n.scope) {
                None => {
                    return Err(Error::InvalidOp {
                        op,
                        reason: "operand escaped from the while_loop region or function where it was traced".into(),
                    })
                }
                Some(p) if p < iso => {
                    return Err(Error::InvalidOp {
                        op,
                        reason: "a function body cannot capture outer tensors; pass them as arguments".into(),
                    })
                }
                Some(p) => depth = depth.max(Some(p)),
            }
        }
        Ok(depth)
    }

    fn types(&self, args: &[NodeId]) -> Vec<&TensorType> {
        args.iter().map(|&a| &self.nodes[a].ty).collect()
    }

    /// Result types of a multi-result node.
    pub(crate) fn result_types(&self, id: NodeId) -> Vec<TensorType> {
        let n = &self.nodes[id];
        match &n.op {
            Op::While { .. } => n.args.iter().map(|&a| self.nodes[a].ty.clone()).collect(),
            Op::Call { func } => self.funcs[*func].result_types.clone(),
            _ => vec![n.ty.clone()],
        }
    }

    fn infer(&self, op: &Op, args: &[NodeId]) -> Result<TensorType> {
        match op {
            Op::Parameter { ty, .. } | Op::Poison { ty, .. } => Ok(ty.clone()),
            Op::While { .. } | Op::Call { .. } => Ok(TensorType::scalar(DType::Bool)),
            Op::Get { index } => self
                .result_types(args[0])
                .get(*index)
                .cloned()
                .ok_or_else(|| Error::InvalidOp {
                    op: "get",
                    reason: format!("no result {index}"),
                }),
            other => match other.primitive() {
                Some(p) => p.infer(&self.types(args)),
                None => Err(Error::InvalidOp {
                    op: "op",
                    reason: "not a primitive".into(),
                }),
            },
        }
    }

    /// Adds (or finds) the node `(op, args)`.
    pub(crate) fn add(&mut self, op: Op, args: Vec<NodeId>) -> Result<NodeId> {
        let name = op.name();
        let depth = self.visible(name, &args)?;
        let ty = self.infer(&op, &args)?;
        let (op, args) = match self.fold(&op, &args, &ty) {
            Some(lit) => (Op::Constant(lit), Vec::new()),
            None => (op, args),
        };
        let depth = if args.is_empty() { None } else { depth };
        let structural = matches!(
            op,
            Op::While { .. } | Op::Call { .. } | Op::Get { .. } | Op::Parameter { .. }
        );
        let (scope, remat) = match (&op, depth) {
            (Op::Poison { .. }, _) => (ROOT, true),
            (Op::Parameter { scope, .. }, _) => (*scope, false),
            (Op::While { .. }, _) => (*self.stack.last().unwrap_or(&ROOT), false),
            (_, Some(p)) => (self.stack[p], false),
            (_, None) if structural => (self.stack[self.isolation()], false),
            (_, None) => (ROOT, true),
        };
        let key = (op, args);
        if !key.0.is_unique() {
            if let Some(&id) = self.cse.get(&key) {
                return Ok(id);
            }
        }
        let id = self.nodes.len();
        let (op, args) = key;
        if !op.is_unique() {
            self.cse.insert((op.clone(), args.clone()), id);
        }
        self.nodes.push(Node {
            op,
            args,
            ty,
            scope,
            remat,
        });
        Ok(id)
    }

    /// Constant folding of layout ops on literals (keeps seeds and splats readable and
    /// avoids broadcasting constants at run time). Dense results are limited in size.
    fn fold(&self, op: &Op, args: &[NodeId], ty: &TensorType) -> Option<Literal> {
        const MAX_DENSE: usize = 4096;
        let lit = match args {
            [a] => match &self.nodes[*a].op {
                Op::Constant(l) => l,
                _ => return None,
            },
            _ => return None,
        };
        let splat = lit.is_splat();
        match op {
            Op::Broadcast(_) | Op::Reshape(_) | Op::Slice(_) | Op::Transpose(_) if splat => {
                Some(Literal::splat(ty.clone(), lit.bits[0]))
            }
            Op::Reshape(_) => Some(Literal {
                ty: ty.clone(),
                bits: lit.bits.clone(),
            }),
            Op::Convert(_) => {
                let from = lit.ty.dtype;
                let bits = lit
                    .bits
                    .iter()
                    .map(|&b| Literal::encode(ty.dtype, Literal::decode(from, b)))
                    .collect();
                Some(Literal { ty: ty.clone(), bits })
            }
            Op::Slice(s) if lit.bits.len() <= MAX_DENSE => {
                let dims = lit.ty.dims();
                let n = ty.shape.num_elements();
                let mut bits = Vec::with_capacity(n);
                let mut idx: Vec<i64> = s.start.clone();
                for _ in 0..n {
                    let flat = idx.iter().zip(dims).fold(0i64, |acc, (&i, &d)| acc * d + i);
                    bits.push(lit.bits[flat as usize]);
                    // Odometer over the output positions.
                    for k in (0..idx.len()).rev() {
                        idx[k] += s.stride[k];
                        if idx[k] < s.limit[k] {
                            break;
                        }
                        idx[k] = s.start[k];
                    }
                }
                Some(Literal { ty: ty.clone(), bits })
            }
            _ => None,
        }
    }

    fn open_scope(&mut self, kind: ScopeKind, types: &[TensorType]) -> (ScopeId, Vec<NodeId>) {
        let scope = self.scopes.len();
        self.scopes.push(Scope {
            kind,
            params: Vec::new(),
        });
        self.stack.push(scope);
        let params: Vec<NodeId> = types
            .iter()
            .enumerate()
            .map(|(index, ty)| {
                let id = self.nodes.len();
                self.nodes.push(Node {
                    op: Op::Parameter {
                        scope,
                        index,
                        ty: ty.clone(),
                    },
                    args: Vec::new(),
                    ty: ty.clone(),
                    scope,
                    remat: false,
                });
                id
            })
            .collect();
        self.scopes[scope].params = params.clone();
        (scope, params)
    }

    fn close_scope(&mut self, scope: ScopeId) {
        if self.stack.last() == Some(&scope) {
            self.stack.pop();
        }
    }

    /// Re-traces the nodes of `scope` that `results` need, with the arguments renamed by
    /// `map` (which must map every parameter used). Used to derive JVP functions.
    pub(crate) fn replay(
        &mut self,
        scope: ScopeId,
        results: &[NodeId],
        map: &mut HashMap<NodeId, NodeId>,
    ) -> Result<Vec<NodeId>> {
        let mut seen = HashSet::new();
        let mut order = Vec::new();
        let mut stack = results.to_vec();
        while let Some(n) = stack.pop() {
            let node = &self.nodes[n];
            if node.remat || node.scope != scope || map.contains_key(&n) || !seen.insert(n) {
                continue;
            }
            order.push(n);
            stack.extend_from_slice(&node.args);
        }
        order.sort_unstable();
        for n in order {
            let node = &self.nodes[n];
            match node.op {
                Op::Parameter { .. } => {
                    return Err(Error::InvalidOp {
                        op: "jvp",
                        reason: "unmapped function parameter".into(),
                    })
                }
                Op::While { .. } => {
                    return Err(Error::InvalidOp {
                        op: "jvp",
                        reason: "cannot differentiate through a while_loop".into(),
                    })
                }
                _ => {}
            }
            let op = node.op.clone();
            let args = node.args.iter().map(|a| *map.get(a).unwrap_or(a)).collect();
            let new = self.add(op, args)?;
            map.insert(n, new);
        }
        Ok(results.iter().map(|r| *map.get(r).unwrap_or(r)).collect())
    }

    /// Values from enclosing scopes that a loop region uses (non-constant, sorted).
    pub(crate) fn region_captures(&self, r: usize) -> BTreeSet<NodeId> {
        let region = &self.regions[r];
        let scope = region.scope;
        let mut seen = HashSet::new();
        let mut free = BTreeSet::new();
        let mut stack = region.results.clone();
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            let node = &self.nodes[n];
            if node.remat {
                continue;
            }
            if node.scope != scope {
                free.insert(n);
                continue;
            }
            stack.extend_from_slice(&node.args);
            if let Op::While { cond, body } = node.op {
                stack.extend(self.while_captures(cond, body));
            }
        }
        free
    }

    /// Values from enclosing scopes used by either region of a loop (sorted).
    pub(crate) fn while_captures(&self, cond: usize, body: usize) -> Vec<NodeId> {
        let mut all = self.region_captures(cond);
        all.extend(self.region_captures(body));
        all.into_iter().collect()
    }

    /// Trace-time check that `ids` may be returned from the scope on top of the stack.
    fn check_results(&self, op: &'static str, ids: &[NodeId]) -> Result<()> {
        self.visible(op, ids).map(|_| ())
    }
}

impl Graph {
    /// An empty graph whose top level is the body of `@main`.
    pub fn new() -> Self {
        let inner = Inner {
            nodes: Vec::new(),
            cse: HashMap::new(),
            scopes: vec![Scope {
                kind: ScopeKind::Root,
                params: Vec::new(),
            }],
            stack: vec![ROOT],
            error: None,
            failed: None,
            param_names: Vec::new(),
            regions: Vec::new(),
            funcs: Vec::new(),
            jvp_funcs: HashMap::new(),
        };
        Graph {
            inner: Rc::new(RefCell::new(inner)),
        }
    }

    pub(crate) fn same(&self, other: &Graph) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn wrap(&self, id: NodeId) -> Tensor {
        Tensor {
            graph: self.clone(),
            id,
        }
    }

    /// Records `e` unless an earlier error is already recorded.
    pub(crate) fn record(&self, e: Error) {
        self.inner.borrow_mut().record(e);
    }

    /// A placeholder of type `ty` returned after an error (never emitted).
    pub(crate) fn poison(&self, ty: TensorType) -> Tensor {
        let mut g = self.inner.borrow_mut();
        let id = g.nodes.len();
        g.nodes.push(Node {
            op: Op::Poison { id, ty: ty.clone() },
            args: Vec::new(),
            ty,
            scope: ROOT,
            remat: true,
        });
        drop(g);
        self.wrap(id)
    }

    fn check_graphs(&self, op: &'static str, args: &[&Tensor]) -> Result<Vec<NodeId>> {
        args.iter()
            .map(|t| {
                if self.same(&t.graph) {
                    Ok(t.id)
                } else {
                    Err(Error::InvalidOp {
                        op,
                        reason: "operands belong to different graphs".into(),
                    })
                }
            })
            .collect()
    }

    /// Adds a node, returning the error instead of recording it.
    pub(crate) fn try_node(&self, op: Op, args: &[&Tensor]) -> Result<Tensor> {
        let ids = self.check_graphs(op.name(), args)?;
        let id = self.inner.borrow_mut().add(op, ids)?;
        Ok(self.wrap(id))
    }

    /// Adds a node; on error records it and returns a poison of a plausible type.
    pub(crate) fn node(&self, op: Op, args: &[&Tensor]) -> Tensor {
        match self.try_node(op, args) {
            Ok(t) => t,
            Err(e) => {
                let ty = args.first().map_or(TensorType::scalar(DType::F64), |a| a.ty());
                self.record(e);
                self.poison(ty)
            }
        }
    }

    /// Runs `f` (which traces ops on this graph) and returns the first error it caused, if
    /// any, instead of keeping it in the graph. Library code uses this to get `Result`s from
    /// the infallible operators.
    ///
    /// ```
    /// use nlsq::graph::Graph;
    /// use nlsq::DType;
    ///
    /// let g = Graph::new();
    /// let a = g.parameter("a", DType::F64, [3]);
    /// let b = g.parameter("b", DType::F64, [4]);
    /// let err = g.try_with(|| &a + &b).unwrap_err();
    /// assert_eq!(err.to_string(), "add: shape mismatch, lhs [3], rhs [4]");
    /// assert!(g.try_with(|| &a * 2.0).is_ok()); // the graph itself stays usable
    /// ```
    pub fn try_with<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let prev = self.inner.borrow_mut().error.take();
        let out = f();
        let mut g = self.inner.borrow_mut();
        let new = std::mem::replace(&mut g.error, prev);
        match new {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// True when an error has been recorded and not yet returned.
    pub fn has_error(&self) -> bool {
        let g = self.inner.borrow();
        g.error.is_some() || g.failed.is_some()
    }

    /// Declares the next input of `@main`, named `name` in the emitted text.
    ///
    /// Inputs appear in `@main`'s signature in the order they were declared, used or not.
    /// Only valid at the top level (not inside a loop body or function trace).
    pub fn parameter(&self, name: &str, dtype: DType, shape: impl Into<Shape>) -> Tensor {
        let ty = TensorType::new(dtype, shape);
        let mut g = self.inner.borrow_mut();
        if g.stack.len() != 1 {
            g.record(Error::InvalidOp {
                op: "parameter",
                reason: format!(
                    "input {name:?} declared inside a loop body or function; declare inputs at the top level"
                ),
            });
            drop(g);
            return self.poison(ty);
        }
        if let Err(e) = crate::graph::ops::literal::check_dims("parameter", &ty.shape) {
            g.record(e);
            drop(g);
            return self.poison(ty);
        }
        let index = g.param_names.len();
        let id = g.nodes.len();
        g.nodes.push(Node {
            op: Op::Parameter {
                scope: ROOT,
                index,
                ty: ty.clone(),
            },
            args: Vec::new(),
            ty,
            scope: ROOT,
            remat: false,
        });
        g.scopes[ROOT].params.push(id);
        g.param_names.push(name.to_string());
        drop(g);
        self.wrap(id)
    }

    /// A tensor of `shape` filled with `value` converted to `dtype` (integers truncate,
    /// bool is `value != 0`).
    pub fn full(&self, dtype: DType, shape: impl Into<Shape>, value: f64) -> Tensor {
        let ty = TensorType::new(dtype, shape);
        let bits = Literal::encode(dtype, value);
        self.node(Op::Constant(Literal::splat(ty, bits)), &[])
    }

    /// An f64 scalar constant.
    pub fn constant(&self, value: f64) -> Tensor {
        self.full(DType::F64, Shape::scalar(), value)
    }

    /// A scalar constant of `dtype`.
    pub fn scalar(&self, dtype: DType, value: f64) -> Tensor {
        self.full(dtype, Shape::scalar(), value)
    }

    /// Zeros of the given type.
    pub fn zeros(&self, dtype: DType, shape: impl Into<Shape>) -> Tensor {
        self.full(dtype, shape, 0.0)
    }

    /// Ones of the given type.
    pub fn ones(&self, dtype: DType, shape: impl Into<Shape>) -> Tensor {
        self.full(dtype, shape, 1.0)
    }

    /// A dense f64 constant with row-major `data` (records an error if the length does not
    /// match `shape`). Data a fit depends on should be an input ([`Graph::parameter`]) so that
    /// one executable serves every dataset; constants are for small fixed tables.
    pub fn constant_array(&self, data: &[f64], shape: impl Into<Shape>) -> Tensor {
        self.constant_array_of(DType::F64, data, shape)
    }

    /// A dense constant of `dtype` from row-major f64 `data` (converted like [`Graph::full`]).
    pub fn constant_array_of(&self, dtype: DType, data: &[f64], shape: impl Into<Shape>) -> Tensor {
        let ty = TensorType::new(dtype, shape);
        let bits: Vec<u64> = data.iter().map(|&v| Literal::encode(dtype, v)).collect();
        if bits.len() == ty.shape.num_elements() && !bits.is_empty() && bits.iter().all(|&b| b == bits[0]) {
            return self.node(Op::Constant(Literal::splat(ty, bits[0])), &[]);
        }
        if bits.len() != ty.shape.num_elements() {
            self.record(Error::InvalidOp {
                op: "constant",
                reason: format!("{} values for shape {}", bits.len(), ty.shape),
            });
            return self.poison(ty);
        }
        self.node(Op::Constant(Literal { ty, bits }), &[])
    }

    /// `0, 1, 2, ...` along `axis` of a tensor of `shape` (`stablehlo.iota`).
    pub fn iota(&self, dtype: DType, shape: impl Into<Shape>, axis: usize) -> Tensor {
        self.node(
            Op::Iota(Iota {
                ty: TensorType::new(dtype, shape),
                axis,
            }),
            &[],
        )
    }

    /// A `stablehlo.while` loop traced from Rust closures; returns the final state.
    ///
    /// `cond` maps the state to a bool scalar; `body` maps the state to the next state (same
    /// types). Both run once, at trace time, on placeholder tensors. They may use tensors
    /// from the enclosing code (captures): the emitter threads those through the loop state
    /// explicitly, and loop-invariant values computed inside the body are hoisted out.
    /// Loops nest. JVP through a loop is not supported (it is an error).
    ///
    /// ```
    /// use nlsq::graph::Graph;
    /// use nlsq::DType;
    ///
    /// let g = Graph::new();
    /// let a = g.parameter("a", DType::F64, []);
    /// // Newton's iteration for sqrt(a), 6 steps.
    /// let out = g.while_loop(
    ///     &[g.constant(1.0), g.scalar(DType::I64, 0.0)],
    ///     |s| s[1].lt(6.0),
    ///     |s| vec![(&s[0] + &a / &s[0]) * 0.5, &s[1] + 1.0],
    /// );
    /// let program = g.finish([&out[0]]).unwrap();
    /// assert!(program.text.contains("stablehlo.while"));
    /// ```
    pub fn while_loop<C, B>(&self, init: &[Tensor], cond: C, body: B) -> Vec<Tensor>
    where
        C: FnOnce(&[Tensor]) -> Tensor,
        B: FnOnce(&[Tensor]) -> Vec<Tensor>,
    {
        let types: Vec<TensorType> = init.iter().map(|t| t.ty()).collect();
        match self.try_while_loop(init, cond, body) {
            Ok(v) => v,
            Err(e) => {
                self.record(e);
                types.into_iter().map(|ty| self.poison(ty)).collect()
            }
        }
    }

    /// [`Graph::while_loop`] returning the first trace error of the loop instead of
    /// recording it.
    pub fn try_while_loop<C, B>(&self, init: &[Tensor], cond: C, body: B) -> Result<Vec<Tensor>>
    where
        C: FnOnce(&[Tensor]) -> Tensor,
        B: FnOnce(&[Tensor]) -> Vec<Tensor>,
    {
        const OP: &str = "while_loop";
        let refs: Vec<&Tensor> = init.iter().collect();
        let init_ids = self.check_graphs(OP, &refs)?;
        self.inner.borrow().visible(OP, &init_ids)?;
        let types: Vec<TensorType> = init.iter().map(|t| t.ty()).collect();

        let (cond_region, body_region) = self.try_with(|| -> Result<(usize, usize)> {
            let (scope, params) = self.inner.borrow_mut().open_scope(ScopeKind::Region, &types);
            let state: Vec<Tensor> = params.iter().map(|&p| self.wrap(p)).collect();
            let pred = cond(&state);
            let checked = self.check_graphs(OP, &[&pred]).and_then(|ids| {
                self.inner.borrow().check_results(OP, &ids)?;
                let ty = pred.ty();
                if ty != TensorType::scalar(DType::Bool) {
                    return Err(Error::InvalidOp {
                        op: OP,
                        reason: format!("condition must be a bool scalar, got {ty}"),
                    });
                }
                Ok(ids)
            });
            self.inner.borrow_mut().close_scope(scope);
            let cond_region = self.add_region(scope, checked?);

            let (scope, params) = self.inner.borrow_mut().open_scope(ScopeKind::Region, &types);
            let state: Vec<Tensor> = params.iter().map(|&p| self.wrap(p)).collect();
            let next = body(&state);
            let refs: Vec<&Tensor> = next.iter().collect();
            let checked = self.check_graphs(OP, &refs).and_then(|ids| {
                self.inner.borrow().check_results(OP, &ids)?;
                check_state(&types, &next)?;
                Ok(ids)
            });
            self.inner.borrow_mut().close_scope(scope);
            let body_region = self.add_region(scope, checked?);
            Ok((cond_region, body_region))
        })??;

        let w = self.inner.borrow_mut().add(
            Op::While {
                cond: cond_region,
                body: body_region,
            },
            init_ids,
        )?;
        let mut g = self.inner.borrow_mut();
        let outs = (0..types.len())
            .map(|index| g.add(Op::Get { index }, vec![w]))
            .collect::<Result<Vec<_>>>()?;
        drop(g);
        Ok(outs.into_iter().map(|id| self.wrap(id)).collect())
    }

    fn add_region(&self, scope: ScopeId, results: Vec<NodeId>) -> usize {
        let mut g = self.inner.borrow_mut();
        g.regions.push(Region { scope, results });
        g.regions.len() - 1
    }

    /// [`Graph::function`] for a body that can fail: the body's error is the result.
    pub(crate) fn checked_function(
        &self,
        name: &str,
        inputs: &[(&str, TensorType)],
        body: impl FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
    ) -> Result<Function> {
        let mut err = None;
        let f = self.function(name, inputs, |a| {
            body(a).unwrap_or_else(|e| {
                err = Some(e);
                Vec::new()
            })
        });
        err.map_or(f, Err)
    }

    /// Traces `body` once into a private function `@name` with the given named inputs.
    ///
    /// The body may not capture non-constant outer tensors (it is emitted as an isolated
    /// `func.func private`); errors inside the body are returned here.
    pub fn function<F>(&self, name: &str, inputs: &[(&str, TensorType)], body: F) -> Result<Function>
    where
        F: FnOnce(&[Tensor]) -> Vec<Tensor>,
    {
        const OP: &str = "function";
        let types: Vec<TensorType> = inputs.iter().map(|(_, t)| t.clone()).collect();
        let (scope, results) = self.try_with(|| -> Result<(ScopeId, Vec<NodeId>)> {
            let (scope, params) = self.inner.borrow_mut().open_scope(ScopeKind::Function, &types);
            let args: Vec<Tensor> = params.iter().map(|&p| self.wrap(p)).collect();
            let outs = body(&args);
            let refs: Vec<&Tensor> = outs.iter().collect();
            let checked = self.check_graphs(OP, &refs).and_then(|ids| {
                self.inner.borrow().check_results(OP, &ids)?;
                Ok(ids)
            });
            self.inner.borrow_mut().close_scope(scope);
            Ok((scope, checked?))
        })??;
        let mut g = self.inner.borrow_mut();
        let result_types = results.iter().map(|&r| g.nodes[r].ty.clone()).collect();
        g.funcs.push(FuncDef {
            name: name.to_string(),
            scope,
            param_names: inputs.iter().map(|(n, _)| n.to_string()).collect(),
            results,
            result_types,
        });
        let id = g.funcs.len() - 1;
        drop(g);
        Ok(Function {
            graph: self.clone(),
            id,
        })
    }

    /// The graph, ready to be emitted with `outputs` as the results of `@main` (see
    /// [`Graph::finish`], in `emit`): the first error recorded while tracing, or an error when
    /// `outputs` are not this graph's or a loop body or function trace is still open.
    pub(crate) fn ready_to_emit(&self, outputs: &[&Tensor]) -> Result<(std::cell::RefMut<'_, Inner>, Vec<NodeId>)> {
        let ids = self.check_graphs("finish", outputs)?;
        let mut g = self.inner.borrow_mut();
        if let Some(e) = g.error.take() {
            g.failed = Some(e.to_string());
            return Err(e);
        }
        if let Some(msg) = &g.failed {
            return Err(Error::InvalidOp {
                op: "finish",
                reason: format!("the graph recorded an earlier error: {msg}"),
            });
        }
        if g.stack.len() != 1 {
            return Err(Error::InvalidOp {
                op: "finish",
                reason: "called inside a loop body or function trace".into(),
            });
        }
        g.check_results("finish", &ids)?;
        Ok((g, ids))
    }

    /// Number of nodes traced so far (including dead and merged-away candidates' originals).
    pub fn num_nodes(&self) -> usize {
        self.inner.borrow().nodes.len()
    }
}

fn check_state(types: &[TensorType], next: &[Tensor]) -> Result<()> {
    const OP: &str = "while_loop";
    if next.len() != types.len() {
        return Err(Error::InvalidOp {
            op: OP,
            reason: format!("body returned {} values for a state of {}", next.len(), types.len()),
        });
    }
    for (want, got) in types.iter().zip(next) {
        let got = got.ty();
        if got.dtype != want.dtype {
            return Err(Error::DTypeMismatch {
                op: OP,
                lhs: want.dtype,
                rhs: got.dtype,
            });
        }
        if got.shape != want.shape {
            return Err(Error::ShapeMismatch {
                op: OP,
                lhs: want.shape.clone(),
                rhs: got.shape,
            });
        }
    }
    Ok(())
}

/// A private function traced once by [`Graph::function`]; call it any number of times.
///
/// Emitted as `func.func private @name` and called with `func.call`, which keeps programs
/// readable (the model appears once, not inlined into the solver loop). Calls are
/// differentiable: the JVP of a call is a call of a traced derivative function.
#[derive(Clone)]
pub struct Function {
    pub(crate) graph: Graph,
    pub(crate) id: usize,
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Function(@{})", self.name())
    }
}

impl Function {
    /// The function's name as given (the emitted symbol may carry a suffix if two functions
    /// share a name).
    pub fn name(&self) -> String {
        self.graph.inner.borrow().funcs[self.id].name.clone()
    }

    /// Types of the function's inputs.
    pub fn input_types(&self) -> Vec<TensorType> {
        let g = self.graph.inner.borrow();
        let scope = g.funcs[self.id].scope;
        g.scopes[scope].params.iter().map(|&p| g.nodes[p].ty.clone()).collect()
    }

    /// Types of the function's results.
    pub fn result_types(&self) -> Vec<TensorType> {
        self.graph.inner.borrow().funcs[self.id].result_types.clone()
    }

    /// Calls the function; records an error (and returns placeholders) if the arguments do
    /// not match its inputs.
    pub fn call(&self, args: &[&Tensor]) -> Vec<Tensor> {
        match self.try_call(args) {
            Ok(v) => v,
            Err(e) => {
                self.graph.record(e);
                self.result_types()
                    .into_iter()
                    .map(|ty| self.graph.poison(ty))
                    .collect()
            }
        }
    }

    /// [`Function::call`] returning errors at once.
    pub fn try_call(&self, args: &[&Tensor]) -> Result<Vec<Tensor>> {
        const OP: &str = "call";
        let want = self.input_types();
        if want.len() != args.len() {
            return Err(Error::InvalidOp {
                op: OP,
                reason: format!("@{} takes {} arguments, got {}", self.name(), want.len(), args.len()),
            });
        }
        for (w, a) in want.iter().zip(args) {
            let a = a.ty();
            if a.dtype != w.dtype {
                return Err(Error::DTypeMismatch {
                    op: OP,
                    lhs: w.dtype,
                    rhs: a.dtype,
                });
            }
            if a.shape != w.shape {
                return Err(Error::ShapeMismatch {
                    op: OP,
                    lhs: w.shape.clone(),
                    rhs: a.shape,
                });
            }
        }
        let call = self.graph.try_node(Op::Call { func: self.id }, args)?;
        (0..self.result_types().len())
            .map(|index| self.graph.try_node(Op::Get { index }, &[&call]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_consing_merges_equal_nodes_and_constants() {
        let g = Graph::new();
        let x = g.parameter("x", DType::F64, [3]);
        let a = (&x * 2.0).exp();
        let b = (&x * 2.0).exp();
        assert_eq!(a.id, b.id);
        assert_eq!(g.constant(1.5).id, g.constant(1.5).id);
        assert_ne!(g.constant(1.5).id, g.scalar(DType::F32, 1.5).id);
        // Parameters are never merged.
        assert_ne!(
            g.parameter("y", DType::F64, [3]).id,
            g.parameter("y", DType::F64, [3]).id
        );
    }

    #[test]
    fn loop_invariant_code_is_hoisted_and_constants_fold() {
        let g = Graph::new();
        let x = g.parameter("x", DType::F64, [3]);
        let inner = std::cell::Cell::new(0);
        let out = g.while_loop(
            &[g.constant(0.0)],
            |s| s[0].lt(3.0),
            |s| {
                let e = x.exp(); // depends only on the outer x
                inner.set(e.id);
                vec![&s[0] + e.sum()]
            },
        );
        let node_scope = g.inner.borrow().nodes[inner.get()].scope;
        assert_eq!(node_scope, ROOT);
        let text = g.finish([&out[0]]).unwrap().text;
        let (before, after) = text.split_once("stablehlo.while").unwrap();
        assert!(
            before.contains("stablehlo.exponential") && !after.contains("stablehlo.exponential"),
            "{text}"
        );
        // Layout ops on literals fold to literals.
        let row = g.eye(DType::F64, 3).row(1);
        assert!(matches!(g.inner.borrow().nodes[row.id].op, Op::Constant(_)));
        let splat = g.constant(2.0).broadcast_to([4, 5]);
        assert!(matches!(g.inner.borrow().nodes[splat.id].op, Op::Constant(ref l) if l.is_splat()));
    }
}
