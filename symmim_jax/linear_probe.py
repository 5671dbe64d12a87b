r"""Linear probing: a frozen encoder, BatchNorm without affine + a linear layer,
LARS with the MAE schedule (docs/METHOD.md §5).

python -m symmim_jax.linear_probe --config=symmim_jax/configs/demo_linear_probe.py \
    --config.init_from=workdirs/demo --workdir=workdirs/demo_linear_probe

Features are [CLS] or mean-pooled patch tokens (`config.probe.pool`) after the
last block (through the final norm) or after `config.probe.block`. With
`config.probe.augment=False` the features of the training split are extracted
once (evaluation view) and the linear layer trains on them: the fast path.
With augmentation (crop + flip, as MAE) each step encodes its batch with the
frozen encoder, which the state holds as `target_params`; the BatchNorm
statistics are its `method_state`.
"""

import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from symmim_jax.data import pipeline, sources  # noqa: E402
from symmim_jax.evaluation import classification, features  # noqa: E402
from symmim_jax.models import heads, vit  # noqa: E402
from symmim_jax.train import checkpoint, cli, loop, optim, run, sharding, step  # noqa: E402


class LinearProbe(step.Objective):
    """Cross-entropy of the head on frozen features: batch["feature"] (fast
    path) or the features of batch["image"] under the frozen encoder."""

    def __init__(
        self, encoder: vit.VisionTransformer, probe_config, input_config, num_classes: int
    ):
        self.head = heads.LinearClassifier(num_classes)
        self.extract, self.trim = features.make_extractor(
            encoder,
            block=probe_config.block,
            pool=probe_config.pool,
            mean=input_config.mean,
            std=input_config.std,
        )
        self.encoder, self.width = encoder, encoder.width
        self.encodes = probe_config.augment  # else the features come extracted

    def init(self, key, images):
        head_key, encoder_key = jax.random.split(key)
        variables = self.head.init(head_key, jnp.zeros((2, self.width)), train=False)
        frozen = self.trim(self.encoder.init(encoder_key, images)["params"]) if self.encodes else {}
        return variables["params"], frozen, variables["batch_stats"]

    def features(self, frozen, batch):
        feats = batch.get("feature")
        if feats is None:
            feats = jax.lax.stop_gradient(self.extract(frozen, batch["image"]))
        return feats  # [B, D]

    def loss(self, params, batch, key, *, target_params, method_state):
        logits, updates = self.head.apply(
            {"params": params, "batch_stats": method_state},
            self.features(target_params, batch),
            train=True,
            mutable=["batch_stats"],
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        return step.LossOutput(loss.mean(), {}, observations=updates["batch_stats"])

    def after_step(self, params, target_params, method_state, observations, step):
        return target_params, observations, {}

    def logits(self, state, batch):
        return self.head.apply(
            {"params": state.params, "batch_stats": state.method_state},
            self.features(state.target_params, batch),
            train=False,
        )


def feature_batches(feats, labels, batch_size: int, seed: int, start_step: int):
    """Batches of the extracted features forever from `start_step`; the order of
    epoch e is a permutation seeded by (seed, e), so a resume reads the same."""
    steps_per_epoch = len(feats) // batch_size
    epoch, step_in_epoch = divmod(start_step, steps_per_epoch)
    while True:
        (epoch_seed,) = np.random.SeedSequence([seed, epoch]).generate_state(1)
        order = np.random.default_rng(epoch_seed).permutation(len(feats))
        for i in range(step_in_epoch, steps_per_epoch):
            idx = order[i * batch_size : (i + 1) * batch_size]
            yield {"feature": feats[idx], "label": labels[idx]}
        epoch, step_in_epoch = epoch + 1, 0


def padded_batches(feats, labels, batch_size: int):
    """One ordered pass in equal batches, the last padded (valid = 0)."""
    for i in range(0, len(feats), batch_size):
        f, y = feats[i : i + batch_size], labels[i : i + batch_size]
        pad = batch_size - len(f)
        yield {
            "feature": np.pad(f, ((0, pad), (0, 0))),
            "label": np.pad(y, (0, pad)),
            "valid": np.pad(np.ones(len(f), np.int32), (0, pad)),
        }


class LinearProbing(run.Task):
    def check_config(self):
        """config.optim (LARS) and config.probe (configs/base_probe.py)."""
        config = self.config
        optim.check_lars(config.optim)
        classification.check_config(config)
        depth = vit.decode_variant(config.model.variant).depth
        probe = config.probe
        if probe.pool not in ("cls", "mean"):
            raise ValueError(f"config.probe.pool={probe.pool!r}: use 'cls' or 'mean'.")
        if probe.block is not None and not 1 <= probe.block <= depth:
            raise ValueError(
                f"config.probe.block={probe.block} must be in 1..{depth} (the "
                "encoder's depth) or unset for the last block."
            )
        if not probe.augment and jax.process_count() > 1:
            raise ValueError(
                "config.probe.augment=False (features extracted once) runs on "
                "one process; set config.probe.augment=True for multi-process runs."
            )

    def frozen_encoder(self):
        return vit.build_encoder(self.config.model).clone(drop_path=0.0, parent=None)

    def read_inputs(self):
        config = self.config
        num_examples = sources.num_examples(config.dataset)
        sources.num_examples(sources.with_split(config.dataset, config.probe.eval_split))
        num_classes = sources.num_classes(config.dataset)
        if config.probe.train_examples and not config.probe.augment:
            num_examples = min(num_examples, config.probe.train_examples)
        self.pretrained, self.init_info = checkpoint.load_init_encoder(
            config, self.frozen_encoder()
        )
        return run.DataFacts(num_examples, num_classes)

    def build(self, length, facts):
        config = self.config
        self.length, self.num_examples = length, facts.num_examples
        self.objective = LinearProbe(
            self.frozen_encoder(), config.probe, config.input, facts.num_classes
        )
        tx, lr_schedule = optim.make_lars(
            config.optim, config.batch_size, length.total_steps, length.warmup_steps
        )
        return self.objective, tx, lr_schedule

    def input_spec(self, batch_size):
        label = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
        if self.objective.encodes:
            return {**super().input_spec(batch_size), "label": label}
        width = self.objective.width
        return {"feature": jax.ShapeDtypeStruct((batch_size, width), jnp.float32), "label": label}

    def start(self, mesh, workdir):
        config = self.config
        self.mesh = mesh
        if self.pretrained is None:  # random features: the encoder's init from the seed
            images = jnp.zeros((1, config.input.image_size, config.input.image_size, 3))
            key = jax.random.fold_in(jax.random.key(config.seed), 1)
            self.pretrained = jax.device_get(self.frozen_encoder().init(key, images)["params"])
        self.frozen = self.objective.trim(self.pretrained)
        accuracy = classification.make_accuracy(self.objective.logits, mesh)
        self.eval_batches = lambda: pipeline.make_eval_iterator(config, config.probe.eval_split)
        self.evaluation = classification.Evaluation(
            workdir,
            lambda state: (
                accuracy(state, self.eval_batches()),
                {"params": state.params, "batch_stats": state.method_state},
            ),
            config.eval_every or self.length.steps_per_epoch,
            self.length.total_steps,
        )

    def load_pretrained(self, state):
        return state.replace(target_params=self.frozen) if self.objective.encodes else state

    def resumed(self, record):
        self.init_info = record["init"]

    def record(self):
        return {"init": self.init_info}

    def batches(self, start_step):
        config = self.config
        if self.objective.encodes:
            return pipeline.make_train_iterator(config, start_step=start_step, with_label=True)
        loop.say(
            f"Extracting features of {self.num_examples} training and the "
            f"{config.probe.eval_split!r} images once"
        )
        frozen = sharding.place(self.frozen, sharding.replicated(self.mesh))
        extract = lambda batches: features.extract_all(
            self.objective.extract, frozen, batches, self.mesh
        )
        train_feats = extract(
            pipeline.make_eval_iterator(config, config.dataset.split, limit=self.num_examples)
        )
        test_feats = extract(self.eval_batches())
        self.eval_batches = lambda: padded_batches(*test_feats, config.batch_size)
        return feature_batches(*train_feats, config.batch_size, config.seed, start_step)

    def evaluate(self, step, state):
        return self.evaluation(step, state)

    def finish(self):
        self.evaluation.write_results(
            self.init_info,
            pool=self.config.probe.pool,
            block=self.config.probe.block or self.objective.encoder.depth,
        )
        if self.evaluation.last:
            loop.say(
                f"top-1 {self.evaluation.last['top1']:.4f}, "
                f"top-5 {self.evaluation.last['top5']:.4f}"
            )

    def close(self):
        self.evaluation.close()


def train(config, workdir: str, devices=None):
    """Trains the linear probe in `workdir`, resuming from its latest checkpoint."""
    run.run(LinearProbing(config), workdir, devices)


if __name__ == "__main__":
    cli.launch(train)
