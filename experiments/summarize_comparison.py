"""Tables and a plot from experiments/compare_methods.sh's workdirs.

python experiments/summarize_comparison.py [ROOT] [--plot=docs/figures/comparison.png]

Prints the three markdown tables of experiments/RESULTS.md (methods, loss
ablation, masking ratio): linear-probe and fine-tune top-1 from each run's
results.json and the pretraining's last logged loss terms. A run not there yet
shows as "-".
"""

import argparse
import json
import pathlib

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


def top1(root: pathlib.Path, kind: str, name: str) -> float | None:
    """Top-1 in % of the run's last evaluation, None while it has not finished."""
    path = root / f"{kind}-{name}" / "results.json"
    return 100 * json.loads(path.read_text())["top1"] if path.exists() else None


def last_losses(root: pathlib.Path, name: str) -> dict:
    path = root / name / "metrics.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    last = rows[-1]  # the losses are train/loss, train/loss_rec1, ...
    return {"step": last["step"]} | {
        k.removeprefix("train/"): v for k, v in last.items() if k.startswith("train/loss")
    }


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(root: pathlib.Path, rows, header: str) -> str:
    lines = [
        f"| {header} | linear probe top-1 | fine-tune top-1 | pretraining steps | final losses |",
        "|---|---|---|---|---|",
    ]
    for name, label in rows:
        losses = last_losses(root, name)
        steps = losses.pop("step", "-")
        terms = ", ".join(
            f"{k.removeprefix('loss_') if k != 'loss' else 'total'} {v:.3f}"
            for k, v in sorted(losses.items())
        )
        lines.append(
            f"| {label} | {cell(top1(root, 'probe', name))} | "
            f"{cell(top1(root, 'finetune', name))} | {steps} | {terms or '-'} |"
        )
    return "\n".join(lines)


def plot(root: pathlib.Path, out: pathlib.Path):
    """One panel per experiment: probe and fine-tune top-1 side by side."""
    panels = [("methods", METHODS), ("SymMIM loss ablation", ABLATION), ("masking ratio", RATIOS)]
    fig = Figure(figsize=(15, 4.2), layout="constrained")
    for ax, (title, rows) in zip(fig.subplots(1, 3), panels):
        labels = [
            label.replace("SimMIM random, ", "").replace(" (random init)", "") for _, label in rows
        ]
        for offset, kind, colour in ((-0.2, "probe", "tab:blue"), (0.2, "finetune", "tab:orange")):
            values = [top1(root, kind, name) or 0.0 for name, _ in rows]
            bars = ax.bar(
                [i + offset for i in range(len(rows))],
                values,
                0.4,
                color=colour,
                label="linear probe" if kind == "probe" else "fine-tune",
            )
            ax.bar_label(bars, [f"{v:.1f}" if v else "" for v in values], fontsize=7)
        ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(title)
        ax.set_ylabel("top-1 on the test split (%)")
        values = [top1(root, k, n) for n, _ in rows for k in ("probe", "finetune")]
        values = [v for v in values if v]
        if values:
            ax.set_ylim(max(0.0, min(values) - 10), min(100.0, max(values) + 5))
    fig.axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(
        "Fashion-MNIST, demo ViT-XS/4 at 32 px: one epoch of pretraining, "
        "probe 100 epochs on 10k frozen features, fine-tune one epoch"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="workdirs/compare")
    parser.add_argument("--plot", default="docs/figures/comparison.png")
    args = parser.parse_args()
    root = pathlib.Path(args.root)
    print("### Methods\n\n" + table(root, METHODS, "pretraining") + "\n")
    print("### SymMIM loss ablation\n\n" + table(root, ABLATION, "losses") + "\n")
    print("### Masking ratio\n\n" + table(root, RATIOS, "mask") + "\n")
    plot(root, pathlib.Path(args.plot))
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
