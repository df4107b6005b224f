#!/usr/bin/env python3
"""Side-by-side comparison of nlsq with scipy.optimize.curve_fit, NLSQ (JAX) and optimistix.

Same seeded data for every library, in one run; prints medians and ratios.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 scripts/compare.py [--quick] [--json OUT]

Python packages: the pinned set in ../shared/compare-requirements.txt (scipy and numpy are
required; NLSQ and optimistix are skipped when they do not import). The nlsq side runs
`target/release/examples/compare_workloads` (built here with cargo if missing).

Run it through `scripts/compare`, which creates the pinned virtualenv.

Workloads (3-parameter exponential decay y = a exp(-k x) + c, noise sd 0.05):
  warm    the executable/jit reused: median time of a fit at m = 1e3, 1e5, 1e6 (lm and trf), through
          `curve_fit` (nlsq_s) and through a reused `CurveFitter` (nlsq_fitter_s)
  first   the first fit of a new process: cold compile (empty cache), then warm disk cache
  lengths 50 fits at 50 lengths from 100 to 10,000 points in a new process
  large   (--large) one fit of 20,000,000 points
  batch   (--batch, alone) 1,000 and 10,000 curves of 100 points and 1,000 curves of 1,000
          points (each its own a, k, c): one nlsq curve_fit_batch call (median of 20, compiled
          executable) against scipy curve_fit in a Python loop, lm and trf
nlsq times are measured inside its process (fit call to result), excluding process start and
plugin load, which are reported separately in the "first fit" rows.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXE = os.path.join(ROOT, "target", "release", "examples", "compare_workloads")
P0 = [1.0, 1.0, 1.0]


def make_data(m, seed):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 5.0, m)
    y = 2.5 * np.exp(-1.3 * x) + 0.5 + 0.05 * rng.standard_normal(m)
    return x, y


def write(path, a):
    np.ascontiguousarray(a, dtype="<f8").tofile(path)


def model_np(x, a, k, c):
    return a * np.exp(-k * x) + c


def median_time(fn, repeats):
    fn()  # warm-up (and jit for the JAX libraries)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def run_nlsq(args, env=None):
    out = subprocess.run([EXE] + [str(a) for a in args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"compare_workloads {args} failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def scipy_fit(x, y, method):
    from scipy.optimize import curve_fit
    return curve_fit(model_np, x, y, p0=P0, method=method)


def nlsq_jax_fitter():
    try:
        os.environ.setdefault("NLSQ_DISABLE_PERSISTENT_CACHE", "1")
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from nlsq import CurveFit
    except Exception as e:  # noqa: BLE001
        print(f"# NLSQ (JAX) unavailable: {e}", file=sys.stderr)
        return None

    def model(x, a, k, c):
        return a * jnp.exp(-k * x) + c

    cf = CurveFit()
    return lambda x, y: cf.curve_fit(model, x, y, p0=P0)


def optimistix_fitter():
    try:
        import jax
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        import optimistix as optx
    except Exception as e:  # noqa: BLE001
        print(f"# optimistix unavailable: {e}", file=sys.stderr)
        return None

    def residuals(p, args):
        x, y = args
        return p[0] * jnp.exp(-p[1] * x) + p[2] - y

    solver = optx.LevenbergMarquardt(rtol=1e-8, atol=1e-8)

    @jax.jit
    def fit(x, y):
        return optx.least_squares(residuals, solver, jnp.asarray(P0), args=(x, y), max_steps=300, throw=False).value

    return lambda x, y: fit(jnp.asarray(x), jnp.asarray(y)).block_until_ready()


def make_batch(count, m, seed):
    """`count` exponential decays of `m` points on a shared x, each with its own a, k, c."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 5.0, m)
    a = rng.uniform(1.0, 4.0, (count, 1))
    k = rng.uniform(0.5, 2.0, (count, 1))
    c = rng.uniform(0.0, 1.0, (count, 1))
    y = a * np.exp(-k * x) + c + 0.05 * rng.standard_normal((count, m))
    return x, y


def run_batch(rows, work, quick):
    """Batched fits (one nlsq call, `curve_fit_batch`) against scipy `curve_fit` in a loop."""
    cases = [(1_000, 100)] if quick else [(1_000, 100), (10_000, 100), (1_000, 1_000)]
    for count, m in cases:
        x, y = make_batch(count, m, seed=count + m)
        xp, yp = os.path.join(work, f"bx{count}_{m}.bin"), os.path.join(work, f"by{count}_{m}.bin")
        write(xp, x)
        write(yp, y)
        for method in ["lm", "trf"]:
            ours = run_nlsq(["batch", xp, yp, method, 20, count])
            scipy_fit(x, y[0], method)  # warm-up (imports)
            t = time.perf_counter()
            popts = [scipy_fit(x, y[i], method)[0] for i in range(count)]
            theirs = time.perf_counter() - t
            agree = float(np.max(np.abs(np.asarray(ours["popts"]) - np.asarray(popts)) / (np.abs(np.asarray(popts)) + 1e-12)))
            rows.append({"workload": f"batch {count} curves x {m} points", "method": method,
                         "nlsq_s": ours["median_s"], "nlsq_first_call_s": ours["first_s"],
                         "nlsq_converged": ours["converged"], "scipy_loop_s": theirs,
                         "ratio_scipy_over_nlsq": theirs / ours["median_s"], "max_rel_popt_diff": agree})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--no-jax", action="store_true", help="skip NLSQ and optimistix")
    ap.add_argument("--large", action="store_true", help="also one fit of 20,000,000 points (needs ~4 GB for scipy)")
    ap.add_argument("--batch", action="store_true", help="only the batch workload: many curves in one call vs a scipy loop")
    a = ap.parse_args()
    if os.environ.get("OPENBLAS_CORETYPE") or os.environ.get("OPENBLAS_L2_SIZE"):
        print("# warning: OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are set; they slow numpy/scipy here "
              "(run with env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE)", file=sys.stderr)
    if not os.path.exists(EXE):
        subprocess.run(["cargo", "build", "--release", "--example", "compare_workloads"], cwd=ROOT, check=True)
    import scipy
    results = {"scipy": scipy.__version__, "numpy": np.__version__, "rows": []}
    rows = results["rows"]
    work = tempfile.mkdtemp(prefix="nlsq-compare-")

    if a.batch:
        try:
            run_batch(rows, work, a.quick)
        finally:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
        print(f"scipy {results['scipy']}, numpy {results['numpy']}")
        for row in rows:
            print(json.dumps(row))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1)
        return

    sizes = [1_000, 100_000] if a.quick else [1_000, 100_000, 1_000_000]
    for m in sizes:
        x, y = make_data(m, seed=m)
        xp, yp = os.path.join(work, f"x{m}.bin"), os.path.join(work, f"y{m}.bin")
        write(xp, x)
        write(yp, y)
        reps = 20 if m <= 100_000 else 5
        if a.quick:
            reps = max(3, reps // 4)
        for method in ["lm", "trf"]:
            ours = run_nlsq(["warm", xp, yp, method, reps])
            theirs = median_time(lambda: scipy_fit(x, y, method), reps)
            rows.append({"workload": f"warm m={m}", "method": method, "nlsq_s": ours["median_s"],
                         "nlsq_fitter_s": ours["fitter_median_s"],
                         "nlsq_execute_s": ours["execute_median_s"], "nlsq_nfev": ours["nfev"],
                         "scipy_s": theirs, "ratio_scipy_over_nlsq": theirs / ours["median_s"],
                         "ratio_scipy_over_nlsq_fitter": theirs / ours["fitter_median_s"]})

    # First fit of a new process: cold compile, then warm disk cache.
    x, y = make_data(1000, seed=1000)
    xp, yp = os.path.join(work, "x1000.bin"), os.path.join(work, "y1000.bin")
    cache = tempfile.mkdtemp(prefix="nlsq-cache-")
    env = dict(os.environ, NLSQ_CACHE_DIR=cache)
    # Share the provisioned plugin with the empty executable cache folder.
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "nlsq", "pjrt")
    if os.path.isdir(default):
        os.symlink(default, os.path.join(cache, "pjrt"))
    for label in ["cold compile", "warm disk cache", "warm disk cache"]:
        t = time.perf_counter()
        r = run_nlsq(["first", xp, yp, "lm"], env=env)
        r["process_s"] = time.perf_counter() - t
        rows.append({"workload": f"first fit, new process ({label})", "method": "lm", "nlsq_s": r["first_fit_s"],
                     "plugin_load_s": r["plugin_load_s"], "process_s": r["process_s"], "source": r["source"],
                     "compile_or_load_s": r["compile_or_load_s"]})

    # First call in a new Python process for the JAX libraries (import, trace, compile, run).
    if not a.no_jax:
        for lib, code in [
            ("NLSQ CurveFit", "import jax; jax.config.update('jax_enable_x64', True); import jax.numpy as jnp\n"
             "from nlsq import CurveFit\n"
             "def model(x, a, k, c): return a * jnp.exp(-k * x) + c\n"
             "t = time.perf_counter(); CurveFit().curve_fit(model, x, y, p0=[1.0, 1.0, 1.0]); first = time.perf_counter() - t\n"),
            ("optimistix LM", "import jax; jax.config.update('jax_enable_x64', True); import jax.numpy as jnp; import optimistix as optx\n"
             "def res(p, args): return p[0] * jnp.exp(-p[1] * args[0]) + p[2] - args[1]\n"
             "t = time.perf_counter(); optx.least_squares(res, optx.LevenbergMarquardt(rtol=1e-8, atol=1e-8), jnp.asarray([1.0, 1.0, 1.0]), args=(jnp.asarray(x), jnp.asarray(y)), max_steps=300, throw=False).value.block_until_ready(); first = time.perf_counter() - t\n"),
        ]:
            script = ("import time, numpy as np\nt0 = time.perf_counter()\n"
                      f"x = np.fromfile({xp!r}); y = np.fromfile({yp!r})\n" + code +
                      "print(first, time.perf_counter() - t0)\n")
            out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu", NLSQ_DISABLE_PERSISTENT_CACHE="1"))
            if out.returncode == 0:
                first, total = map(float, out.stdout.split()[-2:])
                rows.append({"workload": "first fit, new process", "method": lib, "other_s": first, "process_s": total})
            else:
                print(f"# {lib} first call failed: {out.stderr[-300:]}", file=sys.stderr)

    # 50 fits at 50 lengths in a new process.
    lengths = np.unique(np.geomspace(100, 10_000, 50).astype(int))
    ldir = tempfile.mkdtemp(prefix="nlsq-lengths-")
    data = []
    for i, m in enumerate(lengths):
        x, y = make_data(int(m), seed=int(m))
        write(os.path.join(ldir, f"len_{i}_x.bin"), x)
        write(os.path.join(ldir, f"len_{i}_y.bin"), y)
        data.append((x, y))
    for method in ["lm", "trf"]:
        cache2 = tempfile.mkdtemp(prefix="nlsq-cache-")
        env2 = dict(env, NLSQ_CACHE_DIR=cache2)
        default = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "nlsq", "pjrt")
        if os.path.isdir(default):
            os.symlink(default, os.path.join(cache2, "pjrt"))
        t = time.perf_counter()
        r = run_nlsq(["lengths", ldir, len(lengths), method], env=env2)
        ours_process = time.perf_counter() - t
        t = time.perf_counter()
        for x, y in data:
            scipy_fit(x, y, method)
        theirs = time.perf_counter() - t
        rows.append({"workload": f"{len(lengths)} fits at {len(lengths)} lengths 100..10000", "method": method,
                     "nlsq_s": r["total_s"], "nlsq_process_s": ours_process, "compiled": r["compiled"],
                     "scipy_s": theirs, "ratio_scipy_over_nlsq": theirs / r["total_s"]})

    if a.large:
        m = 20_000_000
        x, y = make_data(m, seed=m)
        xp, yp = os.path.join(work, "x20m.bin"), os.path.join(work, "y20m.bin")
        write(xp, x)
        write(yp, y)
        for method in ["lm", "trf"]:
            t = time.perf_counter()
            r = run_nlsq(["first", xp, yp, method])
            ours_process = time.perf_counter() - t
            t = time.perf_counter()
            scipy_fit(x, y, method)
            theirs = time.perf_counter() - t
            rows.append({"workload": "m=20,000,000 (one fit)", "method": method, "nlsq_s": r["first_fit_s"],
                         "nlsq_execute_s": r["execute_s"], "nlsq_process_s": ours_process, "scipy_s": theirs,
                         "ratio_scipy_over_nlsq": theirs / r["first_fit_s"]})
        del x, y

    # The JAX libraries last: once JAX is imported, its thread pool competes for the two cores
    # with the nlsq subprocesses, which would make the nlsq figures look worse than they are.
    if not a.no_jax:
        nlsq_fit = nlsq_jax_fitter()
        optx_fit = optimistix_fitter()
        for m in sizes:
            x, y = make_data(m, seed=m)
            reps = 20 if m <= 100_000 else 5
            if a.quick:
                reps = max(3, reps // 4)
            if nlsq_fit is not None:
                rows.append({"workload": f"warm m={m}", "method": "NLSQ CurveFit (trf)", "other_s": median_time(lambda: nlsq_fit(x, y), max(3, reps // 2))})
            if optx_fit is not None:
                rows.append({"workload": f"warm m={m}", "method": "optimistix LM (jit)", "other_s": median_time(lambda: optx_fit(x, y), reps)})

    print(f"scipy {results['scipy']}, numpy {results['numpy']}")
    for row in rows:
        print(json.dumps(row))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
