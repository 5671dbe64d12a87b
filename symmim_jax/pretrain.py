r"""Pretraining: python -m symmim_jax.pretrain --config=CONFIG --workdir=DIR

python -m symmim_jax.pretrain --config=symmim_jax/configs/demo.py --workdir=workdirs/demo
python -m symmim_jax.pretrain --config=symmim_jax/configs/symmim.py:B/16 \
    --config.dataset.manual_dir=/data/imagenet --workdir=/ckpt/symmim_b16

`config.method` picks the method (methods/), trained by the run skeleton
(train/run.py); running again with the same workdir resumes. Multi-process runs
(TPU pod slices, GPU hosts) add `--distributed` or
`--coordinator_address/--num_processes/--process_id` (train/distributed.py).
"""

import os

# TensorFlow only decodes and crops the input here: no oneDNN kernels needed,
# and without them (and below level 2) it starts silently.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402

from symmim_jax import methods  # noqa: E402
from symmim_jax.data import pipeline, sources  # noqa: E402
from symmim_jax.evaluation import knn  # noqa: E402
from symmim_jax.figures import reconstruction  # noqa: E402
from symmim_jax.models import vit  # noqa: E402
from symmim_jax.train import checkpoint, cli, loop, optim, run  # noqa: E402


class Pretraining(run.Task):
    """A method's loss on unlabelled images, AdamW, and optionally the k-NN
    monitor and reconstruction pictures."""

    def check_config(self):
        config = self.config
        self.method_class = methods.get(config.get("method"))
        optim.check_adamw(config.optim)
        self.method_class.check_config(config)
        knn.check_config(config.knn)

    def read_inputs(self):
        config = self.config
        num_examples = sources.num_examples(config.dataset)
        self.pretrained, self.init_info = checkpoint.load_init_encoder(
            config, vit.build_encoder(config.model)
        )
        if config.knn.every:  # the monitor needs labels and its held-out split
            sources.num_classes(config.dataset)
            sources.num_examples(sources.with_split(config.dataset, config.knn.test_split))
        return run.DataFacts(num_examples)

    def build(self, length, facts):
        config = self.config
        self.method = self.method_class(config, length.total_steps)
        tx, lr_schedule = optim.make_adamw(
            config.optim, config.batch_size, length.total_steps, length.warmup_steps
        )
        return self.method, tx, lr_schedule

    def start(self, mesh, workdir):
        self.monitor = knn.monitor(self.config, self.method.encoder, mesh)

    def load_pretrained(self, state):
        """A warm start: the encoder of `config.init_from` in the online branch
        and, for methods with one, the target (the EMA starts equal to it)."""
        if self.pretrained is None:
            return state
        loop.say(f"Encoder from {checkpoint.describe_init(self.init_info)}")
        with_encoder = lambda params: params and {**params, "encoder": self.pretrained}
        return state.replace(
            params=with_encoder(state.params), target_params=with_encoder(state.target_params)
        )

    def batches(self, start_step):
        return pipeline.make_train_iterator(self.config, start_step=start_step)

    eval_namespace = "knn"  # the k-NN monitor's top1: knn/top1

    def evaluate(self, step, state):
        return self.monitor(step, state) if self.monitor else None

    def show(self, step, state, local_batch, writer):
        """A reconstruction grid in TensorBoard (single process: params on host)."""
        if jax.process_count() > 1:
            return
        config = self.config
        grid = reconstruction.reconstruction_grid(
            self.method,
            state.params,
            local_batch["image"][:4],
            jax.random.fold_in(jax.random.key(config.seed), step),
            config.input.mean,
            config.input.std,
        )
        writer.image(step, "train/reconstruction", grid)


def train(config, workdir: str, devices=None):
    """Pretrains `config` in `workdir` on `devices` (default: all of every process)."""
    run.run(Pretraining(config), workdir, devices)


if __name__ == "__main__":
    cli.launch(train)
