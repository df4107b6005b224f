#!/usr/bin/env python3
"""Generate tests/data/mgh_reference.json: scipy's lm (MINPACK lmder) on Moré–Garbow–Hillstrom
problems from their standard starts and from 10x and 100x those.

The Rust test tests/lm_vs_minpack.rs fits every problem and start with nlsq's lm and checks
that it is never worse than MINPACK: its final cost is at most scipy's times (1 + 1e-8), or
below an absolute floor for zero-residual problems. The test itself never runs Python.

Usage (from the repository root):

    python3 -m venv /tmp/pyref
    /tmp/pyref/bin/pip install --only-binary=:all: numpy==2.4.6 scipy==1.17.1
    /tmp/pyref/bin/python scripts/gen_mgh_reference.py

Each problem is written ONCE, in the nlsq expression language, as a curve fit
`model(vars; p) - y`: the MGH residual vector r_i(p) is `model(vars_i; p) - y_i`. Problems whose
residuals differ in form per index use indicator variables e1, e2, ... (one row each, 1 at
their index, 0 elsewhere), so `e1*(...) + e2*(...)` is r_1 at index 1, r_2 at index 2. The
same string is translated here to numpy and differentiated by complex step (exact to
rounding), so scipy and nlsq solve the same problem with exact Jacobians.

Stored per problem and start: the start p0, the initial cost, and for scipy's lm with the
exact Jacobian ("lmder") and with its default forward differences ("lmdif"): cost, x, nfev,
status. Costs are 0.5 * sum(r^2) (scipy's convention). Tolerances are scipy's defaults (1e-8).

References: J. J. Moré, B. S. Garbow, K. E. Hillstrom, "Testing unconstrained optimization
software", ACM TOMS 7 (1981) 17–41 (problems 1–18 and 20); B. M. Averick et al., "The
MINPACK-2 test problem collection" (1992) for the data of Kowalik–Osborne, Osborne 1 and 2.
"""

import json
import re

import numpy as np
import scipy
from scipy.optimize import least_squares

OUT = "tests/data/mgh_reference.json"


def indicators(m):
    return {f"e{k + 1}": [1.0 if i == k else 0.0 for i in range(m)] for k in range(m)}


def problems():
    P = []

    def add(name, expr, vars_, y, p0, fstar=None):
        m = len(y)
        for k, v in vars_.items():
            assert len(v) == m, (name, k)
        P.append({"name": name, "expr": expr, "vars": vars_, "y": list(map(float, y)), "p0": p0,
                  "mgh_fstar": fstar})

    add("rosenbrock", "e1*10*(p2 - p1^2) + e2*(1 - p1)", indicators(2), [0, 0], [-1.2, 1.0], 0.0)
    add("freudenstein_roth", "e1*(-13 + p1 + ((5 - p2)*p2 - 2)*p2) + e2*(-29 + p1 + ((p2 + 1)*p2 - 14)*p2)",
        indicators(2), [0, 0], [0.5, -2.0], 48.9842)
    add("powell_badly_scaled", "e1*(10000*p1*p2 - 1) + e2*(exp(-p1) + exp(-p2) - 1.0001)", indicators(2),
        [0, 0], [0.0, 1.0], 0.0)
    add("brown_badly_scaled", "e1*(p1 - 1000000) + e2*(p2 - 0.000002) + e3*(p1*p2 - 2)", indicators(3),
        [0, 0, 0], [1.0, 1.0], 0.0)
    add("beale", "e1*p1*(1 - p2) + e2*p1*(1 - p2^2) + e3*p1*(1 - p2^3)", indicators(3),
        [1.5, 2.25, 2.625], [1.0, 1.0], 0.0)
    i = np.arange(1, 11, dtype=float)
    add("jennrich_sampson", "exp(i*p1) + exp(i*p2)", {"i": i.tolist()}, 2 + 2 * i, [0.3, 0.4], 124.362)
    add("helical_valley",
        "e1*10*(p3 - 10*where(p1 > 0, atan(p2/p1)/(2*pi), atan(p2/p1)/(2*pi) + 0.5))"
        " + e2*10*(sqrt(p1^2 + p2^2) - 1) + e3*p3",
        indicators(3), [0, 0, 0], [-1.0, 0.0, 0.0], 0.0)
    i = np.arange(1, 16, dtype=float)
    u, v = i, 16 - i
    bard_y = [0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39]
    add("bard", "p1 + u/(p2*v + p3*w)", {"u": u.tolist(), "v": v.tolist(), "w": np.minimum(u, v).tolist()},
        bard_y, [1.0, 1.0, 1.0], 8.21487e-3)
    t = (8 - i) / 2
    gauss_y = [0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989, 0.3521, 0.2420, 0.1295,
               0.0540, 0.0175, 0.0044, 0.0009]
    add("gaussian", "p1*exp(-p2*(t - p3)^2/2)", {"t": t.tolist()}, gauss_y, [0.4, 1.0, 0.0], 1.12793e-8)
    i = np.arange(1, 17, dtype=float)
    meyer_y = [34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030, 6005, 5147, 4427, 3820,
               3307, 2872]
    add("meyer", "p1*exp(p2/(t + p3))", {"t": (45 + 5 * i).tolist()}, meyer_y, [0.02, 4000.0, 250.0], 87.9458)
    i = np.arange(1, 100, dtype=float)
    tg = i / 100
    ug = 25 + (-50 * np.log(tg)) ** (2 / 3)
    add("gulf", "exp(-((u - p2)^2)^(p3/2)/p1)", {"u": ug.tolist()}, tg, [5.0, 2.5, 0.15], 0.0)
    i = np.arange(1, 11, dtype=float)
    add("box3d", "exp(-t*p1) - exp(-t*p2) - p3*(exp(-t) - exp(-10*t))", {"t": (0.1 * i).tolist()},
        np.zeros(10), [0.0, 10.0, 20.0], 0.0)
    add("powell_singular", "e1*(p1 + 10*p2) + e2*sqrt(5)*(p3 - p4) + e3*(p2 - 2*p3)^2 + e4*sqrt(10)*(p1 - p4)^2",
        indicators(4), np.zeros(4), [3.0, -1.0, 0.0, 1.0], 0.0)
    add("wood", "e1*10*(p2 - p1^2) + e2*(1 - p1) + e3*sqrt(90)*(p4 - p3^2) + e4*(1 - p3)"
        " + e5*sqrt(10)*(p2 + p4 - 2) + e6*(p2 - p4)/sqrt(10)", indicators(6), np.zeros(6),
        [-3.0, -1.0, -3.0, -1.0], 0.0)
    ko_u = [4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625]
    ko_y = [0.1957, 0.1947, 0.1735, 0.16, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246]
    add("kowalik_osborne", "p1*(u^2 + u*p2)/(u^2 + u*p3 + p4)", {"u": ko_u}, ko_y, [0.25, 0.39, 0.415, 0.39],
        3.07505e-4)
    i = np.arange(1, 21, dtype=float)
    add("brown_dennis", "(p1 + t*p2 - exp(t))^2 + (p3 + p4*sin(t) - cos(t))^2", {"t": (i / 5).tolist()},
        np.zeros(20), [25.0, 5.0, -5.0, -1.0], 85822.2)
    o1_y = 0.1 * np.array([8.44, 9.08, 9.32, 9.36, 9.25, 9.08, 8.81, 8.5, 8.18, 7.84, 7.51, 7.18, 6.85, 6.58,
                           6.28, 6.03, 5.8, 5.58, 5.38, 5.22, 5.06, 4.9, 4.78, 4.67, 4.57, 4.48, 4.38, 4.31,
                           4.24, 4.2, 4.14, 4.11, 4.06])
    add("osborne1", "p1 + p2*exp(-t*p4) + p3*exp(-t*p5)", {"t": (10.0 * np.arange(33)).tolist()}, o1_y,
        [0.5, 1.5, -1.0, 0.01, 0.02], 5.46489e-5)
    t = 0.1 * np.arange(1, 14)
    by = np.exp(-t) - 5 * np.exp(-10 * t) + 3 * np.exp(-4 * t)
    add("biggs_exp6", "p3*exp(-t*p1) - p4*exp(-t*p2) + p6*exp(-t*p5)", {"t": t.tolist()}, by,
        [1.0, 2.0, 1.0, 1.0, 1.0, 1.0], 5.65565e-3)
    o2_y = [1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746, 0.679, 0.608, 0.655,
            0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649, 0.694, 0.644, 0.624, 0.661, 0.612, 0.558,
            0.533, 0.495, 0.5, 0.423, 0.395, 0.375, 0.372, 0.391, 0.396, 0.405, 0.428, 0.429, 0.523, 0.562,
            0.607, 0.653, 0.672, 0.708, 0.633, 0.668, 0.645, 0.632, 0.591, 0.559, 0.597, 0.625, 0.739, 0.71,
            0.729, 0.72, 0.636, 0.581, 0.428, 0.292, 0.162, 0.098, 0.054]
    add("osborne2", "p1*exp(-t*p5) + p2*exp(-(t - p9)^2*p6) + p3*exp(-(t - p10)^2*p7) + p4*exp(-(t - p11)^2*p8)",
        {"t": (0.1 * np.arange(65)).tolist()}, o2_y,
        [1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5], 4.01377e-2)
    return P


TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z_0-9]*)|(\*\*|<=|>=|==|!=|[-+*/^(),<>]))")
FUNCS = {"exp": np.exp, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos, "atan": np.arctan, "where": np.where}


def make(expr, var_names, n):
    out, pos = [], 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        mt = TOKEN.match(expr, pos)
        num, name, op = mt.groups()
        pos = mt.end()
        if num is not None:
            out.append(num)
        elif op is not None:
            out.append("**" if op == "^" else op)
        elif name == "pi":
            out.append("_pi")
        elif name in FUNCS:
            out.append(f"_{name}")
        elif name in var_names:
            out.append(f"_v['{name}']")
        elif re.fullmatch(r"p\d+", name):
            out.append(f"_p[{int(name[1:]) - 1}]")
        else:
            raise ValueError(name)
    code = compile(" ".join(out), expr, "eval")
    env = {f"_{k}": v for k, v in FUNCS.items()}
    env["_pi"] = np.pi

    def f(p, v, y):
        # (numpy orders complex numbers by their real part first, so `p1 > 0` at a
        # complex-step point is the comparison at the real point.)
        return np.broadcast_to(eval(code, dict(env, _v=v, _p=p)), y.shape) - y

    return f


def main():
    out = {"scipy": scipy.__version__, "problems": []}
    for prob in problems():
        v = {k: np.asarray(a, dtype=float) for k, a in prob["vars"].items()}
        y = np.asarray(prob["y"], dtype=float)
        f = make(prob["expr"], list(v), len(prob["p0"]))

        def fun(p, f=f, v=v, y=y):
            return f(list(p), v, y)

        def jac(p, f=f, v=v, y=y):
            h = 1e-30
            cols = []
            for j in range(len(p)):
                pc = np.asarray(p, dtype=complex)
                pc[j] += 1j * h
                cols.append(np.imag(f(list(pc), v, y)) / h)
            return np.stack(cols, axis=1)

        starts = []
        for factor in (1, 10, 100):
            p0 = [factor * c for c in prob["p0"]]
            r0 = fun(np.array(p0))
            with np.errstate(all="ignore"):
                c0 = float(0.5 * r0 @ r0)
            # (JSON has no infinity: a start whose cost overflows is stored as null.)
            entry = {"factor": factor, "p0": p0, "initial_cost": c0 if np.isfinite(c0) else None}
            for key, j in (("lmder", jac), ("lmdif", "2-point")):
                with np.errstate(all="ignore"):
                    res = least_squares(fun, p0, jac=j, method="lm")
                ok = np.isfinite(res.cost) and np.all(np.isfinite(res.x))
                entry[key] = {"cost": float(res.cost) if ok else None, "x": res.x.tolist() if ok else None,
                              "nfev": int(res.nfev), "status": int(res.status)}
            starts.append(entry)
            print(f"{prob['name']:>20} x{factor:<3} lmder {entry['lmder']['cost']} "
                  f"({entry['lmder']['nfev']}, s{entry['lmder']['status']})  lmdif {entry['lmdif']['cost']}")
        out["problems"].append({**prob, "starts": starts})
    with open(OUT, "w") as fh:
        json.dump(out, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
