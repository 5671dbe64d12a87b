r"""Fine-tuning: a pretrained encoder + mean-pool + fc_norm + head.

python -m symmim_jax.finetune --config=symmim_jax/configs/demo_finetune.py \
    --config.init_from=workdirs/demo --workdir=workdirs/demo_finetune

`config.init_from` is a pretraining workdir (its newest checkpoint, or
`config.init_step`); unset, the encoder starts from random initialization.
The recipe is BEiT's (docs/METHOD.md §5): AdamW with layer-wise lr decay, drop
path, warm-up + cosine, label smoothing, mixup/cutmix, RandAugment, random
erasing, optional EMA of the weights. Top-1/top-5 on `config.finetune.eval_split`
every `config.eval_every` steps (0: every epoch) and at the end; the best
parameters go to WORKDIR/best/, the last to WORKDIR/checkpoints/ (resumable),
the scores to WORKDIR/results.json. The run honours config.mesh (data x FSDP)
and config.grad_accum_steps like pretraining: it is the same skeleton.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from symmim_jax.data import augment, erasing, mixup, pipeline, sources  # noqa: E402
from symmim_jax.evaluation import classification  # noqa: E402
from symmim_jax.models import classifier  # noqa: E402
from symmim_jax.ops import ema, patches  # noqa: E402
from symmim_jax.train import checkpoint, cli, loop, optim, run, step  # noqa: E402


class FineTune(step.Objective):
    """Soft-target cross-entropy of mixed batches; an EMA of the weights in
    `target_params` when config.finetune.ema_decay > 0."""

    def __init__(self, config, num_classes: int):
        self.net = classifier.build(config.model, num_classes)
        self.num_classes = num_classes
        self.config = config.finetune

    def init(self, key, images):
        params = self.net.init(key, images, train=False)["params"]
        target = jax.tree.map(jnp.copy, params) if self.config.ema_decay else {}
        return params, target, {}

    def loss(self, params, batch, key, *, target_params, method_state):
        fc = self.config
        mix_key, drop_key, erase_key = jax.random.split(key, 3)
        images = batch["image"]  # normalized
        if "erase_box" in batch:  # timm erases per image, after normalization, before mixup
            images = erasing.erase(erase_key, images, batch["erase_box"])
        images, targets = mixup.mix(
            mix_key,
            images,
            batch["label"],
            self.num_classes,
            mixup_alpha=fc.mixup_alpha,
            cutmix_alpha=fc.cutmix_alpha,
            prob=fc.mixup_prob,
            switch_prob=fc.mixup_switch_prob,
            smoothing=fc.label_smoothing,
        )
        logits = self.net.apply(
            {"params": params}, images, train=True, rngs={"drop_path": drop_key}
        )
        return step.LossOutput(optax.softmax_cross_entropy(logits, targets).mean(), {})

    def after_step(self, params, target_params, method_state, observations, step):
        if not target_params:
            return target_params, method_state, {}
        return ema.ema_update(target_params, params, self.config.ema_decay), method_state, {}

    def logits(self, params, images):
        return self.net.apply({"params": params}, images, train=False)


class FineTuning(run.Task):
    def check_config(self):
        """config.optim, config.finetune, config.augment (configs/base_finetune.py)."""
        config = self.config
        optim.check_adamw(config.optim)
        classification.check_config(config)
        fc, aug = config.finetune, config.augment
        if not 0 <= fc.label_smoothing < 1:
            raise ValueError(
                f"config.finetune.label_smoothing={fc.label_smoothing} must be in [0, 1)."
            )
        if fc.mixup_alpha < 0 or fc.cutmix_alpha < 0:
            raise ValueError("config.finetune.mixup_alpha and cutmix_alpha must be >= 0 (0 = off).")
        for field in ("mixup_prob", "mixup_switch_prob"):
            if not 0 <= fc[field] <= 1:
                raise ValueError(f"config.finetune.{field}={fc[field]} must be in [0, 1].")
        if not 0 <= fc.ema_decay < 1:
            raise ValueError(f"config.finetune.ema_decay={fc.ema_decay} must be in [0, 1).")
        if not (
            aug.randaug_num_ops >= 0
            and 0 <= aug.randaug_magnitude <= 10
            and aug.randaug_magnitude_std >= 0
        ):
            raise ValueError(
                f"config.augment.randaug_num_ops={aug.randaug_num_ops} must be "
                f">= 0, randaug_magnitude={aug.randaug_magnitude} in [0, 10] and "
                f"randaug_magnitude_std={aug.randaug_magnitude_std} >= 0."
            )
        if not 0 <= aug.reprob <= 1:
            raise ValueError(f"config.augment.reprob={aug.reprob} must be in [0, 1].")

    def read_inputs(self):
        config = self.config
        num_examples = sources.num_examples(config.dataset)
        num_classes = sources.num_classes(config.dataset)
        sources.num_examples(sources.with_split(config.dataset, config.finetune.eval_split))
        encoder = classifier.build(config.model, num_classes).encoder
        self.pretrained, self.init_info = checkpoint.load_init_encoder(config, encoder)
        return run.DataFacts(num_examples, num_classes)

    def build(self, length, facts):
        config = self.config
        self.length = length
        self.objective = FineTune(config, facts.num_classes)
        tx, lr_schedule = optim.make_finetune_adamw(
            config.optim,
            config.batch_size,
            length.total_steps,
            length.warmup_steps,
            depth=self.objective.net.encoder.depth,
        )
        return self.objective, tx, lr_schedule

    def input_spec(self, batch_size):
        spec = {
            **super().input_spec(batch_size),
            "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32),
        }
        if self.config.augment.reprob:
            spec["erase_box"] = jax.ShapeDtypeStruct((batch_size, 4), jnp.int32)
        return spec

    def start(self, mesh, workdir):
        config, objective = self.config, self.objective
        scores = classification.make_accuracy(
            lambda params, batch: objective.logits(
                params, patches.normalize(batch["image"], config.input.mean, config.input.std)
            ),
            mesh,
        )
        eval_batches = lambda: pipeline.make_eval_iterator(config, config.finetune.eval_split)

        def score(state):
            result = scores(state.params, eval_batches())
            if state.target_params:
                result.update(
                    {f"ema_{k}": v for k, v in scores(state.target_params, eval_batches()).items()}
                )
            loop.say(f"top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}")
            return result, state.params

        self.evaluation = classification.Evaluation(
            workdir,
            score,
            config.eval_every or self.length.steps_per_epoch,
            self.length.total_steps,
        )

    def load_pretrained(self, state):
        if self.pretrained is None:
            return state
        # fc_norm replaces the encoder's final norm.
        encoder = {k: v for k, v in self.pretrained.items() if k != "norm"}
        loop.say(f"Encoder from {checkpoint.describe_init(self.init_info)}")
        return state.replace(
            params={**state.params, "encoder": encoder},
            target_params=state.target_params and {**state.target_params, "encoder": encoder},
        )

    def resumed(self, record):
        self.init_info = record["init"]

    def record(self):
        return {"init": self.init_info}

    def batches(self, start_step):
        return pipeline.make_train_iterator(
            self.config,
            start_step=start_step,
            with_label=True,
            augment=augment.make_finetune_augment(self.config.augment),
        )

    def evaluate(self, step, state):
        return self.evaluation(step, state)

    def finish(self):
        self.evaluation.write_results(self.init_info)

    def close(self):
        self.evaluation.close()


def train(config, workdir: str, devices=None):
    """Fine-tunes in `workdir`, resuming from its latest checkpoint."""
    run.run(FineTuning(config), workdir, devices)


if __name__ == "__main__":
    cli.launch(train)
