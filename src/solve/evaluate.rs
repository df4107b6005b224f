//! Evaluation of a problem at a point: residuals, Jacobian and the triangle of `[J | f]`, whole
//! or walked in chunks (large `m`), and the loop state a solve with factored trial points
//! carries.

use super::lanes::{loop_state, Lanes, LoopState};
use super::{common, loss, Loss, Problem};
use crate::graph::Tensor;
use crate::linalg::gram::{factor_residuals, gram_triangle};

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
    use common::is_finite;
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
        let finite = lanes.all_finite(&f).and(&lanes.all_finite(&r)).and(&is_finite(&cost));
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
    let finite = is_finite(&cost).and(&lanes.all_finite(&r)).and(&lanes.all_finite(&qtf));
    Evaluation {
        f: g.zeros(crate::DType::F64, [1]),
        jac: g.zeros(crate::DType::F64, [1, n]),
        r,
        qtf,
        cost,
        finite,
    }
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
/// a reduction over a long axis into a reduce-window pass and a scalar reduction per product
/// (figures: `docs/performance.md`, "Factorizations").
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Graph;
    use crate::linalg::gram::augmented_qr;
    use crate::test_util::{columns, max_rel, triangle_invariants};
    use crate::types::DType;

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
        let (r, qtf) = augmented_qr(js, fs);
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
}
