//! NIST StRD nonlinear regression: all 27 problems from both starts, with TRF and LM, at
//! scipy's default tolerances and at 1e-15. Scores are log relative errors (LRE) against the
//! certified values; the table is written to `target/nist_lre.md`.
//!
//! The counts must reach scipy 1.17.1's (measured on the same 54 problem-starts, DESIGN/issue):
//! default tolerances LRE >= 4 on 45 (lm) and 45 (trf), LRE >= 6 on 28 (lm) and 29 (trf);
//! tolerances 1e-15: LRE >= 6 on 49 (lm) and 47 (trf). A run reporting success with a score
//! below 4 is a failure, and there must be none.

use std::fmt::Write as _;

use ndarray::Array2;
use nlsq::expr::Expr;
use nlsq::fit::{curve_fit, FitOptions};
use nlsq::solve::Method;
use serde_json::Value;

struct Problem {
    name: String,
    model: Expr,
    x: Option<Vec<f64>>,
    x2d: Option<Array2<f64>>,
    y: Vec<f64>,
    starts: [Vec<f64>; 2],
    certified: Vec<f64>,
    cap: f64,
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn load() -> Vec<Problem> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/nist_strd/nist_strd.json");
    let text = std::fs::read_to_string(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    let cap = doc["lre_cap"].as_f64().unwrap_or(11.0);
    doc["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            let predictors: Vec<String> = p["predictors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            let params: Vec<String> = p["params"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect();
            let vars: Vec<&str> = predictors.iter().map(String::as_str).collect();
            let pnames: Vec<&str> = params.iter().map(String::as_str).collect();
            let model = Expr::parse_with_params(p["model"].as_str().unwrap(), &vars, &pnames).expect("model parses");
            let mut y = floats(&p["y"]);
            if p["response"].as_str() == Some("log(y)") {
                y = y.iter().map(|v| v.ln()).collect();
            }
            let (x, x2d) = if predictors.len() == 1 {
                (Some(floats(&p[predictors[0].as_str()])), None)
            } else {
                let rows: Vec<Vec<f64>> = predictors.iter().map(|k| floats(&p[k.as_str()])).collect();
                let m = rows[0].len();
                let flat: Vec<f64> = rows.concat();
                (None, Some(Array2::from_shape_vec((rows.len(), m), flat).unwrap()))
            };
            Problem {
                name: p["name"].as_str().unwrap().to_string(),
                model,
                x,
                x2d,
                y,
                starts: [floats(&p["start1"]), floats(&p["start2"])],
                certified: floats(&p["certified_values"]),
                cap,
            }
        })
        .collect()
}

fn lre(est: f64, cert: f64, cap: f64) -> f64 {
    if !est.is_finite() {
        return 0.0;
    }
    let rel = if cert == 0.0 {
        est.abs()
    } else {
        ((est - cert) / cert).abs()
    };
    if rel == 0.0 {
        cap
    } else {
        (-rel.log10()).clamp(0.0, cap)
    }
}

struct Score {
    lre: f64,
    success: bool,
    status: i32,
    nfev: usize,
}

fn run(p: &Problem, start: usize, method: Method, tol: f64) -> Score {
    let opts = FitOptions::default()
        .with_method(method)
        .with_tol(tol)
        .with_max_nfev(if tol < 1e-10 { 2000 } else { 100 * p.certified.len() });
    let model = p.model.model();
    let fit = match (&p.x, &p.x2d) {
        (Some(x), _) => curve_fit(&model, x, &p.y, Some(&p.starts[start]), &opts),
        (None, Some(x)) => curve_fit(&model, x, &p.y, Some(&p.starts[start]), &opts),
        _ => unreachable!(),
    };
    match fit {
        Ok(fit) => {
            let lre = fit
                .popt
                .iter()
                .zip(&p.certified)
                .map(|(e, c)| lre(*e, *c, p.cap))
                .fold(f64::INFINITY, f64::min);
            Score {
                lre,
                success: fit.success(),
                status: fit.result.status.code(),
                nfev: fit.result.nfev,
            }
        }
        // A model that is not finite at the start (or any other error) scores 0.
        Err(_) => Score {
            lre: 0.0,
            success: false,
            status: -1,
            nfev: 0,
        },
    }
}

#[test]
fn nist_strd_accuracy_meets_scipy() {
    let problems = load();
    assert_eq!(problems.len(), 27);
    let settings = [
        (Method::Lm, 1e-8),
        (Method::Trf, 1e-8),
        (Method::Lm, 1e-15),
        (Method::Trf, 1e-15),
    ];
    let mut table =
        String::from("| problem | start | lm 1e-8 | trf 1e-8 | lm 1e-15 | trf 1e-15 |\n|---|---|---|---|---|---|\n");
    let mut counts = [[0usize; 2]; 4]; // per setting: [>=4, >=6]
    let mut false_success = Vec::new();
    for p in &problems {
        for start in 0..2 {
            let mut row = format!("| {} | {} |", p.name, start + 1);
            for (k, &(method, tol)) in settings.iter().enumerate() {
                let s = run(p, start, method, tol);
                let score = if s.success { s.lre } else { 0.0 };
                if s.success && s.lre < 4.0 {
                    false_success.push(format!(
                        "{} start {} {method} tol {tol}: LRE {:.1}",
                        p.name,
                        start + 1,
                        s.lre
                    ));
                }
                counts[k][0] += usize::from(score >= 4.0);
                counts[k][1] += usize::from(score >= 6.0);
                let _ = write!(row, " {:.1} (s{}, {}) |", s.lre, s.status, s.nfev);
            }
            table.push_str(&row);
            table.push('\n');
        }
    }
    let _ = writeln!(table, "\nLRE >= 4 / >= 6 (successful runs only), of 54:");
    for (k, (method, tol)) in settings.iter().enumerate() {
        let _ = writeln!(table, "- {method} tol {tol:e}: {} / {}", counts[k][0], counts[k][1]);
    }
    println!("{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nist_lre.md");
    let _ = std::fs::write(&out, &table);
    assert!(
        false_success.is_empty(),
        "runs reporting success with LRE < 4: {false_success:#?}"
    );
    // scipy 1.17.1 on the same problem-starts.
    let scipy = [[45, 28], [45, 29], [0, 49], [0, 47]];
    for (k, (method, tol)) in settings.iter().enumerate() {
        assert!(
            counts[k][0] >= scipy[k][0],
            "{method} tol {tol}: LRE>=4 on {} < scipy's {}",
            counts[k][0],
            scipy[k][0]
        );
        assert!(
            counts[k][1] >= scipy[k][1],
            "{method} tol {tol}: LRE>=6 on {} < scipy's {}",
            counts[k][1],
            scipy[k][1]
        );
    }
}
