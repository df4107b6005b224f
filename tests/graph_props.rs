//! Property tests: random expression trees over the op set, traced, differentiated with
//! `jacfwd`, compiled by XLA on the CPU plugin, and compared with the same expression
//! evaluated in plain Rust f64:
//!
//! * values to `1e-12` relative, measured against the largest intermediate magnitude of the
//!   expression (so that benign cancellation in a subtraction is not counted as an error);
//! * the Jacobian with respect to the parameters to `1e-6` relative, against central finite
//!   differences with Richardson extrapolation.
//!
//! Domains are respected by construction (`ln(e*e + 0.5)`, `asin(0.9 * tanh(e))`, ...). Points
//! at a discontinuity (floor, ceil, round, signum, rem, comparisons) skip the value check.
//! The host records every discrete decision it takes (branch of select/max/min/clamp, integer
//! part for floor/ceil/round/rem, signs for abs/signum/atan2, arg-max); a Jacobian column is
//! checked only where that signature is the same at every finite-difference stencil point. Each proptest case puts `EXPRS` expressions into ONE program, so the
//! compile cost stays bounded: `CASES` programs in total (48 programs, 288 expressions of
//! depth <= 4, about 4,500 ops per run). The seed is fixed unless `NLSQ_PROPTEST_RANDOM` is
//! set; `PROPTEST_CASES` overrides the case count.

use nlsq::graph::{jacfwd_model, Graph, Params, Program, Tensor};
use nlsq::DType;
use proptest::prelude::*;

const M: usize = 8;
const N: usize = 3;
const EXPRS: usize = 6;
const CASES: u32 = 48;
const DEPTH: u32 = 4;

#[derive(Clone, Copy, Debug)]
enum U {
    Neg,
    Abs,
    Sign,
    Exp,
    Expm1,
    Ln,
    Ln1p,
    Sqrt,
    Rsqrt,
    Cbrt,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Floor,
    Ceil,
    Round,
    Erf,
    Erfc,
    Logistic,
}

const UNARY: [U; 25] = [
    U::Neg,
    U::Abs,
    U::Sign,
    U::Exp,
    U::Expm1,
    U::Ln,
    U::Ln1p,
    U::Sqrt,
    U::Rsqrt,
    U::Cbrt,
    U::Sin,
    U::Cos,
    U::Tan,
    U::Asin,
    U::Acos,
    U::Atan,
    U::Sinh,
    U::Cosh,
    U::Tanh,
    U::Floor,
    U::Ceil,
    U::Round,
    U::Erf,
    U::Erfc,
    U::Logistic,
];

#[derive(Clone, Copy, Debug)]
enum B {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Atan2,
    Max,
    Min,
}

const BINARY: [B; 9] = [B::Add, B::Sub, B::Mul, B::Div, B::Rem, B::Pow, B::Atan2, B::Max, B::Min];

/// An expression over the data `x: [M]` and parameters `p: [N]`; every node is a vector of
/// length M (scalars broadcast).
#[derive(Clone, Debug)]
enum E {
    X,
    P(usize),
    C(f64),
    U(U, Box<E>),
    B(B, Box<E>, Box<E>),
    Powi(i32, Box<E>),
    Powf(f64, Box<E>),
    Clamp(Box<E>),
    Where(Box<E>, Box<E>, Box<E>, Box<E>),
    Sum(Box<E>),
    Max(Box<E>),
    Rev(Box<E>),
    Rot(Box<E>),
    Perm(Box<E>),
    Dot(Box<E>, Box<E>),
    MatVec(Box<E>),
    At(usize, Box<E>),
    Set(usize, Box<E>, Box<E>),
}

fn bx(e: E) -> Box<E> {
    Box::new(e)
}

fn sq_plus(e: E, c: f64) -> E {
    E::B(B::Add, bx(E::B(B::Mul, bx(e.clone()), bx(e))), bx(E::C(c)))
}

fn scaled_tanh(e: E, c: f64) -> E {
    E::B(B::Mul, bx(E::U(U::Tanh, bx(e))), bx(E::C(c)))
}

/// Applies `u` with its argument mapped into the op's smooth domain.
fn wrap_unary(u: U, e: E) -> E {
    let arg = match u {
        U::Ln | U::Sqrt | U::Rsqrt | U::Cbrt => sq_plus(e, 0.5),
        U::Ln1p => E::B(B::Mul, bx(e.clone()), bx(e)),
        U::Asin | U::Acos => scaled_tanh(e, 0.9),
        U::Tan => scaled_tanh(e, 1.4),
        U::Exp | U::Expm1 | U::Sinh | U::Cosh => scaled_tanh(e, 3.0),
        _ => e,
    };
    E::U(u, bx(arg))
}

fn wrap_binary(b: B, x: E, y: E) -> E {
    match b {
        B::Div | B::Rem => E::B(b, bx(x), bx(sq_plus(y, 0.5))),
        B::Pow => E::B(b, bx(sq_plus(x, 0.5)), bx(scaled_tanh(y, 2.0))),
        _ => E::B(b, bx(x), bx(y)),
    }
}

/// Trees of depth `depth`: at each level an op (weight 6) or a leaf (weight 1).
fn expr(depth: u32) -> BoxedStrategy<E> {
    let leaf = prop_oneof![
        2 => Just(E::X),
        3 => (0..N).prop_map(E::P),
        1 => (-2.0..2.0f64).prop_map(E::C),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let inner = expr(depth - 1);
    prop_oneof![
        6 => leaf,
        40 => (0..UNARY.len(), inner.clone()).prop_map(|(u, e)| wrap_unary(UNARY[u], e)),
        40 => (0..BINARY.len(), inner.clone(), inner.clone()).prop_map(|(b, x, y)| wrap_binary(BINARY[b], x, y)),
        3 => (-3..5i32, inner.clone()).prop_map(|(k, e)| E::Powi(k, bx(if k < 0 { sq_plus(e, 0.5) } else { e }))),
        3 => (-2.5..2.5f64, inner.clone()).prop_map(|(c, e)| E::Powf(c, bx(sq_plus(e, 0.5)))),
        2 => inner.clone().prop_map(|e| E::Clamp(bx(e))),
        2 => (inner.clone(), inner.clone(), inner.clone(), inner.clone())
            .prop_map(|(a, b, c, d)| E::Where(bx(a), bx(b), bx(c), bx(d))),
        2 => inner.clone().prop_map(|e| E::Sum(bx(e))),
        2 => inner.clone().prop_map(|e| E::Max(bx(e))),
        2 => inner.clone().prop_map(|e| E::Rev(bx(e))),
        2 => inner.clone().prop_map(|e| E::Rot(bx(e))),
        2 => inner.clone().prop_map(|e| E::Perm(bx(e))),
        2 => (inner.clone(), inner.clone()).prop_map(|(a, b)| E::Dot(bx(a), bx(b))),
        2 => inner.clone().prop_map(|e| E::MatVec(bx(e))),
        2 => (0..M, inner.clone()).prop_map(|(k, e)| E::At(k, bx(e))),
        2 => (0..M, inner.clone(), inner.clone()).prop_map(|(k, a, b)| E::Set(k, bx(a), bx(b))),
    ]
    .boxed()
}

/// Number of op nodes (for reporting).
fn size(e: &E) -> usize {
    match e {
        E::X | E::P(_) | E::C(_) => 0,
        E::U(_, a)
        | E::Powi(_, a)
        | E::Powf(_, a)
        | E::Clamp(a)
        | E::Sum(a)
        | E::Max(a)
        | E::Rev(a)
        | E::Rot(a)
        | E::Perm(a)
        | E::MatVec(a)
        | E::At(_, a) => 1 + size(a),
        E::B(_, a, b) | E::Dot(a, b) | E::Set(_, a, b) => 1 + size(a) + size(b),
        E::Where(a, b, c, d) => 1 + size(a) + size(b) + size(c) + size(d),
    }
}

fn mat(i: usize, j: usize) -> f64 {
    (((i * 7 + j * 3) % 5) as f64 - 2.0) / 4.0
}

// ---- tracing ---------------------------------------------------------------------------------

fn vec_of(t: Tensor) -> Tensor {
    t.broadcast_to([M as i64])
}

fn build(e: &E, x: &Tensor, p: &Params) -> Tensor {
    let g = x.graph();
    match e {
        E::X => x.clone(),
        E::P(i) => p[*i].clone(),
        E::C(c) => g.constant(*c),
        E::U(u, a) => {
            let a = build(a, x, p);
            match u {
                U::Neg => -&a,
                U::Abs => a.abs(),
                U::Sign => a.signum(),
                U::Exp => a.exp(),
                U::Expm1 => a.expm1(),
                U::Ln => a.ln(),
                U::Ln1p => a.ln_1p(),
                U::Sqrt => a.sqrt(),
                U::Rsqrt => a.rsqrt(),
                U::Cbrt => a.cbrt(),
                U::Sin => a.sin(),
                U::Cos => a.cos(),
                U::Tan => a.tan(),
                U::Asin => a.asin(),
                U::Acos => a.acos(),
                U::Atan => a.atan(),
                U::Sinh => a.sinh(),
                U::Cosh => a.cosh(),
                U::Tanh => a.tanh(),
                U::Floor => a.floor(),
                U::Ceil => a.ceil(),
                U::Round => a.round(),
                U::Erf => a.erf(),
                U::Erfc => a.erfc(),
                U::Logistic => a.logistic(),
            }
        }
        E::B(b, l, r) => {
            let (l, r) = (build(l, x, p), build(r, x, p));
            match b {
                B::Add => &l + &r,
                B::Sub => &l - &r,
                B::Mul => &l * &r,
                B::Div => &l / &r,
                B::Rem => &l % &r,
                B::Pow => l.pow(&r),
                B::Atan2 => l.atan2(&r),
                B::Max => l.max(&r),
                B::Min => l.min(&r),
            }
        }
        E::Powi(k, a) => build(a, x, p).powi(*k),
        E::Powf(c, a) => build(a, x, p).powf(*c),
        E::Clamp(a) => build(a, x, p).clamp(-1.0, 1.0),
        E::Where(a, b, c, d) => build(a, x, p).gt(build(b, x, p)).select(build(c, x, p), build(d, x, p)),
        E::Sum(a) => vec_of(build(a, x, p)).sum(),
        E::Max(a) => vec_of(build(a, x, p)).reduce_max(&[0]),
        E::Rev(a) => {
            let idx: Vec<f64> = (0..M).rev().map(|i| i as f64).collect();
            vec_of(build(a, x, p)).take(0, &g.constant_array_of(DType::I32, &idx, [M as i64]))
        }
        E::Rot(a) => {
            let v = vec_of(build(a, x, p));
            g.concat(&[v.slice(&[1], &[M as i64]), v.slice(&[0], &[1])], 0)
        }
        E::Perm(a) => vec_of(build(a, x, p))
            .reshape([2, M as i64 / 2])
            .transpose(&[1, 0])
            .reshape([M as i64]),
        E::Dot(a, b) => vec_of(build(a, x, p)).dot(&vec_of(build(b, x, p))),
        E::MatVec(a) => {
            let data: Vec<f64> = (0..M * M).map(|k| mat(k / M, k % M)).collect();
            g.constant_array(&data, [M as i64, M as i64])
                .dot(&vec_of(build(a, x, p)))
        }
        E::At(k, a) => vec_of(build(a, x, p)).at(*k as i64),
        E::Set(k, a, b) => vec_of(build(a, x, p)).set(*k as i64, &vec_of(build(b, x, p)).get(*k as i64)),
    }
}

// ---- host reference ----------------------------------------------------------------------------

/// Host evaluation with bookkeeping: the largest intermediate magnitude and the distances to
/// the nearest discontinuity and kink.
struct Host {
    mag: f64,
    jump: f64,
    kink: f64,
    /// Every discrete decision taken (branch, integer part, sign, arg-max): finite
    /// differences are only trusted where it is the same at every stencil point.
    sig: Vec<i64>,
}

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// erf by its everywhere-convergent series `2/sqrt(pi) e^{-x^2} sum (2x^2)^k x / (2k+1)!!`.
fn erf(x: f64) -> f64 {
    if x.abs() > 6.0 {
        return sign(x);
    }
    let (x2, mut term, mut sum) = (x * x, x, x);
    let mut k = 0.0;
    while term.abs() > 1e-17 * sum.abs() {
        k += 1.0;
        term *= 2.0 * x2 / (2.0 * k + 1.0);
        sum += term;
    }
    std::f64::consts::FRAC_2_SQRT_PI * (-x2).exp() * sum
}

/// erfc, by a continued fraction for x >= 2 (keeps relative accuracy in the tail).
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.0 {
        return 1.0 - erf(x);
    }
    // erfc(x) = e^{-x^2}/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), backwards.
    let mut f = x;
    for k in (1..200).rev() {
        f = x + (k as f64 / 2.0) / f;
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

fn dist_int(v: f64) -> f64 {
    (v - v.round()).abs()
}

impl Host {
    fn see(&mut self, v: &[f64]) {
        for x in v {
            self.mag = self.mag.max(x.abs());
        }
    }

    fn eval(&mut self, e: &E, x: &[f64], p: &[f64]) -> Vec<f64> {
        let out = self.eval_inner(e, x, p);
        self.see(&out);
        out
    }

    fn eval_inner(&mut self, e: &E, x: &[f64], p: &[f64]) -> Vec<f64> {
        let map = |v: Vec<f64>, f: &dyn Fn(f64) -> f64| v.into_iter().map(f).collect::<Vec<f64>>();
        match e {
            E::X => x.to_vec(),
            E::P(i) => vec![p[*i]; M],
            E::C(c) => vec![*c; M],
            E::U(u, a) => {
                let a = self.eval(a, x, p);
                match u {
                    U::Abs | U::Sign => self.sig.extend(a.iter().map(|v| sign(*v) as i64)),
                    U::Floor | U::Ceil => self.sig.extend(a.iter().map(|v| v.floor() as i64)),
                    U::Round => self.sig.extend(a.iter().map(|v| (v + 0.5).floor() as i64)),
                    _ => {}
                }
                match u {
                    U::Abs => {
                        a.iter().for_each(|v| self.kink = self.kink.min(v.abs()));
                    }
                    U::Sign => a.iter().for_each(|v| {
                        self.jump = self.jump.min(v.abs());
                        self.kink = self.kink.min(v.abs());
                    }),
                    U::Floor | U::Ceil => a.iter().for_each(|v| {
                        self.jump = self.jump.min(dist_int(*v));
                        self.kink = self.kink.min(dist_int(*v));
                    }),
                    U::Round => a.iter().for_each(|v| {
                        self.jump = self.jump.min(dist_int(v + 0.5));
                        self.kink = self.kink.min(dist_int(v + 0.5));
                    }),
                    _ => {}
                }
                match u {
                    U::Neg => map(a, &|v| -v),
                    U::Abs => map(a, &f64::abs),
                    U::Sign => map(a, &sign),
                    U::Exp => map(a, &f64::exp),
                    U::Expm1 => map(a, &f64::exp_m1),
                    U::Ln => map(a, &f64::ln),
                    U::Ln1p => map(a, &f64::ln_1p),
                    U::Sqrt => map(a, &f64::sqrt),
                    U::Rsqrt => map(a, &|v| 1.0 / v.sqrt()),
                    U::Cbrt => map(a, &f64::cbrt),
                    U::Sin => map(a, &f64::sin),
                    U::Cos => map(a, &f64::cos),
                    U::Tan => map(a, &f64::tan),
                    U::Asin => map(a, &f64::asin),
                    U::Acos => map(a, &f64::acos),
                    U::Atan => map(a, &f64::atan),
                    U::Sinh => map(a, &f64::sinh),
                    U::Cosh => map(a, &f64::cosh),
                    U::Tanh => map(a, &f64::tanh),
                    U::Floor => map(a, &f64::floor),
                    U::Ceil => map(a, &f64::ceil),
                    U::Round => map(a, &f64::round),
                    U::Erf => map(a, &erf),
                    U::Erfc => map(a, &erfc),
                    U::Logistic => map(a, &|v| 1.0 / (1.0 + (-v).exp())),
                }
            }
            E::B(b, l, r) => {
                let (l, r) = (self.eval(l, x, p), self.eval(r, x, p));
                l.iter()
                    .zip(&r)
                    .map(|(&a, &c)| match b {
                        B::Add => a + c,
                        B::Sub => a - c,
                        B::Mul => a * c,
                        B::Div => a / c,
                        B::Rem => {
                            self.sig.push((a / c).trunc() as i64);
                            self.jump = self.jump.min(dist_int(a / c) * c.abs());
                            self.kink = self.kink.min(dist_int(a / c) * c.abs());
                            a % c
                        }
                        B::Pow => a.powf(c),
                        B::Atan2 => {
                            self.sig.push(sign(a) as i64 * 2 + sign(c) as i64);
                            self.kink = self.kink.min(a.hypot(c));
                            self.jump = self.jump.min(if c < 0.0 { a.abs() } else { f64::INFINITY });
                            a.atan2(c)
                        }
                        B::Max | B::Min => {
                            self.sig
                                .push(i64::from(if matches!(b, B::Max) { a >= c } else { a <= c }));
                            self.kink = self.kink.min((a - c).abs());
                            if matches!(b, B::Max) {
                                a.max(c)
                            } else {
                                a.min(c)
                            }
                        }
                    })
                    .collect()
            }
            E::Powi(k, a) => map(self.eval(a, x, p), &|v| v.powi(*k)),
            E::Powf(c, a) => map(self.eval(a, x, p), &|v| v.powf(*c)),
            E::Clamp(a) => {
                let a = self.eval(a, x, p);
                a.iter().for_each(|v| self.kink = self.kink.min((v.abs() - 1.0).abs()));
                self.sig
                    .extend(a.iter().map(|v| i64::from(*v > 1.0) - i64::from(*v < -1.0)));
                map(a, &|v| v.clamp(-1.0, 1.0))
            }
            E::Where(a, b, c, d) => {
                let (a, b) = (self.eval(a, x, p), self.eval(b, x, p));
                let (c, d) = (self.eval(c, x, p), self.eval(d, x, p));
                (0..M)
                    .map(|i| {
                        self.jump = self.jump.min((a[i] - b[i]).abs());
                        self.kink = self.kink.min((a[i] - b[i]).abs());
                        self.sig.push(i64::from(a[i] > b[i]));
                        if a[i] > b[i] {
                            c[i]
                        } else {
                            d[i]
                        }
                    })
                    .collect()
            }
            E::Sum(a) => vec![self.eval(a, x, p).iter().sum(); M],
            E::Max(a) => {
                let mut v = self.eval(a, x, p);
                let arg = (0..M).fold(0, |best, i| if v[i] > v[best] { i } else { best });
                self.sig.push(arg as i64);
                v.sort_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
                if v[0] != v[1] {
                    self.kink = self.kink.min(v[0] - v[1]);
                }
                vec![v[0]; M]
            }
            E::Rev(a) => self.eval(a, x, p).into_iter().rev().collect(),
            E::Rot(a) => {
                let mut v = self.eval(a, x, p);
                v.rotate_left(1);
                v
            }
            E::Perm(a) => {
                let v = self.eval(a, x, p);
                let h = M / 2;
                let mut out = vec![0.0; M];
                for r in 0..2 {
                    for c in 0..h {
                        out[c * 2 + r] = v[r * h + c];
                    }
                }
                out
            }
            E::Dot(a, b) => {
                let (a, b) = (self.eval(a, x, p), self.eval(b, x, p));
                vec![a.iter().zip(&b).map(|(u, v)| u * v).sum(); M]
            }
            E::MatVec(a) => {
                let v = self.eval(a, x, p);
                (0..M).map(|i| (0..M).map(|j| mat(i, j) * v[j]).sum()).collect()
            }
            E::At(k, a) => vec![self.eval(a, x, p)[*k]; M],
            E::Set(k, a, b) => {
                let mut a = self.eval(a, x, p);
                a[*k] = self.eval(b, x, p)[*k];
                a
            }
        }
    }
}

fn host(e: &E, x: &[f64], p: &[f64]) -> (Vec<f64>, Host) {
    let mut h = Host {
        mag: 0.0,
        jump: f64::INFINITY,
        kink: f64::INFINITY,
        sig: Vec::new(),
    };
    let v = h.eval(e, x, p);
    (v, h)
}

/// d f / d p_j by central differences with one Richardson step (error O(h^4)), at two step
/// sizes. There is no trustworthy reference (`None`) where a stencil point takes another
/// branch than the centre (a `rem` jump, a `max` switching sides, ...) or where the two
/// estimates disagree (the function varies on a scale finer than the step, e.g. `sin` of a
/// large argument).
fn fd_column(e: &E, x: &[f64], p: &[f64], j: usize, scale: f64) -> Vec<Option<f64>> {
    let base = host(e, x, p).1.sig;
    let same_branches = std::cell::Cell::new(true);
    let d = |h: f64| {
        let (mut lo, mut hi) = (p.to_vec(), p.to_vec());
        lo[j] -= h;
        hi[j] += h;
        let ((a, ha), (b, hb)) = (host(e, x, &hi), host(e, x, &lo));
        if ha.sig != base || hb.sig != base {
            same_branches.set(false);
        }
        a.iter().zip(&b).map(|(a, b)| (a - b) / (2.0 * h)).collect::<Vec<f64>>()
    };
    let richardson = |h: f64| {
        let (d1, d2) = (d(h), d(h / 2.0));
        d1.iter()
            .zip(&d2)
            .map(|(a, b)| (4.0 * b - a) / 3.0)
            .collect::<Vec<f64>>()
    };
    let (coarse, fine) = (richardson(2e-3), richardson(5e-4));
    if !same_branches.get() {
        return vec![None; M];
    }
    coarse
        .iter()
        .zip(&fine)
        .map(|(&c, &f)| {
            if (c - f).abs() <= 1e-8 * (f.abs() + scale) {
                Some(f)
            } else {
                None
            }
        })
        .collect()
}

// ---- the property ------------------------------------------------------------------------------

fn program(exprs: &[E]) -> Program {
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, [M as i64]);
    let p = g.parameter("p", DType::F64, [N as i64]);
    let mut outs = Vec::new();
    for e in exprs {
        let model = |x: &Tensor, p: &Params| build(e, x, p);
        let (f, j) = jacfwd_model(&model, &x, &p).expect("trace");
        outs.push(f);
        outs.push(j);
    }
    g.finish(&outs).expect("emit")
}

fn run(program: &Program, x: &[f64], p: &[f64]) -> Vec<Vec<f64>> {
    let client = nlsq::runtime::client().expect("PJRT client");
    let exe = client
        .compile(&program.text)
        .unwrap_or_else(|e| panic!("{e}\n{}", program.text));
    let xb = client.buffer_from_host(x, &[M as i64]).unwrap();
    let pb = client.buffer_from_host(p, &[N as i64]).unwrap();
    exe.execute(&[&xb, &pb])
        .unwrap()
        .iter()
        .map(|b| b.to_vec::<f64>().unwrap())
        .collect()
}

/// Checks of one case; returns (expressions, value checks, Jacobian checks, ops, Jacobian
/// entries without a trustworthy finite-difference reference).
fn check(exprs: &[E], x: &[f64], p: &[f64]) -> Result<[usize; 5], TestCaseError> {
    let prog = program(exprs);
    let out = run(&prog, x, p);
    let mut counts = [0; 5];
    for (k, e) in exprs.iter().enumerate() {
        let (want, h) = host(e, x, p);
        if want.iter().any(|v| !v.is_finite()) || h.mag > 1e12 {
            continue;
        }
        counts[0] += 1;
        counts[3] += size(e);
        let (f, jac) = (&out[2 * k], &out[2 * k + 1]);
        let scale = h.mag.max(1.0);
        if h.jump > 1e-9 * scale {
            counts[1] += 1;
            for i in 0..M {
                let tol = 1e-12 * (want[i].abs() + scale);
                prop_assert!(
                    (f[i] - want[i]).abs() <= tol,
                    "value {i}: xla {} host {} (tol {tol:e})\nexpr {e:?}",
                    f[i],
                    want[i]
                );
            }
        }
        if h.kink > 1e-9 * scale {
            counts[2] += 1;
            for j in 0..N {
                let col = fd_column(e, x, p, j, scale);
                for i in 0..M {
                    let Some(b) = col[i] else {
                        counts[4] += 1;
                        continue;
                    };
                    let a = jac[i * N + j];
                    let tol = 1e-6 * b.abs() + 1e-8 * scale;
                    prop_assert!(
                        (a - b).abs() <= tol,
                        "J[{i},{j}]: xla {a} fd {b} (tol {tol:e})\nexpr {e:?}"
                    );
                }
            }
        }
    }
    Ok(counts)
}

#[test]
fn values_and_jacobians_match_host_f64() {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    use std::cell::Cell;

    // Deterministic by default so CI is reproducible; `NLSQ_PROPTEST_RANDOM=1` explores new
    // seeds and `PROPTEST_CASES=n` changes the number of programs.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    let config = Config {
        cases,
        max_shrink_iters: 64,
        ..Config::default()
    };
    let mut runner = if std::env::var_os("NLSQ_PROPTEST_RANDOM").is_some() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    };
    let totals = Cell::new([0usize; 6]);
    let strategy = (
        prop::collection::vec(expr(DEPTH), EXPRS),
        prop::collection::vec(-2.0..2.0f64, M),
        prop::collection::vec(-2.0..2.0f64, N),
    );
    let result = runner.run(&strategy, |(exprs, x, p)| {
        let c = check(&exprs, &x, &p)?;
        let mut t = totals.get();
        t[0] += 1;
        for k in 0..5 {
            t[k + 1] += c[k];
        }
        totals.set(t);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let [cases, exprs, values, jacs, ops, unreliable] = totals.get();
    eprintln!(
        "graph_props: {cases} programs, {exprs} expressions ({ops} ops), {values} value checks, \
         {jacs} Jacobian checks ({unreliable} of {} entries without a stable FD reference)",
        jacs * M * N
    );
    assert!(
        values * 10 >= exprs * 8 && jacs * 10 >= exprs * 6,
        "too many skipped checks"
    );
}
