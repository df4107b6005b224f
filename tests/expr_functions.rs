//! The expression language's functions and operators beyond arithmetic (`min max pow log10
//! log2 exp2 atan2 logistic heaviside where`, comparisons, `&& || !`), evaluated through the
//! real runtime: values against closed forms computed in Rust, Jacobians (forward mode) against
//! hand-written derivatives and central differences of the same executable, the derivatives
//! chosen at kinks, and piecewise models fitted by `curve_fit`.
//!
//! Where numpy differs: `heaviside(x)` with one argument is ½ at 0 (numpy needs `h0`);
//! `min`/`max` propagate NaN like numpy's `minimum`/`maximum` (Rust's `f64::min` does not);
//! `atan2` keeps C's signed zeros, as both Rust and numpy do.

use nlsq::expr::Expr;
use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{jacfwd_model, Graph};
use nlsq::solve::Method;
use nlsq::{DType, Error};

/// A model parsed with variables `vars` and its parameters in alphabetical order, compiled
/// once with its forward-mode Jacobian.
struct Compiled {
    exe: nlsq::pjrt::LoadedExecutable,
    client: nlsq::pjrt::Client,
    x_dims: Vec<i64>,
    n: usize,
    m: usize,
}

impl Compiled {
    fn new(src: &str, vars: &[&str], m: usize) -> (Compiled, Expr) {
        let first = Expr::parse(src, vars).unwrap_or_else(|e| panic!("{src}: {e}"));
        let mut names: Vec<&str> = first.params().iter().map(String::as_str).collect();
        names.sort_unstable();
        let expr = Expr::parse_with_params(src, vars, &names).unwrap();
        let n = expr.params().len();
        let x_dims = if vars.len() == 1 {
            vec![m as i64]
        } else {
            vec![vars.len() as i64, m as i64]
        };
        let g = Graph::new();
        let x = g.parameter("x", DType::F64, x_dims.clone());
        let p = g.parameter("p", DType::F64, [n as i64]);
        let (f, j) = {
            let model = expr.model();
            jacfwd_model(&model, &x, &p).unwrap_or_else(|e| panic!("{src}: {e}"))
        };
        let program = g.finish([&f, &j]).unwrap_or_else(|e| panic!("{src}: {e}"));
        let client = nlsq::runtime::client().expect("PJRT client");
        let exe = client
            .compile(&program.text)
            .unwrap_or_else(|e| panic!("{src}: {e}\n{}", program.text));
        (
            Compiled {
                exe,
                client,
                x_dims,
                n,
                m,
            },
            expr,
        )
    }

    /// `(f [m], J [m][n])` at the points `rows` (one row per variable) and parameters `p`.
    fn run(&self, rows: &[Vec<f64>], p: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>) {
        assert_eq!(p.len(), self.n);
        let xb = self.client.buffer_from_host(&rows.concat(), &self.x_dims).unwrap();
        let pb = self.client.buffer_from_host(p, &[self.n as i64]).unwrap();
        let out = self.exe.execute(&[&xb, &pb]).unwrap();
        let f = out[0].to_vec::<f64>().unwrap();
        let j = out[1].to_vec::<f64>().unwrap();
        let jac = (0..self.m).map(|i| j[i * self.n..(i + 1) * self.n].to_vec()).collect();
        (f, jac)
    }

    /// Central differences of `f` in each parameter, step `h·max(1, |p_j|)`.
    fn central_differences(&self, rows: &[Vec<f64>], p: &[f64], h: f64) -> Vec<Vec<f64>> {
        let mut jac = vec![vec![0.0; self.n]; self.m];
        for j in 0..self.n {
            let step = h * p[j].abs().max(1.0);
            let (mut up, mut down) = (p.to_vec(), p.to_vec());
            up[j] += step;
            down[j] -= step;
            let (fu, fd) = (self.run(rows, &up).0, self.run(rows, &down).0);
            for i in 0..self.m {
                jac[i][j] = (fu[i] - fd[i]) / (2.0 * step);
            }
        }
        jac
    }
}

/// Values of a one-variable model at `xs`.
fn values(src: &str, xs: &[f64], p: &[f64]) -> Vec<f64> {
    let (c, _) = Compiled::new(src, &["x"], xs.len());
    c.run(&[xs.to_vec()], p).0
}

/// `got` equals `want` within `rel` relative (NaN where `want` is NaN; infinities exactly).
fn assert_close(got: &[f64], want: &[f64], rel: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= rel * w.abs().max(f64::MIN_POSITIVE)
        };
        assert!(ok, "{what}[{i}]: got {g:e}, want {w:e}");
    }
}

/// Each entry of `got` equals `want` within `tol·(1 + |want|)`.
fn assert_jac_close(got: &[Vec<f64>], want: &[Vec<f64>], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}[{i}]");
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{what}: J[{i}][{j}] = {a:e}, want {b:e}"
            );
        }
    }
}

const XS: [f64; 9] = [1e-300, 1e-5, 0.001, 0.5, 1.0, 2.0, 1000.0, 12345.678, 1e300];

#[test]
fn logarithms_and_exp2_match_rust() {
    // a = 1, so a*x is x exactly.
    let xs = XS.to_vec();
    let want: Vec<f64> = xs.iter().map(|x| x.log10()).collect();
    assert_close(&values("log10(a*x)", &xs, &[1.0]), &want, 4e-16 * 4.0, "log10");
    let want: Vec<f64> = xs.iter().map(|x| x.log2()).collect();
    assert_close(&values("log2(a*x)", &xs, &[1.0]), &want, 4e-16 * 4.0, "log2");
    // Out of the domain: NaN below 0, -inf at 0, like f64.
    let odd = [0.0, -1.0, f64::INFINITY];
    let got = values("log10(a*x) + log2(a*x)", &odd, &[1.0]);
    assert_close(&got, &[f64::NEG_INFINITY, f64::NAN, f64::INFINITY], 0.0, "log domain");

    // Not below -1022: XLA's CPU code flushes subnormal results to zero (2^-1074 is 0 here).
    let xs: Vec<f64> = vec![
        -1022.0, -1000.5, -10.0, -0.5, 0.0, 1e-9, 0.5, 3.0, 10.0, 52.25, 1023.0, 1024.0,
    ];
    let want: Vec<f64> = xs.iter().map(|x| x.exp2()).collect();
    assert_close(&values("exp2(a*x)", &xs, &[1.0]), &want, 4e-16 * 4.0, "exp2");
}

#[test]
fn logistic_matches_its_closed_form() {
    let xs: Vec<f64> = vec![-745.0, -40.0, -5.0, -1.0, -1e-8, 0.0, 0.3, 2.0, 20.0, 40.0, 800.0];
    let want: Vec<f64> = xs.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect();
    // Relative near 1 and where e^-x is huge alike: the closed form itself is accurate there.
    assert_close(&values("logistic(a*x)", &xs, &[1.0]), &want, 1e-14, "logistic");
    assert_eq!(values("logistic(a*x)", &[0.0], &[1.0]), [0.5]);
}

#[test]
fn min_max_pow_match_rust_and_propagate_nan() {
    let xs: Vec<f64> = vec![-3.0, -0.5, 0.0, 0.5, 1.0, 2.0, 7.5];
    let p = [1.0];
    let want: Vec<f64> = xs.iter().map(|x| x.min(1.0)).collect();
    assert_eq!(values("min(a*x, 1)", &xs, &p), want);
    let want: Vec<f64> = xs.iter().map(|x| x.max(0.25)).collect();
    assert_eq!(values("max(0.25, a*x)", &xs, &p), want);
    // NaN propagates (numpy's minimum/maximum); f64::min(NaN, 1) would be 1.
    assert!(values("min(a*x, 1)", &[f64::NAN], &p)[0].is_nan());
    assert!(values("max(1, a*x)", &[f64::NAN], &p)[0].is_nan());

    let xs: Vec<f64> = vec![0.0, 1e-3, 0.5, 2.0, 9.0, 1e5];
    let want: Vec<f64> = xs.iter().map(|x| x.powf(2.5)).collect();
    assert_close(&values("pow(a*x, 2.5)", &xs, &p), &want, 1e-15, "pow(x, 2.5)");
    // pow(x, n) for a literal integer n is exact and defined for x < 0, like x^n.
    let xs: Vec<f64> = vec![-3.0, -1.5, 0.0, 2.0];
    let want: Vec<f64> = xs.iter().map(|x| x.powi(3)).collect();
    assert_eq!(values("pow(a*x, 3)", &xs, &p), want);
    // A traced exponent: pow(b, x) with b a parameter.
    let xs = vec![-2.0, 0.0, 0.5, 3.0, 10.0];
    let want: Vec<f64> = xs.iter().map(|x| 1.7f64.powf(*x)).collect();
    assert_close(&values("pow(b, x)", &xs, &[1.7]), &want, 1e-15, "pow(b, x)");
}

#[test]
fn atan2_matches_rust_with_signed_zeros() {
    let (ys, xs): (Vec<f64>, Vec<f64>) = [
        (0.0, 1.0),
        (1.0, 1.0),
        (1.0, 0.0),
        (1.0, -1.0),
        (0.0, -1.0),
        (-0.0, -1.0),
        (-1.0, -1.0),
        (-1.0, 0.0),
        (-1.0, 1.0),
        (0.0, 0.0),
        (-0.0, 0.0),
        (0.0, -0.0),
        (-0.0, -0.0),
        (3.0, 1e-300),
        (f64::INFINITY, f64::INFINITY),
        (-2.0, f64::NEG_INFINITY),
    ]
    .into_iter()
    .unzip();
    let (c, _) = Compiled::new("atan2(a*y, x)", &["y", "x"], ys.len());
    let got = c.run(&[ys.clone(), xs.clone()], &[1.0]).0;
    let want: Vec<f64> = ys.iter().zip(&xs).map(|(y, x)| y.atan2(*x)).collect();
    assert_close(&got, &want, 4.5e-16, "atan2");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g.is_sign_negative(),
            w.is_sign_negative(),
            "sign of atan2({}, {})",
            ys[i],
            xs[i]
        );
    }
}

#[test]
fn heaviside_is_half_at_zero_or_h0_and_keeps_nan() {
    let xs = vec![
        -1.0,
        -1e-300,
        -0.0,
        0.0,
        1e-300,
        3.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    let step = |h0: f64| -> Vec<f64> {
        xs.iter()
            .map(|&x| {
                if x.is_nan() {
                    f64::NAN
                } else if x < 0.0 {
                    0.0
                } else if x > 0.0 {
                    1.0
                } else {
                    h0
                }
            })
            .collect()
    };
    assert_close(&values("heaviside(a*x)", &xs, &[1.0]), &step(0.5), 0.0, "heaviside(x)");
    // numpy's heaviside(x, h0): h0 at 0.
    assert_close(
        &values("heaviside(a*x, h)", &xs, &[1.0, 0.25]),
        &step(0.25),
        0.0,
        "heaviside(x, h0)",
    );
    assert_close(&values("heaviside(x, 1)", &xs, &[]), &step(1.0), 0.0, "heaviside(x, 1)");
}

// The host predicates are written exactly as the expressions are (NaN behaviour included),
// not in clippy's preferred forms.
#[allow(clippy::manual_range_contains, clippy::neg_cmp_op_on_partial_ord)]
#[test]
fn comparisons_logic_and_where_choose_like_rust() {
    let xs = vec![-1.0, 0.0, 0.5, 1.0, 2.0, f64::NAN];
    type Pred = fn(f64) -> bool;
    let cases: [(&str, Pred); 11] = [
        ("x < 1", |x| x < 1.0),
        ("x <= 1", |x| x <= 1.0),
        ("x > 1", |x| x > 1.0),
        ("x >= 1", |x| x >= 1.0),
        ("x == 1", |x| x == 1.0),
        ("x != 1", |x| x != 1.0),
        ("x > 0 && x < 2", |x| x > 0.0 && x < 2.0),
        ("x < 0 || x >= 2", |x| x < 0.0 || x >= 2.0),
        ("!(x < 1)", |x| !(x < 1.0)),
        ("x > -5 && x < 0.7 || x == 2", |x| x > -5.0 && x < 0.7 || x == 2.0),
        ("!(x > 0 && x < 2) && !(x != x)", |x| !(x > 0.0 && x < 2.0) && x == x),
    ];
    for (cond, pred) in cases {
        let want: Vec<f64> = xs.iter().map(|&x| if pred(x) { 10.0 * x } else { -3.0 }).collect();
        let got = values(&format!("where({cond}, a*10*x, -3)"), &xs, &[1.0]);
        // NaN * 10 where the condition holds for NaN (x != 1).
        assert_close(&got, &want, 0.0, cond);
    }
    // The branch not taken does not leak its NaN.
    let got = values("where(x > 0, sqrt(a*x), 0)", &[-4.0, 0.0, 4.0], &[1.0]);
    assert_eq!(got, [0.0, 0.0, 2.0]);
    // A condition on a parameter alone is a scalar, broadcast over the data.
    assert_eq!(values("where(a > 0, x, -x)", &[1.0, 2.0], &[-1.0]), [-1.0, -2.0]);
}

#[test]
fn a_condition_is_not_a_number() {
    for src in [
        "(x > 1) * a",
        "a + (x > 1)",
        "exp(x > 1)",
        "x > a",
        "where(x, a, 1)",
        "!x",
        "x && a",
    ] {
        match Expr::parse(src, &["x"]) {
            Err(Error::Parse { message, .. }) => assert!(
                message.contains("is not a number; use where(cond, a, b)") || message.contains("must be a condition"),
                "{src}: {message}"
            ),
            other => panic!("{src}: {other:?}"),
        }
    }
}

/// Jacobians of each new function at points away from kinks: forward mode against the
/// hand-written derivative and against central differences.
#[test]
fn derivatives_match_closed_forms_and_central_differences() {
    type Closed = fn(f64, &[f64]) -> Vec<f64>;
    let xs = vec![0.3, 0.7, 1.1, 1.9, 2.6, 3.4];
    let cases: Vec<(&str, Vec<f64>, Closed)> = vec![
        ("max(a*x, b)", vec![1.5, 2.0], |x, p| {
            if p[0] * x >= p[1] {
                vec![x, 0.0]
            } else {
                vec![0.0, 1.0]
            }
        }),
        ("min(a*x, b)", vec![1.5, 2.0], |x, p| {
            if p[0] * x <= p[1] {
                vec![x, 0.0]
            } else {
                vec![0.0, 1.0]
            }
        }),
        ("pow(a, x) + pow(x, b)", vec![1.7, 2.3], |x, p| {
            vec![x * p[0].powf(x - 1.0), x.powf(p[1]) * x.ln()]
        }),
        ("atan2(a, b*x)", vec![0.8, -1.3], |x, p| {
            let r2 = p[0] * p[0] + p[1] * p[1] * x * x;
            vec![p[1] * x / r2, -p[0] * x / r2]
        }),
        ("logistic(a*(x - b))", vec![2.0, 1.5], |x, p| {
            let s = 1.0 / (1.0 + (-p[0] * (x - p[1])).exp());
            vec![s * (1.0 - s) * (x - p[1]), -s * (1.0 - s) * p[0]]
        }),
        ("log10(a*x) + log2(b*x) + exp2(a*x)", vec![1.2, 0.9], |x, p| {
            let ln2 = std::f64::consts::LN_2;
            vec![
                1.0 / (p[0] * std::f64::consts::LN_10) + x * ln2 * (p[0] * x).exp2(),
                1.0 / (p[1] * ln2),
            ]
        }),
        // heaviside: derivative 0 in x everywhere, so 0 in a; h0 only matters at x == a.
        ("heaviside(x - a, h) * b", vec![1.5, 2.0, 0.3], |x, p| {
            let s = if x > p[0] { 1.0 } else { 0.0 };
            vec![0.0, s, 0.0]
        }),
        ("where(x < c, a + b*x, a + b*c)", vec![1.0, 2.0, 2.0], |x, p| {
            if x < p[2] {
                vec![1.0, x, 0.0]
            } else {
                vec![1.0, p[2], p[1]]
            }
        }),
        ("where(x > c || x < b, a*x^2, -a*x)", vec![0.5, 0.5, 2.0], |x, p| {
            if x > p[2] || x < p[1] {
                vec![x * x, 0.0, 0.0]
            } else {
                vec![-x, 0.0, 0.0]
            }
        }),
    ];
    for (src, p, closed) in cases {
        let (c, _) = Compiled::new(src, &["x"], xs.len());
        let rows = [xs.clone()];
        let (_, jac) = c.run(&rows, &p);
        let want: Vec<Vec<f64>> = xs.iter().map(|&x| closed(x, &p)).collect();
        assert_jac_close(&jac, &want, 1e-13, &format!("{src} (closed form)"));
        let fd = c.central_differences(&rows, &p, 1e-6);
        assert_jac_close(&jac, &fd, 1e-7, &format!("{src} (central differences)"));
    }
}

/// The subgradients chosen where the functions are not differentiable.
#[test]
fn derivatives_at_kinks_follow_the_documented_choice() {
    let jac_at = |src: &str, xs: &[f64], p: &[f64]| {
        let (c, _) = Compiled::new(src, &["x"], xs.len());
        c.run(&[xs.to_vec()], p).1
    };
    // max(a, b) and min(a, b) at a == b: the derivative of a (the first argument).
    assert_eq!(jac_at("max(a, b) + 0*x", &[1.0], &[2.0, 2.0]), [vec![1.0, 0.0]]);
    assert_eq!(jac_at("max(b, a) + 0*x", &[1.0], &[2.0, 2.0]), [vec![0.0, 1.0]]);
    assert_eq!(jac_at("min(a, b) + 0*x", &[1.0], &[2.0, 2.0]), [vec![1.0, 0.0]]);
    // The hinge max(0, k*(x - x0)) at x == x0: the first argument, 0, wins the tie.
    assert_eq!(
        jac_at("max(0, k*(x - x0))", &[0.5, 1.0, 2.0], &[3.0, 1.0]),
        [vec![0.0, 0.0], vec![0.0, 0.0], vec![1.0, -3.0]]
    );
    // heaviside: derivative 0 in its argument, at 0 too; at 0 the derivative of h0 is 1.
    assert_eq!(
        jac_at("heaviside(a*x, h)", &[-1.0, 0.0, 1.0], &[1.0, 0.5]),
        [vec![0.0, 0.0], vec![0.0, 1.0], vec![0.0, 0.0]]
    );
    // where: the derivative of the selected branch; none through the condition. At x == c
    // the condition x < c is false, so the second branch's derivative (in c: b).
    assert_eq!(
        jac_at("where(x < c, a + b*x, a + b*c)", &[2.0], &[1.0, 3.0, 2.0]),
        [vec![1.0, 2.0, 3.0]]
    );
    // abs at 0: 0 (d/da |x - a| = -signum(x - a)).
    assert_eq!(
        jac_at("abs(x - a)", &[0.0, 2.0, -1.0], &[0.0]),
        [vec![0.0], vec![-1.0], vec![1.0]]
    );
}

/// Noise-free data from a piecewise model, fitted from a start away from the truth.
#[test]
fn piecewise_models_are_fitted() {
    let xs: Vec<f64> = (0..61).map(|i| 0.1 * i as f64).collect();
    // A broken stick: rises with slope b until c, flat after.
    let (a, b, c) = (1.0, 2.0, 3.25);
    let ys: Vec<f64> = xs.iter().map(|&x| if x < c { a + b * x } else { a + b * c }).collect();
    let expr = Expr::parse_with_params("where(x < c, a + b*x, a + b*c)", &["x"], &["a", "b", "c"]).unwrap();
    let model = expr.model();
    for method in [Method::Lm, Method::Trf] {
        let opts = FitOptions::default().with_method(method);
        let fit = curve_fit(&model, &xs, &ys, Some(&[0.5, 1.5, 2.6]), &opts).unwrap();
        assert!(fit.success(), "{method}: {}", fit.result);
        for (got, want) in fit.popt.iter().zip([a, b, c]) {
            assert!((got - want).abs() < 1e-6, "broken stick, {method}: {}", fit.popt);
        }
    }
    // A hinge with a level: y0 + max(0, k*(x - x0)).
    let (y0, k, x0) = (0.5, 1.5, 2.2);
    let ys: Vec<f64> = xs.iter().map(|&x| y0 + (k * (x - x0)).max(0.0)).collect();
    let expr = Expr::parse("y0 + max(0, k*(x - x0))", &["x"]).unwrap();
    let model = expr.model();
    let fit = curve_fit(&model, &xs, &ys, Some(&[0.0, 1.0, 1.7]), &FitOptions::default()).unwrap();
    assert!(fit.success(), "{}", fit.result);
    for (got, want) in fit.popt.iter().zip([y0, k, x0]) {
        assert!((got - want).abs() < 1e-6, "hinge: {}", fit.popt);
    }
}
