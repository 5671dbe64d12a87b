r"""Fine-tuning entry point: a pretrained encoder + mean-pool + fc_norm + head.

python -m symmim_jax.finetune --config=configs/demo_finetune.py \
    --config.init_from=workdirs/demo --workdir=workdirs/demo_finetune

`config.init_from` is a pretraining workdir (its newest checkpoint, or
`config.init_step`); unset, the encoder starts from random initialization.
The recipe is BEiT's (METHOD §5): AdamW with layer-wise lr decay, drop path,
warm-up + cosine, label smoothing, mixup/cutmix, RandAugment, random erasing,
optional EMA of the weights. Top-1/top-5 on `config.finetune.eval_split` every
`config.eval_every` steps (0: every epoch) and at the end; the best parameters
go to WORKDIR/best/, the last to WORKDIR/checkpoints/ (resumable), the scores to
WORKDIR/results.json.
"""
import functools
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags
import jax
import jax.numpy as jnp
import optax

from symmim_jax import (augment, data, ema, evaluation, loop, mixup, optim, restore,
                        sharding, validation)
from symmim_jax.models import classifier
from symmim_jax.train_step import init_state, train_step

loop.define_flags()


class FineTune:
    """The fine-tuning 'method' for the shared train step: init, loss, EMA."""

    def __init__(self, config, num_classes: int):
        self.net = classifier.build(config.model, num_classes)
        self.num_classes = num_classes
        self.config = config.finetune

    def init(self, key, images):
        """-> (params, EMA params or {} when config.finetune.ema_decay is 0)."""
        params = self.net.init(key, images, train=False)["params"]
        return params, (jax.tree.map(jnp.copy, params) if self.config.ema_decay else {})

    def loss(self, params, target_params, images, key, label):
        """Soft-target cross-entropy of the mixed batch -> (loss, metrics)."""
        del target_params
        fc = self.config
        mix_key, drop_key = jax.random.split(key)
        images, targets = mixup.mix(
            mix_key, images, label, self.num_classes, mixup_alpha=fc.mixup_alpha,
            cutmix_alpha=fc.cutmix_alpha, prob=fc.mixup_prob,
            switch_prob=fc.mixup_switch_prob, smoothing=fc.label_smoothing)
        logits = self.net.apply({"params": params}, images, train=True,
                                rngs={"drop_path": drop_key})
        return optax.softmax_cross_entropy(logits, targets).mean(), {}

    def update_target(self, target_params, params, step):
        del step
        if not target_params:
            return target_params, {}
        return ema.ema_update(target_params, params, self.config.ema_decay), {}

    def logits(self, params, images):
        return self.net.apply({"params": params}, images, train=False)


def prepare(config):
    """Checks before the workdir is touched -> (RunLength, number of classes)."""
    validation.validate(config, num_devices=jax.device_count(),
                        num_processes=jax.process_count(), pretraining=False)
    validation.validate_finetune(config)
    try:
        num_examples = data.num_examples(config.dataset)
        num_classes = data.num_classes(config.dataset)
        data.num_examples(data.with_split(config.dataset, config.finetune.eval_split))
    except ValueError as err:
        raise validation.ConfigError(str(err)) from None
    return loop.run_length(config, num_examples), num_classes


def train(config, workdir: str):
    """Fine-tunes in `workdir`, resuming from its latest checkpoint."""
    length, num_classes = prepare(config)
    method = FineTune(config, num_classes)
    pretrained, init_info = restore.from_config(config, method.net.encoder)
    if pretrained is not None:  # fc_norm replaces the encoder's final norm
        pretrained = {k: v for k, v in pretrained.items() if k != "norm"}
    manager = loop.open_workdir(workdir, config)
    if loop.finished(manager, length, workdir):
        manager.close()
        return

    mesh = sharding.data_mesh()
    tx, lr_schedule = optim.make_finetune_optimizer(
        config.optim, config.batch_size, length.total_steps, length.warmup_steps,
        depth=method.net.encoder.depth)
    image_shape = (1, config.input.image_size, config.input.image_size, 3)
    init = functools.partial(init_state, method, tx, image_shape=image_shape)
    state, state_sharding, run_key, start, record = loop.make_state(
        config, init, mesh, manager, workdir)
    if record is not None:
        init_info = record["init"]
    elif pretrained is not None:
        # Separate buffers for the EMA copy: the step donates the whole state.
        state = state.replace(
            params={**state.params, "encoder": restore.place(pretrained, mesh)},
            target_params=state.target_params and {
                **state.target_params, "encoder": restore.place(pretrained, mesh)})
        loop.say(f"Encoder from {init_info['init_from']} step {init_info['step']}")
    step_fn = loop.jit_step(
        functools.partial(train_step, method=method, tx=tx, lr_schedule=lr_schedule,
                          mean=config.input.mean, std=config.input.std),
        state_sharding, mesh)
    batches = data.make_train_iterator(
        config, start_step=start, with_label=True,
        augment=augment.make_finetune_augment(config.augment))

    eval_every = config.eval_every or length.steps_per_epoch
    best = evaluation.BestCheckpoint(workdir)
    last = {}

    scores = evaluation.make_accuracy(
        lambda params, batch: method.logits(
            params, data.normalize(batch["image"], config.input.mean, config.input.std)),
        mesh)
    eval_batches = lambda: data.make_eval_iterator(config, config.finetune.eval_split)

    def evaluate(step, state):
        if step % eval_every and step != length.total_steps:
            return None
        result = scores(state.params, eval_batches())
        if state.target_params:
            result.update({f"ema_{k}": v for k, v in
                           scores(state.target_params, eval_batches()).items()})
        best.update(step, state.params, result)
        last.update(step=step, **result)
        loop.say(f"step {step}: top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}")
        return result

    hooks = loop.Hooks(evaluate=evaluate, record=lambda step: {"init": init_info})
    try:
        loop.run(config, workdir, length, manager, state, start,
                 loop.host_batches_step(step_fn, batches, mesh, run_key), run_key, hooks)
    finally:
        best.close()
    evaluation.write_results(workdir, last, best, init_info, length.total_steps)


def main(argv):
    del argv
    loop.main(train, flags.FLAGS)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
