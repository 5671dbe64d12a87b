"""Import for init_from: a random timm ViT gives timm's features, official MAE
and SimMIM layouts and big_vision .npz map, export then import is the
identity, and a tensor that does not fit stops with one line naming it."""

import json
import logging

import jax
import numpy as np
import pytest
from test_export import random_params

from symmim_jax.interop import importers, timm_vit
from symmim_jax.models import vit
from symmim_jax.train import checkpoint

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
from safetensors.torch import save_file  # noqa: E402  (the export extra, like timm)

IMAGES = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)


def timm_vit_mu4(**kwargs):
    """A random timm ViT of this code's toy size mu/4 at 16 px (width 32, depth
    2, 2 heads): learned position embedding, random biases and norms."""
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        img_size=16,
        patch_size=4,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=0,
        **kwargs,
    ).eval()
    with torch.no_grad():
        for name, value in model.named_parameters():
            if name.endswith(("bias", "norm1.weight", "norm2.weight", "norm.weight")):
                value.add_(0.1 * torch.randn_like(value))
    return model


def timm_features(model, images=IMAGES):
    with torch.no_grad():
        return model.forward_features(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()


def imported(path, pos_embed="learned", image_size=16):
    encoder = vit.VisionTransformer(32, 2, 2, 4, pos_embed=pos_embed)
    params, info = checkpoint.import_encoder(str(path), encoder, image_size)
    return encoder, params, info


def features(encoder, params, images=IMAGES):
    return np.asarray(encoder.apply({"params": params}, images))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_random_timm_vit_gives_timms_features(suffix, tmp_path):
    model = timm_vit_mu4()
    path = tmp_path / f"vit{suffix}"
    state = {name: value.contiguous() for name, value in model.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    encoder, params, info = imported(path)
    assert info == {"init_from": str(path), "step": None, "format": "timm"}
    np.testing.assert_allclose(features(encoder, params), timm_features(model), atol=1e-5)


def test_a_sincos_encoder_drops_a_learned_table_and_folds_its_cls_slot(tmp_path, caplog):
    model = timm_vit_mu4()
    save_file(dict(model.state_dict()), tmp_path / "vit.safetensors")
    with caplog.at_level(logging.WARNING):
        _, params, _ = imported(tmp_path / "vit.safetensors", pos_embed="sincos")
    assert "learned position embedding: dropped" in caplog.text
    assert "pos_embed" not in params
    state = model.state_dict()
    np.testing.assert_allclose(
        params["cls_token"], (state["cls_token"] + state["pos_embed"][:, :1]).numpy(), atol=1e-7
    )


def test_a_learned_table_is_resized_to_the_configs_grid(tmp_path):
    model = timm_vit_mu4()
    save_file(dict(model.state_dict()), tmp_path / "vit.safetensors")
    _, params, _ = imported(tmp_path / "vit.safetensors", image_size=32)
    assert params["pos_embed"].shape == (1, 1 + 8 * 8, 32)
    np.testing.assert_array_equal(params["pos_embed"][0, 0], model.pos_embed[0, 0].detach())


@pytest.mark.parametrize("learned", [False, True])
def test_import_after_export_is_the_identity(learned, tmp_path):
    params = random_params("mu/4", classifier=False)["encoder"]
    if learned:
        params["pos_embed"] = np.random.default_rng(1).normal(size=(1, 17, 32)).astype(np.float32)
    path = str(tmp_path / "exported.safetensors")
    timm_vit.write(timm_vit.state_dict({"encoder": params}, 16), path)
    _, back, info = imported(path, pos_embed="learned" if learned else "sincos")
    assert info["format"] == "timm"
    np.testing.assert_array_equal(back.pop("mask_token"), 0.0)  # timm has no slot for it
    expected = {name: value for name, value in params.items() if name != "mask_token"}
    jax.tree.map(np.testing.assert_array_equal, back, expected)


def test_an_official_mae_checkpoint_ignores_its_decoder(tmp_path, caplog):
    """{'model': timm names, sin-cos pos_embed with a zero [CLS] slot, decoder}."""
    model = timm_vit_mu4()
    state = {name: value.clone() for name, value in model.state_dict().items()}
    table = np.concatenate([np.zeros((1, 32)), vit.sincos_pos_embed_2d((4, 4), 32)])
    state["pos_embed"] = torch.from_numpy(table[None].astype(np.float32))
    state.update(
        mask_token=torch.zeros(1, 1, 16),  # the decoder's, at decoder width
        **{"decoder_embed.weight": torch.ones(16, 32), "decoder_pred.bias": torch.ones(48)},
    )
    torch.save({"model": state}, tmp_path / "mae_pretrain.pth")
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
    with caplog.at_level(logging.WARNING):
        encoder, params, info = imported(tmp_path / "mae_pretrain.pth", pos_embed="sincos")
    assert info["format"] == "MAE" and "position" not in caplog.text  # the sin-cos table
    np.testing.assert_allclose(features(encoder, params), timm_features(model), atol=1e-5)


def simmim_checkpoint(model, rel_pos_bias=False) -> dict:
    """timm's state in SimMIM's layout: 'encoder.' names, q_bias/v_bias, gamma_1/2."""
    state = {}
    for name, value in model.state_dict().items():
        name = name.replace("ls1.gamma", "gamma_1").replace("ls2.gamma", "gamma_2")
        if name.endswith("attn.qkv.bias"):
            q, _, v = value.chunk(3)
            block = name.removesuffix(".qkv.bias")
            state.update({f"encoder.{block}.q_bias": q, f"encoder.{block}.v_bias": v})
        else:
            state[f"encoder.{name}"] = value
    state["encoder.mask_token"] = torch.full((1, 1, 32), 0.5)
    state["decoder.0.weight"] = torch.ones(48, 32, 1, 1)
    if rel_pos_bias:
        state["encoder.rel_pos_bias.relative_position_bias_table"] = torch.zeros(52, 2)
    return {"model": state}


def test_an_official_simmim_checkpoint_maps_qv_biases_and_layer_scale(tmp_path):
    model = timm_vit_mu4(init_values=0.5)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.bias[32:64] = 0  # SimMIM has no k bias
            block.ls1.gamma.uniform_(0.2, 1.0)
    torch.save(simmim_checkpoint(model), tmp_path / "simmim.pth")
    encoder, params, info = imported(tmp_path / "simmim.pth")
    assert info["format"] == "SimMIM"
    np.testing.assert_array_equal(params["mask_token"], 0.5)
    np.testing.assert_allclose(features(encoder, params), timm_features(model), atol=1e-5)


def big_vision_npz(params: dict, path):
    """This code's encoder in big_vision vit.py's flat names under params/."""
    flat = {
        "embedding/kernel": params["patch_embed"]["kernel"],
        "embedding/bias": params["patch_embed"]["bias"],
        "cls": params["cls_token"],
        "pos_embedding": vit.sincos_pos_embed_2d((4, 4), 32)[None],
        "Transformer/encoder_norm/scale": params["norm"]["scale"],
        "Transformer/encoder_norm/bias": params["norm"]["bias"],
        "head/kernel": np.zeros((32, 3), np.float32),
    }
    for i in range(2):
        block, prefix = params[f"blocks_{i}"], f"Transformer/encoderblock_{i}"
        attn, mlp = block["attn"], block["mlp"]
        for k, part in enumerate(("query", "key", "value")):
            flat[f"{prefix}/MultiHeadDotProductAttention_0/{part}/kernel"] = attn["qkv"]["kernel"][
                :, k
            ]
            flat[f"{prefix}/MultiHeadDotProductAttention_0/{part}/bias"] = attn["qkv"]["bias"][k]
        for name, leaf in (
            ("LayerNorm_0", block["norm1"]),
            ("LayerNorm_1", block["norm2"]),
            ("MultiHeadDotProductAttention_0/out", attn["proj"]),
            ("MlpBlock_0/Dense_0", mlp["fc1"]),
            ("MlpBlock_0/Dense_1", mlp["fc2"]),
        ):
            flat.update({f"{prefix}/{name}/{key}": value for key, value in leaf.items()})
    np.savez(path, **{f"params/{name}": value for name, value in flat.items()})


def test_a_big_vision_npz_maps_onto_the_same_encoder(tmp_path):
    params = random_params("mu/4", classifier=False)["encoder"]
    big_vision_npz(params, tmp_path / "vit.npz")
    _, back, info = imported(tmp_path / "vit.npz", pos_embed="sincos")
    assert info["format"] == "big_vision"
    back["mask_token"] = params["mask_token"]
    jax.tree.map(np.testing.assert_array_equal, back, params)


def with_tensor(state, name, value):
    return {
        **{k: v for k, v in state.items() if k != name},
        **({name: value} if value is not None else {}),
    }


@pytest.mark.parametrize(
    "name, value, message",
    [
        (
            "blocks.1.mlp.fc1.weight",
            torch.zeros(64, 32),
            "tensor 'blocks.1.mlp.fc1.weight' has shape (64, 32), but the config's ViT "
            "(width 32, depth 2, patch 4) needs (128, 32)",
        ),
        (
            "blocks.0.attn.q_norm.weight",
            torch.ones(16),
            "tensor 'blocks.0.attn.q_norm.weight' has no slot in this ViT",
        ),
        ("blocks.1.norm2.bias", None, "no tensor 'blocks.1.norm2.bias' (of 1 missing)"),
        (
            "pos_embed",
            torch.zeros(1, 15, 32),
            "tensor 'pos_embed' has shape (1, 15, 32): not a position embedding",
        ),
    ],
)
def test_a_tensor_that_does_not_fit_stops_with_one_line_naming_it(name, value, message, tmp_path):
    path = tmp_path / "bad.safetensors"
    save_file(with_tensor(dict(timm_vit_mu4().state_dict()), name, value), path)
    with pytest.raises(ValueError) as error:
        imported(path)
    assert f"config.init_from={path} (timm): {message}" in str(error.value)
    assert "\n" not in str(error.value)


def test_simmims_relative_position_bias_has_no_slot(tmp_path):
    torch.save(simmim_checkpoint(timm_vit_mu4(), rel_pos_bias=True), tmp_path / "simmim.pth")
    with pytest.raises(
        importers.ImportMismatch,
        match=r"\(SimMIM\): tensor 'encoder.rel_pos_bias.relative_position_bias_table' has no slot",
    ):
        imported(tmp_path / "simmim.pth")


def test_a_pickled_checkpoint_is_refused_with_how_to_extract_it(tmp_path):
    torch.save({"model": {}, "args": logging.getLogger("x")}, tmp_path / "full.pth")
    with pytest.raises(importers.ImportMismatch, match=r"weights_only=True.*save its state dict"):
        imported(tmp_path / "full.pth")


@pytest.mark.slow
def test_a_timm_vit_ti16_state_dict_fine_tunes(tmp_path):
    """The acceptance: vit_tiny_patch16_224 saved by timm, then the fine-tuning
    run with config.init_from=FILE (Ti/16 at 32 px: its 14 x 14 learned table
    is dropped for the sin-cos one, with a warning)."""
    from fake_fashion_mnist import write_fake_set
    import tiny_config

    from symmim_jax import finetune

    torch.manual_seed(0)
    save_file(
        dict(timm.create_model("vit_tiny_patch16_224", num_classes=0).state_dict()),
        tmp_path / "vit_ti16.safetensors",
    )
    (tmp_path / "fmnist").mkdir()
    write_fake_set(tmp_path / "fmnist", num_train=64, num_test=12)
    config = tiny_config.finetune()
    config.model.variant, config.input.image_size = "Ti/16", 32
    config.dataset.update(manual_dir=str(tmp_path / "fmnist"), data_dir=str(tmp_path / "tfds"))
    config.update(total_steps=2, eval_every=2, init_from=str(tmp_path / "vit_ti16.safetensors"))
    finetune.train(config, str(tmp_path / "ft"))
    results = json.loads((tmp_path / "ft" / "results.json").read_text())
    assert results["init_from"] == config.init_from and results["steps"] == 2


def test_pretraining_warm_starts_both_branches_from_a_timm_state_dict(tmp_path, fake_fmnist):
    """config.init_from in pretraining: the imported encoder in the online
    branch and the target (the EMA starts equal to it); the heads as initialized."""
    import flax
    import tiny_config

    from symmim_jax import pretrain

    path = tmp_path / "vit.safetensors"
    save_file(dict(timm_vit_mu4().state_dict()), path)
    config = tiny_config.get_config()
    config.dataset.manual_dir, config.dataset.data_dir = (str(d) for d in fake_fmnist[:2])
    config.model.pos_embed, config.init_from = "learned", str(path)
    task = pretrain.Pretraining(config)
    task.check_config()
    task.read_inputs()

    @flax.struct.dataclass
    class State:
        params: dict
        target_params: dict

    heads = {"pixel_head": {"kernel": np.ones((32, 48))}}
    state = task.load_pretrained(State({"encoder": None, **heads}, {"encoder": None}))
    _, expected, _ = imported(path)
    for branch in (state.params, state.target_params):
        jax.tree.map(np.testing.assert_array_equal, branch["encoder"], expected)
    assert state.params["pixel_head"] is heads["pixel_head"]
