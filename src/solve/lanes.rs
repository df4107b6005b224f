//! The lanes of a solve: one problem, or `B` independent problems advancing in lockstep.
//!
//! Every solver is written once, against [`Lanes`]. A lane-scalar (a radius, a counter, a
//! status) is a tensor of shape `[]` for one problem and `[B]` for a batch; a lane-vector
//! (`x`, the gradient) is `[n]` or `[B, n]`; a lane-matrix (`R`) is `[n, n]` or `[B, n, n]`.
//! Elementwise arithmetic is the same code for both; what differs lives here and in
//! `common` (reductions over the last axis, [`pick`]) and in `linalg::batched`:
//!
//! * **loops** ([`Lanes::while_loop`]): a batch loop runs while any lane needs it, and its body
//!   freezes the lanes that do not (their state is carried unchanged), which reproduces the
//!   arithmetic of solving each problem alone; one problem runs its loop as written;
//! * **selection** ([`pick`]): a lane-scalar mask chooses between lane-vectors or matrices;
//! * **factorizations** ([`Lanes::svd`], [`Lanes::factor`]): the single-matrix kernels of
//!   `linalg` for one problem, the batched ones of `linalg::batched` for a batch (the kernel
//!   choices measured on XLA:CPU: see `linalg` and `docs/performance.md`);
//! * **state**: loop state is a struct of named tensors ([`loop_state!`], [`LoopState`]), so
//!   solver code reads `s.delta`, not `st[5]`.

use crate::graph::{Graph, Operand, Tensor};
use crate::linalg::batched;
use crate::types::DType;

/// Loop state that travels through a `while` loop as a flat list of tensors.
///
/// [`loop_state!`] implements it for a struct of named fields; `Tensor` and `Option<T>` are
/// states too (an absent part contributes no tensors).
pub(crate) trait LoopState: Sized + Clone {
    /// Appends this state's tensors, in a fixed order, to `out`.
    fn push_to(&self, out: &mut Vec<Tensor>);
    /// A state of the same structure as `self` (the same parts present) from the next tensors
    /// of `from`.
    fn rebuild(&self, from: &mut dyn Iterator<Item = Tensor>) -> Self;

    /// This state's tensors, in order.
    fn tensors(&self) -> Vec<Tensor> {
        let mut out = Vec::new();
        self.push_to(&mut out);
        out
    }

    /// A state of `self`'s structure from exactly the tensors `t` (as [`LoopState::tensors`]).
    fn with_tensors(&self, t: Vec<Tensor>) -> Self {
        let mut it = t.into_iter();
        let s = self.rebuild(&mut it);
        debug_assert!(it.next().is_none(), "loop state of a different structure");
        s
    }

    /// Per lane, `on_true` where `mask` holds and `self` elsewhere.
    fn pick_from(&self, mask: &Tensor, on_true: &Self) -> Self {
        let picked = on_true
            .tensors()
            .iter()
            .zip(self.tensors())
            .map(|(t, f)| pick(mask, t, &f))
            .collect();
        self.with_tensors(picked)
    }
}

impl LoopState for Tensor {
    fn push_to(&self, out: &mut Vec<Tensor>) {
        out.push(self.clone());
    }

    fn rebuild(&self, from: &mut dyn Iterator<Item = Tensor>) -> Self {
        from.next().expect("loop state of a different structure")
    }
}

impl<T: LoopState> LoopState for Option<T> {
    fn push_to(&self, out: &mut Vec<Tensor>) {
        if let Some(t) = self {
            t.push_to(out);
        }
    }

    fn rebuild(&self, from: &mut dyn Iterator<Item = Tensor>) -> Self {
        self.as_ref().map(|t| t.rebuild(from))
    }
}

/// Declares a loop-state struct of named parts (each a [`LoopState`]: a `Tensor`, an
/// `Option<..>`, another state) and implements [`LoopState`] for it, in field order.
macro_rules! loop_state {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone)]
        $vis struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $crate::solve::lanes::LoopState for $name {
            fn push_to(&self, out: &mut Vec<$crate::graph::Tensor>) {
                $($crate::solve::lanes::LoopState::push_to(&self.$field, out);)*
            }

            fn rebuild(&self, from: &mut dyn Iterator<Item = $crate::graph::Tensor>) -> Self {
                $name {
                    $($field: $crate::solve::lanes::LoopState::rebuild(&self.$field, from),)*
                }
            }
        }
    };
}
pub(crate) use loop_state;

/// Per lane, `on_true` where the lane-scalar `mask` holds and `on_false` elsewhere (tensors of
/// the lanes' shape; `on_false` may be a number).
pub(crate) fn pick(mask: &Tensor, on_true: &Tensor, on_false: impl Operand) -> Tensor {
    if mask.rank() == 0 {
        mask.select(on_true, on_false)
    } else {
        let on_false = on_false.lift(on_true.graph(), on_true.dtype());
        batched::pick(mask, on_true, &on_false)
    }
}

/// `[..] -> [.., 1]`: a lane-scalar that broadcasts against lane-vectors `[.., n]` (a scalar
/// as it is).
pub(crate) fn per_lane(t: &Tensor) -> Tensor {
    if t.rank() == 0 {
        t.clone()
    } else {
        t.reshape([t.dims(), vec![1]].concat())
    }
}

/// The first entry of each lane-vector `[.., n] -> [..]`.
pub(crate) fn first(v: &Tensor) -> Tensor {
    entry(v, 0)
}

/// The last entry of each lane-vector.
pub(crate) fn last(v: &Tensor) -> Tensor {
    let n = v.dims()[v.rank() - 1];
    entry(v, n - 1)
}

fn entry(v: &Tensor, i: i64) -> Tensor {
    if v.rank() == 1 {
        return v.at(i);
    }
    let lead = v.dims()[..v.rank() - 1].to_vec();
    v.slice_axis(v.rank() as i64 - 1, i, i + 1).reshape(lead)
}

/// `a [.., r, k] · x [.., k] -> [.., r]` per lane.
pub(crate) fn mv(a: &Tensor, x: &Tensor) -> Tensor {
    if x.rank() == 1 {
        a.dot(x)
    } else {
        batched::mv(a, x)
    }
}

/// `a [.., k, r]ᵀ · x [.., k] -> [.., r]` per lane.
pub(crate) fn mtv(a: &Tensor, x: &Tensor) -> Tensor {
    if x.rank() == 1 {
        a.t().dot(x)
    } else {
        batched::mtv(a, x)
    }
}

/// The lanes of a solve: one problem, or a batch of `B`.
#[derive(Clone)]
pub(crate) struct Lanes {
    g: Graph,
    batch: Option<i64>,
}

impl Lanes {
    /// One problem.
    pub(crate) fn one(g: &Graph) -> Self {
        Lanes {
            g: g.clone(),
            batch: None,
        }
    }

    /// `b` problems in lockstep.
    pub(crate) fn batch(g: &Graph, b: i64) -> Self {
        Lanes {
            g: g.clone(),
            batch: Some(b),
        }
    }

    /// The lanes of a lane-scalar `t` (`[]`: one problem, `[B]`: a batch).
    pub(crate) fn of(t: &Tensor) -> Self {
        match t.rank() {
            0 => Lanes::one(t.graph()),
            _ => Lanes::batch(t.graph(), t.dims()[0]),
        }
    }

    /// The graph being traced.
    pub(crate) fn graph(&self) -> &Graph {
        &self.g
    }

    /// The batch size, or `None` for one problem.
    pub(crate) fn batch_size(&self) -> Option<i64> {
        self.batch
    }

    /// `shape` with the lanes' leading axis.
    pub(crate) fn shape(&self, shape: &[i64]) -> Vec<i64> {
        self.batch.iter().copied().chain(shape.iter().copied()).collect()
    }

    /// A tensor of `shape` per lane, filled with `v`.
    pub(crate) fn full(&self, dtype: DType, shape: &[i64], v: f64) -> Tensor {
        match self.batch {
            None if shape.is_empty() => self.g.scalar(dtype, v),
            _ => self.g.full(dtype, self.shape(shape), v),
        }
    }

    /// `f64` zeros of `shape` per lane.
    pub(crate) fn zeros(&self, shape: &[i64]) -> Tensor {
        self.full(DType::F64, shape, 0.0)
    }

    /// An `f64` lane-scalar.
    pub(crate) fn scalar(&self, v: f64) -> Tensor {
        self.full(DType::F64, &[], v)
    }

    /// An `i64` lane-scalar.
    pub(crate) fn int(&self, v: i64) -> Tensor {
        self.full(DType::I64, &[], v as f64)
    }

    /// A bool lane-scalar.
    pub(crate) fn flag(&self, v: bool) -> Tensor {
        self.full(DType::Bool, &[], if v { 1.0 } else { 0.0 })
    }

    /// A value shared by all lanes (`[n]`) as a lane-vector.
    pub(crate) fn shared(&self, t: &Tensor) -> Tensor {
        match self.batch {
            None => t.clone(),
            Some(b) => t.broadcast_to([vec![b], t.dims()].concat()),
        }
    }

    /// `h [.., len]` with entry `idx` (a lane-scalar, clamped to the last entry) set to
    /// `value` per lane.
    pub(crate) fn set_entry(&self, h: &Tensor, idx: &Tensor, value: &Tensor) -> Tensor {
        if self.batch.is_none() {
            return h.set(idx, value);
        }
        let len = h.dims()[h.rank() - 1];
        let idx = idx.min(self.g.scalar(DType::I64, (len - 1) as f64));
        let entries = self.g.iota(DType::I64, [len], 0);
        entries.eq(per_lane(&idx)).select(per_lane(value), h)
    }

    /// Per lane, true when every element of that lane's part of `t` is finite (a bool
    /// lane-scalar).
    pub(crate) fn all_finite(&self, t: &Tensor) -> Tensor {
        let lead = usize::from(self.batch.is_some());
        let axes: Vec<i64> = (lead as i64..t.rank() as i64).collect();
        super::common::is_finite(&t.square().reduce_sum(&axes))
    }

    /// SVD `(U, s, V)` of each lane's matrix: `linalg::jacobi_svd`, or its batched form.
    pub(crate) fn svd(&self, a: &Tensor) -> (Tensor, Tensor, Tensor) {
        match self.batch {
            None => crate::linalg::jacobi_svd(a),
            Some(_) => batched::svd(a),
        }
    }

    /// `(R, Qᵀc)` of the Householder QR of each lane's `[A | c]` (`A [.., m, k]`, `c [.., m]`,
    /// `k < m`, `diag(R) ≥ 0`): the blocked single-matrix QR, or the batched QR (which works on
    /// the transpose, built here directly).
    pub(crate) fn factor(&self, a: &Tensor, c: &Tensor) -> (Tensor, Tensor) {
        match self.batch {
            None => crate::linalg::gram::augmented_qr(a, c),
            Some(_) => self.factor_t(&a.transpose(&[0, 2, 1]), c),
        }
    }

    /// [`Lanes::factor`] of a batch given `Aᵀ [B, k, m]`.
    pub(crate) fn factor_t(&self, at: &Tensor, c: &Tensor) -> (Tensor, Tensor) {
        let (b, k, m) = (at.dims()[0], at.dims()[1], at.dims()[2]);
        let r_aug = batched::qr_r(&self.g.concat(&[at.clone(), c.reshape([b, 1, m])], 1));
        (
            r_aug.slice(&[0, 0, 0], &[b, k, k]),
            r_aug.slice(&[0, 0, k], &[b, k, k + 1]).reshape([b, k]),
        )
    }

    /// A `while` loop over the state `init`, per lane: runs while `running(state)` (a bool
    /// lane-scalar) holds for some lane; a lane for which it does not is frozen, its state
    /// carried unchanged through `body`.
    pub(crate) fn while_loop<S: LoopState>(
        &self,
        init: S,
        running: impl Fn(&S) -> Tensor,
        body: impl FnOnce(&S) -> S,
    ) -> S {
        let template = init.clone();
        let state = |t: &[Tensor]| template.with_tensors(t.to_vec());
        let out = match self.batch {
            None => self
                .g
                .while_loop(&init.tensors(), |t| running(&state(t)), |t| body(&state(t)).tensors()),
            Some(_) => self.g.while_loop(
                &init.tensors(),
                |t| batched::any(&running(&state(t))),
                |t| {
                    let old = state(t);
                    let active = running(&old);
                    old.pick_from(&active, &body(&old)).tensors()
                },
            ),
        };
        template.with_tensors(out)
    }
}

/// `[.., n] -> [.., 1, n]`: a lane-vector that scales the columns of lane-matrices `[.., k, n]`
/// (a vector as it is).
pub(crate) fn as_row(v: &Tensor) -> Tensor {
    if v.rank() == 1 {
        v.clone()
    } else {
        let d = v.dims();
        v.reshape([&d[..d.len() - 1], &[1, d[d.len() - 1]]].concat())
    }
}
