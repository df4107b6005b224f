//! Fits too large for the process's address space (set with `ulimit -v` in a child process)
//! end in a typed error before anything large is allocated, never in an abort: host arrays
//! (`try_reserve`), and programs whose compiled memory needs are more than the device has
//! (`Error::ProgramTooLarge`) or has free (`Error::OutOfMemory`).

mod common;

use std::process::Command;

use nlsq::fit::{curve_fit, FitOptions};
use nlsq::graph::{Params, Tensor};

fn line(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * x + &p[1]
}

/// Child body (ignored when run directly): a straight-line fit on `NLSQ_TEST_POINTS` points,
/// with `chunk_rows` from `NLSQ_TEST_CHUNK_ROWS` when set; prints `CHILD OK` or
/// `CHILD ERR <error>`.
#[test]
#[ignore]
fn resource_child_process() {
    let m: usize = std::env::var("NLSQ_TEST_POINTS").unwrap().parse().unwrap();
    let mut options = FitOptions::default();
    if let Ok(rows) = std::env::var("NLSQ_TEST_CHUNK_ROWS") {
        options = options.with_chunk_rows(rows.parse().unwrap());
    }
    let x: Vec<f64> = (0..m).map(|i| i as f64 / m as f64).collect();
    let y: Vec<f64> = x.iter().map(|x| 2.0 * x + 1.0).collect();
    match curve_fit(&line, &x, &y, Some(&[1.0, 1.0]), &options) {
        Ok(fit) => println!("CHILD OK {}", fit.popt),
        Err(e) => println!("CHILD ERR {e}"),
    }
}

/// The CHILD line of `resource_child_process` on `points` points under `ulimit -v kib`.
fn fit_under_limit(points: usize, kib: u64) -> String {
    fit_under_limit_with(points, kib, None)
}

/// As [`fit_under_limit`], with `chunk_rows` set when `Some`.
fn fit_under_limit_with(points: usize, kib: u64, chunk_rows: Option<usize>) -> String {
    let mut child = Command::new("sh");
    if let Some(rows) = chunk_rows {
        child.env("NLSQ_TEST_CHUNK_ROWS", rows.to_string());
    }
    let o = child
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

// Ten million points with the Jacobian materialised whole (`chunk_rows(0)`): the program's
// arguments, results and scratch memory together are about 1.3 GB, what one execution
// allocates beyond its arguments about 1.1 GB (`CompiledMemoryStats` on the pinned CPU plugin).
const WHOLE_JACOBIAN_POINTS: usize = 10_000_000;

#[test]
fn a_program_larger_than_the_address_space_is_refused_before_it_runs() {
    // Before: "PJRT_Event_Await failed (Internal) ... Out of memory allocating 821039120 bytes"
    // (the scratch memory), after the inputs were copied; without the limit, on a host without
    // the memory, the kernel's OOM killer.
    let line = fit_under_limit_with(WHOLE_JACOBIAN_POINTS, 1 << 20, Some(0));
    assert!(
        line.starts_with("ERR the program needs ")
            && line.contains("of device memory but")
            && line.contains("(the process's address-space limit, ulimit -v)")
            && line.contains("chunk_rows"),
        "{line}"
    );
}

#[test]
fn a_program_that_would_fit_but_not_beside_what_is_mapped_is_out_of_memory() {
    // 1.5 GB holds the program, but not beside the plugin, the data and their device copies.
    let line = fit_under_limit_with(WHOLE_JACOBIAN_POINTS, 1_500_000_000 / 1024, Some(0));
    assert!(
        line.starts_with("ERR the program needs ")
            && line.contains("more of device memory but")
            && line.contains("free (left under the process's address-space limit, ulimit -v)"),
        "{line}"
    );
}

#[test]
fn a_program_that_fits_the_address_space_runs() {
    let line = fit_under_limit_with(WHOLE_JACOBIAN_POINTS, 3_000_000, Some(0));
    assert!(line.starts_with("OK [2"), "{line}");
}
