//! In-graph linear algebra against host references, through the real PJRT CPU plugin.
//!
//! Programs are compiled once per shape (data are program inputs) and cached, so the
//! property tests mostly execute.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use common::client;
use nlsq::graph::{Graph, Tensor};
use nlsq::linalg;
use nlsq::pjrt::LoadedExecutable;
use nlsq::DType;
use proptest::prelude::*;

const EPS: f64 = f64::EPSILON;

// ---- host matrices ---------------------------------------------------------------------------

/// Row-major host matrix.
#[derive(Clone, Debug, PartialEq)]
struct Mat {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Mat {
    fn new(rows: usize, cols: usize, data: Vec<f64>) -> Self {
        assert_eq!(data.len(), rows * cols);
        Mat { rows, cols, data }
    }
    fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f64) -> Self {
        let data = (0..rows * cols).map(|k| f(k / cols, k % cols)).collect();
        Mat { rows, cols, data }
    }
    fn eye(n: usize) -> Self {
        Mat::from_fn(n, n, |i, j| f64::from(u8::from(i == j)))
    }
    fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }
    fn t(&self) -> Mat {
        Mat::from_fn(self.cols, self.rows, |i, j| self.at(j, i))
    }
    fn mul(&self, o: &Mat) -> Mat {
        assert_eq!(self.cols, o.rows);
        Mat::from_fn(self.rows, o.cols, |i, j| {
            (0..self.cols).map(|k| self.at(i, k) * o.at(k, j)).sum()
        })
    }
    fn sub(&self, o: &Mat) -> Mat {
        Mat::new(
            self.rows,
            self.cols,
            self.data.iter().zip(&o.data).map(|(a, b)| a - b).collect(),
        )
    }
    fn scale_cols(&self, s: &[f64]) -> Mat {
        Mat::from_fn(self.rows, self.cols, |i, j| self.at(i, j) * s[j])
    }
    fn fro(&self) -> f64 {
        self.data.iter().map(|x| x * x).sum::<f64>().sqrt()
    }
    fn max_abs(&self) -> f64 {
        self.data.iter().fold(0.0, |m, x| m.max(x.abs()))
    }
    fn hilbert(n: usize) -> Mat {
        Mat::from_fn(n, n, |i, j| 1.0 / (i + j + 1) as f64)
    }
}

/// Eigenvalues of a symmetric matrix by the cyclic two-sided Jacobi method (an algorithm
/// independent of the one-sided SVD under test), sorted descending.
fn host_sym_eigenvalues(a: &Mat) -> Vec<f64> {
    let n = a.rows;
    let mut m = a.clone();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m.at(i, j).powi(2))
            .sum();
        if off.sqrt() < 1e-300 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m.at(p, q);
                if apq == 0.0 {
                    continue;
                }
                let theta = (m.at(q, q) - m.at(p, p)) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // m ← Jᵀ m J with J the rotation in the (p, q) plane.
                for k in 0..n {
                    let (mkp, mkq) = (m.at(k, p), m.at(k, q));
                    m.data[k * n + p] = c * mkp - s * mkq;
                    m.data[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m.at(p, k), m.at(q, k));
                    m.data[p * n + k] = c * mpk - s * mqk;
                    m.data[q * n + k] = s * mpk + c * mqk;
                }
            }
        }
    }
    let mut ev: Vec<f64> = (0..n).map(|i| m.at(i, i)).collect();
    ev.sort_by(|a, b| b.partial_cmp(a).unwrap());
    ev
}

fn host_back_substitution(r: &Mat, b: &Mat) -> Mat {
    let n = r.rows;
    let mut x = Mat::from_fn(n, b.cols, |_, _| 0.0);
    for c in 0..b.cols {
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|j| r.at(i, j) * x.at(j, c)).sum();
            x.data[i * b.cols + c] = (b.at(i, c) - s) / r.at(i, i);
        }
    }
    x
}

fn host_forward_substitution(l: &Mat, b: &Mat) -> Mat {
    let n = l.rows;
    let mut x = Mat::from_fn(n, b.cols, |_, _| 0.0);
    for c in 0..b.cols {
        for i in 0..n {
            let s: f64 = (0..i).map(|j| l.at(i, j) * x.at(j, c)).sum();
            x.data[i * b.cols + c] = (b.at(i, c) - s) / l.at(i, i);
        }
    }
    x
}

// ---- compiled programs -------------------------------------------------------------------------

type Cache = Mutex<HashMap<String, Arc<LoadedExecutable>>>;

fn cached(key: String, build: impl FnOnce() -> String) -> Arc<LoadedExecutable> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(exe) = cache.lock().unwrap().get(&key) {
        return exe.clone();
    }
    let text = build();
    let exe = Arc::new(client().compile(&text).unwrap_or_else(|e| panic!("{key}: {e}")));
    cache.lock().unwrap().entry(key).or_insert(exe).clone()
}

fn program(outputs: impl FnOnce(&Graph) -> Vec<Tensor>) -> String {
    let g = Graph::new();
    let outs = outputs(&g);
    g.finish(outs.iter()).unwrap().text
}

fn run(exe: &LoadedExecutable, inputs: &[&Mat]) -> Vec<Vec<f64>> {
    let c = client();
    let bufs: Vec<_> = inputs
        .iter()
        .map(|m| c.buffer_from_host(&m.data, &[m.rows as i64, m.cols as i64]).unwrap())
        .collect();
    let refs: Vec<_> = bufs.iter().collect();
    let outs = exe.execute(&refs).unwrap();
    outs.iter()
        .map(|b| match b.dtype().unwrap() {
            DType::I64 => b.to_vec::<i64>().unwrap().into_iter().map(|v| v as f64).collect(),
            _ => b.to_vec::<f64>().unwrap(),
        })
        .collect()
}

struct Qr {
    q: Mat,
    r: Mat,
    r_only: Mat,
}

fn qr(a: &Mat) -> Qr {
    let (m, k) = (a.rows, a.cols);
    let exe = cached(format!("qr{m}x{k}"), || {
        program(|g| {
            let a = g.parameter("a", DType::F64, [m as i64, k as i64]);
            let (q, r) = linalg::householder_qr(&a);
            vec![q, r, linalg::householder_qr_r(&a)]
        })
    });
    let o = run(&exe, &[a]);
    Qr {
        q: Mat::new(m, k, o[0].clone()),
        r: Mat::new(k, k, o[1].clone()),
        r_only: Mat::new(k, k, o[2].clone()),
    }
}

/// `householder_qr_r_blocked(a, block)` and `householder_qr_r(a)` of the same matrix.
fn blocked_r(a: &Mat, block: usize) -> (Mat, Mat) {
    let (m, k) = (a.rows, a.cols);
    let exe = cached(format!("qr_blocked{m}x{k}b{block}"), || {
        program(|g| {
            let a = g.parameter("a", DType::F64, [m as i64, k as i64]);
            vec![
                linalg::householder_qr_r_blocked(&a, block),
                linalg::householder_qr_r(&a),
            ]
        })
    });
    let o = run(&exe, &[a]);
    (Mat::new(k, k, o[0].clone()), Mat::new(k, k, o[1].clone()))
}

struct Svd {
    u: Mat,
    s: Vec<f64>,
    v: Mat,
    sweeps: f64,
}

fn svd(a: &Mat) -> Svd {
    let (m, n) = (a.rows, a.cols);
    let exe = cached(format!("svd{m}x{n}"), || {
        program(|g| {
            let a = g.parameter("a", DType::F64, [m as i64, n as i64]);
            let r = linalg::jacobi_svd_with(&a, &linalg::JacobiOptions::default());
            vec![r.u, r.s, r.v, r.sweeps]
        })
    });
    let o = run(&exe, &[a]);
    Svd {
        u: Mat::new(m, n, o[0].clone()),
        s: o[1].clone(),
        v: Mat::new(n, n, o[2].clone()),
        sweeps: o[3][0],
    }
}

/// Relative reconstruction error, ‖VᵀV − I‖_max, ‖UᵀU − I‖_max over the non-zero columns.
fn check_svd(a: &Mat, d: &Svd) -> (f64, f64, f64) {
    let n = a.cols;
    assert!(d.s.iter().all(|&s| s >= 0.0), "negative singular value {:?}", d.s);
    assert!(d.s.windows(2).all(|w| w[0] >= w[1]), "not descending {:?}", d.s);
    let rec = d.u.scale_cols(&d.s).mul(&d.v.t());
    let norm = a.fro().max(f64::MIN_POSITIVE);
    let rec_err = a.sub(&rec).fro() / norm;
    let v_err = d.v.t().mul(&d.v).sub(&Mat::eye(n)).max_abs();
    // U's columns are orthonormal where s is not tiny relative to s₀.
    let big: Vec<usize> = (0..n).filter(|&i| d.s[i] > 1e-8 * d.s[0]).collect();
    let utu = d.u.t().mul(&d.u);
    let u_err = big
        .iter()
        .flat_map(|&i| big.iter().map(move |&j| (i, j)))
        .fold(0.0f64, |m, (i, j)| {
            m.max((utu.at(i, j) - f64::from(u8::from(i == j))).abs())
        });
    (rec_err, v_err, u_err)
}

fn check_qr(a: &Mat, d: &Qr) -> (f64, f64) {
    let k = a.cols;
    // The same reflections in two code paths: equal up to rounding (XLA may contract a*b+c into
    // an FMA in one kernel and not in the other).
    let scale = a.fro().max(f64::MIN_POSITIVE);
    let r_diff = d.r.sub(&d.r_only).max_abs() / scale;
    assert!(
        r_diff <= 1e-13,
        "householder_qr_r differs from householder_qr's R by {r_diff:e} (relative)"
    );
    for i in 0..k {
        assert!(d.r.at(i, i) >= 0.0, "negative diagonal R[{i},{i}] = {}", d.r.at(i, i));
        for j in 0..i {
            assert_eq!(d.r.at(i, j), 0.0, "R not upper triangular at ({i},{j})");
        }
    }
    assert!(
        d.q.data.iter().chain(&d.r.data).all(|x| x.is_finite()),
        "non-finite Q or R"
    );
    let rec_err = a.sub(&d.q.mul(&d.r)).fro() / a.fro().max(f64::MIN_POSITIVE);
    let q_err = d.q.t().mul(&d.q).sub(&Mat::eye(k)).max_abs();
    (rec_err, q_err)
}

// ---- properties --------------------------------------------------------------------------------

const QR_SHAPES: &[(usize, usize)] = &[(1, 1), (4, 1), (5, 5), (12, 8), (16, 16), (30, 13)];
const SVD_SIZES: &[(usize, usize)] = &[(1, 1), (2, 2), (3, 3), (5, 5), (8, 8), (16, 16), (20, 7)];

fn matrix(shapes: &'static [(usize, usize)]) -> impl Strategy<Value = Mat> {
    (0..shapes.len(), -3i32..4).prop_flat_map(move |(i, e)| {
        let (m, n) = shapes[i];
        let scale = 10f64.powi(e);
        prop::collection::vec(-1.0f64..1.0, m * n)
            .prop_map(move |d| Mat::new(m, n, d.into_iter().map(|x| x * scale).collect()))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn qr_reconstructs_with_orthonormal_q(a in matrix(QR_SHAPES)) {
        let (rec, orth) = check_qr(&a, &qr(&a));
        let bound = 8.0 * EPS * (a.rows.max(a.cols) as f64).sqrt() * a.cols as f64;
        prop_assert!(rec <= bound, "‖A−QR‖/‖A‖ = {rec:e} > {bound:e} for {}x{}", a.rows, a.cols);
        prop_assert!(orth <= bound, "‖QᵀQ−I‖ = {orth:e} > {bound:e}");
    }

    #[test]
    fn blocked_qr_matches_unblocked(a in matrix(&[(1024, 3), (768, 5), (512, 8)])) {
        // Blocks of 256 rows: 4, 3 and 2 of them; R is unique (diag ≥ 0), so both agree.
        let (blocked, whole) = blocked_r(&a, 256);
        let diff = blocked.sub(&whole).max_abs() / a.fro();
        prop_assert!(diff <= 1e-13, "blocked R differs by {diff:e} (relative) for {}x{}", a.rows, a.cols);
        for i in 0..a.cols {
            prop_assert!(blocked.at(i, i) >= 0.0);
            for j in 0..i {
                prop_assert_eq!(blocked.at(i, j), 0.0);
            }
        }
    }

    #[test]
    fn svd_reconstructs_with_orthogonal_factors(a in matrix(SVD_SIZES)) {
        let d = svd(&a);
        let (rec, v_err, u_err) = check_svd(&a, &d);
        prop_assert!(rec <= 1e-14, "‖A−USVᵀ‖/‖A‖ = {rec:e} for {}x{}", a.rows, a.cols);
        prop_assert!(v_err <= 1e-14, "‖VᵀV−I‖ = {v_err:e}");
        prop_assert!(u_err <= 1e-13, "‖UᵀU−I‖ = {u_err:e}");
        prop_assert!(d.sweeps < 30.0, "not converged: {} sweeps", d.sweeps);
    }

    #[test]
    fn triangular_solves_match_host_substitution(
        (n, k, a, b) in (1usize..9, 1usize..4).prop_flat_map(|(n, k)| (
            Just(n), Just(k),
            prop::collection::vec(-1.0f64..1.0, n * n),
            prop::collection::vec(-1.0f64..1.0, n * k),
        ))
    ) {
        // Diagonally dominant enough to be well conditioned; both triangles filled.
        let a = Mat::from_fn(n, n, |i, j| a[i * n + j] + if i == j { 2.0 * a[i * n + j].signum() + 1e-3 } else { 0.0 });
        let b = Mat::new(n, k, b);
        let exe = cached(format!("tri{n}x{k}"), || program(|g| {
            let a = g.parameter("a", DType::F64, [n as i64, n as i64]);
            let b = g.parameter("b", DType::F64, [n as i64, k as i64]);
            let b0 = b.col(0);
            vec![
                linalg::solve_upper_triangular(&a, &b),
                linalg::solve_lower_triangular(&a, &b),
                linalg::solve_upper_triangular(&a, &b0),
                linalg::solve_lower_triangular(&a, &b0),
            ]
        }));
        let o = run(&exe, &[&a, &b]);
        let up = host_back_substitution(&a, &b);
        let lo = host_forward_substitution(&a, &b);
        for (got, want) in [(&o[0], &up), (&o[1], &lo)] {
            for (x, y) in got.iter().zip(&want.data) {
                prop_assert!((x - y).abs() <= 1e-12 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
        for (i, (x_up, x_lo)) in o[2].iter().zip(&o[3]).enumerate() {
            prop_assert!((x_up - up.at(i, 0)).abs() <= 1e-12 * (1.0 + up.at(i, 0).abs()));
            prop_assert!((x_lo - lo.at(i, 0)).abs() <= 1e-12 * (1.0 + lo.at(i, 0).abs()));
        }
    }

    #[test]
    fn cholesky_reproduces_spd_matrix(
        (n, x) in (1usize..10).prop_flat_map(|n| (Just(n), prop::collection::vec(-1.0f64..1.0, n * n)))
    ) {
        let x = Mat::new(n, n, x);
        let a = Mat::from_fn(n, n, |i, j| x.mul(&x.t()).at(i, j) + if i == j { 0.1 } else { 0.0 });
        let exe = cached(format!("chol{n}"), || program(|g| {
            let a = g.parameter("a", DType::F64, [n as i64, n as i64]);
            vec![linalg::cholesky(&a)]
        }));
        let l = Mat::new(n, n, run(&exe, &[&a]).remove(0));
        for i in 0..n {
            prop_assert!(l.at(i, i) > 0.0);
            for j in i + 1..n {
                prop_assert_eq!(l.at(i, j), 0.0);
            }
        }
        let err = a.sub(&l.mul(&l.t())).max_abs() / a.max_abs();
        prop_assert!(err <= 1e-14, "‖A − LLᵀ‖ = {err:e}");
    }
}

// ---- special matrices --------------------------------------------------------------------------

fn specials(n: usize) -> Vec<(&'static str, Mat)> {
    let mut two_equal = Mat::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0 + 0.1 * i as f64);
    for i in 0..n {
        two_equal.data[i * n + n - 1] = two_equal.at(i, 0);
    }
    vec![
        ("zeros", Mat::from_fn(n, n, |_, _| 0.0)),
        ("identity", Mat::eye(n)),
        ("ones", Mat::from_fn(n, n, |_, _| 1.0)),
        ("hilbert", Mat::hilbert(n)),
        ("two equal columns", two_equal),
        (
            "zero column",
            Mat::from_fn(n, n, |i, j| if j == 2 { 0.0 } else { (i as f64 - j as f64).sin() }),
        ),
    ]
}

#[test]
fn qr_of_special_matrices() {
    for (name, a) in specials(8) {
        let d = qr(&a);
        let (rec, orth) = check_qr(&a, &d);
        assert!(rec <= 1e-14, "{name}: ‖A−QR‖/‖A‖ = {rec:e}");
        assert!(orth <= 1e-14, "{name}: ‖QᵀQ−I‖ = {orth:e}");
        eprintln!("qr {name:>18}: rec {rec:.1e} orth {orth:.1e}");
    }
}

#[test]
fn svd_of_special_matrices() {
    let n = 8;
    for (name, a) in specials(n) {
        let d = svd(&a);
        let (rec, v_err, u_err) = check_svd(&a, &d);
        eprintln!(
            "svd {name:>18}: rec {rec:.1e} V {v_err:.1e} U {u_err:.1e} sweeps {} s {:?}",
            d.sweeps, d.s
        );
        assert!(rec <= 1e-14, "{name}: ‖A−USVᵀ‖/‖A‖ = {rec:e}");
        assert!(v_err <= 1e-14, "{name}: ‖VᵀV−I‖ = {v_err:e}");
        assert!(u_err <= 1e-13, "{name}: ‖UᵀU−I‖ = {u_err:e}");
        assert!(
            d.s.iter().chain(&d.u.data).chain(&d.v.data).all(|x| x.is_finite()),
            "{name}: non-finite"
        );
        match name {
            "zeros" => assert!(d.s.iter().all(|&s| s == 0.0) && d.u.data.iter().all(|&x| x == 0.0)),
            "identity" => assert!(d.s.iter().all(|&s| (s - 1.0).abs() <= 4.0 * EPS)),
            "ones" => {
                assert!((d.s[0] - n as f64).abs() <= 8.0 * EPS * n as f64, "{:?}", d.s);
                assert!(d.s[1..].iter().all(|&s| s <= 1e-14 * n as f64), "{:?}", d.s);
            }
            "two equal columns" | "zero column" => assert!(d.s[n - 1] <= 1e-14 * d.s[0], "{:?}", d.s),
            "hilbert" => {
                let want = host_sym_eigenvalues(&a);
                for (got, want) in d.s.iter().zip(&want) {
                    assert!(
                        (got - want).abs() <= 1e-15 * want.max(1e-1 * d.s[0]) * 10.0,
                        "{got:e} vs {want:e}"
                    );
                }
                // Known extremes of the 8×8 Hilbert matrix.
                assert!((d.s[0] - 1.695_938_996_921_949).abs() <= 1e-14, "{}", d.s[0]);
                assert!(
                    (d.s[n - 1] / 1.111_538_966_207_4e-10 - 1.0).abs() <= 1e-6,
                    "{:e}",
                    d.s[n - 1]
                );
            }
            _ => {}
        }
    }
}

/// Overall scale does not matter to the SVD: entries near 1e±200 square to 1e±400, which
/// the internal scaling by max |a_ij| avoids.
#[test]
fn svd_is_scale_invariant() {
    let base = Mat::from_fn(8, 8, |i, j| {
        ((i * 5 + j * 3) % 7) as f64 - 3.0 + 0.5 * (i == j) as u8 as f64
    });
    let d0 = svd(&base);
    for scale in [1e200, 1e-200, 1e-305] {
        let a = Mat::new(8, 8, base.data.iter().map(|x| x * scale).collect());
        let mut d = svd(&a);
        d.s.iter_mut().for_each(|s| *s /= scale); // the host check would overflow at 1e200
        let (rec, v_err, u_err) = check_svd(&base, &d);
        assert!(
            rec <= 1e-14 && v_err <= 1e-14 && u_err <= 1e-13,
            "scale {scale:e}: {rec:e} {v_err:e} {u_err:e}"
        );
        for (x, y) in d.s.iter().zip(&d0.s) {
            assert!((x - y).abs() <= 1e-14 * d0.s[0], "scale {scale:e}: {x:e} vs {y:e}");
        }
    }
}

/// Relative accuracy of the small singular values of Hilbert matrices (n ≤ 10): one-sided
/// Jacobi on an SPD matrix keeps them to far better than ε·s₀.
#[test]
fn svd_hilbert_small_singular_values() {
    for n in [3usize, 5, 10] {
        let a = Mat::hilbert(n);
        let d = svd(&a);
        let want = host_sym_eigenvalues(&a);
        let worst =
            d.s.iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs() / d.s[0])
                .fold(0.0, f64::max);
        eprintln!("hilbert {n}: max |Δs|/s₀ = {worst:.1e}, s_min = {:e}", d.s[n - 1]);
        assert!(worst <= 1e-15 * n as f64, "n = {n}: {worst:e}");
    }
}

#[test]
fn cholesky_of_indefinite_matrix_is_nan() {
    let exe = cached("chol3".into(), || {
        program(|g| {
            let a = g.parameter("a", DType::F64, [3, 3]);
            vec![linalg::cholesky(&a)]
        })
    });
    let a = Mat::new(3, 3, vec![1.0, 2.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    let l = run(&exe, &[&a]).remove(0);
    assert!(l[8].is_nan(), "{l:?}");
    assert_eq!(l[0], 1.0);
}

#[test]
fn covariance_and_pinv_follow_scipy_rule() {
    let (m, n) = (30usize, 4usize);
    let exe = cached(format!("cov{m}x{n}"), || {
        program(|g| {
            let j = g.parameter("j", DType::F64, [m as i64, n as i64]);
            let (u, s, v) = linalg::svd(&j);
            let cut = linalg::scipy_cutoff(&s, m, n);
            vec![
                linalg::covariance_from_svd(&s, &v, &cut),
                linalg::pinv_from_svd(&u, &s, &v, &cut),
                s,
                linalg::pinv(&j, 1e-15),
            ]
        })
    });
    // Full rank: pcov = (JᵀJ)⁻¹, pinv · J = I.
    let j = Mat::from_fn(m, n, |i, k| {
        ((i + 1) as f64 * 0.1).powi(k as i32) + 0.01 * ((i * k) as f64).cos()
    });
    let o = run(&exe, &[&j]);
    let (pcov, pinv, pinv2) = (
        Mat::new(n, n, o[0].clone()),
        Mat::new(n, m, o[1].clone()),
        Mat::new(n, m, o[3].clone()),
    );
    let jtj = j.t().mul(&j);
    assert!(pcov.mul(&jtj).sub(&Mat::eye(n)).max_abs() <= 1e-10);
    assert!(pinv.mul(&j).sub(&Mat::eye(n)).max_abs() <= 1e-12);
    assert!(pinv.sub(&pinv2).max_abs() <= 1e-12 * pinv.max_abs());
    // Two equal columns: rank n − 1, the tiny singular value is dropped, pcov stays finite and
    // is the Moore–Penrose inverse of JᵀJ.
    let mut jd = j.clone();
    for i in 0..m {
        jd.data[i * n + n - 1] = jd.at(i, 0);
    }
    let o = run(&exe, &[&jd]);
    let pcov = Mat::new(n, n, o[0].clone());
    assert!(pcov.data.iter().all(|x| x.is_finite()));
    let jtj = jd.t().mul(&jd);
    let p = pcov.mul(&jtj).mul(&pcov);
    assert!(p.sub(&pcov).max_abs() <= 1e-9 * pcov.max_abs(), "pcov JᵀJ pcov ≠ pcov");
    let s = &o[2];
    assert!(s[n - 1] <= EPS * m as f64 * s[0], "{s:?}");
}

/// The sizes the solvers reach: n = 64 (an even sweep of 63 one-round loop iterations) and
/// n = 63 (padded), plus the QR of a tall 80 × 64 matrix.
#[test]
fn svd_and_qr_at_n64() {
    use std::time::Instant;
    let mut seed = 12345u64;
    let mut rnd = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    for n in [64usize, 63] {
        let a = Mat::from_fn(n, n, |_, _| rnd());
        let t0 = Instant::now();
        let _ = svd(&Mat::from_fn(n, n, |_, _| 0.0)); // compile
        let t1 = Instant::now();
        let d = svd(&a);
        let t2 = Instant::now();
        let (rec, v_err, u_err) = check_svd(&a, &d);
        eprintln!(
            "svd {n}x{n}: compile+first {:?}, execute {:?}, sweeps {}, rec {rec:.1e} V {v_err:.1e} U {u_err:.1e}",
            t1 - t0,
            t2 - t1,
            d.sweeps
        );
        assert!(
            rec <= 1e-13 && v_err <= 1e-13 && u_err <= 1e-13,
            "n = {n}: {rec:e} {v_err:e} {u_err:e}"
        );
    }
    let a = Mat::from_fn(80, 64, |_, _| rnd());
    let t0 = Instant::now();
    let d = qr(&a);
    let (rec, orth) = check_qr(&a, &d);
    eprintln!(
        "qr 80x64: compile+run {:?}, rec {rec:.1e} orth {orth:.1e}",
        t0.elapsed()
    );
    assert!(rec <= 1e-14 && orth <= 1e-14, "{rec:e} {orth:e}");
}
