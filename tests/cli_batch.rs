//! `nlsq batch`: JSON lines, one per dataset, equal to `nlsq fit` on each dataset.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn nlsq(args: &[&str], dir: &Path) -> Output {
    nlsq_with_env(args, dir, &[])
}

fn nlsq_with_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nlsq"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("the nlsq binary runs")
}

/// The JSON lines of a successful `nlsq batch`.
fn json_lines(o: &Output) -> Vec<Value> {
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `nlsq batch` of `model` on the long-format `data` (group `id`, columns `t` and `v`).
fn batch_long_args<'a>(model: &'a str, data: &'a str) -> Vec<&'a str> {
    vec![
        "batch",
        "--model",
        model,
        "--data",
        data,
        "--group",
        "id",
        "--x",
        "t",
        "--y",
        "v",
        "--p0",
        "a=2,k=1,c=0",
    ]
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nlsq-cli-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn decay(a: f64, k: f64, c: f64, m: usize, seed: usize) -> Vec<(f64, f64)> {
    (0..m)
        .map(|i| {
            let x = 5.0 * i as f64 / m as f64;
            let noise = 0.01 * (((i + 7 * seed) as f64 * 12.9898).sin() * 43758.5453).fract();
            (x, a * (-k * x).exp() + c + noise)
        })
        .collect()
}

#[test]
fn long_format_groups_and_files_match_single_fits() {
    let dir = scratch();
    let groups = [
        ("s0", decay(2.0, 1.0, 0.5, 50, 0)),
        ("s1", decay(3.0, 0.5, 0.1, 30, 1)),
        ("s2", decay(1.0, 2.0, 0.2, 80, 2)),
    ];
    let mut long = String::from("id,t,v\n");
    for (g, rows) in &groups {
        let mut one = String::from("t,v\n");
        for (x, y) in rows {
            long.push_str(&format!("{g},{x},{y}\n"));
            one.push_str(&format!("{x},{y}\n"));
        }
        std::fs::write(dir.join(format!("{g}.csv")), one).unwrap();
    }
    std::fs::write(dir.join("long.csv"), long).unwrap();
    let model = "a*exp(-k*t) + c";
    let lines = json_lines(&nlsq(&batch_long_args(model, "long.csv"), &dir));
    assert_eq!(lines.len(), 3);
    let o2 = nlsq(
        &[
            "batch",
            "--model",
            model,
            "--data",
            "s0.csv",
            "--data",
            "s1.csv",
            "--data",
            "s2.csv",
            "--x",
            "t",
            "--p0",
            "a=2,k=1,c=0",
        ],
        &dir,
    );
    let files = json_lines(&o2);
    for (i, (g, rows)) in groups.iter().enumerate() {
        assert_eq!(lines[i]["dataset"], *g);
        assert_eq!(lines[i]["n_points"], rows.len());
        let single = nlsq(
            &[
                "fit",
                "--model",
                model,
                "--data",
                &format!("{g}.csv"),
                "--x",
                "t",
                "--p0",
                "a=2,k=1,c=0",
                "--json",
            ],
            &dir,
        );
        let single: Value = serde_json::from_slice(&single.stdout).unwrap();
        for p in ["a", "k", "c"] {
            let (b, f, s) = (
                lines[i]["params"][p].as_f64().unwrap(),
                files[i]["params"][p].as_f64().unwrap(),
                single["params"][p].as_f64().unwrap(),
            );
            assert!((b - s).abs() <= 1e-10 * s.abs(), "{g} {p}: batch {b} vs fit {s}");
            assert!((f - s).abs() <= 1e-10 * s.abs(), "{g} {p}: files {f} vs fit {s}");
        }
        assert_eq!(lines[i]["nfev"], single["nfev"]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn batch_rejects_plot_and_needs_data() {
    let dir = scratch();
    let o = nlsq(&["batch", "--model", "a*x"], &dir);
    assert_eq!(o.status.code(), Some(2));
    let o = nlsq(&["batch", "--model", "a*x", "--data", "d.csv", "--plot", "p.svg"], &dir);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn pinned_per_core_clients_give_the_same_results_as_the_shared_client() {
    // By default the chunks run on per-core pinned clients (`runtime::cpu_workers`, on a machine
    // with two or more cores); `NLSQ_PIN_THREADS=0` runs them on the shared client's devices.
    let dir = scratch().join("pinned");
    std::fs::create_dir_all(&dir).unwrap();
    let mut long = String::from("id,t,v\n");
    for g in 0..6 {
        for (x, y) in decay(2.0 + g as f64, 1.0 + 0.1 * g as f64, 0.5, 40, g) {
            long.push_str(&format!("s{g},{x},{y}\n"));
        }
    }
    std::fs::write(dir.join("long.csv"), long).unwrap();
    let run = |pin: &str| {
        let o = nlsq_with_env(
            &batch_long_args("a*exp(-k*t) + c", "long.csv"),
            &dir,
            &[("NLSQ_PIN_THREADS", pin)],
        );
        json_lines(&o)
            .into_iter()
            .map(|mut v| {
                v.as_object_mut().unwrap().remove("timing");
                v
            })
            .collect::<Vec<_>>()
    };
    let (pinned, shared) = (run("1"), run("0"));
    assert_eq!(pinned.len(), 6);
    // The same executable code on either client: identical to the last bit.
    assert_eq!(pinned, shared);
    let _ = std::fs::remove_dir_all(&dir);
}
