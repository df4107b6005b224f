#!/usr/bin/env python3
"""Generate tests/data/statistics_reference.json: fit statistics from statsmodels and lmfit.

The Rust test tests/fit_statistics.rs fits the same problems with nlsq and compares its
`FitStatistics` (R², adjusted R², χ², reduced χ², residual standard error, log-likelihood,
AIC/BIC in R's convention, lmfit's χ²-based AIC/BIC, t-based confidence intervals) with the
values stored here. The test itself never runs Python.

Usage (from the repository root):

    python3 -m venv /tmp/pyref
    /tmp/pyref/bin/pip install --only-binary=:all: -r scripts/requirements-statistics.txt
    /tmp/pyref/bin/python scripts/gen_statistics_reference.py

Problems (all deterministic: fixed data or one seeded numpy Generator each):

* "puromycin": Michaelis–Menten `Vm*x/(K + x)` on the treated Puromycin data (Bates & Watts
  1988, R's `datasets::Puromycin`), unweighted, fitted with lmfit (`Model.fit`, leastsq). R's
  `summary(nls(rate ~ Vm*conc/(K + conc), Puromycin, subset = state == "treated"))` gives
  Vm 212.7 ± 6.947, K 0.06412 ± 0.008281, residual standard error 10.93 on 10 df; the test
  checks those too. R's AIC/BIC for an nls fit are -2 logLik + 2(k+1) and + ln(N)(k+1) (k + 1:
  the residual variance is estimated), the same log-likelihood as statsmodels'.
* "wls_line": `a + b*x` with 1-D sigma (weights 1/σ²), by statsmodels WLS. A linear model, so
  the nonlinear fit's optimum is the WLS solution and every statistic must agree.
* "gls_line": `a + b*x` with a full covariance sigma (AR(1), ρ = 0.6), by statsmodels GLS.
* "ols_quadratic": `a + b*x + c*x^2` unweighted, by statsmodels OLS, with 90% intervals too.

"predict" entries: the fitted curve at new x and the half-widths of its confidence and
prediction bands (statsmodels `get_prediction(...).summary_frame`, `mean_ci` and `obs_ci`, with
the new observations' weights 1/σ² for "wls_line"; lmfit's `eval_uncertainty` `dely` and
`dely_predicted` for Puromycin, from its finite-difference Jacobian: about 1e-4 relative).

statsmodels' `aic`/`bic` count only the coefficients (k); R's count the variance too, so
`aic_r = aic + 2`, `bic_r = bic + ln N` are stored (both conventions are checked).
"""

import json
import math

import lmfit
import numpy as np
import statsmodels
import statsmodels.api as sm

OUT = "tests/data/statistics_reference.json"


def bands(res, design_new, level, weights=None):
    """statsmodels' get_prediction at new rows: the curve and its two bands' half-widths."""
    frame = res.get_prediction(np.column_stack(design_new), weights=weights).summary_frame(alpha=1.0 - level)
    mean = frame["mean"].to_numpy()
    return {
        "level": level,
        "y": mean.tolist(),
        "confidence": (frame["mean_ci_upper"].to_numpy() - mean).tolist(),
        "prediction": (frame["obs_ci_upper"].to_numpy() - mean).tolist(),
    }


def linear_problem(name, x, y, design, sigma=None, cov=None, levels=(0.95,), new=None):
    X = np.column_stack(design)
    if cov is not None:
        res = sm.GLS(y, X, sigma=cov).fit()
    elif sigma is not None:
        res = sm.WLS(y, X, weights=1.0 / np.asarray(sigma) ** 2).fit()
    else:
        res = sm.OLS(y, X).fit()
    n_obs = len(y)
    out = {
        "x": list(map(float, x)),
        "y": list(map(float, y)),
        "popt": list(map(float, res.params)),
        "perr": list(map(float, res.bse)),
        "chisqr": float(res.ssr),
        "redchi": float(res.scale),
        "dof": int(res.df_resid),
        "r_squared": float(res.rsquared),
        "adj_r_squared": float(res.rsquared_adj),
        "log_likelihood": float(res.llf),
        "aic_statsmodels": float(res.aic),
        "bic_statsmodels": float(res.bic),
        "aic": float(res.aic + 2.0),
        "bic": float(res.bic + math.log(n_obs)),
        "intervals": {str(lv): res.conf_int(alpha=1.0 - lv).tolist() for lv in levels},
        "source": f"statsmodels {statsmodels.__version__} {type(res.model).__name__}",
    }
    if new is not None:
        x_new, design_new, sigma_new, level = new
        weights = None if sigma_new is None else 1.0 / np.asarray(sigma_new) ** 2
        out["predict"] = {"x": list(map(float, x_new)), **bands(res, design_new, level, weights)}
        if sigma_new is not None:
            out["predict"]["sigma"] = list(map(float, sigma_new))
    if sigma is not None:
        out["sigma"] = list(map(float, sigma))
    if cov is not None:
        out["cov"] = np.asarray(cov).tolist()
    # lmfit's χ²-based criteria, from the same χ².
    k = X.shape[1]
    out["chisqr_aic"] = n_obs * math.log(res.ssr / n_obs) + 2 * k
    out["chisqr_bic"] = n_obs * math.log(res.ssr / n_obs) + math.log(n_obs) * k
    return name, out


def puromycin():
    conc = np.array([0.02, 0.02, 0.06, 0.06, 0.11, 0.11, 0.22, 0.22, 0.56, 0.56, 1.10, 1.10])
    rate = np.array([76, 47, 97, 107, 123, 139, 159, 152, 191, 201, 207, 200], dtype=float)
    model = lmfit.Model(lambda x, Vm, K: Vm * x / (K + x))
    params = model.make_params(Vm=200.0, K=0.1)
    res = model.fit(rate, params, x=conc, method="leastsq", fit_kws={"ftol": 1e-14, "xtol": 1e-14})
    n_obs, k = len(rate), 2
    chisqr = float(res.chisqr)
    loglik = -n_obs / 2 * (math.log(2 * math.pi) + 1 - math.log(n_obs) + math.log(chisqr))
    ci = {}
    from scipy import stats

    for lv in (0.95, 0.99):
        t = stats.t.ppf(0.5 + lv / 2, n_obs - k)
        ci[str(lv)] = [[p.value - t * p.stderr, p.value + t * p.stderr] for p in res.params.values()]
    corr = float(res.params["Vm"].correl["K"])
    x_new = np.array([0.01, 0.3, 2.0])
    res.eval_uncertainty(x=x_new, sigma=0.95)
    predict = {
        "x": x_new.tolist(),
        "level": 0.95,
        "y": res.eval(x=x_new).tolist(),
        "confidence": res.dely.tolist(),
        "prediction": res.dely_predicted.tolist(),
    }
    return "puromycin", {
        "x": conc.tolist(),
        "y": rate.tolist(),
        "popt": [float(res.params["Vm"].value), float(res.params["K"].value)],
        "perr": [float(res.params["Vm"].stderr), float(res.params["K"].stderr)],
        "correlation": corr,
        "chisqr": chisqr,
        "redchi": float(res.redchi),
        "dof": int(res.nfree),
        "r_squared": float(res.rsquared),
        "chisqr_aic": float(res.aic),
        "chisqr_bic": float(res.bic),
        "log_likelihood": loglik,
        "aic": -2 * loglik + 2 * (k + 1),
        "bic": -2 * loglik + math.log(n_obs) * (k + 1),
        "intervals": ci,
        "predict": predict,
        "r_nls": {"popt": [212.7, 0.06412], "perr": [6.947, 0.008281], "residual_se": 10.93, "dof": 10},
        "source": f"lmfit {lmfit.__version__} Model.fit(method='leastsq'); t quantiles from scipy",
    }


def main():
    problems = dict([puromycin()])
    rng = np.random.default_rng(20261204)
    x = np.linspace(0.0, 9.5, 20)
    sigma = 0.2 + 0.1 * x
    y = 1.5 + 0.8 * x + sigma * rng.standard_normal(x.size)
    x_new = np.array([-1.0, 4.0, 12.0])
    new = (x_new, [np.ones_like(x_new), x_new], [0.5, 1.0, 2.0], 0.9)
    problems.update([linear_problem("wls_line", x, y, [np.ones_like(x), x], sigma=sigma, new=new)])

    rng = np.random.default_rng(20261205)
    x = np.linspace(0.0, 5.5, 12)
    idx = np.arange(x.size)
    cov = 0.3 ** 2 * 0.6 ** np.abs(idx[:, None] - idx[None, :])
    noise = np.linalg.cholesky(cov) @ rng.standard_normal(x.size)
    y = -0.7 + 2.1 * x + noise
    problems.update([linear_problem("gls_line", x, y, [np.ones_like(x), x], cov=cov)])

    rng = np.random.default_rng(20261206)
    x = np.linspace(-2.0, 3.0, 30)
    y = 0.5 - 1.2 * x + 0.3 * x**2 + 0.25 * rng.standard_normal(x.size)
    problems.update(
        [
            linear_problem(
                "ols_quadratic",
                x,
                y,
                [np.ones_like(x), x, x**2],
                levels=(0.95, 0.9),
                new=(np.array([-3.0, 0.0, 1.3, 5.0]), [np.ones(4), np.array([-3.0, 0.0, 1.3, 5.0]), np.array([-3.0, 0.0, 1.3, 5.0]) ** 2], None, 0.95),
            )
        ]
    )
    with open(OUT, "w") as f:
        json.dump(problems, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {', '.join(problems)}")


if __name__ == "__main__":
    main()
