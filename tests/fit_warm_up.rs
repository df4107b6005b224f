//! Compiling ahead (`fit::warm_up`): the programs later fits need, one per bucket, from the disk
//! cache in another process, and fits bit for bit the same as with a program compiled on use.

mod common;

use std::process::Command;

use nlsq::fit::{curve_fit, warm_up, ExecutableSource, FitOptions};
use nlsq::graph::{Params, Tensor};

fn decay(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

/// Child body (ignored when run directly). `NLSQ_TEST_MODE=warm`: compile ahead for 150, 180
/// and 1,000 points and print the sources; `fit`: fit 180 points and print every digit.
#[test]
#[ignore]
fn warm_up_child_process() {
    let opts = FitOptions::default();
    match std::env::var("NLSQ_TEST_MODE").as_deref() {
        Ok("warm") => {
            let w = warm_up(&decay, &[150, 180, 1000], 3, None, &opts).unwrap();
            let parts: Vec<String> = w
                .iter()
                .map(|w| format!("{}:{:?}:{}", w.rows, w.lengths, w.source))
                .collect();
            println!("CHILD {}", parts.join(" "));
        }
        _ => {
            let (x, y) = common::noisy_exp(180);
            let fit = curve_fit(&decay, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
            println!(
                "CHILD source={} popt={:?} pcov={:?} cost={:e} nfev={}",
                fit.result.executable,
                fit.popt.to_vec(),
                fit.pcov.iter().collect::<Vec<_>>(),
                fit.result.cost,
                fit.result.nfev
            );
        }
    }
}

fn child(dir: &std::path::Path, mode: &str) -> String {
    let o = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "warm_up_child_process",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("NLSQ_CACHE_DIR", dir)
        .env("NLSQ_TEST_MODE", mode)
        .output()
        .unwrap();
    common::child_line(&o, "CHILD ")
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nlsq-warm-up-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn programs_compiled_ahead_are_loaded_from_disk_and_fit_bit_for_bit_like_ones_compiled_on_use() {
    if common::another_plugin() {
        return; // the disk cache's behaviour is checked on the pinned CPU plugin
    }
    let (ahead, on_use) = (tmpdir("ahead"), tmpdir("on-use"));
    // 150 and 180 points share the 192-row program; 1,000 points use the 1,024-row one.
    assert_eq!(child(&ahead, "warm"), "192:[150, 180]:compiled 1024:[1000]:compiled");
    assert_eq!(child(&ahead, "warm"), "192:[150, 180]:disk 1024:[1000]:disk");
    let loaded = child(&ahead, "fit");
    let compiled = child(&on_use, "fit");
    assert!(loaded.starts_with("source=disk "), "{loaded}");
    assert!(compiled.starts_with("source=compiled "), "{compiled}");
    let digits = |l: &str| l.split_once(' ').map(|(_, rest)| rest.to_string()).unwrap();
    assert_eq!(digits(&loaded), digits(&compiled));
    let _ = std::fs::remove_dir_all(&ahead);
    let _ = std::fs::remove_dir_all(&on_use);
}

#[test]
fn fits_after_a_warm_up_in_the_same_process_only_execute_and_bad_shapes_are_typed_errors() {
    let opts = FitOptions::default().with_method(nlsq::solve::Method::Trf);
    let w = warm_up(&decay, &[77], 3, None, &opts).unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].rows, nlsq::fit::bucket(77));
    let (x, y) = common::noisy_exp(77);
    let fit = curve_fit(&decay, &x, &y, Some(&[1.0, 1.0, 1.0]), &opts).unwrap();
    assert_eq!(fit.result.executable, ExecutableSource::Memory);
    let again = warm_up(&decay, &[70, 77], 3, None, &opts).unwrap();
    assert_eq!((again.len(), again[0].source), (1, ExecutableSource::Memory));
    for (lengths, n) in [(vec![0usize], 3usize), (vec![10], 0)] {
        let e = warm_up(&decay, &lengths, n, None, &opts).unwrap_err();
        assert!(matches!(e, nlsq::Error::InvalidInput { field: "shape", .. }), "{e}");
    }
}
