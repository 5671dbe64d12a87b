import types

from fake_fashion_mnist import write_fake_set
import jax
import jax.numpy as jnp
import numpy as np
import tiny_config

from symmim_jax.evaluation import knn
from symmim_jax.models import vit
from symmim_jax.train import sharding


def _reference(train, train_labels, test, num_classes, k, temperature):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    predicted = []
    for row in test @ train.T:
        nearest = np.argsort(-row)[:k]
        votes = np.zeros(num_classes)
        for j in nearest:
            votes[train_labels[j]] += np.exp(row[j] / temperature)
        predicted.append(votes.argmax())
    return np.array(predicted)


def test_weighted_cosine_knn_matches_numpy():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(200, 16)), rng.normal(size=(50, 16))
    train_labels = rng.integers(0, 5, 200)
    got = knn.knn_predict(train, train_labels, test, 5, k=20, temperature=0.07, chunk=16)
    np.testing.assert_array_equal(got, _reference(train, train_labels, test, 5, 20, 0.07))


def test_separable_clusters_are_found():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(3, 8)) * 5
    labels = rng.integers(0, 3, 90)
    feats = centers[labels] + rng.normal(size=(90, 8)) * 0.1
    assert knn.knn_accuracy(feats[:60], labels[:60], feats[60:], labels[60:], 3) == 1.0


def test_monitor_scores_the_online_encoder_every_n_steps(tmp_path):
    write_fake_set(tmp_path, num_train=40, num_test=8)
    config = tiny_config.get_config()
    config.dataset.manual_dir = str(tmp_path)
    config.dataset.data_dir = str(tmp_path / "tfds")
    config.knn.update(every=3, k=5, train_examples=40, test_split="test", test_examples=8)
    encoder = vit.build_encoder(config.model)
    params = encoder.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    state = types.SimpleNamespace(params={"encoder": params})
    evaluate = knn.monitor(config, encoder, sharding.make_mesh())
    assert evaluate(2, state) is None
    first, second = evaluate(3, state), evaluate(6, state)
    assert first == second and 0.0 <= first["top1"] <= 1.0
    # Held-out = training images: every query finds itself among its neighbours.
    config.knn.update(test_split="train", test_examples=40, k=1)
    assert knn.monitor(config, encoder, sharding.make_mesh())(3, state)["top1"] == 1.0
    config.knn.every = 0
    assert knn.monitor(config, encoder, sharding.make_mesh()) is None
