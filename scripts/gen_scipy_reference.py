#!/usr/bin/env python3
"""Generate tests/data/scipy_reference.json: scipy curve_fit results on a suite of smooth problems.

The Rust test tests/scipy_reference.rs fits every problem with nlsq and compares cost, pcov and
popt with the values stored here (the test itself never runs Python).

Usage (from the repository root; pinned versions from ../shared/compare-requirements.txt):

    pip install --no-deps --only-binary=:all: numpy==2.4.6 scipy==1.17.1
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 scripts/gen_scipy_reference.py

Everything is deterministic (one seeded numpy Generator per problem). Each problem is written
with the SAME expression string nlsq parses (src/expr); the string is evaluated here by a
small translator ('^' -> '**', function names -> numpy/scipy.special).

For every problem three scipy fits are stored:

* "scipy": ``curve_fit(f, x, y, p0, sigma, absolute_sigma, bounds, method, [loss, f_scale])``
  exactly as a user calls it: default tolerances (1e-8) and scipy's own derivatives (MINPACK
  lmdif forward differences for lm, '2-point' differences for trf). This is the reference for
  the cost criterion ("nlsq reaches the same cost or lower").
* "scipy_exact": the same call given the exact model Jacobian (complex-step differentiation,
  accurate to rounding), so scipy and nlsq (forward-mode AD) solve the same problem; pcov here
  carries no finite-difference error.
* "scipy_tight": the exact-Jacobian fit refitted with ftol = xtol = gtol = 1e-14 from the
  default popt: the true minimum, its cost and the covariance there.

Stored per fit: popt, pcov (as scipy returned it), pcov_at_popt, cost, nfev, status
(full_output=True is used only to read nfev and status; popt and pcov are what
full_output=False returns). pcov_at_popt is curve_fit's own covariance formula (pseudo-inverse
of the final whitened, loss-scaled Jacobian with scipy's singular-value cut-off, times
2*cost/(m-n) unless absolute_sigma) evaluated AT popt with the exact Jacobian. It differs from
scipy's returned pcov because MINPACK (lm) returns the QR of the Jacobian at the iterate before
the last accepted step (up to 2e-5 relative on this suite) and trf without `jac` uses
finite differences (~1e-7). The generator checks that pcov_at_popt reproduces scipy's pcov
for the exact-Jacobian trf fits (it does, to ~1e-15, robust losses included).

cost = 0.5 * sum(rho(r_i^2)) in scipy's least_squares convention: r = (f - y) / sigma for 1-D sigma, r = L^-1 (f - y) with sigma = L L^T
for 2-D sigma, rho the robust loss scaled by f_scale (rho(z) = z for the linear loss).

JSON conventions: bounds is null or [lower, upper] (one list per side, one value per
parameter) where infinite bounds are the strings "inf" / "-inf"; sigma is null, a list (1-D,
standard deviations) or a list of rows (2-D covariance); x is a list (one variable) or a list
of rows (several variables, row i = variables[i], i.e. scipy's xdata of shape (k, m)). Data
(x, y, sigma) are rounded to 12 significant digits before fitting so that the JSON text holds
exactly the values scipy saw.
"""

import json
import os
import re
import sys
import warnings

import numpy as np
import scipy
import scipy.special
from scipy.linalg import cholesky, solve_triangular
from scipy.optimize import OptimizeWarning, curve_fit

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "scipy_reference.json")
TIGHT = 1e-14

# ---------------------------------------------------------------------------------------------
# Expression translator (the nlsq expression language -> numpy).

FUNCS = {
    "exp": np.exp, "log": np.log, "ln": np.log, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos,
    "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh,
    "cosh": np.cosh, "tanh": np.tanh, "abs": np.abs, "erf": scipy.special.erf,
    "erfc": scipy.special.erfc,
}
CONSTS = {"pi": np.pi, "e": np.e}
TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z_0-9]*)|(\*\*|[-+*/^()]))")


def translate(expr, variables, params):
    """The expression as Python source over names v0.., p0.. and the functions above."""
    out, pos = [], 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        mt = TOKEN.match(expr, pos)
        if not mt:
            raise ValueError(f"cannot tokenize {expr!r} at {pos}")
        num, name, op = mt.groups()
        pos = mt.end()
        if num is not None:
            out.append(num)
        elif name is not None:
            if name in variables:
                out.append(f"_v{variables.index(name)}")
            elif name in params:
                out.append(f"_p{params.index(name)}")
            elif name in FUNCS or name in CONSTS:
                out.append(f"_{name}")
            else:
                raise ValueError(f"unknown name {name!r} in {expr!r}")
        else:
            out.append("**" if op == "^" else op)
    return " ".join(out)


def make_model(expr, variables, params):
    src = translate(expr, variables, params)
    code = compile(src, expr, "eval")
    ns = {f"_{k}": v for k, v in FUNCS.items()}
    ns.update({f"_{k}": v for k, v in CONSTS.items()})

    def f(x, *p):
        env = dict(ns)
        if len(variables) == 1:
            env["_v0"] = x
        else:
            for i in range(len(variables)):
                env[f"_v{i}"] = x[i]
        for i, v in enumerate(p):
            env[f"_p{i}"] = v
        m = x.shape[-1]
        return np.broadcast_to(eval(code, env), (m,)).copy()

    def jac(x, *p):
        """Complex-step Jacobian d f / d p: exact to rounding for analytic models."""
        h = 1e-30
        p = np.asarray(p, dtype=float)
        cols = []
        for j in range(len(p)):
            pc = p.astype(complex)
            pc[j] += 1j * h
            cols.append(np.imag(f(x, *pc)) / h)
        return np.stack(cols, axis=1)

    return f, jac


# ---------------------------------------------------------------------------------------------
# Losses (scipy least_squares conventions).

def rho(loss, z):
    if loss == "linear":
        return z
    if loss == "soft_l1":
        return 2 * (np.sqrt(1 + z) - 1)
    if loss == "huber":
        return np.where(z <= 1, z, 2 * np.sqrt(z) - 1)
    if loss == "cauchy":
        return np.log1p(z)
    if loss == "arctan":
        return np.arctan(z)
    raise ValueError(loss)


def cost_of(f, x, y, p, sigma, loss, f_scale):
    d = f(x, *p) - y
    if sigma is None:
        r = d
    elif sigma.ndim == 1:
        r = d / sigma
    else:
        r = solve_triangular(cholesky(sigma, lower=True), d, lower=True)
    return float(0.5 * f_scale ** 2 * np.sum(rho(loss, (r / f_scale) ** 2)))


# ---------------------------------------------------------------------------------------------
# Problems.

def r12(a):
    """Round to 12 significant digits (what the JSON stores)."""
    return np.array([float(f"{v:.12g}") for v in np.ravel(a)]).reshape(np.shape(a))


INF = np.inf

# Models: (expression, params, variables).
EXP1 = ("a*exp(-k*x) + c", ["a", "k", "c"])
EXP2 = ("a1*exp(-k1*x) + a2*exp(-k2*x) + c", ["a1", "k1", "a2", "k2", "c"])
GAUSS1 = ("a*exp(-(x - mu)^2/(2*s^2)) + b", ["a", "mu", "s", "b"])
GAUSS2 = ("a1*exp(-(x - m1)^2/(2*s1^2)) + a2*exp(-(x - m2)^2/(2*s2^2)) + b0 + b1*x",
          ["a1", "m1", "s1", "a2", "m2", "s2", "b0", "b1"])
LOGISTIC = ("L/(1 + exp(-k*(x - x0))) + b", ["L", "k", "x0", "b"])
POWER = ("a*x^b", ["a", "b"])
POWER_OFFSET = ("a*x^b + c", ["a", "b", "c"])
RATIONAL = ("(a0 + a1*x)/(1 + b1*x + b2*x^2)", ["a0", "a1", "b1", "b2"])
MM = ("vmax*x/(km + x)", ["vmax", "km"])
LORENTZ = ("A/(1 + ((x - x0)/g)^2) + c", ["A", "x0", "g", "c"])
SINE = ("A*sin(w*x + phi) + c", ["A", "w", "phi", "c"])
DAMPED = ("A*exp(-g*x)*cos(w*x + phi)", ["A", "g", "w", "phi"])
ERFSTEP = ("a*erf((x - x0)/w) + b", ["a", "x0", "w", "b"])
LOGM = ("a*ln(1 + b*x) + c", ["a", "b", "c"])
HILL = ("top*x^n/(K^n + x^n)", ["top", "K", "n"])
GAUSS2D = ("A*exp(-((x1 - mx)^2 + (x2 - my)^2)/(2*s^2)) + c", ["A", "mx", "my", "s", "c"])
PLANE_EXP = ("a*exp(-k1*x1 - k2*x2) + c*x1*x2", ["a", "k1", "k2", "c"])


def lin(a, b, m):
    return np.linspace(a, b, m)


def grid2d(n1, n2, lo=-2.0, hi=2.0):
    g1, g2 = np.meshgrid(np.linspace(lo, hi, n1), np.linspace(lo, hi, n2), indexing="ij")
    return np.vstack([g1.ravel(), g2.ravel()])


def P(name, model, truth, p0, x, noise, *, variables=("x",), sigma=None, rho_ar=0.6,
      absolute_sigma=False, bounds=None, method=None, loss="linear", f_scale=1.0,
      outliers=0, seed=None):
    return dict(name=name, expr=model[0], params=model[1], variables=list(variables), truth=truth,
                p0=p0, x=x, noise=noise, sigma=sigma, rho_ar=rho_ar, absolute_sigma=absolute_sigma,
                bounds=bounds, method=method, loss=loss, f_scale=f_scale, outliers=outliers,
                seed=seed)


X60 = lin(0.0, 5.0, 60)
X120 = lin(0.0, 10.0, 120)
X40 = lin(0.0, 4.0, 40)

PROBLEMS = [
    # --- one exponential
    P("exp1_lm", EXP1, [2.5, 1.3, 0.5], [1, 1, 1], X60, 0.02),
    P("exp1_trf", EXP1, [2.5, 1.3, 0.5], [1, 1, 1], X60, 0.02, method="trf"),
    P("exp1_m300_trf", EXP1, [2.5, 1.3, 0.5], [1, 1, 1], lin(0.0, 5.0, 300), 0.05, method="trf"),
    P("exp1_sigma1d_lm", EXP1, [2.5, 1.3, 0.5], [1, 1, 1], X60, 0.02, sigma="1d"),
    P("exp1_sigma1d_abs_trf", EXP1, [2.5, 1.3, 0.5], [1, 1, 1], X60, 0.02, sigma="1d",
      absolute_sigma=True, method="trf"),
    P("exp1_bounds_inactive", EXP1, [2.5, 1.3, 0.5], [1, 1, 1], X60, 0.02,
      bounds=([0, 0, -10], [10, 10, 10])),
    P("exp1_bounds_active_c", EXP1, [2.5, 1.3, 0.5], [1, 1, 0.1], X60, 0.02,
      bounds=([0, 0, -INF], [INF, INF, 0.3])),
    P("exp1_sigma2d_lm", EXP1, [2.5, 1.3, 0.5], [1, 1, 1], X40, 0.03, sigma="2d"),
    P("exp1_sigma2d_abs_trf", EXP1, [2.5, 1.3, 0.5], [1, 1, 1], X40, 0.03, sigma="2d",
      absolute_sigma=True, method="trf"),
    P("exp1_soft_l1", EXP1, [2.5, 1.3, 0.5], [1, 1, 1], X60, 0.02, method="trf", loss="soft_l1",
      f_scale=0.05, outliers=5),
    P("exp1_huber_bounded", EXP1, [2.5, 1.3, 0.5], [1, 1, 0], X60, 0.02, loss="huber", f_scale=0.04,
      outliers=4, bounds=([0, 0, -1], [5, 5, 1])),
    # --- two exponentials
    P("exp2_lm", EXP2, [3.0, 2.0, 1.0, 0.25, 0.2], [2, 1, 2, 0.1, 0], X120, 0.01),
    P("exp2_trf_bounded", EXP2, [3.0, 2.0, 1.0, 0.25, 0.2], [2, 1, 2, 0.1, 0.1], X120, 0.01,
      bounds=([0, 0, 0, 0, 0], [INF, INF, INF, INF, INF])),
    P("exp2_sigma1d_trf", EXP2, [3.0, 2.0, 1.0, 0.25, 0.2], [2, 1, 2, 0.1, 0], X120, 0.01,
      sigma="1d", method="trf"),
    # --- Gaussians
    P("gauss1_lm", GAUSS1, [3.0, 1.2, 0.7, 0.4], [2, 1, 1, 0], lin(-3.0, 5.0, 80), 0.05),
    P("gauss1_trf", GAUSS1, [3.0, 1.2, 0.7, 0.4], [2, 1, 1, 0], lin(-3.0, 5.0, 80), 0.05, method="trf"),
    P("gauss1_sigma2d_trf", GAUSS1, [3.0, 1.2, 0.7, 0.4], [2, 1, 1, 0], lin(-3.0, 5.0, 50), 0.05,
      sigma="2d", rho_ar=0.8, method="trf"),
    P("gauss1_bounds_active_s", GAUSS1, [3.0, 1.2, 0.7, 0.4], [2, 1, 1, 0], lin(-3.0, 5.0, 80), 0.05,
      bounds=([0, -5, 0.8, -INF], [10, 5, 5, INF])),
    P("gauss1_huber", GAUSS1, [3.0, 1.2, 0.7, 0.4], [2, 1, 1, 0], lin(-3.0, 5.0, 80), 0.05,
      method="trf", loss="huber", f_scale=0.1, outliers=6),
    P("gauss2_lm", GAUSS2, [2.0, -1.0, 0.5, 1.5, 1.5, 0.8, 0.3, 0.05], [1.5, -0.8, 0.6, 1, 1.2, 1, 0, 0],
      lin(-4.0, 5.0, 150), 0.03),
    P("gauss2_trf_bounded", GAUSS2, [2.0, -1.0, 0.5, 1.5, 1.5, 0.8, 0.3, 0.05],
      [1.5, -0.8, 0.6, 1, 1.2, 1, 0, 0], lin(-4.0, 5.0, 150), 0.03,
      bounds=([0, -3, 0.1, 0, 0, 0.1, -INF, -INF], [10, 0, 3, 10, 4, 3, INF, INF])),
    # --- logistic
    P("logistic_lm", LOGISTIC, [4.0, 1.5, 2.0, 0.5], [3, 1, 1, 0], lin(-2.0, 6.0, 70), 0.04),
    P("logistic_trf_bounds_active_k", LOGISTIC, [4.0, 1.5, 2.0, 0.5], [3, 0.5, 1, 0], lin(-2.0, 6.0, 70), 0.04,
      bounds=([0, 0, -10, -INF], [10, 1.2, 10, INF])),
    P("logistic_sigma2d_abs_lm", LOGISTIC, [4.0, 1.5, 2.0, 0.5], [3, 1, 1, 0], lin(-2.0, 6.0, 45), 0.04,
      sigma="2d", rho_ar=0.5, absolute_sigma=True),
    P("logistic_cauchy", LOGISTIC, [4.0, 1.5, 2.0, 0.5], [3, 1, 1, 0], lin(-2.0, 6.0, 70), 0.04,
      method="trf", loss="cauchy", f_scale=0.1, outliers=5),
    # --- power laws
    P("power_lm", POWER, [2.0, 1.5], [1, 1], lin(1.0, 10.0, 30), 0.05, sigma="1d"),
    P("power_offset_trf", POWER_OFFSET, [2.0, 0.7, 1.0], [1, 1, 0], lin(0.5, 10.0, 50), 0.03, method="trf"),
    P("power_offset_bounded", POWER_OFFSET, [2.0, 0.7, 1.0], [1, 0.5, 0], lin(0.5, 10.0, 50), 0.03,
      bounds=([0, 0, -INF], [INF, 0.65, INF])),
    P("hill_trf_bounded", HILL, [5.0, 2.0, 2.5], [4, 1, 1], lin(0.1, 8.0, 40), 0.05,
      bounds=([0, 0.01, 0.1], [INF, INF, 10])),
    # --- rational
    P("rational_lm", RATIONAL, [1.0, 2.0, 0.5, 0.3], [1, 1, 1, 1], lin(0.0, 6.0, 40), 0.005),
    P("rational_trf", RATIONAL, [1.0, 2.0, 0.5, 0.3], [1, 1, 1, 1], lin(0.0, 6.0, 40), 0.005, method="trf"),
    P("michaelis_menten_sigma1d_abs_lm", MM, [3.0, 0.8], [1, 1], lin(0.05, 5.0, 25), 0.05, sigma="1d",
      absolute_sigma=True),
    P("lorentz_trf", LORENTZ, [2.0, 0.5, 0.4, 0.1], [1, 0, 1, 0], lin(-3.0, 3.0, 90), 0.02, method="trf"),
    P("lorentz_arctan", LORENTZ, [2.0, 0.5, 0.4, 0.1], [1, 0, 1, 0], lin(-3.0, 3.0, 90), 0.02,
      method="trf", loss="arctan", f_scale=0.1, outliers=4),
    # --- periodic
    P("sine_lm", SINE, [1.5, 2.0, 0.6, 0.2], [1, 2.1, 0, 0], lin(0.0, 10.0, 100), 0.1),
    P("sine_trf_bounded", SINE, [1.5, 2.0, 0.6, 0.2], [1, 2.1, 0, 0], lin(0.0, 10.0, 100), 0.1,
      bounds=([0, 1.5, -np.pi, -INF], [5, 2.5, np.pi, INF])),
    P("damped_lm", DAMPED, [2.0, 0.3, 3.0, 0.4], [1.5, 0.2, 3.05, 0.2], lin(0.0, 8.0, 160), 0.03),
    # --- special functions
    P("erf_step_lm", ERFSTEP, [1.2, 0.4, 0.8, 0.3], [1, 0, 1, 0], lin(-3.0, 3.0, 60), 0.02),
    P("log_model_trf_sigma1d", LOGM, [1.5, 2.0, 0.3], [1, 1, 0], lin(0.0, 5.0, 50), 0.02, sigma="1d",
      method="trf", bounds=([-INF, 0, -INF], [INF, INF, INF])),
    # --- two predictors (xdata of shape (2, m))
    P("gauss2d_lm", GAUSS2D, [2.0, 0.3, -0.4, 0.7, 0.1], [1, 0, 0, 1, 0], grid2d(12, 12), 0.03,
      variables=("x1", "x2")),
    P("gauss2d_trf_sigma1d", GAUSS2D, [2.0, 0.3, -0.4, 0.7, 0.1], [1, 0, 0, 1, 0], grid2d(12, 12), 0.03,
      variables=("x1", "x2"), sigma="1d", method="trf"),
    P("plane_exp_trf_bounded", PLANE_EXP, [1.5, 0.4, 0.9, 0.2], [1, 0.5, 0.5, 0], grid2d(8, 10, 0.0, 3.0), 0.02,
      variables=("x1", "x2"), bounds=([0, 0, 0, -1], [10, 10, 0.8, 1])),
]


def enc_bound(v):
    return "inf" if v == INF else "-inf" if v == -INF else float(v)


def fit(f, jac, x, y, p0, sigma, absolute_sigma, bounds, method, loss, f_scale, tol=None, *, jac_exact):
    kw = {}
    if tol is not None:
        kw.update(ftol=tol, xtol=tol, gtol=tol)
        kw["maxfev" if method == "lm" else "max_nfev"] = 20000
    if method == "trf" and loss != "linear":
        kw.update(loss=loss, f_scale=f_scale)
    if jac is not None:
        kw["jac"] = jac
    b = (-INF, INF) if bounds is None else (np.array(bounds[0], float), np.array(bounds[1], float))
    with warnings.catch_warnings():
        warnings.simplefilter("error", OptimizeWarning)
        popt, pcov, info, msg, ier = curve_fit(f, x, y, p0=np.array(p0, float), sigma=sigma,
                                               absolute_sigma=absolute_sigma, bounds=b, method=method,
                                               full_output=True, **kw)
    cost = cost_of(f, x, y, popt, sigma, loss, f_scale)
    return dict(popt=[float(v) for v in popt], pcov=[[float(v) for v in row] for row in pcov],
                pcov_at_popt=pcov_at(f, jac_exact, x, y, popt, sigma, absolute_sigma, loss, f_scale).tolist(),
                cost=cost, nfev=int(info["nfev"]), status=int(ier))


def pcov_at(f, jac, x, y, p, sigma, absolute_sigma, loss, f_scale):
    """curve_fit's covariance (its trf branch) evaluated AT p with the exact Jacobian.

    scipy's own pcov is not always that: for lm, MINPACK returns the QR of the Jacobian at the
    iterate before the last accepted step; for trf without `jac`, a finite-difference Jacobian.
    """
    J = jac(x, *p)
    d = f(x, *p) - y
    if sigma is None:
        r = d
    elif sigma.ndim == 1:
        r, J = d / sigma, J / sigma[:, None]
    else:
        L = cholesky(sigma, lower=True)
        r, J = solve_triangular(L, d, lower=True), solve_triangular(L, J, lower=True)
    if loss != "linear":
        # least_squares' scale_for_robust_loss_function with rho scaled by f_scale.
        z = (r / f_scale) ** 2
        rho1 = rho_d1(loss, z)
        rho2 = rho_d2(loss, z) / f_scale ** 2
        js = rho1 + 2 * rho2 * r ** 2
        js[js < np.finfo(float).eps] = np.finfo(float).eps
        J = J * np.sqrt(js)[:, None]
    _, s, VT = np.linalg.svd(J, full_matrices=False)
    threshold = np.finfo(float).eps * max(J.shape) * s[0]
    keep = s > threshold
    s, VT = s[keep], VT[keep]
    pcov = (VT.T / s ** 2) @ VT
    if not absolute_sigma:
        m, n = J.shape
        pcov = pcov * (2 * cost_of(f, x, y, p, sigma, loss, f_scale) / (m - n))
    return pcov


def rho_d1(loss, z):
    if loss == "soft_l1":
        return (1 + z) ** -0.5
    if loss == "huber":
        return np.where(z <= 1, 1.0, np.abs(z) ** -0.5)
    if loss == "cauchy":
        return 1 / (1 + z)
    if loss == "arctan":
        return 1 / (1 + z ** 2)
    raise ValueError(loss)


def rho_d2(loss, z):
    if loss == "soft_l1":
        return -0.5 * (1 + z) ** -1.5
    if loss == "huber":
        return np.where(z <= 1, 0.0, -0.5 * np.abs(z) ** -1.5)
    if loss == "cauchy":
        return -1 / (1 + z) ** 2
    if loss == "arctan":
        return -2 * z / (1 + z ** 2) ** 2
    raise ValueError(loss)


def build(spec, index):
    seed = spec["seed"] if spec["seed"] is not None else 20261126 + index
    rng = np.random.default_rng(seed)
    f, jac = make_model(spec["expr"], spec["variables"], spec["params"])
    x = r12(np.asarray(spec["x"], float))
    m = x.shape[-1]
    assert 20 <= m <= 300, (spec["name"], m)
    clean = f(x, *spec["truth"])
    noise = spec["noise"]
    sigma = None
    if spec["sigma"] is None:
        y = clean + noise * rng.standard_normal(m)
    elif spec["sigma"] == "1d":
        sigma = r12(noise * (0.5 + rng.uniform(size=m)))
        y = clean + sigma * rng.standard_normal(m)
    elif spec["sigma"] == "2d":
        sd = noise * (0.5 + rng.uniform(size=m))
        k = np.arange(m)
        sigma = r12(np.outer(sd, sd) * spec["rho_ar"] ** np.abs(k[:, None] - k[None, :]))
        y = clean + cholesky(sigma, lower=True) @ rng.standard_normal(m)
    else:
        raise ValueError(spec["sigma"])
    if spec["outliers"]:
        idx = rng.choice(m, size=spec["outliers"], replace=False)
        y[idx] += rng.choice([-1.0, 1.0], size=idx.size) * rng.uniform(0.3, 0.8, size=idx.size) * np.max(np.abs(clean))
    y = r12(y)

    bounds = spec["bounds"]
    method = spec["method"] or ("lm" if bounds is None else "trf")
    loss, f_scale = spec["loss"], float(spec["f_scale"])
    if loss != "linear":
        assert method == "trf", spec["name"]
    args = (x, y, spec["p0"], sigma, spec["absolute_sigma"], bounds, method, loss, f_scale)
    default = fit(f, None, *args, jac_exact=jac)
    exact = fit(f, jac, *args, jac_exact=jac)
    tight = fit(f, jac, x, y, exact["popt"], *args[3:], tol=TIGHT, jac_exact=jac)
    for name, r in (("default", default), ("exact", exact)):
        if tight["cost"] > r["cost"] * (1 + 1e-12):
            print(f"warning: {spec['name']}: tight cost {tight['cost']!r} above {name} cost {r['cost']!r}",
                  file=sys.stderr)
    return dict(
        name=spec["name"], expression=spec["expr"], variables=spec["variables"], params=spec["params"],
        x=x.tolist(), y=y.tolist(),
        sigma=None if sigma is None else sigma.tolist(),
        absolute_sigma=spec["absolute_sigma"],
        bounds=None if bounds is None else [[enc_bound(v) for v in side] for side in bounds],
        method=method, loss=loss, f_scale=f_scale, p0=[float(v) for v in spec["p0"]],
        truth=[float(v) for v in spec["truth"]], seed=seed,
        scipy=default, scipy_exact=exact, scipy_tight=tight,
    )


def main():
    problems = [build(spec, i) for i, spec in enumerate(PROBLEMS)]
    names = [p["name"] for p in problems]
    assert len(set(names)) == len(names)
    doc = dict(
        generator="scripts/gen_scipy_reference.py",
        numpy=np.__version__, scipy=scipy.__version__, python=sys.version.split()[0],
        tight_tol=TIGHT,
        notes=("bounds: null or [lower, upper], infinite bounds as the strings 'inf'/'-inf'. "
               "sigma: null, 1-D standard deviations, or 2-D covariance (rows). x: list, or rows "
               "(one per variable, scipy xdata shape (k, m)). cost: 0.5*sum(rho(r^2)) with whitened "
               "residuals r, scipy least_squares convention. scipy: curve_fit defaults (finite-"
               "difference Jacobian); scipy_exact: same with the exact (complex-step) Jacobian; "
               "scipy_tight: scipy_exact refitted from its popt with ftol=xtol=gtol=tight_tol."),
        problems=problems,
    )
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
        fh.write("\n")
    print(f"wrote {len(problems)} problems to {os.path.relpath(OUT)} ({os.path.getsize(OUT)} bytes)")
    def rel(a, b):
        a, b = np.array(a), np.array(b)
        return float(np.max(np.abs(a - b) / np.sqrt(np.abs(np.outer(np.diag(b), np.diag(b))))))

    for p in problems:
        d, e, t = p["scipy"], p["scipy_exact"], p["scipy_tight"]
        # Sanity: with the exact Jacobian, scipy's trf pcov is the covariance formula at popt
        # (this checks pcov_at, robust-loss scaling included). For lm, MINPACK's R belongs to
        # the previous iterate, which at tight tolerances is nearly popt.
        checks = [("exact", e, 1e-9), ("tight", t, 1e-9)] if p["method"] == "trf" else [("tight", t, 1e-7)]
        for label, r, tol in checks:
            if rel(r["pcov"], r["pcov_at_popt"]) > tol:
                print(f"warning: {p['name']}: {label} pcov differs from pcov_at_popt by "
                      f"{rel(r['pcov'], r['pcov_at_popt']):.1e}", file=sys.stderr)
        print(f"{p['name']:34s} {p['method']:3s} {p['loss']:7s} m={len(p['y']):3d} cost={d['cost']:.10e} "
              f"rel(d-t)={(d['cost'] - t['cost']) / t['cost']:.1e} rel(e-t)={(e['cost'] - t['cost']) / t['cost']:.1e} "
              f"nfev={d['nfev']}/{e['nfev']}/{t['nfev']} pcov(d)-at {rel(d['pcov'], d['pcov_at_popt']):.1e} "
              f"at(d)-at(t) {rel(d['pcov_at_popt'], t['pcov_at_popt']):.1e} t-at(t) {rel(t['pcov'], t['pcov_at_popt']):.1e}")


if __name__ == "__main__":
    main()
