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
fn batch_on_two_files_prints_nothing_on_stderr_without_a_terminal() {
    // stderr is a pipe here: no progress line, however long the batch, and no other text.
    let dir = scratch();
    for (i, rows) in [decay(2.0, 1.0, 0.5, 40, 3), decay(1.5, 0.7, 0.2, 25, 4)]
        .iter()
        .enumerate()
    {
        let mut csv = String::from("t,v\n");
        for (x, y) in rows {
            csv.push_str(&format!("{x},{y}\n"));
        }
        std::fs::write(dir.join(format!("quiet{i}.csv")), csv).unwrap();
    }
    let o = nlsq(
        &[
            "batch",
            "--model",
            "a*exp(-k*t) + c",
            "--data",
            "quiet0.csv",
            "--data",
            "quiet1.csv",
            "--x",
            "t",
            "--p0",
            "a=2,k=1,c=0",
        ],
        &dir,
    );
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["dataset"], "quiet0.csv");
    assert_eq!(lines[1]["n_points"], 25);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "", "stderr");
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

/// The JSON lines of `o` and its exit code.
fn lines_and_code(o: &Output) -> (Vec<Value>, Option<i32>) {
    let lines = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, o.status.code())
}

#[test]
fn a_bad_dataset_gets_its_error_line_and_the_others_are_fitted() {
    let dir = scratch();
    let good = |name: &str, seed| {
        let rows: String = decay(2.0, 1.0, 0.5, 40, seed)
            .iter()
            .map(|(x, y)| format!("{x},{y}\n"))
            .collect();
        std::fs::write(dir.join(name), format!("t,v\n{rows}")).unwrap();
    };
    good("g1.csv", 1);
    good("g2.csv", 2);
    std::fs::write(dir.join("nan.csv"), "t,v\n0,1\n1,nan\n2,0.5\n3,0.4\n").unwrap();
    let model = "a*exp(-k*t) + c";
    let files = |names: &[&str]| {
        let mut args = vec!["batch", "--model", model, "--x", "t", "--p0", "a=2,k=1,c=0"];
        for n in names {
            args.extend(["--data", n]);
        }
        lines_and_code(&nlsq(&args, &dir))
    };
    // One NaN file among good ones: its line has the error, exit 1.
    let (lines, code) = files(&["g1.csv", "nan.csv", "g2.csv", "missing.csv"]);
    assert_eq!(code, Some(1));
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["success"], true);
    assert!(
        lines[1]["error"].as_str().unwrap().contains("nan.csv:3"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2]["success"], true);
    assert!(
        lines[3]["error"].as_str().unwrap().contains("missing.csv"),
        "{}",
        lines[3]
    );
    // All refused: exit 2, the lines still say why, one line on stderr.
    let o = nlsq(&["batch", "--model", model, "--x", "t", "--data", "nan.csv"], &dir);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
    // Long format: a NaN in group B refuses B only.
    let mut long = String::from("id,t,v\n");
    for (g, seed) in [("A", 1), ("B", 2), ("C", 3)] {
        for (i, (x, y)) in decay(2.0, 1.0, 0.5, 30, seed).iter().enumerate() {
            let y = if g == "B" && i == 4 {
                "NaN".to_string()
            } else {
                y.to_string()
            };
            long.push_str(&format!("{g},{x},{y}\n"));
        }
    }
    std::fs::write(dir.join("long_nan.csv"), long).unwrap();
    let (lines, code) = lines_and_code(&nlsq(&batch_long_args(model, "long_nan.csv"), &dir));
    assert_eq!(code, Some(1));
    assert_eq!(lines[0]["dataset"], "A");
    assert_eq!(lines[0]["success"], true);
    assert!(
        lines[1]["error"].as_str().unwrap().contains("long_nan.csv:"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2]["success"], true);
}
