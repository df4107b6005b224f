#!/usr/bin/env python3
"""scipy's least_squares on the stacked problem of the global-fit benchmark (issue 24):
D decays a_d exp(-k x) + c_d of 100 points sharing k, as one problem of 1 + 2D parameters,
with the exact Jacobian. Dense (the default: a (100 D) x (1 + 2D) Jacobian) for the sizes it
can hold; and for D = 1000 also with `jac_sparsity` (trf + lsmr), scipy's large-problem mode.
Prints the median of a few runs per case. Usage: scripts/global_scipy.py [D ...]
(requirements: ../shared/compare-requirements.txt)."""
import sys
import time

import numpy as np
import scipy
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix

M = 100


def data(d, seed=2024):
    rng = np.random.default_rng(seed)
    x = 5.0 * np.arange(M) / M
    a = 1.0 + 3.0 * rng.random(d)
    c = rng.random(d) - 0.5
    y = a[:, None] * np.exp(-1.3 * x)[None, :] + c[:, None] + 0.02 * rng.standard_normal((d, M))
    return x, y


def problem(x, y):
    d = y.shape[0]

    def fun(p):
        k, a, c = p[0], p[1::2], p[2::2]
        return (a[:, None] * np.exp(-k * x)[None, :] + c[:, None] - y).ravel()

    def jac(p):
        k, a = p[0], p[1::2]
        e = np.exp(-k * x)
        j = np.zeros((d * M, 1 + 2 * d))
        for b in range(d):
            rows = slice(b * M, (b + 1) * M)
            j[rows, 0] = -a[b] * x * e
            j[rows, 1 + 2 * b] = e
            j[rows, 2 + 2 * b] = 1.0
        return j

    return fun, jac


def sparsity(d):
    s = lil_matrix((d * M, 1 + 2 * d), dtype=int)
    for b in range(d):
        s[b * M:(b + 1) * M, 0] = 1
        s[b * M:(b + 1) * M, 1 + 2 * b] = 1
        s[b * M:(b + 1) * M, 2 + 2 * b] = 1
    return s


def timed(f, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = f()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), r


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [10, 100, 300]
    print(f"scipy {scipy.__version__}, numpy {np.__version__}; median of runs")
    for d in sizes:
        x, y = data(d)
        fun, jac = problem(x, y)
        p0 = np.concatenate([[1.0], np.tile([1.0, 0.0], d)])
        runs = 3 if d <= 300 else 1
        for method in ["lm", "trf"]:
            if d > 300:
                continue
            t, r = timed(lambda: least_squares(fun, p0, jac=jac, method=method), runs)
            print(f"D={d:5d} n={1 + 2 * d:5d} dense {method}: {t * 1e3:10.1f} ms  k={r.x[0]:.5f} nfev={r.nfev}")
        if d >= 100:
            s = sparsity(d)
            fd = lambda: least_squares(fun, p0, jac_sparsity=s, method="trf", tr_solver="lsmr")
            t, r = timed(fd, runs)
            print(f"D={d:5d} n={1 + 2 * d:5d} sparse trf/lsmr (2-point): {t * 1e3:10.1f} ms  k={r.x[0]:.5f} nfev={r.nfev}")


if __name__ == "__main__":
    main()
