"""Two trees side by side, the house way: alternating pairs in one sitting.

    python -m bench.ab BASE [--mode open|closed|hotpath] [--rate 20000] [--seconds 6]
                            [--pairs 6] [--conns 64] [--figure KEY]

BASE is a git revision (``main``, ``HEAD~1``, a hash). Its files are exported (``git
archive``, nothing is checked out) into a temporary directory and run with this venv's
Python beside the working tree's (A = BASE, B = this tree), A then B, B then A, …
(neither always goes first), against one ``make bench`` nginx pinned to the first usable
core, the client pinned to the second. Each run is ``bench.surge_run open|closed`` or
``bench.hotpath`` (no syscalls); the figure compared is CPU µs a request
(``cpu_us_per_req``; hotpath: ``engine_us_per_response``) unless ``--figure`` names
another key of its JSON. It prints every pair, then each side's range and median and
the pair differences' range, mean and standard error, how many pairs B came out lower,
and whether the mean difference is beyond twice its standard error; last, one JSON line.
On a shared VM a minute moves a figure by 10-20 %: only a difference beyond the noise of
the pairs is one. It never fails on a number.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def pairs_summary(a: list[float], b: list[float]) -> dict:
    """Pairs (a[k], b[k]) taken side by side: each side's range and median, and B − A
    pair by pair; ``beyond_noise`` when the mean difference is over twice its standard
    error (about 95 %: with fewer than 3 pairs, never)."""
    d = [y - x for x, y in zip(a, b)]
    n = len(d)
    mean = statistics.fmean(d) if d else None
    se = statistics.stdev(d) / math.sqrt(n) if n > 2 else None
    return {
        "pairs": n,
        "a_range": [min(a), max(a)] if a else None, "a_median": statistics.median(a) if a else None,
        "b_range": [min(b), max(b)] if b else None, "b_median": statistics.median(b) if b else None,
        "diff_range": [min(d), max(d)] if d else None, "diff_mean": mean, "diff_se": se,
        "b_lower": sum(1 for x in d if x < 0),
        "beyond_noise": bool(se is not None and mean is not None and abs(mean) > 2 * se),
    }


def export(rev: str, into: Path) -> None:
    """The files of revision ``rev`` of this repository, written under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def run_in(tree: Path, cmd: list[str], timeout: float) -> dict:
    """One measurement with ``tree``'s code: its directory first on the import path."""
    proc = subprocess.run([PY, *cmd], cwd=tree, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-400:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab")
    p.add_argument("base", help="git revision to measure beside the working tree")
    p.add_argument("--mode", choices=["open", "closed", "hotpath"], default="open")
    p.add_argument("--rate", type=float, default=20000.0)
    p.add_argument("--seconds", type=int, default=6)
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--figure", default=None)
    args = p.parse_args(argv)
    figure = args.figure or ("engine_us_per_response" if args.mode == "hotpath" else "cpu_us_per_req")
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = (cores[0], cores[1]) if len(cores) > 1 else (cores[0], cores[0])

    from bench.nginx import Nginx

    with tempfile.TemporaryDirectory(prefix="surge-ab-") as tmp, Nginx(core=server_core) as nginx:
        base = Path(tmp)
        export(args.base, base)
        trees = {"A": base, "B": ROOT}
        if args.mode == "hotpath":
            cmd = ["-m", "bench.hotpath", "--n", "100000", "--core", str(client_core)]
        else:
            cmd = ["-m", "bench.surge_run", args.mode, nginx.url, "--core", str(client_core),
                   "--seconds", str(args.seconds), "--conns", str(args.conns)]
            if args.mode == "open":
                cmd += ["--rate", str(args.rate)]
        got: dict[str, list[float]] = {"A": [], "B": []}
        rows = []
        for k in range(args.pairs):
            pair = {}
            for side in ("A", "B") if k % 2 == 0 else ("B", "A"):
                pair[side] = run_in(trees[side], cmd, args.seconds + 120)
            a, b = pair["A"].get(figure), pair["B"].get(figure)
            rows.append({"A": a, "B": b, **{f"{s}_error": pair[s]["error"] for s in pair if "error" in pair[s]}})
            print(f"pair {k + 1}: A ({args.base}) {a if a is None else round(a, 3)}  "
                  f"B (this tree) {b if b is None else round(b, 3)}", flush=True)
            if a is not None and b is not None:
                got["A"].append(a)
                got["B"].append(b)
    s = pairs_summary(got["A"], got["B"])
    if s["pairs"]:
        print(f"{figure}: A {s['a_range'][0]:.3f}-{s['a_range'][1]:.3f} (median {s['a_median']:.3f}), "
              f"B {s['b_range'][0]:.3f}-{s['b_range'][1]:.3f} (median {s['b_median']:.3f}); B − A pair by pair "
              f"{s['diff_range'][0]:+.3f} to {s['diff_range'][1]:+.3f}, mean {s['diff_mean']:+.3f}"
              + (f" ± {s['diff_se']:.3f} (standard error)" if s["diff_se"] is not None else "")
              + f"; B lower in {s['b_lower']} of {s['pairs']}: "
              + ("beyond the noise" if s["beyond_noise"] else "within the noise"))
    print(json.dumps({"base": args.base, "mode": args.mode, "figure": figure, "rows": rows, **s}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
