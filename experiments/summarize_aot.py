r"""Markdown tables of experiments/aot_results.jsonl (experiments/aot_matrix.py).

python experiments/summarize_aot.py
"""

import json
import pathlib

RESULTS = pathlib.Path(__file__).resolve().parent / "aot_results.jsonl"
GIB = 2**30


def _collectives(counts: dict) -> str:
    short = {"all-gather": "AG", "all-reduce": "AR", "reduce-scatter": "RS", "all-to-all": "A2A"}
    return " ".join(f"{short.get(k, k)} {v}" for k, v in sorted(counts.items())) or "none"


def _row(record: dict) -> str:
    model, target, variant = record["entry"].split(" | ")
    mesh = f"{record['mesh']['data']}x{record['mesh']['fsdp']}"
    if "error" in record and "max_batch_per_device" not in record:
        return f"| {model} | {target} | {variant} | {mesh} | error: {record['error'][:80]} |"
    at = record.get("at_max") or record
    best = record.get("max_batch_per_device")
    if not at.get("memory_per_device_bytes"):
        return f"| {model} | {target} | {variant} | {mesh} | 0 (nothing fits) | | | | | |"
    images_per_sec = best * record["devices"] / (at["step_ms_lower_bound"] / 1e3)
    return (
        f"| {model} | {target} | {variant} | {mesh} | {best} "
        f"| {at['memory_per_device_bytes'] / GIB:.1f} / {record['device_memory_bytes'] / GIB:.0f} "
        f"| {_collectives(at['collectives'])} | {at['attention']} "
        f"| {at['step_ms_lower_bound']:.0f} ({at['bound_by']}) "
        f"| {images_per_sec:,.0f} | {at['compile_seconds']:.0f} |"
    )


def main():
    records = [json.loads(line) for line in RESULTS.read_text().splitlines() if line]
    print(
        "| model | target | variant | mesh data x fsdp | max batch / device | GiB at max "
        "(used / device) | collectives per step | attention | roofline ms / step | "
        "img/s ceiling | compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for record in records:
        print(_row(record))


if __name__ == "__main__":
    main()
