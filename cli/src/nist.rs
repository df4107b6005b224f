//! `nlsq nist DIR`: the NIST StRD nonlinear regression suite, scored by log relative error.
//!
//! DIR/nist_strd.json holds every problem: the model in the expression language, its
//! predictors (`x`, or `x1`, `x2` for Nelson, whose response is `log(y)`), both NIST starts and
//! the certified values. LRE = -log10(|estimate - certified| / |certified|), clamped to
//! [0, lre_cap]; a run scores the minimum over its parameters, and 0 when it did not succeed.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ndarray::Array2;
use nlsq::expr::Expr;
use nlsq::fit::{curve_fit, FitOptions};
use serde_json::{json, Value};

use crate::args::NistArgs;
use crate::output::fmt_ms;

struct Problem {
    name: String,
    model: Expr,
    /// One row per predictor.
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
    starts: [Vec<f64>; 2],
    certified: Vec<f64>,
}

fn floats(p: &Value, key: &str, name: &str) -> Result<Vec<f64>> {
    let arr = p[key]
        .as_array()
        .ok_or_else(|| anyhow!("problem {name}: '{key}' is missing or not an array"))?;
    arr.iter()
        .map(|v| {
            v.as_f64()
                .ok_or_else(|| anyhow!("problem {name}: '{key}' holds a value that is not a number"))
        })
        .collect()
}

fn strings(p: &Value, key: &str, name: &str) -> Result<Vec<String>> {
    let arr = p[key]
        .as_array()
        .ok_or_else(|| anyhow!("problem {name}: '{key}' is missing or not an array"))?;
    arr.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("problem {name}: '{key}' holds a value that is not a string"))
        })
        .collect()
}

fn load_problem(p: &Value) -> Result<Problem> {
    let name = p["name"]
        .as_str()
        .ok_or_else(|| anyhow!("a problem has no 'name'"))?
        .to_string();
    let predictors = strings(p, "predictors", &name)?;
    let params = strings(p, "params", &name)?;
    let vars: Vec<&str> = predictors.iter().map(String::as_str).collect();
    let pnames: Vec<&str> = params.iter().map(String::as_str).collect();
    let src = p["model"]
        .as_str()
        .ok_or_else(|| anyhow!("problem {name}: 'model' is missing"))?;
    let model = Expr::parse_with_params(src, &vars, &pnames).map_err(|e| anyhow!("problem {name}: model: {e}"))?;
    let mut y = floats(p, "y", &name)?;
    match p["response"].as_str() {
        None | Some("y") => {}
        Some("log(y)") => y.iter_mut().for_each(|v| *v = v.ln()),
        Some(other) => bail!("problem {name}: unknown response '{other}' (y or log(y))"),
    }
    let x = predictors
        .iter()
        .map(|k| floats(p, k, &name))
        .collect::<Result<Vec<_>>>()?;
    if x.is_empty() || x.iter().any(|r| r.len() != y.len()) {
        bail!("problem {name}: predictors and y differ in length");
    }
    let starts = [floats(p, "start1", &name)?, floats(p, "start2", &name)?];
    let certified = floats(p, "certified_values", &name)?;
    if starts.iter().chain([&certified]).any(|v| v.len() != params.len()) {
        bail!("problem {name}: starts and certified values must have one value per parameter");
    }
    Ok(Problem {
        name,
        model,
        x,
        y,
        starts,
        certified,
    })
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

struct Run {
    problem: String,
    start: usize,
    lre_min: f64,
    success: bool,
    status: i32,
    nfev: usize,
    time: Duration,
    error: Option<String>,
}

fn run_one(p: &Problem, start: usize, a: &NistArgs, cap: f64) -> Run {
    let n = p.certified.len();
    let tight = a.ftol.min(a.xtol).min(a.gtol) < 1e-10;
    let max_nfev = a.max_nfev.unwrap_or(if tight { 2000 } else { 100 * n });
    let mut opts = FitOptions::default().with_method(a.method).with_max_nfev(max_nfev);
    opts.solver.ftol = a.ftol;
    opts.solver.xtol = a.xtol;
    opts.solver.gtol = a.gtol;
    let model = p.model.model();
    let t0 = Instant::now();
    let fit = if p.x.len() == 1 {
        curve_fit(&model, &p.x[0], &p.y, Some(&p.starts[start]), &opts)
    } else {
        let m = p.y.len();
        match Array2::from_shape_vec((p.x.len(), m), p.x.concat()) {
            Ok(x) => curve_fit(&model, &x, &p.y, Some(&p.starts[start]), &opts),
            Err(e) => Err(nlsq::Error::InvalidInput {
                field: "xdata",
                reason: e.to_string(),
            }),
        }
    };
    let time = t0.elapsed();
    let base = Run {
        problem: p.name.clone(),
        start: start + 1,
        lre_min: 0.0,
        success: false,
        status: -1,
        nfev: 0,
        time,
        error: None,
    };
    match fit {
        Ok(fit) => Run {
            lre_min: fit
                .popt
                .iter()
                .zip(&p.certified)
                .map(|(e, c)| lre(*e, *c, cap))
                .fold(f64::INFINITY, f64::min),
            success: fit.success(),
            status: fit.result.status.code(),
            nfev: fit.result.nfev,
            ..base
        },
        Err(e) => Run {
            error: Some(e.to_string().replace('\n', " ")),
            ..base
        },
    }
}

/// Runs the suite; returns the text or JSON to print.
pub fn run(a: &NistArgs) -> Result<String> {
    let path = a.dir.join("nist_strd.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let cap = doc["lre_cap"].as_f64().unwrap_or(11.0);
    let list = doc["problems"]
        .as_array()
        .ok_or_else(|| anyhow!("{}: no 'problems' array", path.display()))?;
    let mut problems = list
        .iter()
        .map(load_problem)
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("reading {}", path.display()))?;
    if let Some(wanted) = &a.problems {
        for w in wanted {
            if !problems.iter().any(|p| &p.name == w) {
                let names: Vec<&str> = problems.iter().map(|p| p.name.as_str()).collect();
                bail!(
                    "--problem: no problem '{w}' in {} (problems: {})",
                    path.display(),
                    names.join(", ")
                );
            }
        }
        problems.retain(|p| wanted.contains(&p.name));
    }
    if problems.is_empty() {
        bail!("{} holds no problems", path.display());
    }
    let runs: Vec<Run> = problems
        .iter()
        .flat_map(|p| a.starts.indices().iter().map(move |&s| (p, s)))
        .map(|(p, s)| run_one(p, s, a, cap))
        .collect();
    let method = a.method.to_string();
    if a.json {
        let arr: Vec<Value> = runs
            .iter()
            .map(|r| json!({"problem": r.problem, "start": r.start, "method": method, "lre_min": r.lre_min, "success": r.success, "status": r.status, "nfev": r.nfev}))
            .collect();
        return Ok(serde_json::to_string_pretty(&Value::Array(arr))? + "\n");
    }
    let mut s = format!(
        "NIST StRD ({}), method {method}, ftol {:e}, xtol {:e}, gtol {:e}\n\n",
        path.display(),
        a.ftol,
        a.xtol,
        a.gtol
    );
    s.push_str(&format!(
        "{:<10} {:>5} {:>7} {:>6} {:>6} {:>10}\n",
        "problem", "start", "LRE min", "status", "nfev", "time"
    ));
    let (mut ge4, mut ge6) = (0, 0);
    for r in &runs {
        let score = if r.success { r.lre_min } else { 0.0 };
        ge4 += usize::from(score >= 4.0);
        ge6 += usize::from(score >= 6.0);
        let note = match (&r.error, r.success) {
            (Some(e), _) => format!("  error: {e}"),
            (None, false) => "  not converged (scores 0)".to_string(),
            _ => String::new(),
        };
        s.push_str(&format!(
            "{:<10} {:>5} {:>7.1} {:>6} {:>6} {:>10}{note}\n",
            r.problem,
            r.start,
            r.lre_min,
            r.status,
            r.nfev,
            fmt_ms(r.time)
        ));
    }
    let total: Duration = runs.iter().map(|r| r.time).sum();
    s.push_str(&format!(
        "\nLRE >= 4: {ge4} of {n} runs\nLRE >= 6: {ge6} of {n} runs\n(a run that did not succeed scores 0; total time {})\n",
        fmt_ms(total),
        n = runs.len()
    ));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lre_is_clamped() {
        assert_eq!(lre(1.0, 1.0, 11.0), 11.0);
        assert!((lre(1.001, 1.0, 11.0) - 3.0).abs() < 1e-9);
        assert_eq!(lre(f64::NAN, 1.0, 11.0), 0.0);
        assert_eq!(lre(100.0, 1.0, 11.0), 0.0);
    }
}
