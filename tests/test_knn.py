import numpy as np

from symmim_jax import knn


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
