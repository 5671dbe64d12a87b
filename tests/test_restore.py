"""Restoring the pretrained encoder: equal to the saved one, wrong sizes and
paths refused with what was found and expected, other image sizes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fake_pretraining import encoder_params, vit_config, write_workdir
from symmim_jax import restore, sharding
from symmim_jax.models import vit


def test_restored_encoder_equals_saved_one_on_the_mesh(tmp_path):
    saved = encoder_params("mu/4", 16, seed=3)
    workdir = write_workdir(tmp_path / "pre", saved)
    encoder = vit.build_encoder(vit_config("mu/4"))
    loaded, info = restore.load_encoder(workdir, None, encoder, image_size=16)
    assert info["step"] == 7 and info["init_from"] == str(tmp_path / "pre")
    assert jax.tree.structure(loaded) == jax.tree.structure(saved)
    placed = restore.place(loaded, sharding.data_mesh())
    for a, b in zip(jax.tree.leaves(placed), jax.tree.leaves(saved)):
        assert len(a.sharding.device_set) == jax.device_count()
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_new_image_size_rebuilds_the_position_table(tmp_path):
    """Pretrained at 16 px, used at 24 px: the same parameters, a 6 x 6 grid."""
    saved = encoder_params("mu/4", 16)
    encoder = vit.build_encoder(vit_config("mu/4"))
    loaded, _ = restore.load_encoder(write_workdir(tmp_path / "pre", saved), None,
                                     encoder, image_size=24)
    tokens = encoder.apply({"params": loaded}, jnp.ones((1, 24, 24, 3)))
    assert tokens.shape == (1, 1 + 36, 32)


def test_wrong_model_size_names_found_and_expected(tmp_path):
    workdir = write_workdir(tmp_path / "pre", encoder_params("mu/4", 16))
    encoder = vit.build_encoder(vit_config("mu/8"))
    with pytest.raises(restore.EncoderMismatch,
                       match=r"width 32, depth 2, patch 4\).*\(width 32, depth 2, patch 8\)"
                             r".*patch_embed/kernel"):
        restore.load_encoder(workdir, None, encoder, image_size=16)
    deeper = encoder.clone(depth=3, parent=None)
    with pytest.raises(restore.EncoderMismatch, match=r"missing \['blocks_2/"):
        restore.load_encoder(workdir, None, deeper, image_size=16)


def test_missing_path_and_step_are_named(tmp_path):
    encoder = vit.build_encoder(vit_config("mu/4"))
    with pytest.raises(FileNotFoundError, match="is not a pretraining workdir"):
        restore.load_encoder(str(tmp_path / "nowhere"), None, encoder, image_size=16)
    workdir = write_workdir(tmp_path / "pre", encoder_params("mu/4", 16))
    with pytest.raises(FileNotFoundError, match=r"step 3 .* available: \[7\]"):
        restore.load_encoder(workdir, 3, encoder, image_size=16)
