//! Trace-time errors: every kind is an `nlsq::Error` value naming the op and the shapes or
//! dtypes, returned by `Graph::finish` (first error wins) or by `try_*`; nothing panics.

use nlsq::graph::{jacfwd, jacfwd_model, jvp, Graph, Params, Tensor, TensorType};
use nlsq::{DType, Error};

/// A trace that should fail, with the expected message.
type Case = (&'static str, Box<dyn Fn(&Graph) -> Tensor>);

fn finish_err(g: &Graph, outs: &[&Tensor]) -> Error {
    g.finish(outs.iter().copied()).expect_err("tracing should have failed")
}

#[test]
fn shape_mismatch_names_op_and_shapes() {
    let g = Graph::new();
    let a = g.parameter("a", DType::F64, [3]);
    let b = g.parameter("b", DType::F64, [4]);
    let c = &a + &b;
    let e = finish_err(&g, &[&c]);
    assert!(matches!(e, Error::ShapeMismatch { op: "add", .. }), "{e:?}");
    assert_eq!(e.to_string(), "add: shape mismatch, lhs [3], rhs [4]");

    let cases: Vec<Case> = vec![
        (
            "reshape: shape mismatch, lhs [6], rhs [4]",
            Box::new(|g| g.zeros(DType::F64, [6]).reshape([4])),
        ),
        (
            "dot_general: shape mismatch, lhs [2, 3], rhs [2]",
            Box::new(|g| g.zeros(DType::F64, [2, 3]).dot(&g.zeros(DType::F64, [2]))),
        ),
        (
            "concat: shape mismatch, lhs [2, 3], rhs [2, 4]",
            Box::new(|g| g.concat(&[g.zeros(DType::F64, [2, 3]), g.zeros(DType::F64, [2, 4])], 0)),
        ),
        (
            "mul: shape mismatch, lhs [2, 3], rhs [3, 2]",
            Box::new(|g| g.zeros(DType::F64, [2, 3]) * g.zeros(DType::F64, [3, 2])),
        ),
        (
            "broadcast_to: shape mismatch, lhs [2, 3], rhs [3]",
            Box::new(|g| g.zeros(DType::F64, [2, 3]).broadcast_to([3])),
        ),
        (
            "while_loop: shape mismatch, lhs [2], rhs [3]",
            Box::new(|g| {
                g.while_loop(
                    &[g.zeros(DType::F64, [2])],
                    |s| s[0].sum().lt(1.0),
                    |_| vec![g.zeros(DType::F64, [3])],
                )
                .remove(0)
            }),
        ),
    ];
    for (want, f) in cases {
        let g = Graph::new();
        let err = g.try_with(|| f(&g)).expect_err(want);
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn dtype_mismatch_names_op_and_dtypes() {
    let cases: Vec<Case> = vec![
        (
            "sub: dtype mismatch, lhs f64, rhs f32",
            Box::new(|g| g.zeros(DType::F64, [2]) - g.zeros(DType::F32, [2])),
        ),
        (
            "compare: dtype mismatch, lhs i64, rhs f64",
            Box::new(|g| g.zeros(DType::I64, [2]).lt(g.zeros(DType::F64, [2]))),
        ),
        (
            "select: dtype mismatch, lhs f64, rhs bool",
            Box::new(|g| g.zeros(DType::F64, [2]).select(1.0, 2.0)),
        ),
        (
            "while_loop: dtype mismatch, lhs f64, rhs f32",
            Box::new(|g| {
                g.while_loop(&[g.constant(0.0)], |s| s[0].lt(1.0), |s| vec![s[0].convert(DType::F32)])
                    .remove(0)
            }),
        ),
        (
            "call: dtype mismatch, lhs f64, rhs i32",
            Box::new(|g| {
                let f = g
                    .function("f", &[("v", TensorType::scalar(DType::F64))], |a| vec![a[0].exp()])
                    .unwrap();
                f.call(&[&g.scalar(DType::I32, 1.0)]).remove(0)
            }),
        ),
    ];
    for (want, f) in cases {
        let g = Graph::new();
        let err = g.try_with(|| f(&g)).expect_err(want);
        assert!(matches!(err, Error::DTypeMismatch { .. }), "{err:?}");
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn invalid_axis_names_op_axis_and_rank() {
    let cases: Vec<Case> = vec![
        (
            "reduce_sum: axis 2 out of range for rank 1",
            Box::new(|g| g.zeros(DType::F64, [3]).reduce_sum(&[2])),
        ),
        (
            "reduce_max: axis -3 out of range for rank 2",
            Box::new(|g| g.zeros(DType::F64, [3, 2]).reduce_max(&[-3])),
        ),
        (
            "transpose: axis 2 out of range for rank 2",
            Box::new(|g| g.zeros(DType::F64, [3, 2]).transpose(&[0, 2])),
        ),
        (
            "slice: axis 1 out of range for rank 1",
            Box::new(|g| g.zeros(DType::F64, [3]).slice_axis(1, 0, 1)),
        ),
        (
            "index: axis 1 out of range for rank 1",
            Box::new(|g| g.zeros(DType::F64, [3]).col(0)),
        ),
        (
            "iota: axis 1 out of range for rank 1",
            Box::new(|g| g.iota(DType::I64, [3], 1)),
        ),
        (
            "take: axis 3 out of range for rank 2",
            Box::new(|g| g.zeros(DType::F64, [3, 2]).take(3, &g.zeros(DType::I64, [2]))),
        ),
        (
            "concat: axis 1 out of range for rank 1",
            Box::new(|g| g.concat(&[g.zeros(DType::F64, [2]), g.zeros(DType::F64, [2])], 1)),
        ),
        (
            "dot_general: axis 1 out of range for rank 1",
            Box::new(|g| {
                g.zeros(DType::F64, [3])
                    .dot_general(&g.zeros(DType::F64, [3]), &[], &[], &[1], &[0])
            }),
        ),
    ];
    for (want, f) in cases {
        let g = Graph::new();
        let err = g.try_with(|| f(&g)).expect_err(want);
        assert!(matches!(err, Error::InvalidAxis { .. }), "{err:?}");
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn invalid_ops_are_reported() {
    let cases: Vec<Case> = vec![
        (
            "exp: needs a float tensor (f32 or f64), got i64",
            Box::new(|g| g.zeros(DType::I64, [3]).exp()),
        ),
        (
            "slice: bounds 1..5 step 1 invalid for axis 0 of shape [3]",
            Box::new(|g| g.zeros(DType::F64, [3]).slice(&[1], &[5])),
        ),
        (
            "literal: a non-integral number cannot be combined with an integer tensor (0.5)",
            Box::new(|g| g.zeros(DType::I64, [3]) + 0.5),
        ),
        (
            "while_loop: condition must be a bool scalar, got bool[2]",
            Box::new(|g| {
                g.while_loop(&[g.zeros(DType::F64, [2])], |s| s[0].lt(1.0), |s| vec![s[0].clone()])
                    .remove(0)
            }),
        ),
        (
            "dynamic_slice: start indices must be integer scalars, got f64[]",
            Box::new(|g| g.zeros(DType::F64, [3]).dynamic_slice(&[g.constant(1.0)], &[1])),
        ),
        (
            "call: @f takes 1 arguments, got 2",
            Box::new(|g| {
                let f = g
                    .function("f", &[("v", TensorType::scalar(DType::F64))], |a| vec![a[0].exp()])
                    .unwrap();
                let one = g.constant(1.0);
                f.call(&[&one, &one]).remove(0)
            }),
        ),
        (
            "constant: 3 values for shape [2]",
            Box::new(|g| g.constant_array(&[1.0, 2.0, 3.0], [2])),
        ),
        (
            "params: parameter index 3 out of range for 3 parameters",
            Box::new(|g| {
                let p = Params::new(&g.zeros(DType::F64, [3]));
                p[3].clone()
            }),
        ),
        (
            "reshape: negative dimension in shape [-1]",
            Box::new(|g| g.zeros(DType::F64, [1]).reshape([-1])),
        ),
    ];
    for (want, f) in cases {
        let g = Graph::new();
        let err = g.try_with(|| f(&g)).expect_err(want);
        assert!(matches!(err, Error::InvalidOp { .. }), "{err:?}");
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn scoping_errors() {
    // A tensor leaked out of a loop body cannot be used afterwards.
    let g = Graph::new();
    let leaked = std::cell::RefCell::new(None);
    let out = g.while_loop(
        &[g.constant(0.0)],
        |s| s[0].lt(3.0),
        |s| {
            *leaked.borrow_mut() = Some(s[0].clone());
            vec![&s[0] + 1.0]
        },
    );
    let bad = &out[0] + leaked.borrow().as_ref().unwrap();
    let e = finish_err(&g, &[&bad]);
    assert!(e.to_string().contains("escaped"), "{e}");

    // A function body cannot capture an outer non-constant tensor...
    let g = Graph::new();
    let x = g.parameter("x", DType::F64, []);
    let e = g
        .function("f", &[("v", TensorType::scalar(DType::F64))], |a| vec![&a[0] * &x])
        .unwrap_err();
    assert!(e.to_string().contains("cannot capture"), "{e}");
    // ...but constants are fine.
    assert!(g
        .function("f", &[("v", TensorType::scalar(DType::F64))], |a| vec![&a[0] * 2.0])
        .is_ok());

    // Inputs are declared at the top level only.
    let g = Graph::new();
    let out = g.while_loop(
        &[g.constant(0.0)],
        |s| s[0].lt(3.0),
        |s| {
            let late = s[0].graph().parameter("late", DType::F64, []);
            vec![&s[0] + &late]
        },
    );
    let e = finish_err(&g, &[&out[0]]);
    assert!(
        e.to_string().starts_with("parameter: input \"late\" declared inside"),
        "{e}"
    );

    // Tensors of two graphs do not mix.
    let (g1, g2) = (Graph::new(), Graph::new());
    let bad = g1.constant(1.0) + g2.constant(2.0);
    let e = finish_err(&g1, &[&bad]);
    assert!(e.to_string().contains("different graphs"), "{e}");
}

#[test]
fn autodiff_errors() {
    let g = Graph::new();
    let p = g.parameter("p", DType::F64, [2]);
    // JVP through a loop is refused.
    let out = g.while_loop(std::slice::from_ref(&p), |s| s[0].sum().lt(10.0), |s| vec![&s[0] * 2.0]);
    let e = jacfwd(&out[0].sum(), &p).unwrap_err();
    assert_eq!(e.to_string(), "jvp: cannot differentiate through a while_loop");
    // Jacobians need a parameter vector.
    let m = g.parameter("m", DType::F64, [2, 2]);
    assert!(matches!(
        jacfwd(&m.sum(), &m),
        Err(Error::InvalidOp { op: "jacfwd", .. })
    ));
    // Seeds must have a leading basis axis.
    let e = jvp(&[p.sum()], &[(p.clone(), g.zeros(DType::F64, [2]))]).unwrap_err();
    assert_eq!(e.to_string(), "jvp: shape mismatch, lhs [2], rhs [2]");
    // Integer parameters have no tangent space.
    let k = g.parameter("k", DType::I64, [2]);
    assert!(matches!(
        jvp(&[k.sum()], &[(k.clone(), g.zeros(DType::I64, [1, 2]))]),
        Err(Error::DTypeMismatch { .. })
    ));
    // A model must return one residual per data point.
    let x = g.parameter("x", DType::F64, [5]);
    let model = |x: &Tensor, _p: &Params| x.slice(&[0], &[3]);
    let e = jacfwd_model(&model, &x, &p).unwrap_err();
    assert_eq!(e.to_string(), "model: shape mismatch, lhs [3], rhs [5]");
    // None of that poisoned the graph: the errors came back as values.
    assert!(!g.has_error());
    assert!(g.finish([&x]).is_ok());
}

#[test]
fn first_error_wins_and_finish_reports_it_once() {
    let g = Graph::new();
    let a = g.parameter("a", DType::F64, [3]);
    let bad1 = a.reduce_sum(&[1]);
    let bad2 = &a + &g.zeros(DType::F32, [3]);
    let sum = &bad1 + &bad2;
    assert!(g.has_error());
    let e = finish_err(&g, &[&sum]);
    assert!(
        matches!(
            e,
            Error::InvalidAxis {
                op: "reduce_sum",
                axis: 1,
                rank: 1
            }
        ),
        "{e:?}"
    );
    let again = finish_err(&g, &[&a]);
    assert!(
        again
            .to_string()
            .contains("earlier error: reduce_sum: axis 1 out of range"),
        "{again}"
    );
}

#[test]
fn odd_inputs_do_not_panic() {
    let g = Graph::new();
    let e = g.try_with(|| g.parameter("neg", DType::F64, [-2])).unwrap_err();
    assert!(e.to_string().contains("negative dimension"));
    let g = Graph::new();
    let s = g.constant(1.0);
    let _ = g
        .try_with(|| (s.row(0), s.t(), s.transpose(&[]), s.sum(), s.at(0), s.take(0, &s)))
        .unwrap_err();
    let z = g.zeros(DType::F64, [0]);
    assert_eq!(g.try_with(|| z.sum()).unwrap().dims(), Vec::<i64>::new());
    assert!(nlsq::graph::while_loop(Vec::new(), |s| s[0].clone(), |s| s.to_vec()).is_empty());
    assert!(nlsq::graph::concat(&[], 0).is_none());
}
