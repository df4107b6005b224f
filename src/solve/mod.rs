//! The solvers, written as graph code: the whole iteration of a fit is one `stablehlo.while`.
//!
//! The `trf` module implements the Trust Region Reflective method of Branch, Coleman & Li (1999) as
//! scipy's `least_squares(method='trf', tr_solver='exact')` does, for bounded and unbounded
//! problems and robust losses. The `lm` module implements Levenberg–Marquardt as in MINPACK's `lmder`
//! (Moré 1978), with the Levenberg–Marquardt parameter found from an SVD instead of a pivoted
//! QR (the same secular equation, solved the same way).
//!
//! Per accepted point both solvers evaluate residuals `f` and the Jacobian `J` once (forward
//! mode, all `n` tangents at once), factor `[J | f]` into the small triangle `R` and `Qᵀf`
//! (the Cholesky factor of its Gram matrix where that is accurate and cheaper, the Householder
//! QR otherwise), and do everything else on `n × n` matrices: an `m`-sized pass per Jacobian
//! and one per trial residual evaluation, nothing more. The final covariance comes from the SVD
//! of the last `R`.
//!
//! # References
//! - M. A. Branch, T. F. Coleman, Y. Li, SIAM J. Sci. Comput. 21 (1999) 1–23.
//! - J. J. Moré, "The Levenberg–Marquardt algorithm: implementation and theory", Numerical
//!   Analysis, Lecture Notes in Mathematics 630, 1978, 105–116.
//! - scipy.optimize.least_squares and curve_fit documentation.

pub(crate) mod common;
pub(crate) mod covariance;
pub(crate) mod lanes;
pub(crate) mod lm;
pub mod loss;
pub mod options;
pub mod termination;
pub(crate) mod trf;

pub(crate) use lanes::Lanes;
pub use options::{Loss, Method, SolverOptions, XScale};
pub use termination::Status;

use crate::graph::Tensor;
use lanes::{loop_state, LoopState};

/// Chunked evaluation of the Jacobian for large `m`: the data are walked in `count` chunks of
/// `size` rows inside the graph, so `J` is never materialised. One pass accumulates the Gram
/// matrix of `[J | f]`, whose Cholesky factor is the QR triangle when the columns are well
/// separated ([`GRAM_MIN_PIVOT`]); otherwise a second pass folds the chunks into the triangle
/// by Householder TSQR (the QR of the running `R` stacked on the chunk's rows).
pub(crate) struct Chunks<'a> {
    /// Rows per chunk.
    pub size: i64,
    /// Number of chunks (`size * count = m`).
    pub count: i64,
    /// `(p, first_row) -> (f_chunk [size], Jᵀ_chunk [n, size])`, weighted and masked like
    /// `fun_jac` (the Jacobian transposed: one row per parameter).
    pub fun_jac: &'a dyn Fn(&Tensor, &Tensor) -> (Tensor, Tensor),
    /// Factor `[J | f]` at every trial point and carry the accepted factorization into the next
    /// iteration (one data pass per trial), instead of a residual pass per trial and a Jacobian
    /// pass per iteration. The solvers then evaluate x0 in an evaluate-only first pass through
    /// the same code, so the program still holds one copy of the chunked evaluation. Faster by
    /// 10-16% at 10⁵-10⁶ points; no measurable gain at 4,000-20,000 points.
    pub factor_trials: bool,
}

/// The residual function of a problem, as graph code of the parameter vector `p [n]`, or of a
/// batch of problems solved in lockstep (`p [B, n]`; see [`lanes`]).
pub(crate) struct Problem<'a> {
    /// `p -> f [m]`: weighted residuals, zero on padding rows (a batch: `f [B, m]`).
    pub fun: &'a dyn Fn(&Tensor) -> Tensor,
    /// `p -> (f [m], J [m, n])` (a batch: `(f [B, m], Jᵀ [B, n, m])`, the Jacobian transposed,
    /// as forward mode makes it).
    pub fun_jac: &'a dyn Fn(&Tensor) -> (Tensor, Tensor),
    /// Static number of residual rows (at least `n + 1`; extra rows are zero padding).
    pub m: i64,
    /// Number of parameters.
    pub n: i64,
    /// Chunked Jacobian evaluation (large `m`), or `None` to evaluate `J [m, n]` whole (always
    /// `None` for a batch).
    pub chunks: Option<Chunks<'a>>,
    /// One problem, or a batch.
    pub lanes: Lanes,
}

/// Residuals, Jacobian and factorization at one point.
pub(crate) struct Evaluation {
    /// Residuals `[m]` (before the robust loss), or a `[1]` placeholder when chunked.
    pub f: Tensor,
    /// The loss-scaled Jacobian `[m, n]`, or a `[1, n]` placeholder when chunked.
    pub jac: Tensor,
    /// Triangle `R [n, n]` of the loss-scaled Jacobian.
    pub r: Tensor,
    /// `Qᵀ f_scaled [n]`.
    pub qtf: Tensor,
    /// Cost `0.5 Σ rho(f²)`.
    pub cost: Tensor,
    /// True when residuals, cost and `R` are finite.
    pub finite: Tensor,
}

loop_state! {
    /// The parts of a chunked evaluation that the solvers carry in their loop state from the
    /// trial point that computed it to the iteration that uses it.
    pub(crate) struct Carried {
        r: Tensor,
        qtf: Tensor,
        cost: Tensor,
        finite: Tensor,
    }
}

/// The [`Carried`] parts of an evaluation.
pub(crate) fn carried(e: &Evaluation) -> Carried {
    Carried {
        r: e.r.clone(),
        qtf: e.qtf.clone(),
        cost: e.cost.clone(),
        finite: e.finite.clone(),
    }
}

loop_state! {
    /// The outer-loop state that a solve of a problem with [`Chunks::factor_trials`] adds: the
    /// factorization at x and whether it holds x's yet.
    pub(crate) struct Factored {
        at_x: Carried,
        ready: Tensor,
    }
}

/// Whether a solve factors its trial points ([`Chunks::factor_trials`]), and the loop-state
/// handling that goes with it. The first pass of the outer loop then only evaluates x0, through
/// the trial code (so the program holds one copy of the chunked evaluation), and changes
/// nothing else. Inert for other problems.
pub(crate) struct TrialFactors {
    /// Trials are factored.
    pub on: bool,
}

impl TrialFactors {
    pub(crate) fn new(pb: &Problem<'_>) -> Self {
        let on = pb.chunks.as_ref().is_some_and(|c| c.factor_trials);
        TrialFactors { on }
    }

    /// The initial [`Factored`] state (placeholders, nothing evaluated yet), when on.
    pub(crate) fn init(&self, lanes: &Lanes, n: i64) -> Option<Factored> {
        self.on.then(|| Factored {
            at_x: Carried {
                r: lanes.zeros(&[n, n]),
                qtf: lanes.zeros(&[n]),
                cost: lanes.scalar(0.0),
                finite: lanes.flag(true),
            },
            ready: lanes.flag(false),
        })
    }

    /// At the top of an outer pass: the evaluation at `x` (carried, or evaluated now), and
    /// whether this is the evaluate-only pass.
    pub(crate) fn current(
        &self,
        pb: &Problem<'_>,
        factored: &Option<Factored>,
        x: &Tensor,
        loss: Loss,
        f_scale: &Tensor,
    ) -> (Evaluation, Tensor) {
        let Some(c) = factored else {
            return (evaluate(pb, x, loss, f_scale), pb.lanes.flag(false));
        };
        let ev = Evaluation {
            f: pb.lanes.zeros(&[1]),
            jac: pb.lanes.zeros(&[1, pb.n]),
            r: c.at_x.r.clone(),
            qtf: c.at_x.qtf.clone(),
            cost: c.at_x.cost.clone(),
            finite: c.at_x.finite.clone(),
        };
        (ev, c.ready.not())
    }

    /// The state after an outer pass: the solve's `next` state with the factorization at the
    /// next x (`carried`) in its [`Factored`] part (`slot`); the evaluate-only pass keeps the
    /// `old` state but the factorization.
    pub(crate) fn next<S: LoopState>(
        &self,
        next: S,
        old: &S,
        carried: Option<Carried>,
        eval_only: &Tensor,
        slot: impl FnOnce(&mut S) -> &mut Option<Factored>,
    ) -> S {
        let Some(at_x) = carried.filter(|_| self.on) else {
            return next;
        };
        let mut next = next.pick_from(eval_only, old);
        *slot(&mut next) = Some(Factored {
            at_x,
            ready: eval_only.graph().scalar(crate::DType::Bool, 1.0),
        });
        next
    }
}

/// Evaluates residuals and Jacobian at `x` and factors them (whole or chunked).
pub(crate) fn evaluate(pb: &Problem<'_>, x: &Tensor, loss: Loss, f_scale: &Tensor) -> Evaluation {
    use common::{all_finite, is_finite};
    let n = pb.n;
    let lanes = &pb.lanes;
    if lanes.batch_size().is_some() {
        // A batch: the QR of each `[J | f]` (given transposed) by the batched Householder QR.
        let (f, jt) = (pb.fun_jac)(x);
        let (fs, jts, cost) = loss::scale_for_loss_t(loss, &f, &jt, f_scale);
        let (r, qtf) = lanes.factor_t(&jts, &fs);
        let finite = lanes.all_finite(&f).and(&lanes.all_finite(&r)).and(&is_finite(&cost));
        return Evaluation {
            f,
            jac: lanes.zeros(&[1, n]),
            r,
            qtf,
            cost,
            finite,
        };
    }
    let Some(chunks) = &pb.chunks else {
        let (f, j) = (pb.fun_jac)(x);
        let (fs, js, cost) = loss::scale_for_loss(loss, &f, &j, f_scale);
        let (r, qtf) = factor_residuals(&js, &fs);
        let finite = all_finite(&f)
            .and(&all_finite(&r.reshape([n * n])))
            .and(&is_finite(&cost));
        return Evaluation {
            f,
            jac: js,
            r,
            qtf,
            cost,
            finite,
        };
    };
    let g = x.graph().clone();
    let k = n + 1;
    // Fast path: one pass that accumulates the Gram matrix of [J | f], then its Cholesky factor,
    // which is the triangle of the QR (diag >= 0) when the columns are far enough from
    // dependent; otherwise a second pass folds the chunks into the triangle by Householder
    // TSQR (exact for any conditioning).
    let gram = gram_pass(&g, chunks, x, loss, f_scale, k);
    let (r_fast, qtf_fast, fast) = gram_triangle(&gram.matrix, n);
    let (r_exact, qtf_exact, cost_exact) = tsqr_pass(&g, chunks, x, loss, f_scale, k, &fast);
    let r = fast.select(&r_fast, &r_exact);
    let qtf = fast.select(&qtf_fast, &qtf_exact);
    let cost = fast.select(&gram.cost, &cost_exact);
    let finite = is_finite(&cost)
        .and(&all_finite(&r.reshape([n * n])))
        .and(&all_finite(&qtf));
    Evaluation {
        f: g.zeros(crate::DType::F64, [1]),
        jac: g.zeros(crate::DType::F64, [1, n]),
        r,
        qtf,
        cost,
        finite,
    }
}

/// The Cholesky triangle `(R, Qᵀf)` of the Gram matrix `[J | f]ᵀ[J | f]` (`(n+1) × (n+1)`), and
/// whether it may stand for the QR's triangle ([`GRAM_MIN_PIVOT`], all finite).
fn gram_triangle(gram: &Tensor, n: i64) -> (Tensor, Tensor, Tensor) {
    use common::all_finite;
    let l = crate::linalg::cholesky(gram);
    let r_fast = l.slice(&[0, 0], &[n, n]).t();
    let qtf_fast = l.slice(&[n, 0], &[n + 1, n]).reshape([n]);
    let col_sq = diagonal(gram).slice(&[0], &[n]);
    let pivot_sq = diagonal(&r_fast).square();
    let kept = pivot_sq.ge(&(&col_sq * GRAM_MIN_PIVOT)).and(&col_sq.gt(0.0));
    let fast = kept
        .select(0.0, 1.0)
        .reduce_max(&[0])
        .eq(0.0)
        .and(&all_finite(&r_fast.reshape([n * n])))
        .and(&all_finite(&qtf_fast));
    (r_fast, qtf_fast, fast)
}

/// The chunked evaluation takes the Cholesky factor of the Gram matrix of `[J | f]` as its
/// triangle only when every pivot keeps at least this fraction of its column's squared norm
/// (`R_jj² >= 1e-4 ‖J_j‖²`: each column at least 1% of its length away from the span of the
/// columns before it). Cholesky's relative error in `R_jj²` is about `ε / (R_jj² / ‖J_j‖²)`,
/// so the accepted triangles are accurate to about 1e-11 relative.
pub(crate) const GRAM_MIN_PIVOT: f64 = 1e-4;

/// Diagonal of a square matrix, as a vector.
fn diagonal(a: &Tensor) -> Tensor {
    let n = a.dims()[0];
    let g = a.graph();
    let eye = g
        .iota(crate::DType::I64, [n, n], 0)
        .eq(g.iota(crate::DType::I64, [n, n], 1));
    eye.select(a, 0.0).reduce_sum(&[1])
}

/// Sum over the data of one chunked pass: the Gram matrix `[J | f]ᵀ[J | f]` (loss-scaled) and
/// the cost.
struct Gram {
    matrix: Tensor,
    cost: Tensor,
}

/// One pass over the chunks accumulating `[J | f]ᵀ[J | f]` and the cost.
///
/// Each chunk's `k × k` products are summed over 8 row blocks only, into `rows / 8` lanes that
/// are added up once after the loop: XLA:CPU vectorises that short reduction, while it splits
/// a reduction over a long axis into a reduce-window pass and a scalar reduction per product.
/// One 2^20-point pass of the 3-parameter exponential, 1,024-row chunks (`cargo test --release
/// --lib gram_timing -- --ignored --nocapture`): residuals alone 1.7 ms, this pass 4.0 ms, the
/// Householder TSQR pass 9.4 ms (with 8 lanes and one reduction per product, this pass took
/// 6.2-7.8 ms).
fn gram_pass(g: &crate::graph::Graph, chunks: &Chunks<'_>, x: &Tensor, loss: Loss, f_scale: &Tensor, k: i64) -> Gram {
    let size = chunks.size;
    let blocks = if size % 8 == 0 { 8 } else { 1 };
    let lanes = size / blocks;
    let out = g.while_loop(
        &[
            g.scalar(crate::DType::I64, 0.0),
            g.zeros(crate::DType::F64, [k, k, lanes]),
            g.constant(0.0),
        ],
        |st| st[0].lt(chunks.count as f64),
        |st| {
            let start = &st[0] * size as f64;
            let (fc, jtc) = (chunks.fun_jac)(x, &start);
            let (fs, jts, cost) = loss::scale_for_loss_t(loss, &fc, &jtc, f_scale);
            let at = g.concat(&[jts, fs.reshape([1, size])], 0).reshape([k, blocks, lanes]);
            let products = at.reshape([k, 1, blocks, lanes]) * at.reshape([1, k, blocks, lanes]);
            // Without a robust loss the cost is half the Gram matrix's last diagonal entry.
            let cost = if loss == Loss::Linear {
                st[2].clone()
            } else {
                &st[2] + cost
            };
            vec![&st[0] + 1.0, &st[1] + products.reduce_sum(&[2]), cost]
        },
    );
    let matrix = out[1].reduce_sum(&[2]);
    let cost = if loss == Loss::Linear {
        matrix.slice(&[k - 1, k - 1], &[k, k]).reshape([]) * 0.5
    } else {
        out[2].clone()
    };
    Gram { matrix, cost }
}

/// One pass over the chunks folding `[J | f]` (loss-scaled) into the triangle by Householder
/// TSQR (the QR of the running `R` stacked on each chunk's rows), when `skip` is false; no
/// chunk at all (zero trip count) when it is true. Returns `(R, Qᵀf, cost)`.
fn tsqr_pass(
    g: &crate::graph::Graph,
    chunks: &Chunks<'_>,
    x: &Tensor,
    loss: Loss,
    f_scale: &Tensor,
    k: i64,
    skip: &Tensor,
) -> (Tensor, Tensor, Tensor) {
    let n = k - 1;
    let size = chunks.size;
    let count = skip.select(
        g.scalar(crate::DType::I64, 0.0),
        g.scalar(crate::DType::I64, chunks.count as f64),
    );
    let out = g.while_loop(
        &[
            g.scalar(crate::DType::I64, 0.0),
            g.zeros(crate::DType::F64, [k, k]),
            g.constant(0.0),
        ],
        |st| st[0].lt(&count),
        |st| {
            let start = &st[0] * size as f64;
            let (fc, jtc) = (chunks.fun_jac)(x, &start);
            let (fs, jts, cost) = loss::scale_for_loss_t(loss, &fc, &jtc, f_scale);
            // (householder_qr_r works on Aᵀ: XLA cancels the two transposes.)
            let block = g.concat(&[jts, fs.reshape([1, size])], 0).t();
            let a = g.concat(&[st[1].clone(), block], 0);
            vec![&st[0] + 1.0, crate::linalg::householder_qr_r(&a), &st[2] + cost]
        },
    );
    let r_aug = &out[1];
    let r = r_aug.slice(&[0, 0], &[n, n]);
    let qtf = r_aug.slice(&[0, n], &[n, n + 1]).reshape([n]);
    (r, qtf, out[2].clone())
}

impl Problem<'_> {
    /// Rows of the residual output (`m`, or 1 when chunked).
    pub(crate) fn f_rows(&self) -> i64 {
        if self.chunks.is_some() {
            1
        } else {
            self.m
        }
    }

    /// Rows of the Jacobian output (`m`, or 1 when chunked or batched: not kept).
    pub(crate) fn jac_rows(&self) -> i64 {
        if self.lanes.batch_size().is_some() {
            1
        } else {
            self.f_rows()
        }
    }
}

/// Traced inputs of a solve (program parameters, so one executable serves all values). For a
/// batch, `x0`, `lb`, `ub` are `[B, n]` and `m_valid` is `[B]`; `x_scale` and the scalars are
/// shared.
pub(crate) struct Inputs {
    /// Starting point `[n]` (strictly inside the bounds for TRF).
    pub x0: Tensor,
    /// Lower bounds `[n]` (`-inf` for none).
    pub lb: Tensor,
    /// Upper bounds `[n]` (`inf` for none).
    pub ub: Tensor,
    /// Fixed variable scales `[n]` (ignored with Jacobian scaling).
    pub x_scale: Tensor,
    /// Scalar tolerances.
    pub ftol: Tensor,
    /// See `ftol`.
    pub xtol: Tensor,
    /// See `ftol`.
    pub gtol: Tensor,
    /// Loss scale (scalar).
    pub f_scale: Tensor,
    /// Maximum residual evaluations (i64 scalar).
    pub max_nfev: Tensor,
    /// Number of real (unpadded) residuals, f64 scalar.
    pub m_valid: Tensor,
    /// For a batch, which lanes hold a problem (bool `[B]`; the others are done from the
    /// start); `None` for one problem.
    pub active: Option<Tensor>,
}

/// Static choices that shape the program.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Config {
    /// Algorithm.
    pub method: Method,
    pub loss: Loss,
    pub jac_scale: bool,
    pub bounded: bool,
    /// Length of the cost history (entry 0 is the initial cost, entry k the cost after outer
    /// iteration k; later iterations overwrite the last entry).
    pub history: i64,
}

/// Traced outputs of a solve.
pub(crate) struct Outputs {
    pub x: Tensor,
    pub cost: Tensor,
    pub fun: Tensor,
    pub jac: Tensor,
    pub grad: Tensor,
    pub optimality: Tensor,
    pub active_mask: Tensor,
    pub nfev: Tensor,
    pub njev: Tensor,
    pub nit: Tensor,
    pub status: Tensor,
    pub history: Tensor,
    pub initial_cost: Tensor,
    /// `(JᵀJ)⁺` of the final Jacobian, not yet scaled by the residual variance
    /// ([`covariance`]).
    pub cov: Tensor,
    /// Numerical rank of the final Jacobian with unit columns (i64).
    pub rank: Tensor,
    /// Per parameter, its component in that Jacobian's numerical null space `[n]`.
    pub null_weight: Tensor,
}

/// `R [n, n]` and `Qᵀf [n]` of the Householder QR of `[J | f]` (blocked TSQR when `J` is taller
/// than a cache block).
pub(crate) fn factor(jac: &Tensor, f: &Tensor) -> (Tensor, Tensor) {
    Lanes::one(jac.graph()).factor(jac, f)
}

/// Largest parameter count for which [`factor_residuals`] forms the Gram matrix: one reduction
/// over the rows per pair of columns of `[J | f]`, `(n + 1)(n + 2) / 2` of them. At 104 rows the
/// sums and the Cholesky factor took 0.34 µs against the QR's 0.70 µs for 3 parameters, 1.0 against
/// 1.1 µs for 5, 2.0 against 1.7 µs for 7.
pub(crate) const GRAM_MAX_PARAMS: i64 = 4;

/// Largest row count for which [`factor_residuals`] forms the Gram matrix (each of its sums
/// adds the rows one after another, so its rounding grows with the row count; the chunked
/// evaluation sums chunk by chunk instead).
pub(crate) const GRAM_MAX_ROWS: i64 = 2_048;

/// `R [n, n]` and `Qᵀf [n]` of `[J | f]` for the solvers' evaluation of an unchunked problem.
///
/// For a few parameters and rows ([`GRAM_MAX_PARAMS`], [`GRAM_MAX_ROWS`]) the triangle comes from
/// the Cholesky factor of the Gram matrix `[J | f]ᵀ[J | f]` when every column is far enough from
/// the span of the columns before it ([`GRAM_MIN_PIVOT`]), as in the chunked evaluation; otherwise,
/// and for larger problems, from the Householder QR ([`factor`]), which then runs in a loop of one
/// step (zero steps when the Gram triangle is kept). On XLA:CPU, for a 104 × 4 `[J | f]`, this takes
/// about 0.32 µs, the Householder QR 0.71 µs
/// (`cargo test --release --lib factor_timing -- --ignored --nocapture`).
pub(crate) fn factor_residuals(jac: &Tensor, f: &Tensor) -> (Tensor, Tensor) {
    let (m, n) = (jac.dims()[0], jac.dims()[1]);
    if n > GRAM_MAX_PARAMS || m > GRAM_MAX_ROWS {
        return factor(jac, f);
    }
    let g = jac.graph().clone();
    // `[J | f]ᵀ` (k × m), computed once: see `column_gram`.
    let at = g.concat(&[jac.t(), f.reshape([1, m])], 0).barrier();
    let (r_fast, qtf_fast, fast) = gram_triangle(&column_gram(&at), n);
    let steps = fast.select(g.scalar(crate::DType::I64, 0.0), g.scalar(crate::DType::I64, 1.0));
    // `[J | f]ᵀ` travels through the loop state (no copy: nothing reads it after the loop), and
    // comes out of a step changed as far as XLA can tell (zeroed on a step number that never
    // comes): a factorization of loop-invariant values would be hoisted out of the loop, and
    // always run.
    let out = g.while_loop(
        &[g.scalar(crate::DType::I64, 0.0), r_fast, qtf_fast, at],
        |st| st[0].lt(&steps),
        |st| {
            let aug = st[3].t();
            let r_aug = crate::linalg::householder_qr_r_blocked(&aug, crate::linalg::cache_block_rows(n as usize + 1));
            let r = r_aug.slice(&[0, 0], &[n, n]);
            let qtf = r_aug.slice(&[0, n], &[n, n + 1]).reshape([n]);
            let never = st[0].lt(0.0);
            vec![&st[0] + 1.0, r, qtf, never.select(0.0, &st[3])]
        },
    );
    (out[1].clone(), out[2].clone())
}

/// The Gram matrix `[J | f]ᵀ[J | f]` (`(n + 1) × (n + 1)`): the products of the row pairs
/// `i <= j` of `[J | f]ᵀ` (gathered into one `(k(k+1)/2) × m` array) summed along the rows, then
/// spread into the symmetric matrix. XLA:CPU runs these sums as tight loops; a `dot` of the
/// transposed matrix with itself, or a broadcast product reduced over the rows, took 2-3 times as
/// long at 104 × 4, and one separate sum per pair ran as fast but made the program larger.
/// `[J | f]ᵀ` passes an optimization barrier first: XLA would otherwise fuse the model's
/// evaluation into the products and compute it once per pair (a whole batch of 100-point fits ran
/// 10% slower than with the Householder QR that way).
fn column_gram(at: &Tensor) -> Tensor {
    let k = at.dims()[0];
    let g = at.graph().clone();
    // The pairs i <= j in row-major order; pair (i, j) is number i·k − i(i−1)/2 + (j − i).
    let pairs: Vec<(i64, i64)> = (0..k).flat_map(|i| (i..k).map(move |j| (i, j))).collect();
    let number = |i: i64, j: i64| {
        let (i, j) = (i.min(j), i.max(j));
        (i * k - i * (i - 1) / 2 + (j - i)) as f64
    };
    let index = |v: Vec<f64>| {
        let len = v.len() as i64;
        g.constant_array_of(crate::DType::I64, &v, [len])
    };
    let left = index(pairs.iter().map(|p| p.0 as f64).collect());
    let right = index(pairs.iter().map(|p| p.1 as f64).collect());
    let sums = (at.take(0, &left) * at.take(0, &right)).reduce_sum(&[1]);
    // Unpacked by a product with a one-hot matrix (exact) rather than a gather, which XLA
    // would turn into selects copied into every consumer of the matrix.
    let npairs = pairs.len();
    let mut spread = vec![0.0; (k * k) as usize * npairs];
    for e in 0..k * k {
        spread[e as usize * npairs + number(e / k, e % k) as usize] = 1.0;
    }
    let spread = g.constant_array_of(crate::DType::F64, &spread, [k * k, npairs as i64]);
    spread.dot(&sums).reshape([k, k])
}

/// Builds the solve for `config.method`.
pub(crate) fn solve(problem: &Problem<'_>, inputs: &Inputs, config: &Config) -> Outputs {
    match config.method {
        Method::Trf => trf::solve(problem, inputs, config),
        Method::Lm => lm::solve(problem, inputs, config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;
    use crate::types::DType;

    /// Test data on `m` points `x` in `[0, 4)`: `Jᵀ` (`n × m`, row `j` from `col(j, x)`) and
    /// `f = sin 3x + 0.3`.
    fn columns(m: i64, n: i64, col: impl Fn(usize, f64) -> f64) -> (Vec<f64>, Vec<f64>) {
        let xs: Vec<f64> = (0..m).map(|i| 4.0 * i as f64 / m as f64).collect();
        let jt = (0..n as usize)
            .flat_map(|j| xs.iter().map(move |&x| (j, x)))
            .map(|(j, x)| col(j, x))
            .collect();
        let f = xs.iter().map(|x| (3.0 * x).sin() + 0.3).collect();
        (jt, f)
    }

    /// `(RᵀR, Rᵀ Qᵀf)`: unique also where `R` and `Qᵀf` are not (rank-deficient `J`).
    fn triangle_invariants(r: Tensor, qtf: Tensor) -> (Tensor, Tensor) {
        (r.t().dot(&r), r.t().dot(&qtf))
    }

    /// Largest difference of `p` from `q`, relative to `q`'s largest entry; `p` must be finite.
    fn max_rel(p: &[f64], q: &[f64]) -> f64 {
        assert!(p.iter().all(|v| v.is_finite()), "{p:?}");
        let scale = q.iter().fold(0.0f64, |s, v| s.max(v.abs()));
        p.iter().zip(q).fold(0.0f64, |e, (u, v)| e.max((u - v).abs())) / scale
    }

    /// The chunked triangle (Gram + Cholesky where well conditioned, Householder TSQR where
    /// not) against the Householder QR of the whole `[J | f]`, for columns from `col(j, x)`.
    fn chunked_vs_whole(col: impl Fn(usize, f64) -> f64, loss: Loss) -> (f64, f64) {
        chunked_vs_whole_as(col, loss, false)
    }

    /// As `chunked_vs_whole`; with `invariants`, compares `RᵀR` and `Rᵀ Qᵀf` instead of `R`
    /// and `Qᵀf` (unique also for a rank-deficient `J`).
    fn chunked_vs_whole_as(col: impl Fn(usize, f64) -> f64, loss: Loss, invariants: bool) -> (f64, f64) {
        let (m, n, size) = (4096i64, 3i64, 512i64);
        let (jt, f) = columns(m, n, col);
        let g = Graph::new();
        let jt_in = g.parameter("jt", DType::F64, [n, m]);
        let f_in = g.parameter("f", DType::F64, [m]);
        let chunk = |_: &Tensor, start: &Tensor| {
            let zero = g.scalar(DType::I64, 0.0);
            (
                f_in.dynamic_slice(std::slice::from_ref(start), &[size]),
                jt_in.dynamic_slice(&[zero, start.clone()], &[n, size]),
            )
        };
        let whole = |_: &Tensor| (f_in.clone(), jt_in.t());
        let fun = |_: &Tensor| f_in.clone();
        let chunked = Problem {
            fun: &fun,
            fun_jac: &whole,
            m,
            n,
            chunks: Some(Chunks {
                size,
                count: m / size,
                fun_jac: &chunk,
                factor_trials: false,
            }),
            lanes: Lanes::one(&g),
        };
        let plain = Problem {
            chunks: None,
            lanes: Lanes::one(&g),
            ..chunked
        };
        let x = g.zeros(DType::F64, [n]);
        let f_scale = g.constant(0.5);
        let a = evaluate(&chunked, &x, loss, &f_scale);
        // The whole problem's triangle from the Householder QR itself, whatever route the
        // unchunked evaluation takes.
        let b = evaluate(&plain, &x, loss, &f_scale);
        let (js, fs) = (&b.jac, &loss::scale_for_loss(loss, &b.f, &b.jac, &f_scale).0);
        let (r, qtf) = factor(js, fs);
        let b = Evaluation { r, qtf, ..b };
        let (a, b) = if invariants {
            let inv = |e: Evaluation| {
                let (r, qtf) = triangle_invariants(e.r.clone(), e.qtf.clone());
                Evaluation { r, qtf, ..e }
            };
            (inv(a), inv(b))
        } else {
            (a, b)
        };
        let out = crate::test_util::prepare(
            &g,
            &[a.r, a.qtf, a.cost, b.r, b.qtf, b.cost],
            &[(jt.as_slice(), vec![n, m]), (f.as_slice(), vec![m])],
        )
        .run();
        assert!(max_rel(&out[2], &out[5]) < 1e-12, "cost {:?} vs {:?}", out[2], out[5]);
        (max_rel(&out[0], &out[3]), max_rel(&out[1], &out[4]))
    }

    #[test]
    fn chunked_triangle_matches_householder_when_well_conditioned() {
        for loss in [Loss::Linear, Loss::SoftL1] {
            let (r, qtf) = chunked_vs_whole(
                |j, x| match j {
                    0 => (-1.3 * x).exp(),
                    1 => -2.5 * x * (-1.3 * x).exp(),
                    _ => 1.0,
                },
                loss,
            );
            assert!(r < 1e-12 && qtf < 1e-12, "{loss:?}: R {r:e}, Qᵀf {qtf:e}");
        }
    }

    #[test]
    fn chunked_triangle_falls_back_to_householder_when_ill_conditioned() {
        // Two columns 1e-7 apart: cond ≈ 1e8, so a Cholesky factor of the Gram matrix would be
        // wrong in its second row by about cond² ε ≫ 1 (relative); the guard must switch to TSQR,
        // which agrees with the whole Householder QR to about cond ε.
        let (r, qtf) = chunked_vs_whole(
            |j, x| match j {
                0 => x,
                1 => x + 1e-7 * (5.0 * x).sin(),
                _ => 1.0,
            },
            Loss::Linear,
        );
        assert!(r < 1e-6 && qtf < 1e-6, "R {r:e}, Qᵀf {qtf:e}");
    }

    #[test]
    fn a_zero_column_falls_back_to_householder() {
        // Rank deficient: R is not unique past the zero column, but RᵀR = AᵀA and Rᵀ Qᵀf = Aᵀf
        // are, and nothing may be NaN (a Cholesky factor would divide by the zero pivot).
        let (r, qtf) = chunked_vs_whole_as(|j, x| if j == 1 { 0.0 } else { x.powi(j as i32) }, Loss::Linear, true);
        assert!(r < 1e-12 && qtf < 1e-12, "RᵀR {r:e}, Rᵀ Qᵀf {qtf:e}");
    }

    /// `factor_residuals` of `[J | f]` (columns `col(j, x)`, `f = sin 3x + 0.3`, 1,000 rows) against
    /// the Householder QR: `(R, Qᵀf)` relative differences, or of `(RᵀR, Rᵀ Qᵀf)` with
    /// `invariants`.
    fn gram_vs_householder(col: impl Fn(usize, f64) -> f64, n: i64, invariants: bool) -> (f64, f64) {
        let m = 1000i64;
        let (jt, f) = columns(m, n, col);
        let g = Graph::new();
        let jt_in = g.parameter("jt", DType::F64, [n, m]);
        let f_in = g.parameter("f", DType::F64, [m]);
        let (ra, qa) = factor_residuals(&jt_in.t(), &f_in);
        let (rb, qb) = factor(&jt_in.t(), &f_in);
        let ((ra, qa), (rb, qb)) = if invariants {
            (triangle_invariants(ra, qa), triangle_invariants(rb, qb))
        } else {
            ((ra, qa), (rb, qb))
        };
        let inputs = [(jt.as_slice(), vec![n, m]), (f.as_slice(), vec![m])];
        let out = crate::test_util::prepare(&g, &[ra, qa, rb, qb], &inputs).run();
        (max_rel(&out[0], &out[2]), max_rel(&out[1], &out[3]))
    }

    #[test]
    fn unchunked_gram_triangle_matches_householder() {
        let exp_model = |j: usize, x: f64| match j {
            0 => (-1.3 * x).exp(),
            1 => -2.5 * x * (-1.3 * x).exp(),
            _ => 1.0,
        };
        let (r, qtf) = gram_vs_householder(exp_model, 3, false);
        assert!(r < 1e-13 && qtf < 1e-13, "R {r:e}, Qᵀf {qtf:e}");
        // Nearly dependent columns (cond ≈ 1e8) take the Householder QR: the same numbers.
        let close = |j: usize, x: f64| match j {
            0 => x,
            1 => x + 1e-7 * (5.0 * x).sin(),
            _ => 1.0,
        };
        assert_eq!(gram_vs_householder(close, 3, false), (0.0, 0.0));
        // A zero column (rank deficient) too, with no NaN.
        assert_eq!(
            gram_vs_householder(|j, x| if j == 1 { 0.0 } else { x.powi(j as i32) }, 3, true),
            (0.0, 0.0)
        );
        // More parameters than GRAM_MAX_PARAMS: always the Householder QR.
        assert_eq!(
            gram_vs_householder(|j, x| (x * (j + 1) as f64).cos(), 6, false),
            (0.0, 0.0)
        );
    }

    /// Time per call of the unchunked factorizations of a 104 × 4 `[J | f]` (a `while` loop of
    /// 20,000 calls on inputs that change each step).
    /// `cargo test --release --lib factor_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn factor_timing() {
        let (m, n, iters) = (104i64, 3i64, 20_000i64);
        for name in ["householder", "gram"] {
            let g = Graph::new();
            let j_in = g.parameter("j", DType::F64, [m, n]);
            let f_in = g.parameter("f", DType::F64, [m]);
            let out = g.while_loop(
                &[g.scalar(DType::I64, 0.0), g.constant(0.0)],
                |st| st[0].lt(iters as f64),
                |st| {
                    let (j, f) = (&j_in + &st[1] * 1e-300, &f_in + &st[1] * 1e-300);
                    let (r, qtf) = if name == "gram" {
                        factor_residuals(&j, &f)
                    } else {
                        factor(&j, &f)
                    };
                    vec![&st[0] + 1.0, &st[1] + (r.reshape([n * n]).sum() + qtf.sum()) * 1e-300]
                },
            );
            let xs: Vec<f64> = (0..m).map(|i| 5.0 * i as f64 / m as f64).collect();
            let jac: Vec<f64> = xs
                .iter()
                .flat_map(|&x| [(-1.3 * x).exp(), -2.5 * x * (-1.3 * x).exp(), 1.0])
                .collect();
            let f: Vec<f64> = xs.iter().map(|x| (3.0 * x).sin()).collect();
            let inputs = [(jac.as_slice(), vec![m, n]), (f.as_slice(), vec![m])];
            let ms = crate::test_util::prepare(&g, &[out[1].clone()], &inputs).median_ms();
            println!("{name}: {:.0} ns per call", ms * 1e6 / iters as f64);
        }
    }

    /// One 2^20-point pass of the 3-parameter exponential (chunks of 1,024 rows): residuals
    /// alone, the Gram pass, the Householder TSQR pass.
    /// `cargo test --release --lib gram_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn gram_timing() {
        let (m, c) = (1i64 << 20, 1024i64);
        let xs: Vec<f64> = (0..m).map(|i| 5.0 * i as f64 / m as f64).collect();
        let ys: Vec<f64> = xs.iter().map(|x| 2.5 * (-1.3 * x).exp() + 0.5).collect();
        let model = |x: &Tensor, p: &crate::graph::Params| &p[0] * (-&p[1] * x).exp() + &p[2];
        for mode in ["residuals", "gram", "tsqr"] {
            let g = Graph::new();
            let xt = g.parameter("x", DType::F64, [m]);
            let yt = g.parameter("y", DType::F64, [m]);
            let p = g.parameter("p", DType::F64, [3]);
            let ty = |len| crate::graph::TensorType::new(DType::F64, [len]);
            let f_fn = g.model_function("model", &model, ty(m), 3).unwrap();
            let fj = g.model_jac_t_function("model_jac", &model, ty(c), 3).unwrap();
            let chunk = |p: &Tensor, start: &Tensor| {
                let xs = xt.dynamic_slice(std::slice::from_ref(start), &[c]);
                let ys = yt.dynamic_slice(std::slice::from_ref(start), &[c]);
                let mut v = fj.call(&[&xs, p]);
                let jt = v.pop().unwrap();
                (v.pop().unwrap() - &ys, jt)
            };
            let chunks = Chunks {
                size: c,
                count: m / c,
                fun_jac: &chunk,
                factor_trials: false,
            };
            let one = g.constant(1.0);
            let out = match mode {
                "residuals" => common::norm(&(f_fn.call(&[&xt, &p]).remove(0) - &yt)).reshape([1]),
                "gram" => gram_pass(&g, &chunks, &p, Loss::Linear, &one, 4).matrix.reshape([16]),
                _ => tsqr_pass(&g, &chunks, &p, Loss::Linear, &one, 4, &g.scalar(DType::Bool, 0.0))
                    .0
                    .reshape([9]),
            };
            let inputs = [
                (xs.as_slice(), vec![m]),
                (ys.as_slice(), vec![m]),
                (&[2.0, 1.0, 0.4][..], vec![3]),
            ];
            let ms = crate::test_util::prepare(&g, &[out], &inputs).median_ms();
            println!("{mode}: {ms:.2} ms");
        }
    }
}
