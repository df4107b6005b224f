#!/usr/bin/env python3
"""Ratio of scipy `curve_fit` (lm) to nlsq at large m, measured in alternating rounds.

    target/compare-venv/bin/python scripts/interleaved.py [--rounds 3]

Run `scripts/compare` once first (it creates the virtualenv and builds the workload binary).
Each round times scipy's lm fit (median of 20 fits at 100,000 points, 5 at 1,000,000), then
nlsq's lm and trf fits through `compare_workloads warm` on the same data files, so that a slow
phase of a shared machine hits both sides of a ratio alike.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
from scipy.optimize import curve_fit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "target", "release", "examples", "compare_workloads")


def model(x, a, k, c):
    return a * np.exp(-k * x) + c


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="nlsq-interleaved-")
    for m, reps in [(100_000, 20), (1_000_000, 5)]:
        rng = np.random.default_rng(m)
        x = np.linspace(0.0, 5.0, m)
        y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.05 * rng.standard_normal(m)
        xp, yp = os.path.join(work, f"x{m}.bin"), os.path.join(work, f"y{m}.bin")
        x.astype("<f8").tofile(xp)
        y.astype("<f8").tofile(yp)
        for r in range(a.rounds):
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                curve_fit(model, x, y, p0=[1.0, 1.0, 1.0])
                ts.append(time.perf_counter() - t)
            scipy_s = float(np.median(ts))
            ours = {}
            for method in ["lm", "trf"]:
                out = subprocess.run([EXE, "warm", xp, yp, method, str(reps)], capture_output=True, text=True, check=True)
                ours[method] = json.loads(out.stdout)["median_s"]
            print(json.dumps({"m": m, "round": r, "scipy_lm_s": scipy_s, "nlsq_lm_s": ours["lm"], "nlsq_trf_s": ours["trf"],
                              "ratio_lm": scipy_s / ours["lm"], "ratio_trf": scipy_s / ours["trf"]}), flush=True)


if __name__ == "__main__":
    main()
