"""Evaluation: classification accuracy with the best checkpoint and results.json,
frozen-encoder features, and the k-NN monitor."""
