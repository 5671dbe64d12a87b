"""TFDS builders for datasets read from local files (nothing is downloaded)."""
