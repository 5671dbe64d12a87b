"""Every file path of a run goes through etils.epath: local folders and
bucket URLs (gs://..., for pod runs) alike."""

from etils import epath


def as_path(path) -> epath.Path:
    """Local paths made absolute (orbax needs that); URLs kept as given."""
    path = epath.Path(path)
    return path if "://" in str(path) else path.absolute()
