"""Export to timm: strict loads and float32 parity (Ti/16, toy mu/4), S/B/L shapes."""

import json

from etils import epath
import jax
import numpy as np
import pytest

from symmim_jax import export
from symmim_jax.interop import timm_vit
from symmim_jax.models import vit
from symmim_jax.train import checkpoint

NUM_CLASSES = 5


def param_shapes(variant: str, *, classifier: bool) -> dict:
    """ShapeDtypeStructs of the encoder (+ fc_norm and head, as fine-tuning saves
    them), without compiling an init; they do not depend on the image size."""
    size = vit.decode_variant(variant)
    model = vit.VisionTransformer(size.width, size.depth, size.num_heads, size.patch_size)
    patch = jax.ShapeDtypeStruct((1, size.patch_size, size.patch_size, 3), np.float32)
    shapes = {"encoder": jax.eval_shape(model.init, jax.random.key(0), patch)["params"]}
    if classifier:
        del shapes["encoder"]["norm"]  # fc_norm replaces it (timm global_pool='avg')
        vector, matrix = (
            patch.update(shape=(size.width,)),
            patch.update(shape=(size.width, NUM_CLASSES)),
        )
        shapes["fc_norm"] = {"scale": vector, "bias": vector}
        shapes["head"] = {"kernel": matrix, "bias": patch.update(shape=(NUM_CLASSES,))}
    return shapes


def random_params(variant: str, *, classifier: bool, seed: int = 0) -> dict:
    """Random leaves, so that zero biases and unit norms cannot hide a wrong layout."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        noise = 0.05 * rng.normal(size=leaf.shape)
        return (noise + (path[-1].key == "scale")).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, param_shapes(variant, classifier=classifier))


def save_run(workdir, params, *, step=2, with_config=True):
    """A checkpoint as pretraining (or fine-tuning) writes it: state['params'] and
    a record with the config (none in fine-tuning's best/)."""
    manager = checkpoint.open_manager(str(workdir))
    record = {"step": step}
    if with_config:
        record["config"] = {"input": {"image_size": 16}, "model": {"variant": "mu/4"}}
    checkpoint.save(manager, step, {"params": params, "step": np.int32(step)}, record, force=True)
    manager.wait_until_finished()
    manager.close()
    return str(workdir)


@pytest.fixture(scope="module")
def pretraining_run(tmp_path_factory):
    params = random_params("mu/4", classifier=False)
    # Pretraining params hold the method's heads beside the encoder.
    params["projector"] = {"kernel": np.ones((32, 8), np.float32)}
    return save_run(tmp_path_factory.mktemp("pretrain"), params)


@pytest.fixture(scope="module")
def finetuning_run(tmp_path_factory):
    return save_run(
        tmp_path_factory.mktemp("finetune"), random_params("mu/4", classifier=True, seed=1)
    )


def test_state_dict_layout_against_numpy():
    """The mapping on its own: fused qkv, proj, patch kernel and the [CLS] slot."""
    params = random_params("mu/4", classifier=True)
    state = timm_vit.state_dict(params, 16)
    block = params["encoder"]["blocks_1"]["attn"]
    x = np.random.default_rng(0).normal(size=(3, 32)).astype(np.float32)
    qkv = np.einsum("td,dshk->tshk", x, block["qkv"]["kernel"]) + block["qkv"]["bias"]
    torch_qkv = x @ state["blocks.1.attn.qkv.weight"].T + state["blocks.1.attn.qkv.bias"]
    np.testing.assert_allclose(torch_qkv.reshape(3, 3, 2, 16), qkv, rtol=1e-5, atol=1e-5)
    heads = x.reshape(3, 2, 16)
    proj = np.einsum("thk,hkd->td", heads, block["proj"]["kernel"])
    np.testing.assert_allclose(
        heads.reshape(3, 32) @ state["blocks.1.attn.proj.weight"].T, proj, rtol=1e-5, atol=1e-5
    )
    kernel = params["encoder"]["patch_embed"]["kernel"]  # [p, p, 3, D]
    assert state["patch_embed.proj.weight"][7, 2, 1, 3] == kernel[1, 3, 2, 7]
    np.testing.assert_array_equal(state["pos_embed"][0, 0], 0.0)
    np.testing.assert_array_equal(state["pos_embed"][0, 1:], vit.sincos_pos_embed_2d((4, 4), 32))
    assert "mask_token" not in " ".join(state) and "norm.weight" not in state
    assert state["head.weight"].shape == (NUM_CLASSES, 32)


@pytest.mark.parametrize("variant", ["S/16", "B/16", "L/16"])
def test_every_preset_maps_onto_its_timm_model(variant):
    """Names and shapes against timm's own model (on the meta device: no memory)."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    shapes = param_shapes(variant, classifier=True)
    # Zero-stride arrays: the mapping's views and reshapes allocate nothing.
    params = jax.tree.map(lambda leaf: np.broadcast_to(np.float32(0), leaf.shape), shapes)
    model = timm_vit.timm_model(
        timm_vit.architecture(params["encoder"]), 224, num_classes=NUM_CLASSES, mean_pool=True
    )
    assert model.kwargs == {"num_classes": NUM_CLASSES, "global_pool": "avg"}
    with torch.device("meta"):
        expected = timm.create_model(model.name, **model.kwargs).state_dict()
    mapped = timm_vit.state_dict(params, 224)
    assert {name: value.shape for name, value in mapped.items()} == {
        name: tuple(value.shape) for name, value in expected.items()
    }


@pytest.mark.parametrize(
    "variant, image_size, what, classifier, suffix",
    [
        ("Ti/16", 224, "encoder", False, ".safetensors"),
        ("Ti/16", 224, "classifier", True, ".pth"),
        ("mu/4", 16, "classifier", True, ".safetensors"),
        ("mu/4", 16, "encoder", True, ".safetensors"),  # fine-tuned encoder, no head
    ],
)
def test_timm_loads_strictly_and_matches(variant, image_size, what, classifier, suffix, tmp_path):
    pytest.importorskip("timm")
    params = timm_vit.exported_params(random_params(variant, classifier=classifier), what)
    model = timm_vit.timm_model(
        timm_vit.architecture(params["encoder"]),
        image_size,
        num_classes=NUM_CLASSES if what == "classifier" else 0,
        mean_pool=classifier,
    )
    path = str(tmp_path / f"model{suffix}")
    timm_vit.write(timm_vit.state_dict(params, image_size), path)
    differences = timm_vit.verify(params, model, path)
    assert set(differences) == {"features", "pooled"} | (
        {"logits"} if what == "classifier" else set()
    )
    assert max(differences.values()) <= timm_vit.TOLERANCE, differences
    if variant == "Ti/16":  # a timm preset: no architecture arguments
        assert model.name == "vit_tiny_patch16_224"
        assert set(model.kwargs) <= {"num_classes", "global_pool"}


def test_a_named_timm_model_sets_the_image_size():
    arch = timm_vit.architecture(random_params("Ti/16", classifier=False)["encoder"])
    model = timm_vit.timm_model(
        arch,
        224,
        num_classes=0,
        mean_pool=False,
        timm_name="vit_tiny_patch16_384.augreg_in21k_ft_in1k",
    )
    assert (model.image_size, model.kwargs) == (384, {"num_classes": 0})
    with pytest.raises(
        ValueError, match="is a ViT of width 384, .* but the checkpoint holds width"
    ):
        timm_vit.timm_model(
            arch, 224, num_classes=0, mean_pool=False, timm_name="vit_small_patch16_224"
        )


def test_cli_exports_a_pretraining_checkpoint_and_verifies(pretraining_run, tmp_path, capsys):
    pytest.importorskip("timm")
    out = str(tmp_path / "encoder.safetensors")
    export.main([f"--checkpoint={pretraining_run}", f"--out={out}", "--verify"])
    printed = capsys.readouterr().out
    assert (
        "timm.create_model('vit_tiny_patch16_224', img_size=16, patch_size=4, "
        "embed_dim=32, depth=2, num_heads=2, num_classes=0)"
    ) in printed
    assert f"safetensors.torch.load_file({out!r}), strict=True)" in printed
    assert "--verify: max abs difference" in printed


def test_cli_exports_a_finetuning_checkpoint_as_pth(finetuning_run, tmp_path, capsys):
    pytest.importorskip("timm")
    out = str(tmp_path / "classifier.pth")
    export.main(
        [
            f"--checkpoint={finetuning_run}",
            f"--out={out}",
            "--what=classifier",
            "--step=2",
            "--verify",
        ]
    )
    printed = capsys.readouterr().out
    assert f"num_classes={NUM_CLASSES}, global_pool='avg')" in printed
    assert "logits" in printed.split("--verify:")[1]


def test_cli_exports_to_gcs_and_verifies_what_it_reads_back(
    pretraining_run, finetuning_run, gcs_workdir, capsys
):
    """A gs:// --out: the file is written through etils.epath and the printed
    lines, which --verify runs, read it back the same way."""
    pytest.importorskip("timm")
    out = f"{gcs_workdir}/export/encoder.safetensors"
    export.main([f"--checkpoint={pretraining_run}", f"--out={out}", "--verify"])
    printed = capsys.readouterr().out
    assert f"safetensors.torch.load(epath.Path({out!r}).read_bytes())" in printed
    assert "--verify: max abs difference" in printed
    from safetensors.numpy import load

    params, model, _ = timm_vit.load(pretraining_run, None, "encoder")
    expected = timm_vit.state_dict(params, model.image_size)
    written = load(epath.Path(out).read_bytes())
    assert written.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(written[name], value, err_msg=name)

    out = f"{gcs_workdir}/export/classifier.pth"
    export.main([f"--checkpoint={finetuning_run}", f"--out={out}", "--what=classifier", "--verify"])
    printed = capsys.readouterr().out
    assert f"torch.load(io.BytesIO(epath.Path({out!r}).read_bytes()), weights_only=True)" in printed
    assert "logits" in printed.split("--verify:")[1]


def test_cli_creates_the_folder_of_a_local_out(pretraining_run, tmp_path):
    pytest.importorskip("safetensors")
    out = tmp_path / "new" / "folder" / "encoder.safetensors"
    export.main([f"--checkpoint={pretraining_run}", f"--out={out}"])
    assert out.stat().st_size > 0


def test_cli_verify_fails_on_wrong_weights(pretraining_run, tmp_path, monkeypatch):
    pytest.importorskip("timm")
    mapped = timm_vit.state_dict

    def swapped_qkv(*args):  # q and k of block 0 exchanged: still loads strictly
        state = mapped(*args)
        weight = state["blocks.0.attn.qkv.weight"]
        state["blocks.0.attn.qkv.weight"] = np.concatenate(
            [weight[32:64], weight[:32], weight[64:]]
        )
        return state

    monkeypatch.setattr(timm_vit, "state_dict", swapped_qkv)
    with pytest.raises(SystemExit, match=r"--verify failed: max abs difference"):
        export.main(
            [f"--checkpoint={pretraining_run}", f"--out={tmp_path / 'bad.safetensors'}", "--verify"]
        )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--what=classifier"], "--what=classifier needs a fine-tuning checkpoint"),
        (["--step=7"], "no checkpoint of step 7 in"),
        (["--timm-name=resnet50"], "--timm-name=resnet50 is not a timm ViT"),
        (["--timm-name=vit_tiny_patch4_16"], "--timm-name=vit_tiny_patch4_16 is not a timm"),
        (
            ["--timm-name=vit_base_patch16_224"],
            "is a ViT of width 768, depth 12, 12 heads, patch 16, but the checkpoint holds",
        ),
        (["--out=model.onnx"], "--out=model.onnx must end in .safetensors or .pth, or be a folder"),
    ],
)
def test_bad_command_lines_stop_with_one_line(pretraining_run, tmp_path, args, message):
    command = [f"--checkpoint={pretraining_run}", f"--out={tmp_path / 'm.safetensors'}"]
    with pytest.raises(SystemExit) as exit_info:
        export.main(command + args)
    assert message in str(exit_info.value)
    assert "\n" not in str(exit_info.value)
    assert not (tmp_path / "m.safetensors").exists()


def test_other_checkpoints_stop_with_one_line(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoints in"):
        export.main([f"--checkpoint={tmp_path / 'none'}", "--out=m.safetensors"])
    other = save_run(tmp_path / "other", {"dense": {"kernel": np.ones((2, 2), np.float32)}})
    with pytest.raises(SystemExit, match="no 'encoder': not a symmim_jax pretraining"):
        export.main([f"--checkpoint={other}", "--out=m.safetensors"])


def test_image_size_from_the_config_json_above_a_best_checkpoint(tmp_path, capsys):
    best = save_run(
        tmp_path / "run" / "best", random_params("mu/4", classifier=True), with_config=False
    )
    out = f"--out={tmp_path / 'm.safetensors'}"
    with pytest.raises(SystemExit, match="name the image size with --timm-name"):
        export.main([f"--checkpoint={best}", out])
    (tmp_path / "run" / "config.json").write_text(json.dumps({"input": {"image_size": 8}}))
    export.main([f"--checkpoint={best}", out, "--what=classifier"])
    assert "img_size=8, patch_size=4" in capsys.readouterr().out
