"""The table of experiments/RESULTS.md "Short-run momentum" from
experiments/momentum_runs.sh's workdirs.

python experiments/summarize_momentum.py [ROOT] [--windows=4]

One row per run and quarter of the run: the share of its random initialization
the target still holds at the quarter's end (the product of the momenta so far,
from the run's schedule) and the three loss terms averaged over the steps logged
in the quarter (each logged value is one batch's). A run not there yet is left out.
"""

import argparse
import json
import pathlib

import numpy as np

from symmim_jax.ops import ema

RUNS = ("m0.996", "m0.99", "rule")
TERMS = ("loss_rec1", "loss_rec2", "loss_con")


def metric_rows(root: pathlib.Path, name: str) -> list[dict]:
    path = root / name / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def initialization_share(base: float, total_steps: int, step: int) -> float:
    """prod over s < step of the cosine schedule's m(s): what the EMA leaves of
    the target's starting point after `step` updates."""
    schedule = ema.momentum_schedule(base, total_steps, "cosine")
    return float(np.prod([schedule(s) for s in range(step)]))


def table(root: pathlib.Path, windows: int) -> str:
    lines = [
        "| run | m0 | steps | init. share at the end | L_rec1 | L_rec2 | L_con |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in RUNS:
        rows = metric_rows(root, name)
        if not rows:
            continue
        total = rows[-1]["step"]
        base = ema.run_length_momentum(total) if name == "rule" else float(name[1:])
        edges = np.linspace(0, total, windows + 1).round().astype(int)
        for low, high in zip(edges[:-1], edges[1:]):
            logged = [r for r in rows if low < r["step"] <= high]
            means = " | ".join(f"{np.mean([r[t] for r in logged]):.3f}" for t in TERMS)
            share = initialization_share(base, total, high)
            lines.append(f"| {name} | {base:.4g} | {low + 1}-{high} | {share:.3f} | {means} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="workdirs/momentum")
    parser.add_argument("--windows", type=int, default=4)
    args = parser.parse_args()
    print(table(pathlib.Path(args.root), args.windows))


if __name__ == "__main__":
    main()
