"""Compiles the tiny 224 px configs (197 tokens) ahead of time for an 8 x H100
host and a 4-chip TPU v5p, for pretraining, fine-tuning and the linear probe:
one JSON line per case. Run by tests/test_aot.py in a process of its own,
since the compilers are plugins only symmim_jax.aot puts on the path."""

from symmim_jax import aot  # noqa: I001 (first: it sets up the compilers' path)

import json
import sys

import tiny_config

from symmim_jax.train import targets


def main(names):
    for name in names:
        target = targets.get(name)
        devices = targets.devices(target)
        for kind in ("pretrain", "finetune", "probe"):
            config = tiny_config.get_config(f"{kind},224")
            if kind == "probe":
                config.probe.augment = True  # the encoder runs in the step
            config = aot.for_target(config, target)
            report = {"case": f"{name}/{kind}", **aot.describe(config, target, devices, 0.9)}
            report.update(aot.compile_step(config, target, devices, 0.9))
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
