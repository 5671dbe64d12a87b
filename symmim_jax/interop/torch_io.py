"""The torch side of export and import: .pth bytes, reading .pth files, and
timm's outputs for `--verify`.

Imported only for those; needs the optional extra `requirements-export.txt`
(torch, torchvision, timm, safetensors).
"""

import io

import numpy as np
import torch


def pth_bytes(state: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    torch.save({name: torch.from_numpy(value) for name, value in state.items()}, buffer)
    return buffer.getvalue()


def timm_outputs(load_code: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """Runs `load_code` (the lines `export` prints: create_model, strict
    load_state_dict) and the model on images [B, H, W, 3] -> features
    [B, 1 + N, D], pooled [B, D] and, with a head, logits [B, C]."""
    namespace = {}
    exec(load_code, namespace)  # the very lines a user copies
    model = namespace["model"].eval()
    with torch.no_grad():
        tokens = model.forward_features(torch.from_numpy(images).permute(0, 3, 1, 2))
        outputs = {"features": tokens, "pooled": model.forward_head(tokens, pre_logits=True)}
        if model.num_classes:
            outputs["logits"] = model.forward_head(tokens)
    return {name: value.numpy() for name, value in outputs.items()}


def load_pth(data: bytes) -> dict:
    """A torch.save file's tensors as float32 numpy arrays, nested dicts kept
    ({'model': {...}} of MAE/SimMIM). weights_only: no pickled code runs."""

    def to_numpy(value):
        if isinstance(value, dict):
            return {key: to_numpy(item) for key, item in value.items()}
        if isinstance(value, torch.Tensor):
            return value.detach().float().numpy()
        return value

    return to_numpy(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
