//! Host-side numerics for the starting-value estimates: a scalar evaluator of expressions (to
//! subtract a component's guessed curve from the data), a small dense least-squares solve,
//! smoothing and grids.

use crate::expr::{BinOp, Expr, Func, Node};

/// The expression at one point: `x` is the value of variable 0, `p` the parameters.
pub(crate) fn eval(expr: &Expr, x: f64, p: &[f64]) -> f64 {
    value(expr.root(), x, p)
}

fn value(node: &Node, x: f64, p: &[f64]) -> f64 {
    match node {
        Node::Num(v) => *v,
        Node::Var(_) => x,
        Node::Param(i) => p.get(*i).copied().unwrap_or(f64::NAN),
        Node::Neg(a) => -value(a, x, p),
        // A condition in a numeric place does not parse; 1/0 keeps the evaluator total.
        Node::Not(_) => f64::from(u8::from(condition(node, x, p))),
        Node::Bin(op, ..) if op.is_condition() => f64::from(u8::from(condition(node, x, p))),
        Node::Bin(op, a, b) => {
            let (l, r) = (value(a, x, p), value(b, x, p));
            match op {
                BinOp::Add => l + r,
                BinOp::Sub => l - r,
                BinOp::Mul => l * r,
                BinOp::Div => l / r,
                _ => l.powf(r),
            }
        }
        Node::Call(func, args) => call(*func, args, x, p),
    }
}

fn condition(node: &Node, x: f64, p: &[f64]) -> bool {
    match node {
        Node::Not(a) => !condition(a, x, p),
        Node::Bin(BinOp::And, a, b) => condition(a, x, p) && condition(b, x, p),
        Node::Bin(BinOp::Or, a, b) => condition(a, x, p) || condition(b, x, p),
        Node::Bin(op, a, b) => {
            let (l, r) = (value(a, x, p), value(b, x, p));
            match op {
                BinOp::Lt => l < r,
                BinOp::Le => l <= r,
                BinOp::Gt => l > r,
                BinOp::Ge => l >= r,
                BinOp::Eq => l == r,
                BinOp::Ne => l != r,
                _ => value(node, x, p) != 0.0,
            }
        }
        other => value(other, x, p) != 0.0,
    }
}

fn call(func: Func, args: &[Node], x: f64, p: &[f64]) -> f64 {
    let arg = |i: usize| args.get(i).map_or(f64::NAN, |a| value(a, x, p));
    let a = arg(0);
    match func {
        Func::Exp => a.exp(),
        Func::Ln => a.ln(),
        Func::Log10 => a.ln() / std::f64::consts::LN_10,
        Func::Log2 => a.ln() / std::f64::consts::LN_2,
        Func::Exp2 => 2f64.powf(a),
        Func::Sqrt => a.sqrt(),
        Func::Sin => a.sin(),
        Func::Cos => a.cos(),
        Func::Tan => a.tan(),
        Func::Asin => a.asin(),
        Func::Acos => a.acos(),
        Func::Atan => a.atan(),
        Func::Sinh => a.sinh(),
        Func::Cosh => a.cosh(),
        Func::Tanh => a.tanh(),
        Func::Abs => a.abs(),
        Func::Erf => erf(a),
        Func::Erfc => 1.0 - erf(a),
        Func::Logistic => 1.0 / (1.0 + (-a).exp()),
        Func::Heaviside => {
            let h0 = if args.len() > 1 { arg(1) } else { 0.5 };
            if a.is_nan() {
                a
            } else if a > 0.0 {
                1.0
            } else if a < 0.0 {
                0.0
            } else {
                h0
            }
        }
        Func::Min | Func::Max => {
            let b = arg(1);
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else if func == Func::Min {
                a.min(b)
            } else {
                a.max(b)
            }
        }
        Func::Pow => a.powf(arg(1)),
        Func::Atan2 => a.atan2(arg(1)),
        Func::Where => {
            if args.first().is_some_and(|c| condition(c, x, p)) {
                arg(1)
            } else {
                arg(2)
            }
        }
    }
}

/// `erf` to about 1.5e-7 (Abramowitz and Stegun 7.1.26): enough for a starting value; no
/// built-in template uses it.
fn erf(v: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * v.abs());
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let r = 1.0 - poly * (-v * v).exp();
    if v < 0.0 {
        -r
    } else {
        r
    }
}

/// Least squares `min ‖Σ_j c_j cols[j] − y‖` by the normal equations of the columns scaled to
/// unit norm, solved by Gaussian elimination with partial pivoting. Returns the coefficients and
/// the residual sum of squares, or `None` when the columns are (numerically) dependent or
/// anything is not finite.
pub(super) fn lstsq(cols: &[Vec<f64>], y: &[f64]) -> Option<(Vec<f64>, f64)> {
    let n = cols.len();
    if n == 0 {
        return None;
    }
    let norms: Vec<f64> = cols
        .iter()
        .map(|c| c.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    if norms.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return None;
    }
    // Augmented normal matrix [AᵀA | Aᵀy] of the scaled columns.
    let mut a = vec![vec![0.0; n + 1]; n];
    for i in 0..n {
        for j in i..n {
            let d: f64 = cols[i].iter().zip(&cols[j]).map(|(u, v)| u * v).sum::<f64>() / (norms[i] * norms[j]);
            a[i][j] = d;
            a[j][i] = d;
        }
        a[i][n] = cols[i].iter().zip(y).map(|(u, v)| u * v).sum::<f64>() / norms[i];
    }
    for k in 0..n {
        let piv = (k..n).max_by(|&r, &s| a[r][k].abs().total_cmp(&a[s][k].abs()))?;
        // Unit columns: a pivot this small means a rank-deficient set.
        if a[piv][k].is_nan() || a[piv][k].abs() <= 1e-12 {
            return None;
        }
        a.swap(k, piv);
        let (done, rest) = a.split_at_mut(k + 1);
        let pivot = &done[k];
        for row in rest.iter_mut() {
            let f = row[k] / pivot[k];
            for (v, p) in row.iter_mut().zip(pivot).skip(k) {
                *v -= f * p;
            }
        }
    }
    let mut coef = vec![0.0; n];
    for k in (0..n).rev() {
        let s: f64 = (k + 1..n).map(|c| a[k][c] * coef[c]).sum();
        coef[k] = (a[k][n] - s) / a[k][k];
    }
    for (c, s) in coef.iter_mut().zip(&norms) {
        *c /= s;
    }
    let sse: f64 = (0..y.len())
        .map(|i| {
            let f: f64 = cols.iter().zip(&coef).map(|(col, c)| c * col[i]).sum();
            (y[i] - f).powi(2)
        })
        .sum();
    (coef.iter().all(|c| c.is_finite()) && sse.is_finite()).then_some((coef, sse))
}

/// Centered moving average over `2 h + 1` points (fewer at the ends).
pub(super) fn smooth(y: &[f64], h: usize) -> Vec<f64> {
    let m = y.len();
    let mut prefix = vec![0.0; m + 1];
    for i in 0..m {
        prefix[i + 1] = prefix[i] + y[i];
    }
    (0..m)
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(h), (i + h + 1).min(m));
            (prefix[hi] - prefix[lo]) / (hi - lo) as f64
        })
        .collect()
}

/// `count` values from `lo` to `hi`, evenly spaced on a log scale (`lo`, `hi` > 0).
pub(super) fn log_grid(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    let (a, b) = (lo.ln(), hi.ln());
    (0..count)
        .map(|i| (a + (b - a) * i as f64 / (count.max(2) - 1) as f64).exp())
        .collect()
}

/// `count` values from `lo` to `hi`, evenly spaced.
pub(super) fn lin_grid(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    (0..count)
        .map(|i| lo + (hi - lo) * i as f64 / (count.max(2) - 1) as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lstsq_recovers_an_exact_line_and_refuses_dependent_columns() {
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|x| 3.0 - 0.5 * x).collect();
        let (c, sse) = lstsq(&[vec![1.0; 10], x.clone()], &y).unwrap();
        assert!(
            (c[0] - 3.0).abs() < 1e-12 && (c[1] + 0.5).abs() < 1e-12 && sse < 1e-20,
            "{c:?}"
        );
        assert!(lstsq(&[x.clone(), x.iter().map(|v| 2.0 * v).collect()], &y).is_none());
    }

    #[test]
    fn the_evaluator_follows_the_expression_language() {
        let e = Expr::parse("a * exp(-x / k) + where(x > 1, logistic(x), 0) + max(x, 2) ^ 2", &["x"]).unwrap();
        let p = [2.0, 0.5];
        let x = 1.5f64;
        let want = 2.0 * (-x / 0.5).exp() + 1.0 / (1.0 + (-x).exp()) + 4.0;
        assert!((eval(&e, x, &p) - want).abs() < 1e-14);
        assert!((erf(0.5) - 0.520_499_877_813_046_5).abs() < 2e-7 && (erf(-0.5) + erf(0.5)).abs() < 1e-15);
    }

    #[test]
    fn smoothing_keeps_a_constant_and_grids_hit_their_ends() {
        assert_eq!(smooth(&[2.0; 7], 2), vec![2.0; 7]);
        let g = log_grid(0.1, 10.0, 3);
        assert!((g[0] - 0.1).abs() < 1e-15 && (g[1] - 1.0).abs() < 1e-14 && (g[2] - 10.0).abs() < 1e-13);
        assert_eq!(lin_grid(0.0, 1.0, 3), vec![0.0, 0.5, 1.0]);
    }
}
