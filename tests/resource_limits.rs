//! Fits too large for the process's address space (set with `ulimit -v` in a child process)
//! end in a typed error before anything large is allocated, never in an abort.

mod common;

use std::process::Command;

use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Params, Tensor};

fn line(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * x + &p[1]
}

/// Child body (ignored when run directly): a straight-line fit on `NLSQ_TEST_POINTS` points;
/// prints `CHILD OK` or `CHILD ERR <error>`.
#[test]
#[ignore]
fn resource_child_process() {
    let m: usize = std::env::var("NLSQ_TEST_POINTS").unwrap().parse().unwrap();
    let x: Vec<f64> = (0..m).map(|i| i as f64 / m as f64).collect();
    let y: Vec<f64> = x.iter().map(|x| 2.0 * x + 1.0).collect();
    match curve_fit(&line, &x, &y, Some(&[1.0, 1.0]), &FitOptions::default()) {
        Ok(fit) => println!("CHILD OK {}", fit.popt),
        Err(e) => println!("CHILD ERR {e}"),
    }
}

/// The CHILD line of `resource_child_process` on `points` points under `ulimit -v kib`.
fn fit_under_limit(points: usize, kib: u64) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "resource_child_process", "--ignored", "--nocapture"])
        .env("NLSQ_TEST_POINTS", points.to_string())
        .env("NLSQ_DISK_CACHE", "0")
        // glibc's malloc reserves 64 MiB of address space per thread arena: under a 1 GiB
        // limit the plugin's threads then fail to get their thread-local data and glibc aborts
        // the process (out of nlsq's reach; the nlsq binary links mimalloc, which does not).
        .env("MALLOC_ARENA_MAX", "2")
        .output()
        .unwrap();
    common::child_line(&o, "CHILD ")
}

/// A right fit or the typed error of a host array too large for the process.
fn fit_or_typed_error(line: &str) {
    assert!(
        line.starts_with("OK [2") || (line.starts_with("ERR") && line.contains("do not fit in this process's memory")),
        "{line}"
    );
}

#[test]
fn fifty_million_points_under_two_gigabytes_fit_or_are_a_typed_error() {
    // Before: "memory allocation of 400007232 bytes failed" (the padded copy) and an abort.
    fit_or_typed_error(&fit_under_limit(50_000_000, 2_000_000));
    // The caller's x and y take 800 MB; their padded copies would not fit beside them.
    let line = fit_under_limit(50_000_000, 1_300_000);
    assert!(line.starts_with("ERR"), "{line}");
    fit_or_typed_error(&line);
}

#[test]
fn ten_million_points_under_one_gibibyte_fit_or_are_a_typed_error() {
    fit_or_typed_error(&fit_under_limit(10_000_000, 1 << 20));
}
