"""k-NN accuracy of frozen features (cosine similarity, k = 20), and the
optional monitor that logs it during pretraining.

The vote weights each of the k nearest training features by exp(cos / T)
(T = 0.07, the weighted k-NN of Wu et al. 2018 and DINO).
"""

import jax
import jax.numpy as jnp
import numpy as np

from symmim_jax.data import pipeline, sources
from symmim_jax.evaluation import features


def knn_predict(
    train_feats,
    train_labels,
    test_feats,
    num_classes: int,
    *,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
):
    """-> predicted labels [n_test] of the weighted cosine k-NN vote."""
    train = jnp.asarray(train_feats, jnp.float32)
    train = train / jnp.linalg.norm(train, axis=1, keepdims=True).clip(1e-12)
    one_hot = jax.nn.one_hot(jnp.asarray(train_labels), num_classes)  # [n, C]
    k = min(k, train.shape[0])

    @jax.jit
    def predict(test):
        test = test / jnp.linalg.norm(test, axis=1, keepdims=True).clip(1e-12)
        sims, idx = jax.lax.top_k(test @ train.T, k)  # [b, k]
        votes = jnp.einsum("bk,bkc->bc", jnp.exp(sims / temperature), one_hot[idx])
        return votes.argmax(axis=1)

    test_feats = np.asarray(test_feats, np.float32)
    return np.concatenate(
        [np.asarray(predict(test_feats[i : i + chunk])) for i in range(0, len(test_feats), chunk)]
    )


def knn_accuracy(
    train_feats, train_labels, test_feats, test_labels, num_classes: int, **kwargs
) -> float:
    predicted = knn_predict(train_feats, train_labels, test_feats, num_classes, **kwargs)
    return float(np.mean(predicted == np.asarray(test_labels)))


def check_config(knn_config):
    """config.knn (pretraining); off when `every` is 0."""
    if not knn_config.every:
        return
    if knn_config.every < 0:
        raise ValueError(f"config.knn.every={knn_config.every} must be >= 0 (0 = off).")
    if not (0 < knn_config.k <= knn_config.train_examples and knn_config.test_examples > 0):
        raise ValueError(
            f"config.knn: k={knn_config.k} must be > 0 and <= train_examples="
            f"{knn_config.train_examples}; test_examples="
            f"{knn_config.test_examples} must be > 0."
        )
    if knn_config.pool not in ("cls", "mean"):
        raise ValueError(f"config.knn.pool={knn_config.pool!r}: use 'cls' or 'mean'.")


def monitor(config, encoder, mesh):
    """-> evaluate(step, state) for the pretraining task: the k-NN top-1 of the online
    encoder every `config.knn.every` steps (None between), or None when off.

    Features of `config.knn.train_examples` training and `test_examples`
    held-out images (ordered, evaluation view), [CLS] after the final norm."""
    knn_config = config.get("knn")
    if not knn_config or not knn_config.every:
        return None
    num_classes = sources.num_classes(config.dataset)
    extract, _ = features.make_extractor(
        encoder, pool=knn_config.pool, mean=config.input.mean, std=config.input.std
    )

    def evaluate(step, state):
        if step % knn_config.every:
            return None
        params = state.params["encoder"]
        train = features.extract_all(
            extract,
            params,
            pipeline.make_eval_iterator(
                config, config.dataset.split, limit=knn_config.train_examples
            ),
            mesh,
        )
        test = features.extract_all(
            extract,
            params,
            pipeline.make_eval_iterator(
                config, knn_config.test_split, limit=knn_config.test_examples
            ),
            mesh,
        )
        return {"top1": knn_accuracy(*train, *test, num_classes, k=knn_config.k)}

    return evaluate
