"""`ganaug export RUN_DIR --format onnx`: rebuild a saved model from its weights and config.json,
write its ONNX file again, and check it against PyTorch with onnxruntime.

The new file is written next to the old one and only replaces it once the check passed, so a
failed export leaves the run as it was.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .export import export_classifier, export_generator, load_weights, onnx_max_abs_diff
from .runs import INCOMPLETE_MARKER, Run, read_json, resolve_run

FORMATS = ("onnx",)
PARITY_BATCHES = (1, 64)  # batch sizes checked against PyTorch (the ONNX batch axis is dynamic)
PARITY_TOLERANCE = 1e-3  # largest accepted |PyTorch - onnxruntime| on outputs of order 1
PARITY_SEED = 0
KIND_FILES = {"classifiers": ("model.safetensors", "model.onnx"),
              "generators": ("generator.safetensors", "generator.onnx")}


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: dict[int, float]  # batch size -> largest absolute difference


def run_kind(path: Path) -> str:
    """``classifiers`` or ``generators``, from where the folder sits (results/ or models/)."""
    resolved = path.resolve()
    if len(resolved.parts) >= 3 and resolved.parts[-3] in ("results", "models") \
            and resolved.parts[-2] in KIND_FILES:
        return resolved.parts[-2]
    raise UserError(f"{path} is not a ganaug run folder (expected .../results/classifiers/<label> "
                    "Run <i> or .../results/generators/<label> Run <i>, or the models/ twin)")


def rebuild(kind: str, config: dict, config_path: Path) -> tuple[nn.Module, dict]:
    """The untrained module a run's models/ config.json describes, and its input sizes."""
    try:
        if kind == "classifiers":
            from .models.classifiers import CLASSIFIERS

            model = CLASSIFIERS[config["arch"]](num_classes=config["num_classes"], mean=config["mean"],
                                                std=config["std"], **config.get("model_kwargs", {}))
            return model, {}
        from .models.generators import build_generator

        model = build_generator(config["arch"], config["num_classes"], config["z_dim"], config["g_width"],
                                config.get("g_depth", 0))
        return model, {"z_dim": int(config["z_dim"]), "num_classes": int(config["num_classes"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{config_path} does not describe a {kind[:-1]} ganaug can rebuild "
                        f"({type(exc).__name__}: {exc}); was it written by another version?") from None


def parity_inputs(kind: str, batch: int, shape: dict) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(PARITY_SEED)
    if kind == "classifiers":
        return {"image": torch.rand(batch, 1, 28, 28, generator=gen)}
    return {"z": torch.randn(batch, shape["z_dim"], generator=gen),
            "label": torch.arange(batch, dtype=torch.int64) % shape["num_classes"]}


def export_run(run_dir: str | Path, fmt: str = "onnx") -> ExportResult:
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    path = Path(run_dir)
    if not path.exists():
        raise UserError(f"run folder {path} does not exist")
    if not path.is_dir():
        raise UserError(f"{path} is a file, not a run folder; pass the folder that holds it")
    kind = run_kind(path)
    run: Run = resolve_run(path, kind)
    weights_name, onnx_name = KIND_FILES[kind]
    weights = run.models / weights_name
    if not weights.is_file():
        state = " (the run has not finished)" if (run.models / INCOMPLETE_MARKER).exists() else ""
        raise UserError(f"no {weights_name} in {run.models}{state}; export needs a finished run")
    config_path = run.models / "config.json"
    config = read_json(config_path)
    model, shape = rebuild(kind, config, config_path)
    load_weights(model, weights)
    model.eval()

    target = run.models / onnx_name
    with tempfile.TemporaryDirectory(dir=run.models, prefix=".export-") as tmp:
        fresh = Path(tmp) / onnx_name
        if kind == "classifiers":
            export_classifier(model, fresh)
        else:
            export_generator(model, fresh, shape["z_dim"])
        diffs = {b: onnx_max_abs_diff(model, fresh, parity_inputs(kind, b, shape))
                 for b in PARITY_BATCHES}
        worst = max(diffs.values())
        if not worst <= PARITY_TOLERANCE:  # also catches NaN
            raise UserError(f"the exported graph disagrees with PyTorch (max abs diff {worst:.3g} > "
                            f"{PARITY_TOLERANCE}); {target} was left unchanged")
        os.replace(fresh, target)
    return ExportResult(target, diffs)


def export_command(run_dir: str | Path, fmt: str) -> list[str]:
    result = export_run(run_dir, fmt)
    checks = ", ".join(f"batch {b}: {d:.2e}" for b, d in result.max_abs_diff.items())
    return [f"wrote {result.path}",
            f"max abs diff PyTorch vs onnxruntime: {max(result.max_abs_diff.values()):.2e} ({checks})"]
