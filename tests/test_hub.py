"""Export to a folder in the timm / Hugging Face Hub layout: timm loads it
offline through local-dir and matches; the card holds the run's records; the
README's export commands and lines run as written."""

import json
import pathlib
import re
import shlex

import jax
import numpy as np
import pytest
from test_export import random_params

from symmim_jax import export
from symmim_jax.train import checkpoint

README = pathlib.Path(__file__).parents[1] / "README.md"


def write_run(workdir, params, *, image_size, results=None):
    """A pretraining (or fine-tuning) workdir: a checkpoint, config.json and
    optionally results.json."""
    config = {
        "method": "symmim",
        "model": {"variant": "mu/4"},
        "input": {"image_size": image_size, "mean": [0.5] * 3, "std": [0.25] * 3},
        "dataset": {"name": "fashion_mnist_debian", "split": "train"},
        "epochs": 1,
    }
    manager = checkpoint.open_manager(str(workdir))
    state = {"params": params, "step": np.int32(3)}
    checkpoint.save(manager, 3, state, {"step": 3, "config": config}, force=True)
    manager.wait_until_finished()
    manager.close()
    (workdir / "config.json").write_text(json.dumps(config))
    if results:
        (workdir / "results.json").write_text(json.dumps(results))
    return str(workdir)


def test_a_folder_loads_offline_with_timm_and_matches(tmp_path, capsys):
    timm = pytest.importorskip("timm")
    run = write_run(
        tmp_path / "ft",
        random_params("mu/4", classifier=True),
        image_size=16,
        results={"top1": 0.75, "top5": 1.0, "init_from": "workdirs/demo"},
    )
    out = str(tmp_path / "folder")
    export.main([f"--checkpoint={run}", f"--out={out}", "--what=classifier", "--verify"])
    printed = capsys.readouterr().out
    assert f"timm.create_model('local-dir:{out}', pretrained=True)" in printed
    worst = max(map(float, re.findall(r"(?:features|pooled|logits) ([0-9.e+-]+)", printed)))
    assert worst <= 1e-4
    config = json.loads((tmp_path / "folder" / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224"
    assert config["model_args"] == {
        "img_size": 16,
        "patch_size": 4,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "global_pool": "avg",
    }
    assert config["pretrained_cfg"]["input_size"] == [3, 16, 16]
    assert config["pretrained_cfg"]["mean"] == [0.5] * 3
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert model.num_classes == 5 and model.pretrained_cfg["std"] == [0.25] * 3
    card = (tmp_path / "folder" / "README.md").read_text()
    for fact in ("symmim", "fashion_mnist_debian", "1 epochs", "top1 0.75", "workdirs/demo"):
        assert fact in card, fact
    assert re.search(r"export parity \| features [0-9.e+-]+, pooled", card)


def test_without_verify_the_card_says_parity_was_not_measured(tmp_path):
    pytest.importorskip("safetensors")
    run = write_run(tmp_path / "pre", random_params("mu/4", classifier=False), image_size=16)
    export.main([f"--checkpoint={run}", f"--out={tmp_path / 'folder'}"])
    card = (tmp_path / "folder" / "README.md").read_text()
    assert "not measured (export with --verify)" in card and "none recorded" in card


def test_push_to_hub_uploads_the_folder(tmp_path, monkeypatch, capsys):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    calls = []
    monkeypatch.setattr(
        huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: calls.append(("create", a, k))
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi, "upload_folder", lambda self, **k: calls.append(("upload", k))
    )
    run = write_run(tmp_path / "pre", random_params("mu/4", classifier=False), image_size=16)
    out = str(tmp_path / "folder")
    export.main([f"--checkpoint={run}", f"--out={out}", "--push_to_hub=me/vit"])
    assert calls == [
        ("create", ("me/vit",), {"exist_ok": True}),
        ("upload", {"repo_id": "me/vit", "folder_path": out}),
    ]
    assert "Uploaded to https://huggingface.co/me/vit" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--push_to_hub uploads a folder"):
        export.main([f"--checkpoint={run}", "--out=m.safetensors", "--push_to_hub=me/vit"])


def readme_export_section() -> tuple[list[str], list[str]]:
    """The export commands and Python blocks of the README's export section."""
    text = README.read_text()
    section = text.split("## Export to PyTorch (timm)", 1)[1].split("### Import", 1)[0]
    commands = [
        line
        for block in re.findall(r"```bash\n(.*?)```", section, re.S)
        for line in block.splitlines()
        if line.startswith("python -m symmim_jax.export")
    ]
    return commands, re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readmes_export_examples_run_as_written(tmp_path, monkeypatch, capsys):
    """On a demo-sized (XS/4, 32 px) workdir at workdirs/demo."""
    pytest.importorskip("timm")
    from symmim_jax.models import vit

    encoder = vit.VisionTransformer(128, 6, 4, 4)
    params = jax.device_get(encoder.init(jax.random.key(0), np.zeros((1, 32, 32, 3))))
    (tmp_path / "workdirs").mkdir()
    write_run(tmp_path / "workdirs" / "demo", {"encoder": params["params"]}, image_size=32)
    monkeypatch.chdir(tmp_path)
    commands, blocks = readme_export_section()
    assert len(commands) == 2 and len(blocks) == 2
    for command in commands:
        export.main(shlex.split(command)[3:])
        assert "--verify: max abs difference" in capsys.readouterr().out
    for block in blocks:
        namespace = {}
        exec(block, namespace)  # the lines a user copies
        assert namespace["model"].embed_dim == 128
