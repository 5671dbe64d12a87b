r"""Runs `python -m symmim_jax.aot --find_max_batch` over the models, targets,
remat and FSDP settings of experiments/RESULTS.md's AOT tables, one process per
entry, appending each JSON line to experiments/aot_results.jsonl. Entries
already there are skipped, so a stopped run picks up where it stopped.

python experiments/aot_matrix.py gpu    # every model on h100x8; SymMIM on the other GPUs
python experiments/aot_matrix.py tpu    # SymMIM B/16 and L/16 on the TPU slices
python experiments/aot_matrix.py gpu tpu  # one after the other

Searches stop once the largest batch is known to within 10%: a ViT-L compile for a
TPU pod takes up to tens of minutes on 2 cores.
python experiments/aot_matrix.py presets  # each ImageNet preset as configured, no search
python experiments/aot_matrix.py gpus     # SymMIM's presets on h200x8, a100x8, h100x8x2
python experiments/aot_matrix.py table    # RESULTS' table of the searches done so far
"""

import json
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "aot_results.jsonl"
MODELS = {  # name -> config
    "symmim B/16": "symmim_jax/configs/symmim.py:B/16",
    "symmim L/16": "symmim_jax/configs/symmim.py:L/16",
    "simmim B/16": "symmim_jax/configs/simmim.py:B/16",
    "mae B/16": "symmim_jax/configs/mae.py:B/16",
    "ccmim B/16": "symmim_jax/configs/ccmim.py:B/16",
    "mixmim B/16": "symmim_jax/configs/mixmim.py:B/16",
    "finetune B/16": "symmim_jax/configs/finetune.py:B/16",
    "finetune L/16": "symmim_jax/configs/finetune.py:L/16",
    "probe B/16": "symmim_jax/configs/linear_probe.py:B/16",
}
# Each preset's batch per chip on a v5e-256, compiled on one v5e host (v5e-8):
# a 256-chip compile of the same per-chip program takes far longer on 2 cores.
V5E_PER_CHIP = {
    "simmim B/16": "batch_size=64",
    "ccmim B/16": "batch_size=32",
    "mixmim B/16": "batch_size=32",
    "finetune B/16": "batch_size=64",
    "finetune L/16": "batch_size=64,model.remat=full",
    "probe B/16": "batch_size=512",
}
VARIANTS = {  # name -> overrides
    "dp": {},
    "dp+remat": {"model.remat": "full"},
    "fsdp8": {"mesh.fsdp": 8},
    "fsdp8+remat": {"mesh.fsdp": 8, "model.remat": "full"},
}


def entries(group: str):
    """(model, target, variant, search) in the order they are worth compiling:
    the goals of the presets first, then the other targets, then the variants."""
    if group == "gpu":
        yield "symmim L/16", "h100x8", "fsdp8+remat", True
        for model in ("simmim B/16", "mae B/16", "ccmim B/16", "mixmim B/16"):
            yield model, "h100x8", "fsdp8+remat", True
        yield "symmim B/16", "h100x8", "fsdp8+remat", True
        yield "symmim L/16", "h100x8x2", "fsdp8+remat", False
        yield "symmim L/16", "h200x8", "fsdp8+remat", True
        for target in ("h200x8", "a100x8"):
            yield "symmim B/16", target, "dp", True
        yield "symmim L/16", "a100x8", "fsdp8+remat", False
        for model in ("simmim B/16", "mae B/16", "ccmim B/16", "mixmim B/16"):
            yield model, "h100x8", "dp", True
        yield "symmim B/16", "h100x8", "dp+remat", True
        yield "symmim L/16", "h100x8", "dp", True
    elif group == "tpu":
        # A slice's largest batch per chip with FSDP 8 is searched on the smallest
        # slice with 8 chips: the same per-chip program but for the data axis's
        # all-reduce, at a fraction of a 64- or 256-chip compile's time.
        for model in ("symmim B/16", "symmim L/16"):
            for target in ("v5p-16", "v5e-8"):  # for v5p-128, v5e-256
                yield model, target, "fsdp8+remat", True
        yield "symmim B/16", "v4-32", "dp", False
        yield "symmim L/16", "v4-32", "fsdp8+remat", False
        for model, variant in V5E_PER_CHIP.items():
            yield model, "v5e-8", variant, False
    elif group == "gpus":
        for target in ("h200x8", "a100x8", "h100x8x2"):
            for model in ("symmim B/16", "symmim L/16"):
                yield model, target, "preset", False
    elif group == "presets":
        for model in MODELS:
            for target in ("h100x8", "v5p-128"):
                yield model, target, "preset", False
    else:
        sys.exit(f"unknown group {group!r}: use gpu, gpus, tpu or presets")


def _overrides(variant: str) -> dict:
    """'batch_size=64,model.remat=full' -> {'batch_size': '64', 'model.remat': 'full'};
    'preset' -> {}."""
    if variant == "preset":
        return {}
    return dict(item.split("=", 1) for item in variant.split(","))


def records() -> list[dict]:
    """Every line of RESULTS, except FSDP entries compiled before the blocks were
    pinned to the batch axes (bbe0a8e): those programs no longer describe the code.
    Lines written since carry the commit they were compiled at."""
    if not RESULTS.exists():
        return []
    lines = [json.loads(line) for line in RESULTS.read_text().splitlines() if line]
    return [r for r in lines if "commit" in r or "fsdp" not in r["entry"]]


def done() -> set:
    return {record["entry"] for record in records()}


GIB = 2**30


def search_table() -> str:
    """The markdown table of every --find_max_batch entry in RESULTS."""
    lines = [
        "| model | target | variant | mesh | remat | largest batch per device | memory there "
        "| first not fitting | attention | collectives "
        "| roofline step, images/s per device | compiles |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    latest = {record["entry"]: record for record in records()}
    for record in latest.values():
        if "max_batch_per_device" not in record:
            continue
        best, largest = record["at_max"], record["max_batch_per_device"]
        mesh = " x ".join(f"{axis} {size}" for axis, size in record["mesh"].items() if size > 1)
        collectives = ", ".join(f"{n} {kind}" for kind, n in sorted(best["collectives"].items()))
        step_ms = best["step_ms_lower_bound"]
        lines.append(
            f"| {record['entry']} | {mesh} | {record['remat']} | **{largest}** | "
            f"{best['memory_per_device_bytes'] / GIB:.1f} of "
            f"{record['device_memory_bytes'] / GIB:.0f} GiB | "
            f"{record['first_batch_per_device_not_fitting'] or '-'} | {best['attention']} | "
            f"{collectives} | {step_ms:.1f} ms ({best['bound_by']}), "
            f"{1000 * largest / step_ms:.0f} | "
            f"{len(record['search'])} in {record['wall_seconds'] / 60:.0f} min |"
        )
    return "\n".join(lines)


def _commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def main(group: str):
    if group == "table":
        print(search_table())
        return
    finished = done()
    for model, target, variant, search in entries(group):
        entry = f"{model} | {target} | {variant}"
        if entry in finished:
            continue
        overrides = VARIANTS[variant] if variant in VARIANTS else _overrides(variant)
        command = [
            sys.executable,
            "-m",
            "symmim_jax.aot",
            f"--config={MODELS[model]}",
            f"--target={target}",
            *(f"--config.{k}={v}" for k, v in overrides.items()),
            *(["--find_max_batch", "--batch_resolution=0.1"] if search else []),
        ]
        started = time.time()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        record = json.loads(lines[-1]) if lines else {"error": result.stderr.strip()[-500:]}
        record.update(entry=entry, wall_seconds=round(time.time() - started), commit=_commit())
        with RESULTS.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(entry, "->", record.get("max_batch_per_device", record.get("fits")), flush=True)


if __name__ == "__main__":
    for group in sys.argv[1:] or ["gpu"]:
        main(group)
