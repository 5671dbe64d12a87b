r"""Linear probing entry point: a frozen encoder, BatchNorm without affine + a
linear layer, LARS with the MAE schedule (METHOD §5).

python -m symmim_jax.linear_probe --config=configs/demo_linear_probe.py \
    --config.init_from=workdirs/demo --workdir=workdirs/demo_linear_probe

Features are [CLS] or mean-pooled patch tokens (`config.probe.pool`) after the
last block (through the final norm) or after `config.probe.block`. With
`config.probe.augment=False` the features of the training split are extracted
once (evaluation view) and the linear layer trains on them: the fast path.
With augmentation (crop + flip, as MAE) each step encodes its batch.
"""
import functools
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from symmim_jax import (data, evaluation, features, loop, optim, restore, sharding,
                        validation)
from symmim_jax.models import vit
from symmim_jax.train_step import finish_step

loop.define_flags()


@flax.struct.dataclass
class ProbeState:
    step: jax.Array
    params: dict               # the linear head: {'head': ...} (the BatchNorm has none)
    batch_stats: dict          # BatchNorm running mean and variance
    opt_state: optax.OptState
    bad_steps: jax.Array
    consecutive_bad_steps: jax.Array
    frozen: dict               # encoder params when each step encodes; {} on the fast path


class LinearHead(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, feats, *, train: bool):
        """feats [B, D] -> logits [B, C]; BatchNorm as torch BatchNorm1d(affine=False)."""
        x = nn.BatchNorm(use_running_average=not train, use_bias=False, use_scale=False,
                         momentum=0.9, epsilon=1e-6, name="bn")(feats)
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01),
                        name="head")(x)


def probe_step(state: ProbeState, batch, key, *, head, extract, tx, lr_schedule):
    """One LARS step of the head on batch["feature"] (fast path) or on the
    features of batch["image"] -> (state, metrics)."""
    del key  # nothing random: the encoder is frozen and deterministic
    feats = batch.get("feature")
    if feats is None:
        feats = jax.lax.stop_gradient(extract(state.frozen, batch["image"]))

    def loss_fn(params):
        logits, updates = head.apply(
            {"params": params, "batch_stats": state.batch_stats}, feats, train=True,
            mutable=["batch_stats"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        return loss.mean(), updates["batch_stats"]

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    grad_norm = optax.global_norm(grads)
    new_state = finish_step(state, jnp.isfinite(loss) & jnp.isfinite(grad_norm),
                            params=optax.apply_updates(state.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)
    return new_state, {"loss": loss, "lr": lr_schedule(state.step), "grad_norm": grad_norm,
                       "bad_steps": new_state.bad_steps,
                       "consecutive_bad_steps": new_state.consecutive_bad_steps}


def feature_batches(feats, labels, batch_size: int, seed: int, start_step: int):
    """Batches of the extracted features forever from `start_step`; the order of
    epoch e is a permutation seeded by (seed, e), so a resume reads the same."""
    steps_per_epoch = len(feats) // batch_size
    epoch, step = divmod(start_step, steps_per_epoch)
    while True:
        (epoch_seed,) = np.random.SeedSequence([seed, epoch]).generate_state(1)
        order = np.random.default_rng(epoch_seed).permutation(len(feats))
        for i in range(step, steps_per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            yield {"feature": feats[idx], "label": labels[idx]}
        epoch, step = epoch + 1, 0


def padded_batches(feats, labels, batch_size: int):
    """One ordered pass in equal batches, the last padded (valid = 0)."""
    for i in range(0, len(feats), batch_size):
        f, y = feats[i:i + batch_size], labels[i:i + batch_size]
        pad = batch_size - len(f)
        yield {"feature": np.pad(f, ((0, pad), (0, 0))), "label": np.pad(y, (0, pad)),
               "valid": np.pad(np.ones(len(f), np.int32), (0, pad))}


def prepare(config, depth: int):
    """Checks before the workdir is touched -> (number of training examples, classes)."""
    validation.validate(config, num_devices=jax.device_count(),
                        num_processes=jax.process_count(), pretraining=False)
    validation.validate_probe(config, depth)
    if not config.probe.augment and jax.process_count() > 1:
        raise validation.ConfigError(
            "config.probe.augment=False (features extracted once) runs on one process; "
            "set config.probe.augment=True for multi-process runs.")
    try:
        num_examples = data.num_examples(config.dataset)
        data.num_examples(data.with_split(config.dataset, config.probe.eval_split))
        num_classes = data.num_classes(config.dataset)
    except ValueError as err:
        raise validation.ConfigError(str(err)) from None
    if config.probe.train_examples and not config.probe.augment:
        num_examples = min(num_examples, config.probe.train_examples)
    return num_examples, num_classes


def train(config, workdir: str):
    """Trains the linear probe in `workdir`, resuming from its latest checkpoint."""
    encoder = vit.build_encoder(config.model).clone(drop_path=0.0, parent=None)
    num_examples, num_classes = prepare(config, encoder.depth)
    length = loop.run_length(config, num_examples)
    pretrained, init_info = restore.from_config(config, encoder)
    manager = loop.open_workdir(workdir, config)
    if loop.finished(manager, length, workdir):
        manager.close()
        return

    mesh = sharding.data_mesh()
    if pretrained is None:  # random features: the encoder's init from the seed
        images = jnp.zeros((1, config.input.image_size, config.input.image_size, 3))
        pretrained = jax.device_get(encoder.init(
            jax.random.fold_in(jax.random.key(config.seed), 1), images)["params"])
    extract, trim = features.make_extractor(
        encoder, block=config.probe.block, pool=config.probe.pool,
        mean=config.input.mean, std=config.input.std)
    frozen = restore.place(trim(pretrained), mesh)
    head = LinearHead(num_classes)
    tx, lr_schedule = optim.make_lars(config.optim, config.batch_size,
                                      length.total_steps, length.warmup_steps)
    fast = not config.probe.augment

    def init(key):
        variables = head.init(key, jnp.zeros((2, encoder.width)), train=False)
        zero = jnp.zeros((), jnp.int32)
        return ProbeState(step=zero, params=variables["params"],
                          batch_stats=variables["batch_stats"],
                          opt_state=tx.init(variables["params"]), bad_steps=zero,
                          consecutive_bad_steps=zero, frozen={} if fast else frozen)

    state, state_sharding, run_key, start, record = loop.make_state(
        config, init, mesh, manager, workdir)
    init_info = record["init"] if record else init_info
    step_fn = loop.jit_step(
        functools.partial(probe_step, head=head, extract=extract, tx=tx,
                          lr_schedule=lr_schedule), state_sharding, mesh)

    eval_batches = lambda: data.make_eval_iterator(config, config.probe.eval_split)
    if fast:
        loop.say(f"Extracting features of {num_examples} training and the "
                 f"{config.probe.eval_split!r} images once")
        train_feats = features.extract_all(extract, frozen, data.make_eval_iterator(
            config, config.dataset.split, limit=num_examples), mesh)
        test_feats = features.extract_all(extract, frozen, eval_batches(), mesh)
        batches = feature_batches(*train_feats, config.batch_size, config.seed, start)
        eval_batches = lambda: padded_batches(*test_feats, config.batch_size)
    else:
        batches = data.make_train_iterator(config, start_step=start, with_label=True)

    def predict(variables, batch):
        head_variables, encoder_params = variables
        feats = batch.get("feature")
        if feats is None:
            feats = extract(encoder_params, batch["image"])
        return head.apply(head_variables, feats, train=False)
    accuracy = evaluation.make_accuracy(predict, mesh)

    eval_every = config.eval_every or length.steps_per_epoch
    best = evaluation.BestCheckpoint(workdir)
    last = {}

    def evaluate(step, state):
        if step % eval_every and step != length.total_steps:
            return None
        head_variables = {"params": state.params, "batch_stats": state.batch_stats}
        result = accuracy((head_variables, {} if fast else frozen), eval_batches())
        best.update(step, head_variables, result)
        last.update(step=step, **result)
        return result

    hooks = loop.Hooks(evaluate=evaluate, record=lambda step: {"init": init_info})
    try:
        loop.run(config, workdir, length, manager, state, start,
                 loop.host_batches_step(step_fn, batches, mesh, run_key), run_key, hooks)
    finally:
        best.close()
    evaluation.write_results(workdir, last, best, init_info, length.total_steps,
                             pool=config.probe.pool, block=config.probe.block or
                             encoder.depth)
    if last:
        loop.say(f"top-1 {last['top1']:.4f}, top-5 {last['top5']:.4f}")


def main(argv):
    del argv
    loop.main(train, flags.FLAGS)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
