//! Human-readable tables and JSON for `nlsq fit`.

use std::time::Duration;

use nlsq::fit::CurveFit;
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

/// The `--json` object: the keys `nlsq fit --help` lists, in that order; `intervals` at
/// `level`.
pub fn fit_json(names: &[String], fit: &CurveFit, level: f64) -> Value {
    let r = &fit.result;
    let params: Map<String, Value> = names
        .iter()
        .zip(fit.popt.iter())
        .map(|(n, v)| (n.clone(), num(*v)))
        .collect();
    let stderr: Map<String, Value> = names
        .iter()
        .zip(fit.perr.iter())
        .map(|(n, v)| (n.clone(), num(*v)))
        .collect();
    let pcov = matrix(&fit.pcov);
    let correlation = matrix(&fit.correlation());
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
    // The level was checked when the arguments were parsed.
    let intervals = fit.confidence_intervals(level).ok();
    let bound = |k: usize| -> Map<String, Value> {
        names
            .iter()
            .enumerate()
            .map(|(j, n)| (n.clone(), intervals.as_ref().map_or(Value::Null, |ci| num(ci[[j, k]]))))
            .collect()
    };
    json!({
        "params": params,
        "stderr": stderr,
        "pcov": pcov,
        "param_names": names,
        "rank": r.rank,
        "not_determined": r.not_determined.iter().map(|&i| names[i].clone()).collect::<Vec<_>>(),
        "intervals": {"level": level, "lower": bound(0), "upper": bound(1)},
        "correlation": correlation,
        "statistics": statistics,
        "starts": fit.starts.as_ref().map_or(Value::Null, |s| json!({
            "n_starts": s.costs.len(),
            "reached": s.reached,
            "best": s.best,
            "stopped_early": s.stopped_early.iter().filter(|&&e| e).count(),
            "costs": s.costs.iter().map(|c| num(*c)).collect::<Vec<_>>(),
            "spread": names.iter().zip(s.spread.iter()).map(|(n, v)| (n.clone(), num(*v))).collect::<Map<String, Value>>(),
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
pub fn fit_table(names: &[String], fit: &CurveFit, context: &str, level: f64) -> String {
    let r = &fit.result;
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(9);
    let intervals = fit.confidence_intervals(level).ok();
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
    for (i, name) in names.iter().enumerate() {
        let (v, e) = (fit.popt[i], fit.perr[i]);
        let rel = if v != 0.0 && e.is_finite() {
            format!("{:.2}%", 100.0 * (e / v).abs())
        } else {
            "-".to_string()
        };
        let err = if r.not_determined.contains(&i) {
            "not determined".to_string()
        } else {
            sci(e, 4)
        };
        let interval = match &intervals {
            Some(ci) if ci[[i, 0]].is_finite() && ci[[i, 1]].is_finite() => {
                format!("[{}, {}]", sci(ci[[i, 0]], 6), sci(ci[[i, 1]], 6))
            }
            _ => "-".to_string(),
        };
        s.push_str(&format!(
            "{name:<width$}  {:>18}  {:>14}  {:>9}  {:>35}\n",
            sci(v, 10),
            err,
            rel,
            interval
        ));
    }
    let corr = fit.correlation();
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
