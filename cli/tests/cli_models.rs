//! `nlsq fit` and `nlsq batch` with built-in models: the automatic start, a partial `--p0`,
//! the natural bounds, and a bad built-in name (exit 2, one line).

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn nlsq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nlsq"))
        .args(args)
        .output()
        .expect("the nlsq binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_file(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("nlsq-cli-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p: PathBuf = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// `y = 5 · Gaussian(area 5, center 4, sigma 0.6) + 0.3 x + 1` on 0..10 with a small
/// deterministic wiggle (not noise a fit could absorb: 0.005 sin(12.9 i)).
fn gaussian_line_csv() -> String {
    let mut s = String::from("x,y\n");
    for i in 0..300 {
        let x = 10.0 * f64::from(i) / 299.0;
        let g = 5.0 / (0.6 * (2.0 * std::f64::consts::PI).sqrt()) * (-(x - 4.0f64).powi(2) / (2.0 * 0.36)).exp();
        let y = g + 0.3 * x + 1.0 + 0.005 * (12.9 * f64::from(i)).sin();
        s.push_str(&format!("{x},{y}\n"));
    }
    s
}

fn fit_json(args: &[&str]) -> Value {
    let o = nlsq(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

const NAMES: [&str; 5] = ["g_amplitude", "g_center", "g_sigma", "linear_slope", "linear_intercept"];
const TRUTH: [f64; 5] = [5.0, 4.0, 0.6, 0.3, 1.0];

fn assert_recovered(v: &Value) {
    assert_eq!(v["param_names"], serde_json::json!(NAMES));
    assert_eq!(v["success"], Value::Bool(true), "{v}");
    for (n, t) in NAMES.iter().zip(TRUTH) {
        let p = v["params"][*n].as_f64().unwrap();
        assert!((p - t).abs() <= 0.01 * t, "{n} = {p}, truth {t}: {v}");
    }
}

#[test]
fn a_builtin_sum_fits_from_its_automatic_start() {
    let data = temp_file("gl.csv", &gaussian_line_csv());
    assert_recovered(&fit_json(&[
        "fit",
        "--model",
        "gaussian+linear",
        "--data",
        &data,
        "--json",
    ]));
    // `auto` is the default; the explicit form gives the same fit.
    assert_recovered(&fit_json(&[
        "fit",
        "--model",
        "gaussian + linear",
        "--data",
        &data,
        "--p0",
        "auto",
        "--json",
    ]));
    // The table names the model and its expression.
    let o = nlsq(&["fit", "--model", "gaussian+linear", "--data", &data]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("model  gaussian+linear = g_amplitude / (g_sigma * sqrt(2 * pi)) * exp(-(x - g_center)^2"),
        "{out}"
    );
}

#[test]
fn a_partial_p0_replaces_only_that_estimate() {
    let data = temp_file("gl2.csv", &gaussian_line_csv());
    // One function evaluation: popt is the start, so the start shows which values were replaced.
    let start = |extra: &[&str]| -> Vec<f64> {
        let mut args = vec![
            "fit",
            "--model",
            "gaussian+linear",
            "--data",
            &data,
            "--json",
            "--max-nfev",
            "1",
        ];
        args.extend_from_slice(extra);
        let o = nlsq(&args);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        NAMES.iter().map(|n| v["params"][*n].as_f64().unwrap()).collect()
    };
    let auto = start(&[]);
    let moved = start(&["--p0", "g_center=3.5"]);
    assert_eq!(moved[1], 3.5);
    for i in [0, 2, 3, 4] {
        assert_eq!(
            moved[i], auto[i],
            "parameter {} changed: {auto:?} vs {moved:?}",
            NAMES[i]
        );
    }
    assert!((auto[1] - 4.0).abs() < 0.1, "the estimated center {auto:?}");
    // From the moved start the fit still finds the peak.
    assert_recovered(&fit_json(&[
        "fit",
        "--model",
        "gaussian+linear",
        "--data",
        &data,
        "--p0",
        "g_center=3.5",
        "--json",
    ]));
}

#[test]
fn builtins_work_in_batch_with_a_start_per_dataset() {
    let a = temp_file("b1.csv", &gaussian_line_csv());
    let shifted: String = gaussian_line_csv()
        .lines()
        .enumerate()
        .map(|(i, l)| match (i, l.split_once(',')) {
            (0, _) | (_, None) => format!("{l}\n"),
            (_, Some((x, y))) => format!("{x},{}\n", y.parse::<f64>().unwrap() + 2.0),
        })
        .collect();
    let b = temp_file("b2.csv", &shifted);
    let o = nlsq(&["batch", "--model", "gaussian+linear", "--data", &a, "--data", &b]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let intercept = |v: &Value| v["params"]["linear_intercept"].as_f64().unwrap();
    assert!((intercept(&lines[0]) - 1.0).abs() < 0.01 && (intercept(&lines[1]) - 3.0).abs() < 0.01);
}

#[test]
fn bad_builtin_names_and_auto_for_an_expression_exit_2_with_one_line() {
    let data = temp_file("gl3.csv", &gaussian_line_csv());
    for (model, extra, want) in [
        (
            "gausian+linear",
            None,
            "unknown built-in model 'gausian' (built-ins: gaussian,",
        ),
        (
            "polynomial(9)",
            None,
            "polynomial(9): the degree must be an integer from 0 to 7",
        ),
        (
            "gaussian+linear",
            Some("center=3"),
            "'center' is not a parameter of the model",
        ),
        ("a*x + b", Some("auto"), "--p0 auto needs a built-in model"),
    ] {
        let mut args = vec!["fit", "--model", model, "--data", &data];
        if let Some(p0) = extra {
            args.extend(["--p0", p0]);
        }
        let o = nlsq(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1 && err.contains(want),
            "{args:?}: {err:?}"
        );
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn fit_help_lists_the_builtins() {
    let help = String::from_utf8(nlsq(&["fit", "--help"]).stdout).unwrap();
    for name in nlsq::models::BUILTIN_NAMES {
        assert!(help.contains(name), "nlsq fit --help lacks {name}");
    }
}
