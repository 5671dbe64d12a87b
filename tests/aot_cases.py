"""Compiles the tiny 224 px configs (197 tokens) ahead of time for an 8 x H100
host and a 4-chip TPU v5p, for pretraining, fine-tuning and the linear probe:
one JSON line per case; then the command's errors for a batch or a mesh that
does not fit a target ({"case": "error/...", "error": message}); then each
target's device count ({"case": "topology/NAME", "devices": n}). Run by
tests/test_aot.py in a process of its own, since the compilers are plugins only
symmim_jax.aot puts on the path."""

from symmim_jax import aot  # noqa: I001 (first: it sets up the compilers' path)

import json
import sys

import tiny_config

from symmim_jax.train import run, targets

# name -> (target, overrides): each must stop before compiling.
BAD = {
    "batch": ("h100x8", {"batch_size": 12}),
    "mesh": ("v5p-8", {"mesh.fsdp": 3}),
}


def main(names):
    for name in names:
        for kind in ("pretrain", "finetune", "probe"):
            config = tiny_config.get_config(f"{kind},224")
            if kind == "probe":
                config.probe.augment = True  # the encoder runs in the step
            report = aot.report(config, name, 0.9, search=False, resolution=0.0)
            print(json.dumps({"case": f"{name}/{kind}", **report}), flush=True)
    for case, (target, overrides) in BAD.items():
        config = tiny_config.get_config("pretrain,224")
        config.update_from_flattened_dict(overrides)
        try:
            aot.report(config, target, 0.9, search=False, resolution=0.0)
            error = None
        except run.ConfigError as err:
            error = str(err)
        print(json.dumps({"case": f"error/{case}", "error": error}), flush=True)
    for name, target in targets.TARGETS.items():
        devices = targets.devices(target)
        print(json.dumps({"case": f"topology/{name}", "devices": len(devices)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
