r"""Model FLOPs per image of each method's pretraining step (XLA's cost analysis
of the lowered step, without remat and accumulation), from the slope between
two batch sizes so the optimizer's per-step FLOPs drop out.

python experiments/flops_per_image.py [--variant=B/16] [--image_size=224] [METHOD ...]
"""

import argparse
import json

import jax

from symmim_jax import methods
from symmim_jax.configs import base_pretrain
from symmim_jax.train import costs, optim


def flops_per_image(method: str, variant: str, image_size: int) -> float:
    config = base_pretrain.get_config()
    config.method, config.model.variant = method, variant
    config.input.image_size = image_size

    def build(config):
        tx, schedule = optim.make_adamw(config.optim, config.batch_size, 1000, 100)
        return methods.build(config, 1000), tx, schedule

    per_step = {}
    for batch in (2, 4):
        config.batch_size = batch
        per_step[batch] = costs.model_flops(config, build)
    return (per_step[4] - per_step[2]) / 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("methods", nargs="*", default=sorted(methods.METHODS))
    parser.add_argument("--variant", default="B/16")
    parser.add_argument("--image_size", type=int, default=224)
    args = parser.parse_args()
    for method in args.methods:
        gflops = flops_per_image(method, args.variant, args.image_size) / 1e9
        print(
            json.dumps(
                {
                    "method": method,
                    "variant": args.variant,
                    "image_size": args.image_size,
                    "gflops_per_image": round(gflops, 2),
                    "jax": jax.__version__,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
