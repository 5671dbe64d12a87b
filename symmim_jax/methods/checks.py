"""Config checks that several methods' sections share; each raises ValueError
naming the field and the fix."""
from symmim_jax.models import vit


def grid_side(config) -> int:
    """Patches per side of the (square) input."""
    return config.input.image_size // vit.decode_variant(config.model.variant).patch_size


def mask_cell(config, name: str, field: str) -> int:
    """config.<name>.<field>, a mask cell in pixels -> the cell in patches."""
    cell, patch = config[name][field], vit.decode_variant(config.model.variant).patch_size
    if cell <= 0 or cell % patch:
        raise ValueError(f"config.{name}.{field}={cell} must be a positive multiple of "
                         f"the patch size {patch} (a cell is a whole number of patches).")
    return cell // patch


def mask_ratio(config, name: str, field: str, num_units: int):
    """config.<name>.<field> must leave at least one of `num_units` masked and
    one visible."""
    ratio = config[name][field]
    if not 0 < round(ratio * num_units) < num_units:
        raise ValueError(
            f"config.{name}.{field}={ratio} masks {round(ratio * num_units)} of "
            f"{num_units}: use a ratio that leaves at least one masked and one visible.")
