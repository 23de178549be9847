"""Load a finished generator run; `ganaug generate` and `ganaug evaluate-generator`."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import get_dataset
from .errors import UserError
from .export import load_weights
from .gan_config import GeneratorConfig, generator_config_from_dict
from .models.generators import build_generator
from .runs import Run, atomic_save, atomic_write_json, finished_run, read_json, resolve_run


@dataclass
class LoadedGenerator:
    run: Run
    cfg: GeneratorConfig
    config: dict  # the run's resolved config.json
    model: nn.Module

    @property
    def z_dim(self) -> int:
        return self.cfg.optim.z_dim


def load_generator(run_dir: str | Path) -> LoadedGenerator:
    run = resolve_run(run_dir, "generators")
    if finished_run(run_dir, "generators") is None:
        raise UserError(f"generator run {run.results} has not finished; resume it with "
                        f"`ganaug train-generator --resume \"{run.results}\"`")
    config = read_json(run.results / "config.json")
    try:
        cfg = generator_config_from_dict(config)
    except (KeyError, TypeError) as exc:
        raise UserError(f"{run.results / 'config.json'} is not a generator config ({exc})") from None
    info = get_dataset(cfg.dataset)
    model = build_generator(cfg.arch, info.num_classes, cfg.optim.z_dim, cfg.optim.g_width, cfg.optim.g_depth)
    load_weights(model, run.models / "generator.safetensors")
    return LoadedGenerator(run, cfg, config, model.eval())


def generate_balanced(gen: LoadedGenerator, per_class: int, seed: int,
                      device=torch.device("cpu")) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [N, 28, 28] and int64 labels [N], ``per_class`` of each class in order."""
    from .train_generator import sample, to_uint8

    info = get_dataset(gen.cfg.dataset)
    labels = torch.arange(info.num_classes).repeat_interleave(per_class)
    return to_uint8(sample(gen.model.to(device), labels, gen.z_dim, seed, device)), labels


def write_npz(path: str | Path, images: torch.Tensor, labels: torch.Tensor, class_names) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        raise UserError(f"--out must name a .npz file; got {path}")
    if path.exists() and path.is_dir():
        raise UserError(f"--out {path} is a folder; give a file name ending in .npz")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images.numpy(), labels=labels.numpy(),
                        class_names=np.array(list(class_names)))
    atomic_save(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
    return path


def generate_command(run_dir, per_class: int, out_file, seed: int) -> str:
    if per_class < 1:
        raise UserError(f"--per-class must be at least 1; got {per_class}")
    gen = load_generator(run_dir)
    images, labels = generate_balanced(gen, per_class, seed)
    path = write_npz(out_file, images, labels, get_dataset(gen.cfg.dataset).class_names)
    return f"wrote {len(labels)} images ({per_class} per class) from {gen.run.name} to {path}"


def evaluate_command(run_dir, data_dir, cas: bool, device: str = "auto") -> dict:
    """Recompute the metrics of a finished generator and update its metrics.json."""
    from .gen_metrics import evaluate_generator
    from .runtime import resolve_device

    gen = load_generator(run_dir)
    dev = resolve_device(device)
    cfg = replace(gen.cfg, cas=cas)
    metrics_path = gen.run.results / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.exists() else {}
    metrics.update(evaluate_generator(gen.model.to(dev), cfg, get_dataset(cfg.dataset),
                                      str(data_dir), dev))
    atomic_write_json(metrics_path, metrics)
    return metrics
