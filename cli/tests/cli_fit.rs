//! `nlsq fit`: the built binary on the small files in tests/data/cli/.
//!
//! Reference values come from scipy 1.17.1 `curve_fit` on the same files (decay.csv:
//! y = 2.5 exp(-1.3 x) + 0.5 + 0.02 sin(3.7 i), 30 points; plane.csv: z = 1.8 exp(-0.7 u) +
//! 0.4 v² + 0.01 cos(5.1 i), 24 points). Bad input must exit 2 with one `error:` line on
//! stderr, before anything is compiled.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const DECAY: &str = "a*exp(-k*x) + c";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cli")
}

fn nlsq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nlsq"))
        .args(args)
        .current_dir(data_dir())
        .output()
        .expect("the nlsq binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a fit with `--json`, expects exit code `code`, returns the JSON.
fn fit_json(args: &[&str], code: i32) -> Value {
    let mut all = vec!["fit"];
    all.extend_from_slice(args);
    all.push("--json");
    let o = nlsq(&all);
    assert_eq!(o.status.code(), Some(code), "{all:?}: stderr {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{all:?}: stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn values(v: &Value, key: &str, names: &[&str]) -> Vec<f64> {
    names
        .iter()
        .map(|n| v[key][*n].as_f64().unwrap_or_else(|| panic!("{key}.{n} in {v}")))
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], rtol: f64, what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= rtol * w.abs(),
            "{what}: got {got:?}, want {want:?} (rtol {rtol})"
        );
    }
}

/// Runs `nlsq fit ARGS` for each case and expects exit 2 with exactly one `error:` line on
/// stderr that contains the case's text, nothing on stdout, no panic.
fn assert_bad_input(cases: &[(&[&str], &str)]) {
    for (args, want) in cases {
        let mut all = vec!["fit"];
        all.extend_from_slice(args);
        let o = nlsq(&all);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{all:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{all:?}: not one error line: {err:?}"
        );
        assert!(err.contains(want), "{all:?}: {err:?} does not contain {want:?}");
        assert!(!err.contains("panicked") && o.stdout.is_empty(), "{all:?}: {err}");
    }
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nlsq-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn json_has_exactly_the_documented_keys_and_scipy_values() {
    let v = fit_json(&["--model", DECAY, "--data", "decay.csv"], 0);
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = vec![
        "params",
        "stderr",
        "pcov",
        "param_names",
        "fixed",
        "tied",
        "rank",
        "not_determined",
        "intervals",
        "correlation",
        "statistics",
        "starts",
        "cost",
        "nfev",
        "njev",
        "status",
        "message",
        "success",
        "timing",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(v["param_names"], serde_json::json!(["a", "k", "c"]));
    assert_close(
        &values(&v, "params", &["a", "k", "c"]),
        &[2.498066847356091, 1.299870163908021, 0.5003942525184415],
        1e-7,
        "popt",
    );
    assert_close(
        &values(&v, "stderr", &["a", "k", "c"]),
        &[0.011792541783368367, 0.012014417998420679, 0.0037989026915396023],
        1e-5,
        "perr",
    );
    let pcov = v["pcov"].as_array().unwrap();
    assert_eq!(pcov.len(), 3);
    assert!(pcov.iter().all(|row| row.as_array().unwrap().len() == 3));
    assert!((pcov[0][0].as_f64().unwrap().sqrt() - 0.011792541783368367).abs() < 1e-7);
    assert_eq!(v["success"], true);
    assert!(v["status"].as_i64().unwrap() > 0);
    assert!(v["cost"].as_f64().unwrap() > 0.0 && v["nfev"].as_u64().unwrap() > 0 && v["njev"].as_u64().unwrap() > 0);
    assert!(v["message"].as_str().unwrap().contains("termination"));
    let t = &v["timing"];
    assert!(t["compile_ms"].as_f64().unwrap() >= 0.0 && t["execute_ms"].as_f64().unwrap() > 0.0);
    assert!(t["cache"].is_string());
    // Statistics and 95% intervals: the t quantile t(0.975, 27) (scipy) times stderr.
    let s = &v["statistics"];
    assert_eq!(s["n_points"], 30);
    assert_eq!(s["dof"], 27);
    let chisqr = s["chisqr"].as_f64().unwrap();
    assert!((chisqr - 2.0 * v["cost"].as_f64().unwrap()).abs() <= 1e-12 * chisqr);
    assert!(s["r_squared"].as_f64().unwrap() > 0.99 && s["aic"].as_f64().is_some());
    let (lo, hi) = (&v["intervals"]["lower"]["k"], &v["intervals"]["upper"]["k"]);
    let half = (hi.as_f64().unwrap() - lo.as_f64().unwrap()) / 2.0;
    assert!(
        (half / 0.012014417998420679 - 2.0518305164802846).abs() < 1e-4,
        "{half}"
    );
    assert_eq!(v["intervals"]["level"], 0.95);
    assert_eq!(v["correlation"][0][0], 1.0);
    assert!(v["starts"].is_null());
    assert_eq!(
        (&v["fixed"], &v["tied"]),
        (&serde_json::json!([]), &serde_json::json!({}))
    );
}

#[test]
fn fixed_and_tied_parameters() {
    let tight = ["--ftol", "1e-15", "--xtol", "1e-15", "--gtol", "1e-15"];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--model", DECAY, "--data", "decay.csv"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(tight.iter().chain(extra).map(|s| s.to_string()));
        v
    };
    let args = with(&["--fix", "c=0.5"]);
    let fixed = fit_json(&args.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    let mut literal_args = vec!["--model", "a*exp(-k*x) + 0.5", "--data", "decay.csv"];
    literal_args.extend(tight);
    let literal = fit_json(&literal_args, 0);
    assert_close(
        &values(&fixed, "params", &["a", "k"]),
        &values(&literal, "params", &["a", "k"]),
        1e-10,
        "fixed c vs the literal",
    );
    assert_close(
        &values(&fixed, "stderr", &["a", "k"]),
        &values(&literal, "stderr", &["a", "k"]),
        1e-8,
        "stderr",
    );
    assert_eq!(fixed["params"]["c"], 0.5);
    assert!(fixed["stderr"]["c"].is_null() && fixed["intervals"]["lower"]["c"].is_null());
    assert_eq!(fixed["fixed"], serde_json::json!(["c"]));
    assert_eq!(fixed["statistics"]["dof"], 28, "two varying parameters on 30 points");
    assert_eq!(fixed["param_names"], serde_json::json!(["a", "k", "c"]));
    // A tie: c follows a.
    let args = with(&["--tie", "c=a/5"]);
    let tied = fit_json(&args.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    let (a, c) = (
        tied["params"]["a"].as_f64().unwrap(),
        tied["params"]["c"].as_f64().unwrap(),
    );
    assert!((c - a / 5.0).abs() <= 1e-12 * c, "{a} {c}");
    let (ea, ec) = (
        tied["stderr"]["a"].as_f64().unwrap(),
        tied["stderr"]["c"].as_f64().unwrap(),
    );
    assert!((ec - ea / 5.0).abs() <= 1e-6 * ec, "{ea} {ec}");
    assert_eq!(tied["tied"], serde_json::json!({"c": "a/5"}));
    // The table says so.
    let o = nlsq(&["fit", "--model", DECAY, "--data", "decay.csv", "--fix", "c", "--quiet"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.lines().any(|l| l.starts_with('c') && l.contains("fixed")), "{out}");
    assert_bad_input(&[
        (
            &["--model", DECAY, "--data", "decay.csv", "--fix", "z=1"],
            "no parameter 'z'",
        ),
        (
            &["--model", DECAY, "--data", "decay.csv", "--fix", "x=1"],
            "no parameter 'x'",
        ),
        (&["--model", DECAY, "--data", "decay.csv", "--tie", "c=c"], "cycle"),
        (
            &["--model", DECAY, "--data", "decay.csv", "--tie", "c=k", "--tie", "k=c"],
            "cycle",
        ),
        (
            &["--model", DECAY, "--data", "decay.csv", "--fix", "a,k,c"],
            "nothing is left to fit",
        ),
        (
            &[
                "--model",
                DECAY,
                "--data",
                "decay.csv",
                "--tie",
                "c=a",
                "--lower",
                "c=0",
            ],
            "takes none",
        ),
        (
            &["--model", DECAY, "--data", "decay.csv", "--tie", "c=q"],
            "tie 'q' does not parse",
        ),
        (&["--model", DECAY, "--data", "decay.csv", "--tie", "c"], "NAME=EXPR"),
        (
            &["--model", DECAY, "--data", "decay.csv", "--fix", "c=zz"],
            "not a number",
        ),
        (
            &["--model", DECAY, "--data", "decay.csv", "--fix", "c", "--tie", "c=a"],
            "also fixed",
        ),
    ]);
}

#[test]
fn starts_report_how_many_reached_the_best() {
    let v = fit_json(
        &["--model", DECAY, "--data", "decay.csv", "--starts", "8", "--seed", "3"],
        0,
    );
    let s = &v["starts"];
    assert_eq!(s["n_starts"], 8);
    assert_eq!(s["costs"].as_array().unwrap().len(), 8);
    let reached = s["reached"].as_u64().unwrap();
    assert!((1..=8).contains(&reached), "{s}");
    assert_eq!(s["costs"][s["best"].as_u64().unwrap() as usize], v["cost"]);
    let o = nlsq(&[
        "fit",
        "--model",
        DECAY,
        "--data",
        "decay.csv",
        "--starts",
        "8",
        "--quiet",
    ]);
    // No progress line (nor compile note) on stderr when it is not a terminal (a pipe here).
    assert_eq!(stderr(&o), "");
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("of 8 reached the best cost"), "{out}");
}

#[test]
fn table_output_lists_parameters_status_cost_and_timing() {
    let o = nlsq(&["fit", "--model", DECAY, "--data", "decay.csv"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    for want in [
        "parameter",
        "value",
        "std error",
        "2.4980668",
        "1.2998701",
        "status",
        "cost",
        "nfev",
        "compile",
        "execute",
        "95% interval",
        "R²",
        "on 27 degrees of freedom",
        "AIC",
        "correlation (above 0.1)",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn header_is_detected_both_ways() {
    // decay.txt: the same numbers, whitespace-separated, a comment line and no header.
    let with = fit_json(&["--model", DECAY, "--data", "decay.csv"], 0);
    let without = fit_json(&["--model", DECAY, "--data", "decay.txt"], 0);
    assert_eq!(with["params"], without["params"]);
    // Forcing the wrong choice is an error that says what to do.
    let o = nlsq(&["fit", "--model", DECAY, "--data", "decay.csv", "--no-header"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("decay.csv:1") && stderr(&o).contains("--header"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn columns_by_name_and_by_index_agree() {
    // columns.tsv: label (text), err, t, signal.
    let model = "a*exp(-k*t) + c";
    let by_name = fit_json(
        &[
            "--model",
            model,
            "--data",
            "columns.tsv",
            "--x",
            "t",
            "--y",
            "signal",
            "--sigma",
            "err",
            "--absolute-sigma",
        ],
        0,
    );
    let by_index = fit_json(
        &[
            "--model",
            model,
            "--data",
            "columns.tsv",
            "--x",
            "3",
            "--y",
            "4",
            "--sigma",
            "2",
            "--absolute-sigma",
        ],
        0,
    );
    assert_eq!(by_name["params"], by_index["params"]);
    assert_eq!(by_name["stderr"], by_index["stderr"]);
    assert_close(
        &values(&by_name, "params", &["a", "k", "c"]),
        &[2.498066847640248, 1.2998701644173787, 0.5003942526026283],
        1e-7,
        "popt",
    );
    assert_close(
        &values(&by_name, "stderr", &["a", "k", "c"]),
        &[0.016226260193511664, 0.016531556324265225, 0.005227200687227965],
        1e-5,
        "perr",
    );
    // An index column gets a name of its own: NAME=COL.
    let named = fit_json(
        &[
            "--model",
            "a*exp(-k*time) + c",
            "--data",
            "decay.txt",
            "--x",
            "time=1",
            "--y",
            "2",
        ],
        0,
    );
    assert_close(
        &values(&named, "params", &["a", "k", "c"]),
        &[2.498066847356091, 1.299870163908021, 0.5003942525184415],
        1e-7,
        "popt",
    );
}

#[test]
fn two_predictors() {
    let v = fit_json(
        &[
            "--model",
            "A*exp(-b*u) + c*v^2",
            "--data",
            "plane.csv",
            "--x",
            "u,v",
            "--y",
            "z",
        ],
        0,
    );
    assert_close(
        &values(&v, "params", &["A", "b", "c"]),
        &[1.7976584241761489, 0.6984358879973733, 0.40050862410523164],
        1e-7,
        "popt",
    );
    assert_close(
        &values(&v, "stderr", &["A", "b", "c"]),
        &[0.0036843845230564326, 0.00292278130935033, 0.0034099120483642286],
        1e-5,
        "perr",
    );
}

#[test]
fn bounds_hold_a_parameter_at_its_upper_bound() {
    let v = fit_json(
        &[
            "--model",
            DECAY,
            "--data",
            "decay.csv",
            "--p0",
            "a=1,k=0.5,c=1",
            "--upper",
            "k=1",
        ],
        0,
    );
    let p = values(&v, "params", &["a", "k", "c"]);
    assert!(p[1] <= 1.0 && p[1] > 1.0 - 1e-6, "{p:?}");
    assert_close(
        &p,
        &[2.3591716298748615, 0.9999999999999999, 0.43122923650248257],
        1e-5,
        "popt",
    );
}

#[test]
fn not_converging_exits_1_and_still_prints_the_result() {
    let v = fit_json(&["--model", DECAY, "--data", "decay.csv", "--max-nfev", "1"], 1);
    assert_eq!(v["success"], false);
    assert!(v["status"].as_i64().unwrap() <= 0);
    let o = nlsq(&["fit", "--model", DECAY, "--data", "decay.csv", "--max-nfev", "1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: the fit did not converge"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--model", DECAY, "--data", "missing.csv"],
            "cannot read data file missing.csv",
        ),
        (
            &["--model", DECAY, "--data", "decay.csv", "--y", "nope"],
            "column 'nope' not found",
        ),
        (&["--model", DECAY, "--data", "decay.csv", "--x", "9"], "out of range"),
        (&["--model", DECAY, "--data", "decay.txt", "--y", "y"], "no header line"),
        (
            &["--model", "a*exp(-k*x +", "--data", "decay.csv"],
            "at 1:13: unexpected end",
        ),
        (&["--model", "a*(x - b", "--data", "decay.csv"], "at 1:3: unclosed '('"),
        (
            &["--model", "a*foo(x)", "--data", "decay.csv"],
            "at 1:3: unknown function 'foo'",
        ),
        (&["--model", "a*x", "--data", "nan.csv"], "nan.csv:4"),
        (
            &["--model", DECAY, "--data", "decay.csv", "--p0", "k=5", "--upper", "k=2"],
            "p0 of 'k' = 5 is outside its bounds",
        ),
        (
            &[
                "--model",
                DECAY,
                "--data",
                "decay.csv",
                "--lower",
                "k=3",
                "--upper",
                "k=2",
            ],
            "lower bound of 'k'",
        ),
        (
            &["--model", DECAY, "--data", "decay.csv", "--method", "dogbox"],
            "dogbox is not supported yet",
        ),
        (
            &["--model", DECAY, "--data", "decay.csv", "--method", "newton"],
            "not one of trf, lm, dogbox",
        ),
        (
            &["--model", DECAY, "--data", "decay.csv", "--p0", "q=1"],
            "'q' is not a parameter",
        ),
        (&["--model", DECAY, "--data", "decay.csv", "--loss", "l7"], "--loss"),
        (
            &["--model", DECAY, "--data", "decay.csv", "--sigma", "x"],
            "sigma (column 1) must be > 0",
        ),
        (
            &["--model", DECAY, "--data", "decay.csv", "--plot", "out.pdf"],
            ".svg or .png",
        ),
        (
            &["--model", DECAY, "--data", "decay.csv", "--frobnicate"],
            "unknown option '--frobnicate'",
        ),
        (&["--model", DECAY], "needs --data"),
        (&["--model", "x^2", "--data", "decay.csv"], "no parameters"),
    ];
    assert_bad_input(cases);
    let o = nlsq(&["bogus"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn model_not_finite_at_the_start_exits_2() {
    let o = nlsq(&["fit", "--model", "log(b - x)*a", "--data", "decay.csv", "--p0", "b=-1"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not finite at the starting point"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn plot_writes_svg_and_png() {
    let svg = temp_path("fit.svg");
    let png = temp_path("fit.png");
    let _ = std::fs::remove_file(&svg);
    let _ = std::fs::remove_file(&png);
    let mut labelled = true;
    for path in [&svg, &png] {
        let o = nlsq(&[
            "fit",
            "--model",
            DECAY,
            "--data",
            "decay.csv",
            "--plot",
            path.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        // A host without any of the usual fonts (seen on a GPU machine) draws no text.
        labelled &= !stderr(&o).contains("no TrueType font found");
    }
    // Sizes with text / without (960 x 720): SVG 45.6 / 10.1 kB, PNG 31.7 / 8.5 kB; the plot of
    // a 4-point fit without text: SVG 5.3 kB, PNG 7.5 kB.
    let (svg_min, png_min) = if labelled { (20_000, 15_000) } else { (8_000, 8_000) };
    let text = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(text.starts_with("<svg") && text.len() > svg_min, "{} bytes", text.len());
    // 30 data points and 30 residuals, and the fitted curve.
    assert!(
        text.matches("<circle").count() >= 60,
        "{}",
        text.matches("<circle").count()
    );
    assert!(text.contains("<polyline"));
    let bytes = std::fs::read(&png).expect("the PNG was written");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > png_min,
        "{} bytes",
        bytes.len()
    );
    // Without a font the plot is still drawn (no text), with a warning.
    let bare = temp_path("bare.svg");
    let o = Command::new(env!("CARGO_BIN_EXE_nlsq"))
        .args([
            "fit",
            "--model",
            "A*exp(-b*u) + c*v^2",
            "--data",
            "plane.csv",
            "--x",
            "u,v",
            "--y",
            "z",
            "--plot",
            bare.to_str().unwrap(),
        ])
        .current_dir(data_dir())
        .env("NLSQ_PLOT_FONT", "none")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).starts_with("warning: no TrueType font"), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&bare).unwrap().matches("<circle").count() >= 48);
}

#[test]
fn help_documents_every_option_with_an_example() {
    let main = nlsq(&["--help"]);
    assert_eq!(main.status.code(), Some(0));
    let main = String::from_utf8(main.stdout).unwrap();
    assert!(main.contains("nlsq fit") && main.contains("nlsq nist") && main.contains("Examples"));
    let fit = String::from_utf8(nlsq(&["fit", "--help"]).stdout).unwrap();
    for opt in [
        "--model",
        "--data",
        "--x",
        "--y",
        "--sigma",
        "--absolute-sigma",
        "--p0",
        "--lower",
        "--upper",
        "--method",
        "--loss",
        "--f-scale",
        "--max-nfev",
        "--ftol",
        "--xtol",
        "--gtol",
        "--header",
        "--no-header",
        "--json",
        "--plot",
        "Examples",
        "trf|lm|dogbox",
        "soft_l1",
        "compile_ms",
    ] {
        assert!(fit.contains(opt), "nlsq fit --help lacks {opt}");
    }
    let nist = String::from_utf8(nlsq(&["nist", "--help"]).stdout).unwrap();
    for opt in [
        "--method", "--start", "--ftol", "--xtol", "--gtol", "--json", "lre_min", "Examples",
    ] {
        assert!(nist.contains(opt), "nlsq nist --help lacks {opt}");
    }
}

/// Writes `text` to a temporary file and returns its path as a string.
fn temp_file(name: &str, text: &str) -> String {
    let p = temp_path(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// Michaelis–Menten data, `rate = 210 conc / (0.065 + conc)` plus a little noise.
fn michaelis_menten_csv() -> String {
    let mut s = String::from("conc,rate\n");
    for (i, c) in [0.02, 0.06, 0.11, 0.22, 0.56, 1.1].iter().enumerate() {
        let r = 210.0 * c / (0.065 + c) * (1.0 + 0.01 * ((i as f64) * 1.7).sin());
        s.push_str(&format!("{c},{r}\n"));
    }
    s
}

#[test]
fn a_model_name_that_is_a_column_binds_to_it() {
    let data = temp_file("mm.csv", &michaelis_menten_csv());
    let v = fit_json(
        &["--model", "Vm*conc/(K + conc)", "--data", &data, "--p0", "Vm=200,K=0.1"],
        0,
    );
    assert_eq!(v["param_names"], serde_json::json!(["Vm", "K"]));
    let p = values(&v, "params", &["Vm", "K"]);
    assert!((p[0] - 210.0).abs() < 5.0 && (p[1] - 0.065).abs() < 0.01, "{p:?}");
}

#[test]
fn a_model_name_that_is_an_unlisted_column_or_y_is_an_error() {
    let data = temp_file("mm3.csv", "t,conc,rate\n1,0.1,100\n2,0.2,150\n3,0.4,170\n4,0.8,190\n");
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--model",
                "Vm*conc/(K + conc) + b*t",
                "--data",
                &data,
                "--x",
                "t",
                "--y",
                "rate",
            ],
            "'conc' in the model is a column that --x does not list",
        ),
        (
            &["--model", "Vm*conc/(K + rate)", "--data", &data, "--y", "rate"],
            "'rate' in the model is the y column",
        ),
        // `--x t` with a model written in x: x would be a parameter and the model a constant.
        (
            &["--model", "a*exp(-k*x) + c", "--data", &data, "--x", "t", "--y", "rate"],
            "the model does not use the independent variable t",
        ),
    ];
    assert_bad_input(cases);
}

#[test]
fn data_read_wrongly_is_refused() {
    let comma = temp_file("comma.csv", "x,y\n0,05,2,836\n0,10,2,5\n0,20,2,1\n");
    let dup = temp_file("dup.csv", "x,x,y\n1,2,3\n2,3,5\n3,4,7\n");
    let pi = temp_file("pi.csv", "pi,y\n1,2\n2,3\n3,5\n");
    let cases: &[(&[&str], &str)] = &[
        (&["--model", "a*x + b", "--data", &comma], "decimal comma"),
        (&["--model", "a*x + b", "--data", &dup], "two columns 'x'"),
        (
            &["--model", "a*x + b", "--data", &pi, "--x", "pi"],
            "'pi' is a constant or function",
        ),
    ];
    assert_bad_input(cases);
}

#[test]
fn parameters_the_data_do_not_determine_are_reported() {
    let v = fit_json(&["--model", "a*x + b*x + c", "--data", "decay.csv"], 0);
    assert_eq!(v["rank"], 2);
    assert_eq!(v["not_determined"], serde_json::json!(["a", "b"]));
    // lm: a rank-deficient Jacobian has no covariance at all (JSON null for inf).
    assert!(v["stderr"]["a"].is_null() && v["stderr"]["c"].is_null(), "{v}");
    let o = nlsq(&["fit", "--model", "a*x + b*x + c", "--data", "decay.csv"]);
    let (out, err) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(out.contains("not determined"), "{out}");
    assert!(err.contains("warning: the data do not determine 'a', 'b'"), "{err}");
    let v = fit_json(&["--model", DECAY, "--data", "decay.csv"], 0);
    assert_eq!(v["rank"], 3);
    assert_eq!(v["not_determined"], serde_json::json!([]));
}

#[test]
fn a_huge_max_nfev_is_no_budget_not_a_negative_one() {
    let v = fit_json(
        &[
            "--model",
            DECAY,
            "--data",
            "decay.csv",
            "--max-nfev",
            "18446744073709551615",
        ],
        0,
    );
    assert_eq!(v["success"], true, "{v}");
}

#[test]
fn a_cache_that_cannot_be_written_is_one_warning_not_a_failure() {
    let o = Command::new(env!("CARGO_BIN_EXE_nlsq"))
        .args(["fit", "--model", DECAY, "--data", "decay.csv", "--json"])
        .env("NLSQ_CACHE_DIR", "/dev/null/cache")
        .current_dir(data_dir())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("cannot write its executable cache").count(), 1, "{err}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["success"], true);
}

#[test]
fn a_plugin_that_is_missing_not_a_plugin_or_truncated_is_a_runtime_error_naming_it() {
    let real = nlsq::runtime::plugin_location().unwrap().plugin;
    // Its first 4 MiB (of 259): the segments the loader would map lie past the end.
    let mut head = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(&real).unwrap(), 4 << 20),
        &mut head,
    )
    .unwrap();
    let truncated = temp_path("truncated_plugin.so");
    std::fs::write(&truncated, &head).unwrap();
    let text = temp_path("text_plugin.so");
    std::fs::write(&text, "not a library").unwrap();
    let cases = [
        (truncated.to_string_lossy().into_owned(), "truncated"),
        (text.to_string_lossy().into_owned(), "not a shared library"),
        ("/nonexistent/plugin.so".to_string(), "/nonexistent/plugin.so"),
    ];
    for (plugin, want) in cases {
        let o = Command::new(env!("CARGO_BIN_EXE_nlsq"))
            .args(["fit", "--model", DECAY, "--data", "decay.csv"])
            .env("NLSQ_PJRT_PLUGIN", &plugin)
            .current_dir(data_dir())
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "{plugin}: {err}");
        assert!(
            err.contains(want) && err.trim_end().lines().count() == 1,
            "{plugin}: {err}"
        );
    }
}

#[test]
fn a_data_file_too_large_for_the_address_space_is_an_error_not_an_abort() {
    let path = temp_path("million.csv");
    let mut text = String::from("x,y\n");
    for i in 0..1_000_000 {
        text.push_str(&format!("{},{}\n", i as f64 * 1e-6, (i % 97) as f64 * 0.01));
    }
    std::fs::write(&path, text).unwrap();
    // 40 MB of address space: less than the reader needs for 10^6 rows.
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v 40000 && exec {} fit --model 'a*x + b' --data {}",
            env!("CARGO_BIN_EXE_nlsq"),
            path.display()
        ))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "killed or aborted? {err}");
    assert!(
        err.contains("does not fit in this process's memory") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_file_size_limit_below_a_cache_entry_skips_the_entry_and_keeps_the_fit() {
    // `ulimit -f 16` (16 blocks of 512 bytes): an entry (hundreds of kB) would pass it, and the
    // kernel would end the process with SIGXFSZ after the fit ran, leaving a `.tmp` file.
    let cache = temp_path("fsize_cache");
    let _ = std::fs::remove_dir_all(&cache);
    let o = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 16 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_nlsq"))
        .args(["fit", "--model", DECAY, "--data", "decay.csv", "--json"])
        .env("NLSQ_CACHE_DIR", &cache)
        .current_dir(data_dir())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "killed by a signal? {:?}: {err}", o.status);
    assert_eq!(err.matches("cannot write its executable cache").count(), 1, "{err}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["success"], true);
    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                files(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut left = Vec::new();
    files(&cache, &mut left);
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

#[test]
fn compile_fills_the_cache_that_a_later_fit_loads_from() {
    let dir = std::env::temp_dir().join(format!("nlsq-cli-compile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nlsq"))
            .args(args)
            .current_dir(data_dir())
            .env("NLSQ_CACHE_DIR", &dir)
            .output()
            .unwrap()
    };
    // decay.csv has 30 points: the 32-row program.
    let o = run(&["compile", "--model", DECAY, "--lengths", "30,31,200"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("32 rows (lengths 30, 31): compiled"), "{out}");
    assert!(out.contains("256 rows (lengths 200): compiled"), "{out}");
    let o = run(&["fit", "--model", DECAY, "--data", "decay.csv", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["timing"]["cache"], "disk", "{v}");
    // A built-in model from a @FILE compiles the bounded program `nlsq fit` uses for it.
    let file = dir.join("model.txt");
    std::fs::write(&file, "gaussian+linear\n").unwrap();
    let at = format!("@{}", file.display());
    let o = run(&["compile", "--model", &at, "--lengths", "30"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(&["fit", "--model", &at, "--data", "decay.csv", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    assert_eq!(v["timing"]["cache"], "disk", "{v}");
    for (bad, want) in [
        (
            vec!["compile", "--model", DECAY, "--lengths", "0"],
            "option --lengths: '0' is not a positive integer",
        ),
        (
            vec![
                "compile",
                "--model",
                DECAY,
                "--lengths",
                "10",
                "--method",
                "lm",
                "--bounded",
            ],
            "--method lm does not support bounds",
        ),
        (vec!["compile", "--model", "a*exp(", "--lengths", "10"], "--model"),
        (
            vec!["compile", "--model", "a*t", "--lengths", "10"],
            "uses none of the variables x",
        ),
    ] {
        let o = run(&bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        let e = stderr(&o);
        assert!(e.contains(want) && e.lines().count() == 1, "{bad:?}: {e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn several_datasets_with_shared_parameters_are_one_global_fit() {
    // Three decays with their own a and c and one rate, as three files and as one long file.
    let mut long = String::from("id,x,y\n");
    let mut files = Vec::new();
    for (d, (a, c, m)) in [(1.0, 0.2, 40), (2.2, -0.1, 60), (3.5, 0.4, 90)].iter().enumerate() {
        let mut text = String::from("x,y\n");
        for i in 0..*m {
            let x = 5.0 * i as f64 / *m as f64;
            let y = a * (-1.3 * x).exp() + c + 0.01 * ((7 * i + d) as f64).sin();
            text.push_str(&format!("{x},{y}\n"));
            long.push_str(&format!("s{d},{x},{y}\n"));
        }
        let path = temp_path(&format!("global{d}.csv"));
        std::fs::write(&path, text).unwrap();
        files.push(path.display().to_string());
    }
    let long_path = temp_path("global_long.csv");
    std::fs::write(&long_path, long).unwrap();
    let mut args: Vec<&str> = vec!["--model", DECAY];
    for f in &files {
        args.extend(["--data", f.as_str()]);
    }
    args.extend(["--shared", "k"]);
    let v = fit_json(&args, 0);
    let k = v["shared"]["k"].as_f64().unwrap();
    assert!((k - 1.3).abs() < 0.01, "{v}");
    assert_eq!(
        v["param_names"],
        serde_json::json!(["k", "a[0]", "c[0]", "a[1]", "c[1]", "a[2]", "c[2]"])
    );
    assert_eq!(v["statistics"]["dof"], 190 - 7);
    let sets = v["datasets"].as_array().unwrap();
    assert_eq!(sets.len(), 3);
    assert_eq!(sets[2]["n_points"], 90);
    assert!((sets[2]["params"]["a"].as_f64().unwrap() - 3.5).abs() < 0.01);
    assert_eq!(sets[1]["params"]["k"].as_f64().unwrap(), k);
    let lp = long_path.display().to_string();
    let by_group = fit_json(
        &[
            "--model", DECAY, "--data", &lp, "--group", "id", "--x", "x", "--y", "y", "--shared", "k",
        ],
        0,
    );
    assert_eq!(
        by_group["shared"]["k"], v["shared"]["k"],
        "one long file and three files are one fit"
    );
    assert_eq!(by_group["datasets"][0]["label"], "s0");
    // Without --shared: each on its own, said on stderr.
    let o = nlsq(&["fit", "--model", DECAY, "--data", &files[0], "--data", &files[1]]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("each dataset is fitted on its own"));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);
    assert_bad_input(&[
        (
            &["--model", DECAY, "--data", "decay.csv", "--shared", "k"],
            "needs several datasets",
        ),
        (
            &[
                "--model", DECAY, "--data", &files[0], "--data", &files[1], "--shared", "q",
            ],
            "parameter 'q'",
        ),
        (
            &[
                "--model", DECAY, "--data", &files[0], "--data", &files[1], "--shared", "k", "--tie", "k=a",
            ],
            "tied to 'a'",
        ),
    ]);
}

#[test]
fn a_tie_on_a_built_in_models_bounded_width_and_a_large_global_fit() {
    // Two Gaussians of one width: the built-in model's widths are bounded below by 0, which a
    // tie does not take; the user's own bounds on the tied width are refused.
    let mut text = String::from("x,y\n");
    for i in 0..200 {
        let x = -5.0 + i as f64 * 0.05;
        let g = |a: f64, c: f64| a * (-(x - c) * (x - c) / (2.0 * 0.6 * 0.6)).exp();
        text.push_str(&format!(
            "{x},{}\n",
            g(1.0, -1.5) + g(0.7, 1.5) + 0.005 * (i as f64).sin()
        ));
    }
    let path = temp_path("two_peaks.csv");
    std::fs::write(&path, text).unwrap();
    let p = path.display().to_string();
    let v = fit_json(
        &[
            "--model",
            "gaussian+gaussian",
            "--data",
            &p,
            "--tie",
            "g2_sigma=g1_sigma",
        ],
        0,
    );
    let (s1, s2) = (
        v["params"]["g1_sigma"].as_f64().unwrap(),
        v["params"]["g2_sigma"].as_f64().unwrap(),
    );
    assert!((s1 - 0.6).abs() < 0.01 && s1 == s2, "{v}");
    assert_bad_input(&[(
        &[
            "--model",
            "gaussian+gaussian",
            "--data",
            &p,
            "--tie",
            "g2_sigma=g1_sigma",
            "--lower",
            "g2_sigma=0",
        ],
        "takes none",
    )]);
    // 40 datasets x 25 points with a shared rate: 81 solver parameters, the Schur path.
    let mut long = String::from("id,x,y\n");
    for d in 0..40 {
        let (a, c) = (1.0 + 0.05 * d as f64, 0.01 * d as f64);
        for i in 0..25 {
            let x = 0.2 * i as f64;
            long.push_str(&format!(
                "{d},{x},{}\n",
                a * (-1.3 * x).exp() + c + 0.002 * ((i * 7 + d) as f64).sin()
            ));
        }
    }
    let path = temp_path("many_decays.csv");
    std::fs::write(&path, long).unwrap();
    let p = path.display().to_string();
    let v = fit_json(
        &[
            "--model", DECAY, "--data", &p, "--group", "id", "--x", "x", "--y", "y", "--shared", "k",
        ],
        0,
    );
    assert_eq!(v["param_names"].as_array().unwrap().len(), 81);
    assert!(
        (v["shared"]["k"].as_f64().unwrap() - 1.3).abs() < 0.01,
        "{}",
        v["shared"]
    );
    assert_eq!(v["datasets"].as_array().unwrap().len(), 40);
}
