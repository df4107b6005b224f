//! Cold fits: what a fit costs before any executable is reused.
//!
//! - `cold_compile/curve_fitter_new_exp3/1000`: `CurveFitter::builder(..).build()` for the 3-parameter
//!   exponential decay at 1,000 points (1,024-row bucket, LM) with every cache missed: trace
//!   the model and the whole solver, emit StableHLO, compile with XLA. The disk cache is off in
//!   this process (`NLSQ_DISK_CACHE=0`, set before the first fit), and each iteration fits a
//!   model with a different tiny constant added (`+ 1e-12 * k`), so its program text, and
//!   therefore its cache key, is new. The median split between tracing and XLA compile is
//!   printed after the run. (nlsq does not expose a `curve_fit`'s program text, so the bench
//!   cannot time `ExecutableCache::get_or_compile` on its own; `xla_compile` in
//!   `benches/graph.rs` times bare compiles of a smaller program.)
//! - `cold_start/new_process_first_fit/1000`: wall time of a new process (this bench binary,
//!   re-executed in a child mode) that loads the plugin, creates a client and runs its first
//!   1,000-point fit with the executable on disk (a warm disk cache: one untimed run first
//!   stores it). The child reports its own split (plugin + client, first fit = trace + disk
//!   load + execute), and the medians are printed after the run. The child is this binary
//!   rather than `examples/cold_start` so that `cargo bench --bench fit_cold` alone is
//!   enough; it does the same work.
//!
//! `cargo bench --bench fit_cold -- --warm-up-time 1 --measurement-time 3`

// mimalloc in place of malloc, as the nlsq binary links it: the timings in docs/performance.md
// were taken with it (the library leaves the allocator to the program).
use libmimalloc_sys as _;

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use nlsq::fit::{curve_fit, CurveFitter, ExecutableSource, FitOptions};
use nlsq::graph::{Params, Tensor};

/// Environment variable that turns this binary into the cold-start child.
const CHILD: &str = "NLSQ_BENCH_COLD_START_CHILD";

fn data(m: usize) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..m).map(|i| 5.0 * i as f64 / (m - 1) as f64).collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, &x)| 2.5 * (-1.3 * x).exp() + 0.5 + 0.05 * (((i as f64) * 12.9898).sin() * 43758.5453).fract())
        .collect();
    (x, y)
}

fn model(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

fn median(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The child: one process's first fit. Prints `load_s fit_s trace_s compile_s execute_s source`.
fn child() -> nlsq::Result<()> {
    let t0 = Instant::now();
    let _client = nlsq::runtime::client()?;
    let load = t0.elapsed();
    let (x, y) = data(1000);
    let t1 = Instant::now();
    let fit = curve_fit(&model, &x, &y, Some(&[1.0, 1.0, 1.0]), &FitOptions::default())?;
    let first = t1.elapsed();
    let t = fit.result.timings;
    println!(
        "{} {} {} {} {} {}",
        load.as_secs_f64(),
        first.as_secs_f64(),
        t.trace.as_secs_f64(),
        t.compile.as_secs_f64(),
        t.execute.as_secs_f64(),
        fit.result.executable
    );
    Ok(())
}

/// What one child run reported.
struct ChildReport {
    load: Duration,
    first_fit: Duration,
    trace: Duration,
    compile: Duration,
    execute: Duration,
    source: String,
}

/// Runs the child; `disk_cache` is the parent's original `NLSQ_DISK_CACHE` (the parent
/// turned it off for the compile bench).
fn run_child(disk_cache: &Option<std::ffi::OsString>) -> (Duration, ChildReport) {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.env(CHILD, "1");
    match disk_cache {
        Some(v) => cmd.env("NLSQ_DISK_CACHE", v),
        None => cmd.env_remove("NLSQ_DISK_CACHE"),
    };
    let t = Instant::now();
    let out = cmd.output().expect("spawn child");
    let wall = t.elapsed();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(f.len(), 6, "unexpected child output {text:?}");
    let secs = |i: usize| Duration::from_secs_f64(f[i].parse().expect("seconds"));
    let report = ChildReport {
        load: secs(0),
        first_fit: secs(1),
        trace: secs(2),
        compile: secs(3),
        execute: secs(4),
        source: f[5].to_string(),
    };
    (wall, report)
}

fn cold_compile(c: &mut Criterion) {
    let (x, y) = data(1000);
    let mut tag = 0u64;
    let mut trace = Vec::new();
    let mut compile = Vec::new();
    let mut g = c.benchmark_group("cold_compile");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.bench_function(BenchmarkId::new("curve_fitter_new_exp3", 1000), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                tag += 1;
                let offset = 1e-12 * tag as f64;
                let tagged = move |x: &Tensor, p: &Params| model(x, p) + offset;
                let t = Instant::now();
                let fitter = CurveFitter::builder(tagged)
                    .capacity(1000)
                    .params(3)
                    .build()
                    .expect("fitter");
                total += t.elapsed();
                let (source, load) = fitter.executable_source();
                assert_eq!(source, ExecutableSource::Compiled, "the program should be new");
                trace.push(fitter.trace_time());
                compile.push(load);
                // The fitter works (and is not optimised away).
                let fit = fitter.fit(&x, &y, Some(&[1.0, 1.0, 1.0])).expect("fit");
                assert!((fit.popt[1] - 1.3).abs() < 0.05);
            }
            total
        })
    });
    g.finish();
    println!(
        "cold_compile: over {} builds, median trace + emit {:.1} ms, median XLA compile {:.1} ms",
        trace.len(),
        ms(median(trace)),
        ms(median(compile))
    );
}

fn cold_start(c: &mut Criterion, disk_cache: &Option<std::ffi::OsString>) {
    // One untimed run stores the executable on disk (if an earlier process has not).
    let (_, first) = run_child(disk_cache);
    println!(
        "cold_start: warm-up child's executable: {} (next children should load it from disk)",
        first.source
    );
    let mut reports = Vec::new();
    let mut g = c.benchmark_group("cold_start");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.bench_function(BenchmarkId::new("new_process_first_fit", 1000), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (wall, report) = run_child(disk_cache);
                total += wall;
                reports.push(report);
            }
            total
        })
    });
    g.finish();
    let sources: std::collections::BTreeSet<&str> = reports.iter().map(|r| r.source.as_str()).collect();
    let med = |f: fn(&ChildReport) -> Duration| ms(median(reports.iter().map(f).collect()));
    println!(
        "cold_start: {} children, executable {:?}; medians: plugin + client {:.1} ms, first fit {:.1} ms \
         (trace {:.1} ms, executable {:.1} ms, execute {:.2} ms)",
        reports.len(),
        sources,
        med(|r| r.load),
        med(|r| r.first_fit),
        med(|r| r.trace),
        med(|r| r.compile),
        med(|r| r.execute)
    );
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        if let Err(e) = child() {
            eprintln!("{e}");
            std::process::exit(3);
        }
        return;
    }
    // Before anything reads the cache settings: no disk cache in this process, so every
    // compile in `cold_compile` is a real one and nothing is written to the user's cache.
    let disk_cache = std::env::var_os("NLSQ_DISK_CACHE");
    std::env::set_var("NLSQ_DISK_CACHE", "0");
    let client = nlsq::runtime::client().expect("runtime");
    println!(
        "device: {} ({} {})",
        client.default_device().expect("device"),
        client.platform_name(),
        client.platform_version()
    );
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    cold_compile(&mut c);
    cold_start(&mut c, &disk_cache);
    c.final_summary();
}
