"""experiments/summarize_comparison.py: runs of several seeds, and of earlier
sessions kept in the record file, become one table of mean ± half range."""

import importlib.util
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _summarize():
    spec = importlib.util.spec_from_file_location(
        "summarize_comparison", ROOT / "experiments" / "summarize_comparison.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(root: pathlib.Path, seed: int, name: str, *, top1=None, losses=None, commit="abc1234"):
    workdir = root / f"seed{seed}" / name
    workdir.mkdir(parents=True)
    (workdir / "runs.jsonl").write_text(json.dumps({"code": {"git_commit": commit}}) + "\n")
    if top1 is not None:
        (workdir / "results.json").write_text(json.dumps({"top1": top1}))
    if losses is not None:
        rows = [{"step": 10, "train/loss": 9.0}, {"step": 937} | losses]
        (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_seeds_and_recorded_runs_make_one_mean_and_half_range(tmp_path, monkeypatch, capsys):
    compare = tmp_path / "compare"
    _run(compare, 0, "symmim", losses={"train/loss": 2.0, "train/loss_con": 1.0})
    _run(compare, 1, "symmim", losses={"train/loss": 3.0, "train/loss_con": 2.0})
    _run(compare, 0, "probe-symmim", top1=0.770)
    _run(compare, 1, "probe-symmim", top1=0.780)
    _run(compare, 0, "finetune-scratch", top1=0.70)
    (compare / "seed1" / "probe-mae").mkdir()  # started, not finished: no record
    _run(compare, 1, "mae", losses={"train/loss": 0.6})  # not probed yet: still pretraining
    records = tmp_path / "runs.jsonl"
    earlier = {"seed": 2, "kind": "probe", "name": "symmim", "top1": 78.6, "commit": "old"}
    records.write_text(json.dumps(earlier) + "\n")

    monkeypatch.setattr(
        sys,
        "argv",
        ["summarize", str(compare), f"--records={records}", f"--plot={tmp_path / 'c.png'}"],
    )
    _summarize().main()

    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| SymMIM |"))
    # probe: 77.0, 78.0 and the recorded 78.6 -> mean 77.87, farthest 0.87 away
    cells = row.removesuffix(" |").split(" | ")[1:]
    assert cells == ["77.87 ± 0.87", "-", "0,1,2", "937", "total 2.500, con 1.500"]
    assert "| none (random init) | - | 70.00 ± 0.00 | 0 |" in out
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert [(r["seed"], r["kind"], r["name"]) for r in lines] == [
        (0, "finetune", "scratch"),
        (0, "pretrain", "symmim"),
        (0, "probe", "symmim"),
        (1, "pretrain", "symmim"),
        (1, "probe", "symmim"),
        (2, "probe", "symmim"),
    ]
    assert (tmp_path / "c.png").stat().st_size > 0

    # Summarizing again finds the same runs: the record file does not grow.
    _summarize().main()
    assert len(records.read_text().splitlines()) == len(lines)
