//! `nlsq nist`: the built binary on a small subset of ../shared/nist_strd/nist_strd.json
//! (written to a temporary folder at test time, so that only a few shapes compile).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn nlsq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nlsq"))
        .args(args)
        .output()
        .expect("the nlsq binary runs")
}

/// A folder with a nist_strd.json holding only `names`.
fn subset(names: &[&str], tag: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/nist_strd/nist_strd.json");
    let text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("cannot read {}: {e}", src.display()));
    let mut doc: Value = serde_json::from_str(&text).expect("valid JSON");
    let problems: Vec<Value> = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| names.contains(&p["name"].as_str().unwrap()))
        .cloned()
        .collect();
    assert_eq!(problems.len(), names.len());
    doc["problems"] = Value::Array(problems);
    let dir = std::env::temp_dir().join(format!("nlsq-cli-nist-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("nist_strd.json"), serde_json::to_string(&doc).unwrap()).unwrap();
    dir
}

#[test]
fn nist_json_scores_each_problem_and_start() {
    // Misra1a (lower difficulty, one predictor) and Nelson (two predictors, log(y) response).
    let dir = subset(&["Misra1a", "Nelson"], "json");
    let o = nlsq(&["nist", dir.to_str().unwrap(), "--method", "lm", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let runs = v.as_array().unwrap();
    assert_eq!(runs.len(), 4, "{v}");
    for r in runs {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["lre_min", "method", "nfev", "problem", "start", "status", "success"]
        );
        assert_eq!(r["method"], "lm");
        assert_eq!(r["success"], true, "{r}");
        assert!(r["status"].as_i64().unwrap() > 0 && r["nfev"].as_u64().unwrap() > 0);
        // scipy reaches LRE >= 6 on all four of these.
        assert!(r["lre_min"].as_f64().unwrap() >= 6.0, "{r}");
    }
    let names: Vec<(&str, i64)> = runs
        .iter()
        .map(|r| (r["problem"].as_str().unwrap(), r["start"].as_i64().unwrap()))
        .collect();
    assert_eq!(names, [("Misra1a", 1), ("Misra1a", 2), ("Nelson", 1), ("Nelson", 2)]);
}

#[test]
fn nist_table_prints_runs_and_totals() {
    let dir = subset(&["DanWood"], "table");
    let o = nlsq(&["nist", dir.to_str().unwrap(), "--method", "trf", "--start", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("DanWood") && out.contains("method trf"), "{out}");
    assert!(
        out.contains("LRE >= 4: 1 of 1 runs") && out.contains("LRE >= 6: 1 of 1 runs"),
        "{out}"
    );
}

#[test]
fn nist_bad_input_exits_2() {
    let dir = subset(&["DanWood"], "bad");
    for (args, want) in [
        (
            vec!["nist", "/nonexistent-nlsq-dir"],
            "cannot read /nonexistent-nlsq-dir/nist_strd.json",
        ),
        (
            vec!["nist", dir.to_str().unwrap(), "--problem", "Nope"],
            "no problem 'Nope'",
        ),
        (
            vec!["nist", dir.to_str().unwrap(), "--method", "dogbox"],
            "dogbox is not supported yet",
        ),
        (vec!["nist", dir.to_str().unwrap(), "--start", "3"], "--start"),
        (vec!["nist"], "needs a directory"),
    ] {
        let o = nlsq(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(want) && err.trim_end().lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}
