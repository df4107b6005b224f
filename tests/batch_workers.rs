//! One batch program run on one core and then on all of them (its own test binary: it changes
//! `NLSQ_BATCH_THREADS`, which no other test in this process reads concurrently).

use ndarray::{Array1, Array2};
use nlsq::fit::batch::{curve_fit_batch, Batch};
use nlsq::fit::{ExecutableSource, FitOptions};
use nlsq::graph::{Params, Tensor};

fn exp_model(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

#[test]
fn one_program_runs_on_one_core_then_on_all() {
    let (nb, m) = (8, 60);
    let x = Array1::from_iter((0..m).map(|i| 4.0 * i as f64 / m as f64));
    let y = Array2::from_shape_fn((nb, m), |(b, i)| {
        (1.0 + 0.2 * b as f64) * (-(0.6 + 0.1 * b as f64) * x[i]).exp() + 0.3 + 0.01 * ((i * 7 + b) as f64).sin()
    });
    let p0 = Array2::from_elem((nb, 3), 1.0);
    // Chunks of 2 whatever the number of cores: the same program (same capacity) both times.
    let batch = Batch::shared_x(x.view(), y.view(), p0.view()).with_chunk(2);
    let opts = FitOptions::default();
    std::env::set_var("NLSQ_BATCH_THREADS", "1");
    let one = curve_fit_batch(&exp_model, &batch, &opts).unwrap();
    std::env::remove_var("NLSQ_BATCH_THREADS");
    let all = curve_fit_batch(&exp_model, &batch, &opts).unwrap();
    assert_eq!(one.len(), nb);
    for (b, (p, q)) in one.iter().zip(&all).enumerate() {
        let (p, q) = (p.as_ref().unwrap(), q.as_ref().unwrap());
        assert!(p.success(), "problem {b}");
        // The same executable code on either client: identical to the last bit.
        assert_eq!(p.popt, q.popt, "problem {b}");
        assert_eq!(p.pcov, q.pcov, "problem {b}");
        assert_eq!(p.result.nfev, q.result.nfev, "problem {b}");
    }
    // The second call compiled nothing: on more cores its executables were loaded from the
    // first call's copy in memory.
    for fit in &all {
        assert_eq!(fit.as_ref().unwrap().result.executable, ExecutableSource::Memory);
    }
}
