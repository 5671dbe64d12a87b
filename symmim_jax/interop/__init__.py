"""Weights between this code and PyTorch: the timm mapping and its torch side."""
