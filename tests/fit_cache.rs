//! The executable cache: memory and disk hits, corrupt-entry recovery, eviction, several
//! processes sharing one directory, bucket padding, and the reusable fitter.

mod common;

use std::process::Command;
use std::time::Duration;

use nlsq::fit::{bucket, curve_fit, CurveFitter, ExecutableCache, ExecutableSource, FitOptions};
use nlsq::graph::{Params, Tensor};
use nlsq::solve::Method;

const PROGRAM: &str = r#"
func.func @main(%x: tensor<8xf64>) -> tensor<8xf64> {
  %y = stablehlo.multiply %x, %x : tensor<8xf64>
  %z = stablehlo.add %y, %x : tensor<8xf64>
  return %z : tensor<8xf64>
}
"#;

fn program(k: usize) -> String {
    // Distinct programs (distinct keys) of the same shape.
    PROGRAM.replace(
        "%z = stablehlo.add %y, %x",
        &format!("%c = stablehlo.constant dense<{k}.0> : tensor<8xf64>\n  %z = stablehlo.add %y, %c"),
    )
}

fn run(exe: &nlsq::pjrt::LoadedExecutable) -> Vec<f64> {
    let c = common::client();
    let x = c
        .buffer_from_host(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[8])
        .unwrap();
    exe.execute(&[&x]).unwrap()[0].to_vec::<f64>().unwrap()
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("nlsq-cache-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn miss_then_memory_then_disk_hit() {
    let client = common::client();
    let dir = tmpdir("hits");
    let cache = ExecutableCache::new(Some(dir.clone()), 1 << 30, 8);
    let a = cache.get_or_compile(&client, PROGRAM).unwrap();
    assert_eq!(a.source, ExecutableSource::Compiled);
    let b = cache.get_or_compile(&client, PROGRAM).unwrap();
    assert_eq!(b.source, ExecutableSource::Memory);
    assert_eq!(a.key, b.key);
    // A fresh cache on the same directory (as in a new process) loads from disk.
    let cache2 = ExecutableCache::new(Some(dir.clone()), 1 << 30, 8);
    let c = cache2.get_or_compile(&client, PROGRAM).unwrap();
    assert_eq!(c.source, ExecutableSource::Disk);
    assert_eq!(run(&c.executable), run(&a.executable));
    assert_eq!(run(&c.executable), vec![2.0, 6.0, 12.0, 20.0, 30.0, 42.0, 56.0, 72.0]);
    // Another program has another key.
    let d = cache.get_or_compile(&client, &program(3)).unwrap();
    assert_ne!(d.key, a.key);
    assert_eq!(run(&d.executable)[0], 4.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_client_loads_the_first_clients_executable_instead_of_compiling() {
    let client = common::client();
    let other = nlsq::runtime::plugin().unwrap().create_client(&[]).unwrap();
    // Memory only: without the in-memory copy the second client would have to compile.
    let cache = ExecutableCache::new(None, 0, 8);
    assert!(cache
        .get_or_load_with(&client, PROGRAM, &Default::default())
        .unwrap()
        .is_none());
    let a = cache.get_or_compile(&client, PROGRAM).unwrap();
    assert_eq!(a.source, ExecutableSource::Compiled);
    let b = cache
        .get_or_load_with(&other, PROGRAM, &Default::default())
        .unwrap()
        .unwrap();
    assert_eq!(b.source, ExecutableSource::Memory);
    assert_eq!(a.key, b.key);
    // Each client gets an executable of its own, and both compute the same.
    assert_eq!(b.executable.client().id(), other.id());
    assert_ne!(a.executable.client().id(), b.executable.client().id());
    let x = other
        .buffer_from_host(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[8])
        .unwrap();
    let on_other = b.executable.execute(&[&x]).unwrap()[0].to_vec::<f64>().unwrap();
    assert_eq!(on_other, run(&a.executable));
    assert_eq!(cache.memory_len(), 2);
}

#[test]
fn corrupt_entries_are_detected_and_replaced() {
    let client = common::client();
    let dir = tmpdir("corrupt");
    let cache = ExecutableCache::new(Some(dir.clone()), 1 << 30, 8);
    let good = cache.get_or_compile(&client, PROGRAM).unwrap();
    let path = cache.entry_path(&good.key).unwrap();
    let original = std::fs::read(&path).unwrap();
    let other = cache.get_or_compile(&client, &program(5)).unwrap();
    let other_bytes = std::fs::read(cache.entry_path(&other.key).unwrap()).unwrap();
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", original[..original.len() / 2].to_vec()),
        ("flipped", {
            let mut b = original.clone();
            let i = b.len() - 100;
            b[i] ^= 0x55;
            b
        }),
        ("foreign key", other_bytes.clone()),
        ("garbage", b"definitely not an executable".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damages {
        std::fs::write(&path, &bytes).unwrap();
        let fresh = ExecutableCache::new(Some(dir.clone()), 1 << 30, 8);
        let got = fresh.get_or_compile(&client, PROGRAM).unwrap();
        assert_eq!(got.source, ExecutableSource::Compiled, "{what}: must recompile");
        assert_eq!(
            run(&got.executable),
            vec![2.0, 6.0, 12.0, 20.0, 30.0, 42.0, 56.0, 72.0],
            "{what}"
        );
        // ... and the entry was replaced by a good one.
        let again = ExecutableCache::new(Some(dir.clone()), 1 << 30, 8)
            .get_or_compile(&client, PROGRAM)
            .unwrap();
        assert_eq!(again.source, ExecutableSource::Disk, "{what}: entry replaced");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn entries_that_are_not_regular_files_are_replaced_without_blocking() {
    let client = common::client();
    let dir = tmpdir("special");
    let cache = ExecutableCache::new(Some(dir.clone()), 1 << 30, 8);
    let key = cache.get_or_compile(&client, PROGRAM).unwrap().key;
    let path = cache.entry_path(&key).unwrap();
    type Make<'a> = (&'a str, &'a dyn Fn(&std::path::Path));
    let make: [Make; 3] = [
        // A reader of a named pipe blocks until a writer comes: forever.
        ("named pipe", &|p| {
            let ok = std::process::Command::new("mkfifo").arg(p).status().unwrap().success();
            assert!(ok, "mkfifo");
        }),
        // A link to /dev/zero reads without end.
        ("link to /dev/zero", &|p| {
            std::os::unix::fs::symlink("/dev/zero", p).unwrap()
        }),
        ("directory", &|p| std::fs::create_dir(p).unwrap()),
    ];
    for (what, make) in make {
        let _ = std::fs::remove_file(&path);
        make(&path);
        let t0 = std::time::Instant::now();
        let got = ExecutableCache::new(Some(dir.clone()), 1 << 30, 8)
            .get_or_compile(&client, PROGRAM)
            .unwrap();
        assert!(t0.elapsed() < std::time::Duration::from_secs(60), "{what}");
        assert_eq!(got.source, ExecutableSource::Compiled, "{what}");
        assert_eq!(
            run(&got.executable),
            vec![2.0, 6.0, 12.0, 20.0, 30.0, 42.0, 56.0, 72.0],
            "{what}"
        );
        if what != "directory" {
            let again = ExecutableCache::new(Some(dir.clone()), 1 << 30, 8)
                .get_or_compile(&client, PROGRAM)
                .unwrap();
            assert_eq!(
                again.source,
                ExecutableSource::Disk,
                "{what}: entry replaced by a good one"
            );
        }
        let _ = std::fs::remove_dir(&path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn real_entries_pass_the_structural_check() {
    let client = common::client();
    let dir = tmpdir("structure");
    let cache = ExecutableCache::new(Some(dir.clone()), 1 << 30, 8);
    let exe = cache.get_or_compile(&client, PROGRAM).unwrap();
    let bytes = std::fs::read(cache.entry_path(&exe.key).unwrap()).unwrap();
    // The entry: an 80-byte header, then the serialized executable.
    if !common::another_plugin() {
        assert!(nlsq::fit::cache::cpu_envelope_is_well_formed(&bytes[80..]));
    }
    assert!(!nlsq::fit::cache::cpu_envelope_is_well_formed(
        &bytes[80..bytes.len() - 100]
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn temporary_files_of_dead_writers_are_cleaned_up() {
    let dir = tmpdir("stale-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let (old, new) = (dir.join(".dead.1.tmp"), dir.join(".live.2.tmp"));
    for p in [&old, &new] {
        std::fs::write(p, b"partial").unwrap();
    }
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    ExecutableCache::new(Some(dir.clone()), 1 << 30, 8).enforce_size_bound();
    assert!(!old.exists(), "a temporary file of two hours ago is removed");
    assert!(new.exists(), "one being written now is not");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn disk_cache_evicts_least_recently_used_entries() {
    let client = common::client();
    let dir = tmpdir("evict");
    let probe = ExecutableCache::new(Some(dir.clone()), 1 << 30, 8);
    let first = probe.get_or_compile(&client, &program(0)).unwrap();
    let entry_len = std::fs::metadata(probe.entry_path(&first.key).unwrap()).unwrap().len();
    // Room for two entries.
    let cache = ExecutableCache::new(Some(dir.clone()), 2 * entry_len + entry_len / 2, 8);
    for k in 1..=3 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.get_or_compile(&client, &program(k)).unwrap();
    }
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "nlsqx"))
        .collect();
    assert_eq!(entries.len(), 2, "size bound keeps two entries");
    // The two most recent programs survive.
    let fresh = ExecutableCache::new(Some(dir.clone()), 1 << 30, 8);
    assert_eq!(
        fresh.get_or_compile(&client, &program(3)).unwrap().source,
        ExecutableSource::Disk
    );
    assert_eq!(
        fresh.get_or_compile(&client, &program(2)).unwrap().source,
        ExecutableSource::Disk
    );
    assert_eq!(
        fresh.get_or_compile(&client, &program(0)).unwrap().source,
        ExecutableSource::Compiled
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn memory_cache_is_bounded_and_shared_by_threads() {
    let client = common::client();
    let cache = ExecutableCache::new(None, 0, 2);
    for k in 0..4 {
        cache.get_or_compile(&client, &program(k)).unwrap();
    }
    assert_eq!(cache.memory_len(), 2);
    // Four threads asking for one missing key: one compile, three memory hits.
    let sources: Vec<ExecutableSource> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| cache.get_or_compile(&client, &program(42)).unwrap().source))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        sources.iter().filter(|s| **s == ExecutableSource::Compiled).count(),
        1,
        "{sources:?}"
    );
}

fn exp_model(x: &Tensor, p: &Params) -> Tensor {
    &p[0] * (-&p[1] * x).exp() + &p[2]
}

fn exp_data(m: usize, k: f64) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = (0..m).map(|i| 4.0 * i as f64 / m as f64).collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, x)| 2.0 * (-k * x).exp() + 0.3 + 0.02 * (((i as f64) * 12.9898).sin() * 43758.5453).fract())
        .collect();
    (x, y)
}

#[test]
fn eight_processes_and_killed_writers_leave_a_cache_whose_every_fit_is_right() {
    let dir = tmpdir("procs8");
    let plugin = nlsq::runtime::plugin_location().unwrap().plugin;
    let plugin = plugin.to_str().unwrap();
    let methods = ["lm", "trf"];
    // What each model gives with the disk cache off.
    let off = tmpdir("procs8-off");
    let reference: Vec<String> = methods
        .iter()
        .map(|m| {
            let env = [
                ("NLSQ_PJRT_PLUGIN", plugin),
                ("NLSQ_TEST_METHOD", *m),
                ("NLSQ_DISK_CACHE", "0"),
            ];
            let line = child_fit(&off, &env);
            line.split_once(" popt=").unwrap().1.to_string()
        })
        .collect();
    let fit = |k: usize| -> (String, String) {
        let env = [("NLSQ_PJRT_PLUGIN", plugin), ("NLSQ_TEST_METHOD", methods[k % 2])];
        let line = child_fit(&dir, &env);
        let (src, rest) = line.split_once(" popt=").unwrap();
        (src.to_string(), rest.to_string())
    };
    // Writers killed (SIGKILL) at moments spread over start-up, compile and the entry's write.
    for (i, ms) in [150u64, 400, 650, 900, 1150, 1400, 1700, 2100].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "cache_child_process", "--ignored", "--test-threads", "1"])
            .env("NLSQ_CACHE_DIR", &dir)
            .env("NLSQ_PJRT_PLUGIN", plugin)
            .env("NLSQ_TEST_METHOD", methods[i % 2])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    // Eight processes at once, four per model, on what the killed writers left.
    let results: Vec<(String, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8).map(|k| s.spawn(move || (k, fit(k)))).collect();
        hs.into_iter().map(|h| h.join().unwrap().1).collect()
    });
    for (k, (src, rest)) in results.iter().enumerate() {
        assert_eq!(rest, &reference[k % 2], "process {k} ({src}, {})", methods[k % 2]);
    }
    // Later processes load each model from disk, and fit bit for bit as with the cache off.
    for (k, want) in reference.iter().enumerate() {
        let (src, rest) = fit(k);
        assert_eq!(src, "disk", "{}", methods[k]);
        assert_eq!(&rest, want, "{}", methods[k]);
    }
    // Nothing is left but entries (the killed writers' files are at most temporary files,
    // which the cleanup removes once they are an hour old).
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".nlsqx") || name.ends_with(".tmp") || e.path().is_dir(),
            "{name}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&off);
}

/// Child process body for `processes_share_one_cache_directory` (ignored when run directly).
#[test]
#[ignore]
fn cache_child_process() {
    let (x, y) = exp_data(200, 1.1);
    let method = match std::env::var("NLSQ_TEST_METHOD").as_deref() {
        Ok("trf") => Method::Trf,
        _ => Method::Lm,
    };
    let options = FitOptions::default().with_method(method);
    let fit = curve_fit(&exp_model, &x, &y, Some(&[1.0, 1.0, 1.0]), &options).unwrap();
    // Every digit: the comparisons of these lines are bit for bit.
    println!(
        "CHILD source={} popt={:?} pcov={:?} cost={:e} nfev={} njev={}",
        fit.result.executable,
        fit.popt.to_vec(),
        fit.pcov.iter().collect::<Vec<_>>(),
        fit.result.cost,
        fit.result.nfev,
        fit.result.njev
    );
}

/// Runs `cache_child_process` in a new process with `NLSQ_CACHE_DIR=dir` and `env`; returns its
/// CHILD line after `source=`.
fn child_fit(dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let o = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cache_child_process",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("NLSQ_CACHE_DIR", dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    common::child_line(&o, "CHILD source=")
}

/// With the pinned CPU plugin a compiled executable is replaced by its compacted form (fused
/// computations' bodies dropped from what is serialized): compiled, loaded from the disk cache
/// or not compacted at all, the fit is the same to the last bit, and the entry is smaller.
#[test]
fn compacted_executables_fit_bit_for_bit_like_full_ones() {
    if common::another_plugin() {
        return; // compaction is for the pinned CPU plugin only
    }
    for method in ["lm", "trf"] {
        let (full, compact) = (tmpdir(&format!("full-{method}")), tmpdir(&format!("compact-{method}")));
        let m = [("NLSQ_TEST_METHOD", method)];
        let reference = child_fit(
            &full,
            &[("NLSQ_TEST_METHOD", method), ("NLSQ_COMPACT_EXECUTABLES", "0")],
        );
        let compiled = child_fit(&compact, &m);
        let loaded = child_fit(&compact, &m);
        let strip = |s: &str, src: &str| s.strip_prefix(src).map(str::to_string).unwrap_or_else(|| panic!("{s}"));
        let reference = strip(&reference, "compiled ");
        assert_eq!(strip(&compiled, "compiled "), reference, "{method}");
        assert_eq!(strip(&loaded, "disk "), reference, "{method}");
        let size = |d: &std::path::Path| -> u64 {
            let e = std::fs::read_dir(d.join("executables")).unwrap();
            e.map(|e| e.unwrap().metadata().unwrap().len()).sum()
        };
        let (full_size, compact_size) = (size(&full), size(&compact));
        assert!(
            compact_size * 10 < full_size * 9,
            "{method}: compacted entry {compact_size} B, full {full_size} B"
        );
        let _ = std::fs::remove_dir_all(&full);
        let _ = std::fs::remove_dir_all(&compact);
    }
}

#[test]
fn processes_share_one_cache_directory() {
    let dir = tmpdir("procs");
    let plugin = nlsq::runtime::plugin_location().unwrap().plugin;
    let env = [("NLSQ_PJRT_PLUGIN", plugin.to_str().unwrap())];
    // (source, everything after it: popt, pcov, cost, counts)
    let spawn = || -> (String, String) {
        let line = child_fit(&dir, &env);
        let (src, rest) = line.split_once(" popt=").unwrap();
        (src.to_string(), rest.to_string())
    };
    // Three processes start together on an empty directory: all succeed with equal results.
    let results: Vec<(String, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(spawn)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(|r| r.1 == results[0].1), "{results:?}");
    // A later process loads from disk.
    let (src, popt) = spawn();
    assert_eq!(src, "disk");
    assert_eq!(popt, results[0].1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn buckets_form_a_geometric_ladder() {
    assert_eq!(bucket(1), 16);
    assert_eq!(bucket(16), 16);
    assert_eq!(bucket(17), 24);
    assert_eq!(bucket(25), 32);
    assert_eq!(bucket(100), 128);
    assert_eq!(bucket(129), 192);
    assert_eq!(bucket(10_000), 12_288);
    let distinct: std::collections::BTreeSet<usize> = (100..=10_000).map(bucket).collect();
    assert_eq!(distinct.len(), 14);
    for m in 1..5000 {
        let b = bucket(m);
        assert!(b >= m && (b as f64) <= 1.5 * m.max(16) as f64, "{m} -> {b}");
    }
}

#[test]
fn bucket_padding_does_not_change_results() {
    for method in [Method::Lm, Method::Trf] {
        for m in [37usize, 100, 150] {
            let (x, y) = exp_data(m, 0.9);
            let sigma: Vec<f64> = (0..m).map(|i| 0.5 + (i % 7) as f64 * 0.1).collect();
            let base = FitOptions::default().with_method(method).with_sigma(sigma);
            let padded = curve_fit(&exp_model, &x, &y, Some(&[1.0, 1.0, 1.0]), &base).unwrap();
            let exact = curve_fit(
                &exp_model,
                &x,
                &y,
                Some(&[1.0, 1.0, 1.0]),
                &base.clone().with_bucket(false),
            )
            .unwrap();
            assert_eq!(padded.result.nfev, exact.result.nfev, "{method} m={m}");
            assert_eq!(padded.result.njev, exact.result.njev, "{method} m={m}");
            let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-300);
            assert!(rel(padded.result.cost, exact.result.cost) < 1e-12, "{method} m={m}");
            for (a, b) in padded.popt.iter().zip(&exact.popt) {
                assert!(rel(*a, *b) < 1e-12, "{method} m={m}: {} vs {}", padded.popt, exact.popt);
            }
            for (a, b) in padded.pcov.iter().zip(&exact.pcov) {
                assert!(
                    rel(*a, *b) < 1e-10,
                    "{method} m={m}: pcov {} vs {}",
                    padded.pcov,
                    exact.pcov
                );
            }
            assert_eq!(padded.result.fun.as_ref().map(|f| f.len()), Some(m));
            assert_eq!(padded.result.jac.as_ref().map(|j| j.nrows()), Some(m));
        }
    }
}

#[test]
fn fitter_compiles_once_and_fits_many_datasets() {
    let fitter = CurveFitter::builder(exp_model).capacity(150).params(3).build().unwrap();
    assert_eq!(fitter.capacity(), 192);
    for (i, k) in [0.5, 0.8, 1.3, 2.0].iter().enumerate() {
        let m = 60 + 30 * i; // varying lengths within the capacity
        let (x, y) = exp_data(m, *k);
        let a = fitter.fit(&x, &y, Some(&[1.0, 1.0, 1.0])).unwrap();
        let b = curve_fit(
            &exp_model,
            &x,
            &y,
            Some(&[1.0, 1.0, 1.0]),
            &FitOptions::default().with_bucket(false),
        )
        .unwrap();
        assert!(a.success());
        assert_eq!(a.result.timings.compile, std::time::Duration::ZERO);
        for (p, q) in a.popt.iter().zip(&b.popt) {
            assert!((p - q).abs() <= 1e-12 * q.abs(), "{} vs {}", a.popt, b.popt);
        }
    }
    let (x, y) = exp_data(500, 1.0);
    assert!(
        fitter.fit(&x, &y, Some(&[1.0, 1.0, 1.0])).is_err(),
        "too many points for the capacity"
    );
    let other = FitOptions::default().with_method(Method::Trf);
    let (x, y) = exp_data(100, 1.0);
    assert!(
        fitter.fit_with(&x, &y, Some(&[1.0, 1.0, 1.0]), &other).is_err(),
        "another method needs another program"
    );
}
