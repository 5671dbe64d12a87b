"""Tables and a plot from experiments/compare_methods.sh's workdirs, over seeds.

python experiments/summarize_comparison.py [ROOT] [--records=experiments/comparison_runs.jsonl]
    [--plot=docs/figures/comparison.png]

Every finished run under ROOT/seedS/ (linear-probe and fine-tune top-1 from its
results.json, a pretraining's last logged loss terms, the git commit that ran it)
is merged into RECORDS, one JSON line per (seed, kind, name), and the three
markdown tables of experiments/RESULTS.md (methods, loss ablation, masking
ratio) are built from RECORDS: the mean over seeds, "± h" the half range (the
largest distance of a seed from the mean), and the seeds counted. The record
file is committed, so runs made on different days or machines add up. A run
not there yet shows as "-".
"""

import argparse
import json
import pathlib
import statistics

from matplotlib.figure import Figure

METHODS = [
    ("scratch", "none (random init)"),
    ("symmim", "SymMIM"),
    ("simmim", "SimMIM"),
    ("mae", "MAE"),
    ("ccmim", "ccMIM"),
    ("mixmim", "MixMIM"),
]
ABLATION = [
    ("symmim-rec1", "rec1"),
    ("symmim-rec1-rec2", "rec1 + rec2"),
    ("symmim-rec1-con", "rec1 + con"),
    ("symmim", "rec1 + rec2 + con"),
]
RATIOS = [
    ("simmim-0.4", "SimMIM random, ratio 0.4"),
    ("simmim", "SimMIM random, ratio 0.6"),
    ("simmim-0.8", "SimMIM random, ratio 0.8"),
    ("symmim", "SymMIM checkerboard"),
]
EVALUATIONS = ("probe", "finetune")


def _commit(workdir: pathlib.Path) -> str | None:
    path = workdir / "runs.jsonl"
    if not path.exists():
        return None
    first = json.loads(path.read_text().splitlines()[0])
    return first.get("code", {}).get("git_commit")


def _evaluation(workdir: pathlib.Path) -> dict | None:
    path = workdir / "results.json"
    return {"top1": 100 * json.loads(path.read_text())["top1"]} if path.exists() else None


def _pretraining(workdir: pathlib.Path) -> dict | None:
    """The last logged step and loss terms."""
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    last = rows[-1]  # the losses are train/loss, train/loss_rec1, ...
    losses = {k.removeprefix("train/"): v for k, v in last.items() if k.startswith("train/loss")}
    return {"step": last["step"], "losses": losses}


def collect(root: pathlib.Path) -> list[dict]:
    """One record per finished run in ROOT/seedS/{NAME, probe-NAME, finetune-NAME}."""
    records = []
    for seed_dir in sorted(root.glob("seed*")):
        seed = int(seed_dir.name.removeprefix("seed"))
        for workdir in sorted(p for p in seed_dir.iterdir() if p.is_dir()):
            kind, _, name = workdir.name.partition("-")
            if kind not in EVALUATIONS or not name:
                kind, name = "pretrain", workdir.name
            if kind == "pretrain" and not (seed_dir / f"probe-{name}" / "results.json").exists():
                continue  # compare_methods.sh probes a pretraining only once it has finished
            found = (_pretraining if kind == "pretrain" else _evaluation)(workdir)
            if found:
                key = {"seed": seed, "kind": kind, "name": name}
                records.append(key | found | {"commit": _commit(workdir)})
    return records


def merged(path: pathlib.Path, new: list[dict]) -> list[dict]:
    """The records of PATH updated with NEW (a run found again replaces its line)."""
    old = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    by_key = {(r["seed"], r["kind"], r["name"]): r for r in old + new}
    return [by_key[key] for key in sorted(by_key)]


def values(records: list[dict], kind: str, name: str) -> list[float]:
    return [r["top1"] for r in records if r["kind"] == kind and r["name"] == name]


def cell(found: list[float]) -> str:
    if not found:
        return "-"
    mean = statistics.fmean(found)
    return f"{mean:.2f} ± {max(abs(v - mean) for v in found):.2f}"


def final_losses(records: list[dict], name: str) -> tuple[str, str]:
    """(steps, 'total 1.234, con 0.567, ...') averaged over seeds."""
    runs = [r for r in records if r["kind"] == "pretrain" and r["name"] == name]
    if not runs:
        return "-", "-"
    terms = sorted(set().union(*(r["losses"] for r in runs)))
    text = ", ".join(
        f"{'total' if k == 'loss' else k.removeprefix('loss_')} "
        f"{statistics.fmean(r['losses'][k] for r in runs if k in r['losses']):.3f}"
        for k in terms
    )
    return str(max(r["step"] for r in runs)), text


def table(records: list[dict], rows, header: str) -> str:
    lines = [
        f"| {header} | linear probe top-1 | fine-tune top-1 | seeds | pretraining steps "
        "| final losses (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in rows:
        probe, finetune = (values(records, kind, name) for kind in EVALUATIONS)
        steps, losses = final_losses(records, name)
        seeds = sorted({r["seed"] for r in records if r["name"] == name})
        lines.append(
            f"| {label} | {cell(probe)} | {cell(finetune)} | "
            f"{','.join(map(str, seeds)) or '-'} | {steps} | {losses} |"
        )
    return "\n".join(lines)


def plot(records: list[dict], out: pathlib.Path):
    """One panel per experiment: probe and fine-tune top-1 side by side, the
    bar at the mean over seeds and a dot per seed."""
    panels = [("methods", METHODS), ("SymMIM loss ablation", ABLATION), ("masking ratio", RATIOS)]
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    for ax, (title, rows) in zip(fig.subplots(1, 3), panels):
        labels = [
            label.replace("SimMIM random, ", "").replace(" (random init)", "") for _, label in rows
        ]
        shown = []
        for offset, kind, colour in ((-0.2, "probe", "tab:blue"), (0.2, "finetune", "tab:orange")):
            found = [values(records, kind, name) for name, _ in rows]
            means = [statistics.fmean(v) if v else 0.0 for v in found]
            x = [i + offset for i in range(len(rows))]
            label = "linear probe" if kind == "probe" else "fine-tune"
            bars = ax.bar(x, means, 0.4, color=colour, label=label)
            ax.bar_label(bars, [f"{m:.1f}" if m else "" for m in means], fontsize=7)
            for xi, seeds in zip(x, found):
                ax.plot([xi] * len(seeds), seeds, "k.", markersize=4)
            shown += [v for seeds in found for v in seeds]
        ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(title)
        ax.set_ylabel("top-1 on the test split (%)")
        if shown:
            ax.set_ylim(max(0.0, min(shown) - 10), min(100.0, max(shown) + 5))
    fig.axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(
        "Fashion-MNIST, demo ViT-XS/4 at 32 px: one epoch of pretraining, probe 100 epochs "
        "on 10k frozen features, fine-tune one epoch (bars: mean over seeds; dots: seeds)"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="workdirs/compare")
    parser.add_argument("--records", default="experiments/comparison_runs.jsonl")
    parser.add_argument("--plot", default="docs/figures/comparison.png")
    args = parser.parse_args()
    path = pathlib.Path(args.records)
    records = merged(path, collect(pathlib.Path(args.root)))
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    print("### Methods\n\n" + table(records, METHODS, "pretraining") + "\n")
    print("### SymMIM loss ablation\n\n" + table(records, ABLATION, "losses") + "\n")
    print("### Masking ratio\n\n" + table(records, RATIOS, "mask") + "\n")
    commits = sorted({str(r["commit"])[:7] for r in records})
    print(f"runs: {len(records)} from commits {', '.join(commits)}")
    plot(records, pathlib.Path(args.plot))
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
