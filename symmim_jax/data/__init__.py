"""Input: the tf.data pipeline, fine-tuning augmentations and mixup, and the
TFDS builders for local data (Fashion-MNIST from Debian's files, image folders)."""
