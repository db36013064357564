"""Points per minute of `bayesnet run` on a grid of 8 small points: in process, 1 and 2 workers.

Each mode runs the same grid with --fresh into its own folder after one warm-up run that fills
the persistent XLA cache, so every mode pays only for loading compiled code, not compiling it.
Usage: .venv/bin/python bench/sweeps.py [--modes here,1,2] [--out runs/bench_sweeps]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys
import time

GRID = """
[data]
n_train = 20
n_test = 10
dim = 8
seed = [0, 1]
[sampler]
method = "collapsed"
chains = 2
warmup = 200
draws = 200
[chi]
values = [1, 2, 4, "N"]
[theory]
methods = ["nngp", "rescaling_tree"]
dense = 0
[[network]]
name = "erf"
width = 8
activation = "erf"
kappa = 0.2
"""


def run(out: pathlib.Path, cfg: pathlib.Path, mode: str) -> tuple[float, float]:
    """Seconds the executor reports for all 8 points in one mode, and of those the seconds
    spent starting the Dask workers."""
    cmd = [
        sys.executable,
        "-m",
        "analysis.cli",
        "run",
        "--config",
        str(cfg),
        "--out",
        str(out / mode),
        "--no-progress",
        "--fresh",
    ]
    if mode != "here":
        cmd += ["--workers", mode]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"(\d+) of (\d+) points done \((\d+) computed now in ([0-9.]+)s\)", proc.stderr)
    if proc.returncode != 0 or not m or m[3] != "8":
        raise SystemExit(f"mode {mode} failed:\n{proc.stderr[-2000:]}")
    start = re.search(r"Dask: \d+ workers ready in ([0-9.]+)s", proc.stderr)
    return float(m[4]), float(start[1]) if start else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--modes", default="here,1,2")
    p.add_argument("--out", default="runs/bench_sweeps")
    args = p.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "grid.toml"
    cfg.write_text(GRID)
    run(out, cfg, "here")  # warm-up: fills the XLA cache
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        "| mode | s for 8 points (of which worker start) | points/min | points/min after "
        "start | whole command s |\n|---|---|---|---|---|"
    )
    for mode in args.modes.split(","):
        t0 = time.perf_counter()
        sec, start = run(out, cfg, mode)
        label = "in process (default)" if mode == "here" else f"--workers {mode}"
        print(
            f"| {label} | {sec:.1f} ({start:.1f}) | {8 / sec * 60:.1f} | "
            f"{8 / (sec - start) * 60:.1f} | {time.perf_counter() - t0:.1f} |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
