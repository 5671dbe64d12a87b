"""Export to a folder in the layout of timm models on the Hugging Face Hub:
`config.json` (architecture, model_args, pretrained_cfg), `model.safetensors`
and a `README.md` model card, loadable offline with
`timm.create_model("local-dir:FOLDER", pretrained=True)` (timm >= 1.0.16) and
uploadable as it is with `huggingface_hub`.

The card states what the workdir's records hold: the method, data, run length
(config.json), the evaluation results (results.json) and the export parity
measured by `--verify` (JAX against timm loading this very folder).
"""

import json

from symmim_jax.interop import timm_vit
from symmim_jax.train.paths import as_path

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"


def run_records(workdir: str) -> tuple[dict, dict]:
    """(config.json, results.json) of the run, {} where absent; a fine-tuning
    run's WORKDIR/best/ finds them one folder up."""
    found = {}
    for name in (CONFIG, "results.json"):
        for folder in (as_path(workdir), as_path(workdir).parent):
            if name not in found and (folder / name).exists():
                found[name] = json.loads((folder / name).read_text())
    return found.get(CONFIG, {}), found.get("results.json", {})


def hub_config(model: timm_vit.TimmModel, width: int, run_config: dict) -> dict:
    """timm's config.json: `architecture` + `model_args` build the model,
    `pretrained_cfg` says how to feed it (size, normalization, eval crop)."""
    inputs = run_config.get("input", {})
    args = {key: value for key, value in model.kwargs.items() if key != "num_classes"}
    num_classes = model.kwargs["num_classes"]
    return {
        "architecture": model.name.partition(".")[0],
        "num_classes": num_classes,
        "num_features": width,
        "global_pool": model.kwargs.get("global_pool", "token"),
        "model_args": args,
        "pretrained_cfg": {
            "input_size": [3, model.image_size, model.image_size],
            "interpolation": "bicubic",
            "crop_pct": inputs.get("eval_crop_pct", 0.875),
            "crop_mode": "center",
            "mean": list(inputs.get("mean", (0.485, 0.456, 0.406))),
            "std": list(inputs.get("std", (0.229, 0.224, 0.225))),
            "num_classes": num_classes,
            "first_conv": "patch_embed.proj",
            "classifier": "head",
        },
    }


def usage(folder: str) -> str:
    """The Python lines that load the folder with timm, offline."""
    return f"import timm\nmodel = timm.create_model({'local-dir:' + folder!r}, pretrained=True)"


def _run_length(run_config: dict) -> str:
    if run_config.get("total_steps"):
        return f"{run_config['total_steps']} steps"
    return f"{run_config['epochs']} epochs" if "epochs" in run_config else "not recorded"


def model_card(
    what: str, step: int, run_config: dict, results: dict, parity: dict | None, folder: str
) -> str:
    """README.md: YAML front matter for the Hub, then what the records say."""
    dataset = run_config.get("dataset", {})
    method = run_config.get("method") or ("fine-tuning" if "finetune" in run_config else None)
    init = results.get("init_from") or run_config.get("init_from")
    rows = [
        ("exported", f"the {what} of step {step}"),
        ("method", method or "not recorded"),
        ("model", run_config.get("model", {}).get("variant", "not recorded")),
        ("data", f"{dataset.get('name', 'not recorded')}, split {dataset.get('split', '?')}"),
        ("run length", _run_length(run_config)),
        ("image size", str(run_config.get("input", {}).get("image_size", "not recorded"))),
    ]
    if init:
        rows.append(("started from", str(init)))
    scores = {k: v for k, v in results.items() if k in ("top1", "top5", "best_top1", "best_step")}
    rows.append(("evaluation", ", ".join(f"{k} {v}" for k, v in scores.items()) or "none recorded"))
    rows.append(
        (
            "export parity",
            ", ".join(f"{k} {v:.2e}" for k, v in parity.items())
            + " max abs difference JAX vs timm (float32, random images)"
            if parity
            else "not measured (export with --verify)",
        )
    )
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    return (
        "---\nlibrary_name: timm\ntags:\n- image-feature-extraction\n- timm\n- symmim_jax\n---\n"
        f"# {folder}\n\nA ViT exported by `python -m symmim_jax.export` from a symmim_jax "
        f"run.\n\n| | |\n|---|---|\n{table}\n\n```python\n{usage(folder)}\n```\n"
    )


def write_folder(folder: str, state: dict, config: dict):
    """model.safetensors and config.json into `folder` (created)."""
    timm_vit.write(state, str(as_path(folder) / WEIGHTS))
    (as_path(folder) / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def push(folder: str, repo_id: str) -> str:
    """Uploads the folder to the Hub repo `repo_id` (created if needed) -> its URL."""
    import huggingface_hub  # needs a token and the network: never in tests

    api = huggingface_hub.HfApi()
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=folder)
    return f"https://huggingface.co/{repo_id}"
