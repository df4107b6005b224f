//! Graph builder: models written as Rust code are traced into a graph, emitted as StableHLO
//! text and differentiated in forward mode.
//!
//! # Tracing
//! A [`Graph`] is an arena of nodes; a [`Tensor`] is a cheap handle to one node. Operators
//! (`+ - * /`, unary `-`) and methods (`exp`, `sin`, `dot`, `reduce_sum`, ...) add nodes; they
//! never fail — the first shape or dtype error is kept in the graph and returned by
//! [`Graph::finish`] (or by [`Graph::try_with`] for library code that wants a `Result` at
//! once). Binary ops broadcast numpy-style; `f64` literals take the dtype of the tensor they
//! meet. Control flow is traced from closures: [`Graph::while_loop`] (a `stablehlo.while`,
//! nestable, closures may capture outer tensors) and [`cond`] (both branches evaluated, then
//! selected). [`Graph::function`] traces a closure once into a private function that can be
//! called many times.
//!
//! # Hash-consing
//! A node is identified by `(op, operands)`: building an existing node returns it, so common
//! subexpressions are merged while tracing and constants are deduplicated. Nodes live in the
//! innermost scope (function or loop region) among their operands, which hoists
//! loop-invariant code out of loop bodies for free. Dead nodes cost nothing: emission only
//! visits what the outputs need.
//!
//! # Autodiff
//! [`jvp`] and [`jacfwd`] transform the graph: each op's JVP rule (in `jvp/rules.rs`; shape
//! rules and emission are in `ops/`) maps operand tangents to the output tangent. Tangents
//! carry a leading basis axis of size `n` — all `n` directional derivatives at once — or are
//! a symbolic zero.
//! [`jacfwd_model`] gives residuals `f: [m]` and the Jacobian `J: [m, n]` of a model
//! `Fn(&Tensor, &Params) -> Tensor`. Conventions at non-differentiable points: `abs'(0) = 0`,
//! `signum' = floor' = ceil' = round' = 0`, `max`/`min` follow the first operand at ties,
//! `reduce_max`/`reduce_min` average over tied elements, comparisons have no tangent and
//! `select` routes the tangent of the chosen branch. JVP through `while_loop` is an error.
//!
//! # Emission
//! [`Graph::finish`] writes `func.func @main` (inputs in declaration order, named as
//! declared) and every private function it calls, in StableHLO text that the pinned XLA CPU
//! plugin compiles. The text is deterministic — same graph, same bytes — because it is the
//! compile-cache key. See `emit.rs` and `emitter.rs` for the spelling rules (generic op form
//! where the pretty syntax drifts between releases).
//!
//! ```
//! use nlsq::graph::{Graph, Params, Tensor, jacfwd_model};
//! use nlsq::DType;
//!
//! let g = Graph::new();
//! let x = g.parameter("x", DType::F64, [2, 50]); // (u, v) points
//! let p = g.parameter("p", DType::F64, [4]);
//! let gauss2d = |x: &Tensor, p: &Params| {
//!     let (u, v) = (x.row(0), x.row(1));
//!     &p[0] * (-((&u - &p[1]).square() + (&v - &p[2]).square()) / &p[3]).exp()
//! };
//! let (f, jac) = jacfwd_model(&gauss2d, &x, &p).unwrap();
//! let program = g.finish([&f, &jac]).unwrap();
//! assert_eq!(program.outputs[1].dims(), &[50, 4]);
//! ```
//!
//! # References
//! - Bradbury et al., *JAX: composable transformations of Python+NumPy programs* (2018):
//!   tracing, JVP rules written as traced code, symbolic zero tangents.
//! - Griewank & Walther, *Evaluating Derivatives*, 2nd ed., SIAM 2008, ch. 3 (forward mode,
//!   vector tangents).
//! - Ershov, *On programming of arithmetic operations*, CACM 1958 (hash-consing / value
//!   numbering).
//! - OpenXLA, *StableHLO specification* (<https://openxla.org/stablehlo/spec>).

mod builder;
mod emit;
mod emitter;
mod jvp;
mod model;
mod ops;
mod tensor;
mod types;

pub use builder::{Function, Graph, Tensor};
pub use emit::Program;
pub use jvp::{jacfwd, jacfwd_t, jvp};
pub use model::{eval_model, jacfwd_model, jacfwd_model_t, Params};
pub use tensor::{IndexArg, Operand};
pub use types::{DType, Shape, TensorType};

/// `pred ? on_true : on_false`, elementwise (see [`Tensor::select`]).
pub fn select(pred: &Tensor, on_true: impl Operand, on_false: impl Operand) -> Tensor {
    pred.select(on_true, on_false)
}

/// Traces both branches and selects between their results with the bool scalar (or
/// broadcastable) `pred`. Both branches are evaluated at run time; use it for cheap
/// branches (the solver's accept/reject logic), not to skip work. The branches must return
/// the same number of tensors with matching types.
pub fn cond<T, F>(pred: &Tensor, on_true: T, on_false: F) -> Vec<Tensor>
where
    T: FnOnce() -> Vec<Tensor>,
    F: FnOnce() -> Vec<Tensor>,
{
    let a = on_true();
    let b = on_false();
    if a.len() != b.len() {
        pred.graph().record(crate::error::Error::InvalidOp {
            op: "cond",
            reason: format!("branches return {} and {} values", a.len(), b.len()),
        });
    }
    a.iter().zip(&b).map(|(x, y)| pred.select(x, y)).collect()
}

/// Free-function form of [`Graph::while_loop`] (the graph is taken from the first state
/// tensor; an empty state is an error and returns an empty vector).
pub fn while_loop<C, B>(init: Vec<Tensor>, cond: C, body: B) -> Vec<Tensor>
where
    C: FnOnce(&[Tensor]) -> Tensor,
    B: FnOnce(&[Tensor]) -> Vec<Tensor>,
{
    match init.first() {
        Some(t) => t.graph().clone().while_loop(&init, cond, body),
        None => Vec::new(),
    }
}

/// Concatenates tensors along `axis` (free-function form of [`Graph::concat`]; an empty
/// list is an error only detectable without a graph, so it returns `None`).
pub fn concat(parts: &[Tensor], axis: i64) -> Option<Tensor> {
    parts.first().map(|t| t.graph().concat(parts, axis))
}
