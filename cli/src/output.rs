//! Human-readable tables and JSON for `nlsq fit`.

use std::time::Duration;

use nlsq::fit::{CurveFit, FittedParameter, GlobalFit, ParameterFit, ParameterKind};
use serde_json::{json, Map, Value};

/// A JSON number, or `null` when not finite (JSON has no NaN or infinity).
pub fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `level` as a percentage with at most four decimals and no trailing zeros (0.57 -> "57",
/// 0.9973 -> "99.73").
fn percent(level: f64) -> String {
    let s = format!("{:.4}", 100.0 * level);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A matrix as JSON rows of numbers (non-finite entries null).
fn matrix(a: &ndarray::Array2<f64>) -> Vec<Value> {
    a.rows()
        .into_iter()
        .map(|row| Value::Array(row.iter().map(|v| num(*v)).collect()))
        .collect()
}

/// One parameter's line of a report.
pub struct Row {
    pub name: String,
    pub value: f64,
    /// `None` for a fixed parameter.
    pub stderr: Option<f64>,
    pub determined: bool,
    /// The confidence interval at the report's level (`None`: fixed, or not available).
    pub interval: Option<(f64, f64)>,
    /// The expression of a tied parameter.
    pub tie: Option<String>,
}

/// What `nlsq fit` reports: every parameter (varying, fixed or tied) and the fit of the varying
/// ones.
pub struct Report<'a> {
    pub fit: &'a CurveFit,
    pub rows: Vec<Row>,
    /// Covariance and correlation of all rows (0 and NaN in a fixed one's).
    pub covariance: ndarray::Array2<f64>,
    pub correlation: ndarray::Array2<f64>,
    /// The names of the varying parameters, in the order of `fit.popt`.
    pub varying: Vec<String>,
}

impl<'a> Report<'a> {
    /// A fit in which every parameter varies.
    pub fn plain(names: &[String], fit: &'a CurveFit, level: f64) -> Report<'a> {
        let intervals = fit.confidence_intervals(level).ok();
        let rows = names
            .iter()
            .enumerate()
            .map(|(i, n)| Row {
                name: n.clone(),
                value: fit.popt[i],
                stderr: Some(fit.perr[i]),
                determined: !fit.result.not_determined.contains(&i),
                interval: intervals.as_ref().map(|ci| (ci[[i, 0]], ci[[i, 1]])),
                tie: None,
            })
            .collect();
        Report {
            fit,
            rows,
            covariance: fit.pcov.clone(),
            correlation: fit.correlation(),
            varying: names.to_vec(),
        }
    }

    /// A fit of named parameters, some fixed or tied.
    pub fn named(pf: &'a ParameterFit, level: f64) -> Report<'a> {
        let intervals = pf.confidence_intervals(level).ok();
        let rows: Vec<Row> = pf
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| Row {
                name: p.name.clone(),
                value: p.value,
                stderr: p.stderr,
                determined: p.determined,
                interval: intervals.as_ref().and_then(|ci| ci[i]),
                tie: match &p.kind {
                    ParameterKind::Tied(t) => Some(t.clone()),
                    _ => None,
                },
            })
            .collect();
        let n = rows.len();
        let correlation = ndarray::Array2::from_shape_fn((n, n), |(i, j)| {
            pf.correlation(&rows[i].name, &rows[j].name).unwrap_or(f64::NAN)
        });
        let varying = pf
            .params
            .iter()
            .filter(|p| p.kind == ParameterKind::Varying)
            .map(|p| p.name.clone())
            .collect();
        Report {
            fit: &pf.fit,
            rows,
            covariance: pf.covariance.clone(),
            correlation,
            varying,
        }
    }
}

/// The `--json` object: the keys `nlsq fit --help` lists, in that order; `intervals` at
/// `level`.
pub fn fit_json(report: &Report<'_>, level: f64) -> Value {
    let (fit, rows) = (report.fit, &report.rows);
    let r = &fit.result;
    let names: Vec<String> = rows.iter().map(|row| row.name.clone()).collect();
    let by_name = |f: &dyn Fn(&Row) -> Value| -> Map<String, Value> {
        rows.iter().map(|row| (row.name.clone(), f(row))).collect()
    };
    let params = by_name(&|row| num(row.value));
    let stderr = by_name(&|row| row.stderr.map_or(Value::Null, num));
    let opt = |v: Option<f64>| v.map_or(Value::Null, num);
    let statistics = match &fit.statistics {
        Some(s) => json!({
            "n_points": s.n_points,
            "dof": s.dof,
            "chisqr": num(s.chisqr),
            "redchi": num(s.redchi),
            "residual_se": num(s.residual_se),
            "r_squared": opt(s.r_squared),
            "adj_r_squared": opt(s.adj_r_squared),
            "log_likelihood": num(s.log_likelihood),
            "aic": num(s.aic),
            "bic": num(s.bic),
            "chisqr_aic": num(s.chisqr_aic),
            "chisqr_bic": num(s.chisqr_bic),
        }),
        None => Value::Null,
    };
    let lower = by_name(&|row| row.interval.map_or(Value::Null, |(lo, _)| num(lo)));
    let upper = by_name(&|row| row.interval.map_or(Value::Null, |(_, hi)| num(hi)));
    let fixed: Vec<&str> = rows
        .iter()
        .filter(|row| row.stderr.is_none())
        .map(|row| row.name.as_str())
        .collect();
    let tied: Map<String, Value> = rows
        .iter()
        .filter_map(|row| row.tie.as_ref().map(|t| (row.name.clone(), json!(t))))
        .collect();
    let not_determined: Vec<&str> = rows
        .iter()
        .filter(|row| !row.determined)
        .map(|row| row.name.as_str())
        .collect();
    json!({
        "params": params,
        "stderr": stderr,
        "pcov": matrix(&report.covariance),
        "param_names": names,
        "fixed": fixed,
        "tied": tied,
        "rank": r.rank,
        "not_determined": not_determined,
        "intervals": {"level": level, "lower": lower, "upper": upper},
        "correlation": matrix(&report.correlation),
        "statistics": statistics,
        "starts": fit.starts.as_ref().map_or(Value::Null, |s| json!({
            "n_starts": s.costs.len(),
            "reached": s.reached,
            "best": s.best,
            "stopped_early": s.stopped_early.iter().filter(|&&e| e).count(),
            "costs": s.costs.iter().map(|c| num(*c)).collect::<Vec<_>>(),
            "spread": report.varying.iter().zip(s.spread.iter()).map(|(n, v)| (n.clone(), num(*v))).collect::<Map<String, Value>>(),
        })),
        "cost": num(r.cost),
        "nfev": r.nfev,
        "njev": r.njev,
        "status": r.status.code(),
        "message": r.message(),
        "success": r.success(),
        "timing": {
            "compile_ms": ms(r.timings.compile),
            "execute_ms": ms(r.timings.execute),
            "cache": r.executable.to_string(),
            "trace_ms": ms(r.timings.trace),
            "total_ms": ms(r.timings.total),
        },
    })
}

/// The `--json` object of a global fit (`--shared`): the shared parameters, each dataset's,
/// and the fit of all solver parameters.
pub fn global_json(fit: &GlobalFit, labels: &[String], points: &[usize], level: f64) -> Value {
    let f = &fit.fit;
    let first = fit.datasets.first().map(Vec::as_slice).unwrap_or_default();
    let shared = |v: &dyn Fn(&FittedParameter) -> Value| -> Map<String, Value> {
        first
            .iter()
            .filter(|p| fit.shared.contains(&p.name))
            .map(|p| (p.name.clone(), v(p)))
            .collect()
    };
    let datasets: Vec<Value> = fit
        .datasets
        .iter()
        .enumerate()
        .map(|(d, ps)| {
            let params: Map<String, Value> = ps.iter().map(|p| (p.name.clone(), num(p.value))).collect();
            let stderr: Map<String, Value> = ps
                .iter()
                .map(|p| (p.name.clone(), p.stderr.map_or(Value::Null, num)))
                .collect();
            json!({"label": labels.get(d), "n_points": points.get(d), "params": params, "stderr": stderr})
        })
        .collect();
    let fixed: Vec<&str> = first
        .iter()
        .filter(|p| p.kind == ParameterKind::Fixed)
        .map(|p| p.name.as_str())
        .collect();
    let tied: Map<String, Value> = first
        .iter()
        .filter_map(|p| match &p.kind {
            ParameterKind::Tied(t) => Some((p.name.clone(), json!(t))),
            _ => None,
        })
        .collect();
    // The keys of one fit's JSON, in their order, with the parameters by dataset in place of
    // `params` and `stderr` (`param_names`, `pcov` and the rest are the solver parameters').
    let mut out = Map::new();
    out.insert("shared".into(), Value::Object(shared(&|p| num(p.value))));
    out.insert(
        "shared_stderr".into(),
        Value::Object(shared(&|p| p.stderr.map_or(Value::Null, num))),
    );
    out.insert("datasets".into(), Value::Array(datasets));
    if let Value::Object(map) = fit_json(&Report::plain(&fit.names, f, level), level) {
        for (k, v) in map {
            match k.as_str() {
                "params" | "stderr" => {}
                "fixed" => {
                    out.insert(k, json!(fixed));
                }
                "tied" => {
                    out.insert(k, Value::Object(tied.clone()));
                }
                _ => {
                    out.insert(k, v);
                }
            }
        }
    }
    Value::Object(out)
}

/// The table's lines for the fixed and tied parameters of a global fit (the solver parameters
/// are the table's rows).
pub fn held_lines(fit: &GlobalFit) -> String {
    let mut s = String::new();
    let Some(first) = fit.datasets.first() else {
        return s;
    };
    for (i, p) in first.iter().enumerate() {
        match &p.kind {
            ParameterKind::Fixed => s.push_str(&format!("fixed    {} = {}\n", p.name, sci(p.value, 10))),
            ParameterKind::Tied(t) => {
                let each: Vec<String> = fit
                    .datasets
                    .iter()
                    .enumerate()
                    .map(|(d, ps)| {
                        let q = &ps[i];
                        let err = q.stderr.map_or("-".to_string(), |e| sci(e, 4));
                        format!("[{d}] {} ± {err}", sci(q.value, 6))
                    })
                    .collect();
                s.push_str(&format!("tied     {} = {t}: {}\n", p.name, each.join(", ")));
            }
            ParameterKind::Varying => {}
        }
    }
    s
}

/// `v` in C's `%.{digits}e` style: `2.5000000000e+00`.
pub fn sci(v: f64, digits: usize) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let s = format!("{v:.digits$e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let e: i32 = exp.parse().unwrap_or(0);
            format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
        }
        None => s,
    }
}

pub fn fmt_ms(d: Duration) -> String {
    let ms = ms(d);
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.1} µs", ms * 1e3)
    }
}

/// The table: parameters with their intervals at `level`, the correlations above 0.1, the
/// fit statistics, then status, cost, evaluations and timing.
pub fn fit_table(report: &Report<'_>, context: &str, level: f64) -> String {
    let (fit, rows) = (report.fit, &report.rows);
    let r = &fit.result;
    let names: Vec<&str> = rows.iter().map(|row| row.name.as_str()).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(9);
    let mut s = String::new();
    s.push_str(context);
    s.push('\n');
    s.push_str(&format!(
        "\n{:<width$}  {:>18}  {:>14}  {:>9}  {:>35}\n",
        "parameter",
        "value",
        "std error",
        "rel error",
        format!("{}% interval", percent(level))
    ));
    for row in rows {
        let v = row.value;
        let rel = match row.stderr {
            Some(e) if v != 0.0 && e.is_finite() => format!("{:.2}%", 100.0 * (e / v).abs()),
            _ => "-".to_string(),
        };
        let err = match row.stderr {
            None => "fixed".to_string(),
            Some(_) if !row.determined => "not determined".to_string(),
            Some(e) => sci(e, 4),
        };
        let interval = match row.interval {
            Some((lo, hi)) if lo.is_finite() && hi.is_finite() => format!("[{}, {}]", sci(lo, 6), sci(hi, 6)),
            _ => "-".to_string(),
        };
        let tie = row.tie.as_ref().map_or(String::new(), |t| format!("  = {t}"));
        s.push_str(&format!(
            "{:<width$}  {:>18}  {:>14}  {:>9}  {:>35}{tie}\n",
            row.name,
            sci(v, 10),
            err,
            rel,
            interval
        ));
    }
    let corr = &report.correlation;
    let mut pairs = Vec::new();
    for i in 0..names.len() {
        for j in i + 1..names.len() {
            if corr[[i, j]].abs() > 0.1 {
                pairs.push(format!("{}, {}: {:.4}", names[i], names[j], corr[[i, j]]));
            }
        }
    }
    if !pairs.is_empty() {
        s.push_str(&format!("correlation (above 0.1)  {}\n", pairs.join(";  ")));
    }
    if let Some(ms) = &fit.starts {
        let early = ms.stopped_early.iter().filter(|&&e| e).count();
        s.push_str(&format!(
            "starts   {} of {} reached the best cost (start {} is the best; {early} stopped early)\n",
            ms.reached,
            ms.costs.len(),
            ms.best
        ));
    }
    if let Some(st) = &fit.statistics {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.6}"));
        s.push_str(&format!(
            "\nR²       {} (adjusted {})\nresidual standard error {} on {} degrees of freedom; chi-square {} (reduced {})\nAIC      {:.4}, BIC {:.4} (as R; lmfit's chi-square based: {:.4}, {:.4})\n",
            opt(st.r_squared),
            opt(st.adj_r_squared),
            sci(st.residual_se, 4),
            st.dof,
            sci(st.chisqr, 6),
            sci(st.redchi, 6),
            st.aic,
            st.bic,
            st.chisqr_aic,
            st.chisqr_bic,
        ));
    }
    if r.not_determined.is_empty() && fit.perr.iter().any(|e| !e.is_finite()) {
        s.push_str(
            "(the covariance could not be estimated: too few points, or a parameter the data do not determine)\n",
        );
    }
    let t = &r.timings;
    s.push_str(&format!(
        "\nstatus   {} ({})\ncost     {}  (initial {})\nnfev     {}  (njev {}, iterations {})\nmethod   {}, loss {}, on {}\ntime     total {} = trace {} + compile {} ({}) + execute {}\n",
        r.status.code(),
        r.message(),
        sci(r.cost, 6),
        sci(r.initial_cost, 6),
        r.nfev,
        r.njev,
        r.nit,
        r.method,
        r.loss,
        if r.device.is_empty() { "the default device" } else { &r.device },
        fmt_ms(t.total),
        fmt_ms(t.trace),
        fmt_ms(t.compile),
        r.executable,
        fmt_ms(t.execute),
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sci_matches_c_style() {
        assert_eq!(sci(2.5, 3), "2.500e+00");
        assert_eq!(sci(-1.25e-12, 2), "-1.25e-12");
        assert_eq!(sci(f64::INFINITY, 2), "inf");
    }
}
