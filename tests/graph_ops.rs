//! Structural ops on matrices and rank-3 tensors (dot_general with batch axes, gather, dynamic
//! slices, reductions over several axes, strided slices, dtype conversions, integer and bool
//! ops) evaluated through XLA and compared with host loops; and Jacobians through them —
//! including a model that calls a traced private function, and a 2-D independent variable —
//! compared with central differences computed by re-running the same executable.

use nlsq::graph::{jacfwd_model, Graph, Params, Program, Tensor, TensorType};
use nlsq::pjrt::{Buffer, Client};
use nlsq::DType;

fn client() -> Client {
    nlsq::runtime::client().expect("PJRT client")
}

fn compile(program: &Program) -> nlsq::pjrt::LoadedExecutable {
    client()
        .compile(&program.text)
        .unwrap_or_else(|e| panic!("{e}\n{}", program.text))
}

fn read(b: &Buffer) -> Vec<f64> {
    match b.dtype().unwrap() {
        DType::F64 => b.to_vec::<f64>().unwrap(),
        DType::F32 => b.to_vec::<f32>().unwrap().into_iter().map(f64::from).collect(),
        DType::I64 => b.to_vec::<i64>().unwrap().into_iter().map(|v| v as f64).collect(),
        DType::I32 => b.to_vec::<i32>().unwrap().into_iter().map(f64::from).collect(),
        DType::Bool => b
            .to_vec::<bool>()
            .unwrap()
            .into_iter()
            .map(|v| f64::from(u8::from(v)))
            .collect(),
    }
}

fn close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn structural_ops_match_host_loops() {
    let g = Graph::new();
    let a = g.parameter("a", DType::F64, [3, 4]);
    let b = g.parameter("b", DType::F64, [4, 2]);
    let c = g.parameter("c", DType::F64, [2, 3, 4]);
    let idx = g.parameter("idx", DType::I32, [5]);
    let k = g.parameter("k", DType::I64, []);

    let v = a.row(1); // [4]
    let outs: Vec<(&str, Tensor)> = vec![
        ("matmul", a.dot(&b)),
        ("matvec", a.dot(&v)),
        ("vecdot", v.dot(&v)),
        ("batched_gram", c.dot_general(&c, &[0], &[0], &[2], &[2])),
        ("batched_matmul", c.matmul(&c.transpose(&[0, 2, 1]))),
        ("t", a.t()),
        ("sum_all", a.reduce_sum(&[0, 1])),
        ("max_02", c.reduce_max(&[0, 2])),
        ("min_1", c.reduce_min(&[-2])),
        ("prod_1", a.reduce_prod(&[1])),
        ("mean_0", a.mean(&[0])),
        ("take", a.take(1, &idx)),
        ("at_row", a.at(&k)),
        ("at_col", a.at_axis(1, &k)),
        ("set_row", a.set(&k, &(&v * 10.0))),
        ("set_scalar", v.set(3, &g.constant(-1.0))),
        ("concat1", g.concat(&[a.clone(), &a * 2.0], 1)),
        ("strided", a.slice_strided(&[0, 1], &[3, 4], &[2, 2])),
        ("bcast", &a + &v + 1.0),
        ("bcast_col", &a * &a.col(0).reshape([3, 1])),
        ("iota", g.iota(DType::I64, [2, 3], 1)),
        ("eye", g.eye(DType::F64, 3)),
        ("f32_roundtrip", (a.convert(DType::F32) * 3.0).convert(DType::F64)),
        ("int_ops", ((&k * 3.0 + 1.0) % 5.0).max(2.0)),
        ("logic", a.gt(0.0).and(&a.lt(1.0)).or(&a.eq(2.0).not())),
        ("select", a.gt(0.5).select(&a, -1.0)),
        (
            "dynamic_block",
            c.dynamic_slice(&[g.scalar(DType::I64, 1.0), k.clone(), k.clone()], &[1, 2, 2]),
        ),
    ];
    let tensors: Vec<&Tensor> = outs.iter().map(|(_, t)| t).collect();
    let program = g.finish(tensors.iter().copied()).unwrap();
    let exe = compile(&program);

    let av: Vec<f64> = (0..12).map(|i| (i as f64 - 5.0) * 0.25).collect();
    let bv: Vec<f64> = (0..8).map(|i| 1.0 + i as f64 * 0.5).collect();
    let cv: Vec<f64> = (0..24).map(|i| ((i * 7) % 11) as f64 - 4.0).collect();
    let iv: Vec<i32> = vec![3, 0, 2, 2, 1];
    let kv: i64 = 1;
    let cl = client();
    let bufs = [
        cl.buffer_from_host(&av, &[3, 4]).unwrap(),
        cl.buffer_from_host(&bv, &[4, 2]).unwrap(),
        cl.buffer_from_host(&cv, &[2, 3, 4]).unwrap(),
        cl.buffer_from_host(&iv, &[5]).unwrap(),
        cl.buffer_from_host(&[kv], &[]).unwrap(),
    ];
    let res = exe.execute(&bufs.iter().collect::<Vec<_>>()).unwrap();
    let got: Vec<Vec<f64>> = res.iter().map(read).collect();

    let a_ = |i: usize, j: usize| av[i * 4 + j];
    let c_ = |i: usize, j: usize, l: usize| cv[i * 12 + j * 4 + l];
    let ku = kv as usize;
    let mut want: Vec<Vec<f64>> = Vec::new();
    want.push(
        (0..6)
            .map(|q| (0..4).map(|l| a_(q / 2, l) * bv[l * 2 + q % 2]).sum())
            .collect(),
    );
    want.push((0..3).map(|i| (0..4).map(|l| a_(i, l) * a_(1, l)).sum()).collect());
    want.push(vec![(0..4).map(|l| a_(1, l) * a_(1, l)).sum()]);
    let gram: Vec<f64> = (0..18)
        .map(|q| (0..4).map(|l| c_(q / 9, (q / 3) % 3, l) * c_(q / 9, q % 3, l)).sum())
        .collect();
    want.push(gram.clone());
    want.push(gram);
    want.push((0..12).map(|q| a_(q % 3, q / 3)).collect());
    want.push(vec![av.iter().sum()]);
    want.push(
        (0..3)
            .map(|j| {
                (0..2)
                    .flat_map(|i| (0..4).map(move |l| (i, l)))
                    .map(|(i, l)| c_(i, j, l))
                    .fold(f64::MIN, f64::max)
            })
            .collect(),
    );
    want.push(
        (0..8)
            .map(|q| (0..3).map(|j| c_(q / 4, j, q % 4)).fold(f64::MAX, f64::min))
            .collect(),
    );
    want.push((0..3).map(|i| (0..4).map(|l| a_(i, l)).product()).collect());
    want.push((0..4).map(|l| (0..3).map(|i| a_(i, l)).sum::<f64>() / 3.0).collect());
    want.push((0..15).map(|q| a_(q / 5, iv[q % 5] as usize)).collect());
    want.push((0..4).map(|l| a_(ku, l)).collect());
    want.push((0..3).map(|i| a_(i, ku)).collect());
    want.push(
        (0..12)
            .map(|q| if q / 4 == ku { a_(1, q % 4) * 10.0 } else { av[q] })
            .collect(),
    );
    want.push((0..4).map(|l| if l == 3 { -1.0 } else { a_(1, l) }).collect());
    want.push(
        (0..24)
            .map(|q| {
                if q % 8 < 4 {
                    a_(q / 8, q % 8)
                } else {
                    2.0 * a_(q / 8, q % 8 - 4)
                }
            })
            .collect(),
    );
    want.push(vec![a_(0, 1), a_(0, 3), a_(2, 1), a_(2, 3)]);
    want.push((0..12).map(|q| av[q] + a_(1, q % 4) + 1.0).collect());
    want.push((0..12).map(|q| av[q] * a_(q / 4, 0)).collect());
    want.push((0..6).map(|q| (q % 3) as f64).collect());
    want.push((0..9).map(|q| if q / 3 == q % 3 { 1.0 } else { 0.0 }).collect());
    want.push(av.iter().map(|v| f64::from(*v as f32 * 3.0)).collect());
    want.push(vec![(((kv * 3 + 1) % 5).max(2)) as f64]);
    want.push(
        av.iter()
            .map(|&v| f64::from(u8::from((v > 0.0 && v < 1.0) || v != 2.0)))
            .collect(),
    );
    want.push(av.iter().map(|&v| if v > 0.5 { v } else { -1.0 }).collect());
    want.push((0..4).map(|q| c_(1, ku + q / 2, ku + q % 2)).collect());
    assert_eq!(want.len(), outs.len());
    for (((name, _), got), want) in outs.iter().zip(&got).zip(&want) {
        close(got, want, 1e-14, name);
    }
    assert_eq!(res[0].dims().unwrap(), vec![3, 2]);
    assert_eq!(res[4].dims().unwrap(), vec![2, 3, 3]);
}

/// Compiles `(f, J)` of `model` at symbolic `x: x_shape`, `p: [n]`, runs it at `(x, p)`, and
/// compares J with central differences of f from the same executable.
fn check_jacobian<F>(name: &str, model: &F, x_shape: &[i64], x: &[f64], p: &[f64], dtype: DType, tol: f64) -> String
where
    F: Fn(&Tensor, &Params) -> Tensor,
{
    let g = Graph::new();
    let xs = g.parameter("x", dtype, x_shape.to_vec());
    let ps = g.parameter("p", dtype, [p.len() as i64]);
    let (f, jac) = jacfwd_model(model, &xs, &ps).unwrap_or_else(|e| panic!("{name}: {e}"));
    let program = g.finish([&f, &jac]).unwrap();
    let exe = compile(&program);
    let cl = client();
    let run = |p: &[f64]| -> Vec<Vec<f64>> {
        let (xb, pb) = if dtype == DType::F32 {
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let p32: Vec<f32> = p.iter().map(|&v| v as f32).collect();
            (
                cl.buffer_from_host(&x32, x_shape).unwrap(),
                cl.buffer_from_host(&p32, &[p.len() as i64]).unwrap(),
            )
        } else {
            (
                cl.buffer_from_host(x, x_shape).unwrap(),
                cl.buffer_from_host(p, &[p.len() as i64]).unwrap(),
            )
        };
        exe.execute(&[&xb, &pb]).unwrap().iter().map(read).collect()
    };
    let base = run(p);
    let (m, n) = (base[0].len(), p.len());
    assert_eq!(base[1].len(), m * n, "{name}: J shape");
    let h = if dtype == DType::F32 { 1e-2 } else { 1e-5 };
    for j in 0..n {
        let (mut lo, mut hi) = (p.to_vec(), p.to_vec());
        lo[j] -= h;
        hi[j] += h;
        let (fl, fh) = (run(&lo).remove(0), run(&hi).remove(0));
        for i in 0..m {
            let fd = (fh[i] - fl[i]) / (2.0 * h);
            let ad = base[1][i * n + j];
            assert!(
                (fd - ad).abs() <= tol * (1.0 + fd.abs()),
                "{name}: J[{i},{j}] = {ad}, central difference {fd}"
            );
        }
    }
    program.text
}

#[test]
fn jacobians_through_structural_ops() {
    let x1: Vec<f64> = (0..8).map(|i| -1.0 + 0.3 * i as f64).collect();
    let p = [0.7, -0.4, 1.3, 0.9];

    // 2-D independent variable: a Gaussian over (u, v) points.
    let gauss2d = |x: &Tensor, p: &Params| {
        let (u, v) = (x.row(0), x.row(1));
        &p[0] * (-((&u - &p[1]).square() + (&v - &p[2]).square()) * &p[3]).exp()
    };
    let x2: Vec<f64> = (0..16).map(|i| ((i * 5) % 7) as f64 * 0.3 - 1.0).collect();
    check_jacobian("gauss2d", &gauss2d, &[2, 8], &x2, &p, DType::F64, 1e-7);

    // Whole-vector ops on the parameters: gather, dynamic index/update, reductions, concat,
    // dot products, a matrix built from parameters.
    let vector_ops = |x: &Tensor, p: &Params| {
        let g = x.graph();
        let v = p.vector();
        let idx = g.constant_array_of(DType::I64, &[0.0, 1.0, 2.0, 3.0, 3.0, 2.0, 1.0, 0.0], [8]);
        let per_point = v.take(0, &idx); // [8]
        let q = v.set(1, &(&p[0] * &p[2]));
        let w = g.concat(&[v.clone(), v.square()], 0); // [8]
        let mat = v.reshape([2, 2]);
        let quad = v.slice(&[0], &[2]).dot(&mat.dot(&v.slice(&[2], &[4]))); // scalar
        x * &per_point
            + q.at(1)
            + q.reduce_prod(&[0])
            + v.reduce_max(&[0])
            + (&w * x).sin()
            + quad
            + mat.t().reduce_sum(&[1]).at(g.scalar(DType::I32, 1.0))
    };
    check_jacobian("vector_ops", &vector_ops, &[8], &x1, &p, DType::F64, 1e-7);

    // Batched contraction with the parameters in both operands.
    let batched = |x: &Tensor, p: &Params| {
        let m = p.vector().reshape([1, 2, 2]).broadcast_to([2, 2, 2]) * &x.slice(&[0], &[8]).reshape([2, 2, 2]);
        let prod = m.matmul(&m.transpose(&[0, 2, 1])); // [2, 2, 2]
        prod.reshape([8]) + x.cos() * &p[3]
    };
    check_jacobian("batched", &batched, &[8], &x1, &p, DType::F64, 1e-7);

    // Selects and clamps route tangents.
    let piecewise = |x: &Tensor, p: &Params| {
        let lin = &p[0] * x + &p[1];
        let quad = &p[2] * x.square();
        nlsq::graph::cond(
            &p[3].gt(0.0),
            || vec![x.gt(0.0).select(&lin, &quad)],
            || vec![lin.clone()],
        )
        .remove(0)
        .clamp(-5.0, &(&p[3] * 10.0))
    };
    check_jacobian("piecewise", &piecewise, &[8], &x1, &p, DType::F64, 1e-7);

    // f32 end to end.
    let decay = |x: &Tensor, p: &Params| &p[0] * (-&p[1] * x).exp() + &p[2] * x.sin() + &p[3];
    check_jacobian("decay_f32", &decay, &[8], &x1, &p, DType::F32, 2e-2);
}

#[test]
fn jacobian_through_a_called_function() {
    // The model calls a traced helper; differentiating it traces `@bump_jvp` once and calls it.
    let g = Graph::new();
    let bump = g
        .function(
            "bump",
            &[
                ("z", TensorType::new(DType::F64, [8])),
                ("w", TensorType::scalar(DType::F64)),
            ],
            |a| vec![(-(&a[0] * &a[0]) / &a[1]).exp(), a[1].ln()],
        )
        .unwrap();
    let x = g.parameter("x", DType::F64, [8]);
    let p = g.parameter("p", DType::F64, [3]);
    let model = |x: &Tensor, p: &Params| {
        let z = x - &p[1];
        let r = bump.call(&[&z, &p[2]]);
        let r2 = bump.call(&[&(x * 0.5), &p[2]]); // a second call, tangent only in `w`
        &p[0] * &r[0] + &r[1] + &r2[0]
    };
    let (f, jac) = jacfwd_model(&model, &x, &p).unwrap();
    let program = g.finish([&f, &jac]).unwrap();
    assert!(program.text.contains("func.func private @bump("), "{}", program.text);
    assert_eq!(
        program.text.matches("func.func private @bump_jvp").count(),
        2,
        "{}",
        program.text
    );
    let exe = compile(&program);
    let cl = client();
    let xs: Vec<f64> = (0..8).map(|i| -1.0 + 0.3 * i as f64).collect();
    let pv = [1.5, 0.2, 0.8];
    let out = exe
        .execute(&[
            &cl.buffer_from_host(&xs, &[8]).unwrap(),
            &cl.buffer_from_host(&pv, &[3]).unwrap(),
        ])
        .unwrap();
    let (fv, jv) = (read(&out[0]), read(&out[1]));
    for i in 0..8 {
        let z = xs[i] - pv[1];
        let e = (-z * z / pv[2]).exp();
        let z2 = xs[i] * 0.5;
        let e2 = (-z2 * z2 / pv[2]).exp();
        close(&[fv[i]], &[pv[0] * e + pv[2].ln() + e2], 1e-14, "f");
        // d/dp0 = e; d/dp1 = p0 * e * 2z / w; d/dw = p0 * e * z^2 / w^2 + 1/w + e2 * z2^2 / w^2
        let want = [
            e,
            pv[0] * e * 2.0 * z / pv[2],
            pv[0] * e * z * z / (pv[2] * pv[2]) + 1.0 / pv[2] + e2 * z2 * z2 / (pv[2] * pv[2]),
        ];
        close(&jv[3 * i..3 * i + 3], &want, 1e-13, "J");
    }
}

#[test]
fn constant_gathered_tangents_keep_their_layout() {
    // Regression: the Jacobian here is a constant computed from a gather along axis 1 of the
    // one-hot seeds, added to a broadcast. The pinned plugin constant-folds it; with the
    // offset-axes-first gather form the result came back transposed.
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, [8]);
    let p = g.parameter("p", DType::F64, [3]);
    let rev = g.constant_array_of(DType::I32, &[7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0], [8]);
    let model = |_x: &Tensor, p: &Params| p[1].broadcast_to([8]).sum() + p[0].broadcast_to([8]).take(0, &rev);
    let (f, jac) = jacfwd_model(&model, &x, &p).unwrap();
    let program = g.finish([&f, &jac]).unwrap();
    let cl = client();
    let out = compile(&program)
        .execute(&[
            &cl.buffer_from_host(&[0.0; 8], &[8]).unwrap(),
            &cl.buffer_from_host(&[0.3, -0.7, 1.1], &[3]).unwrap(),
        ])
        .unwrap();
    close(&read(&out[1]), &[1.0, 8.0, 0.0].repeat(8), 0.0, "J");
}
