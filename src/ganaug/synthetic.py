"""Synthetic training images for `--synthetic-from GEN_RUN_DIR --synthetic-ratio R`.

The generator must have been trained on exactly this classifier's real training subset (same
data set, fraction, seed and validation share, hence the same indices): otherwise it could
carry information from images the classifier is not allowed to see, such as its validation split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import ClassifierConfig
from .data import RealData
from .errors import UserError
from .generate import LoadedGenerator, load_generator

SYNTHETIC_SEED_OFFSET = 1_000_003  # synthetic noise differs from every other stream of the seed
FILTER_MAX_ROUNDS = 20  # give up oversampling a class after this many rounds of candidates


def check_same_subset(gen: LoadedGenerator, cfg: ClassifierConfig) -> None:
    g = gen.cfg
    ours = (cfg.dataset, cfg.fraction, cfg.seed, cfg.val_fraction)
    theirs = (g.dataset, g.fraction, g.seed, g.val_fraction)
    if ours != theirs:
        raise UserError(
            f"{gen.run.name} was trained on another real subset (dataset {g.dataset}, fraction "
            f"{g.fraction}, seed {g.seed}) than this classifier (dataset {cfg.dataset}, fraction "
            f"{cfg.fraction}, seed {cfg.seed}); train a generator with the same --dataset, "
            "--fraction and --seed so it sees only this classifier's training images")


def quotas(real_y: torch.Tensor, ratio: float, num_classes: int) -> np.ndarray:
    """Synthetic images per class: ``ratio`` times the real count of each class."""
    counts = np.bincount(real_y.numpy(), minlength=num_classes)
    return np.rint(counts * ratio).astype(int)


@torch.no_grad()
def draw(gen: LoadedGenerator, per_class: np.ndarray, seed: int, device, filter_model=None,
         min_confidence: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Class-balanced uint8 images; with a filter model, only those it assigns at least
    ``min_confidence`` to the requested class (oversampling until each quota is met)."""
    from .fit import predict
    from .train_generator import sample, to_uint8

    model = gen.model.to(device)
    images, labels = [], []
    drawn = accepted = 0
    need = per_class.copy()
    for round_ in range(FILTER_MAX_ROUNDS if filter_model is not None else 1):
        if need.sum() == 0:
            break
        # oversample by the acceptance rate seen so far (at least 1x, at most 4x)
        factor = 1.0 if drawn == 0 else min(4.0, max(1.0, drawn / max(accepted, 1)))
        ask = np.ceil(need * factor).astype(int)
        y = torch.from_numpy(np.repeat(np.arange(len(ask)), ask)).long()
        x = to_uint8(sample(model, y, gen.z_dim, seed + round_, device))
        drawn += len(y)
        if filter_model is not None:
            probs = predict(filter_model, x, device).softmax(1)
            keep = probs[torch.arange(len(y)), y] >= min_confidence
            x, y = x[keep], y[keep]
        accepted += len(y)
        for c in np.flatnonzero(need):
            idx = (y == c).nonzero().squeeze(1)[:need[c]]
            images.append(x[idx])
            labels.append(y[idx])
            need[c] -= len(idx)
    x = torch.cat(images) if images else torch.empty(0, 28, 28, dtype=torch.uint8)
    y = torch.cat(labels) if labels else torch.empty(0, dtype=torch.long)
    stats = {"drawn": drawn, "accepted": accepted,
             "acceptance_rate": accepted / drawn if drawn else None,
             "shortfall_per_class": need.tolist()}
    return x, y, stats


def load_filter_model(run_dir: str | Path, cfg: ClassifierConfig):
    """A classifier trained on the same real subset only (a `real`/Original run)."""
    from .export import load_weights
    from .fit import build_classifier
    from .runs import read_json, resolve_run

    run = resolve_run(run_dir, "classifiers")
    config = read_json(run.models / "config.json")
    r = config.get("run", {})
    if (r.get("dataset"), r.get("fraction"), r.get("seed")) != (cfg.dataset, cfg.fraction, cfg.seed) \
            or r.get("synthetic_from"):
        raise UserError(f"the filter classifier {run.name} must be a real-data run with the same "
                        "--dataset, --fraction and --seed as this classifier")
    from .data import get_dataset

    model = build_classifier(config["arch"], get_dataset(cfg.dataset), **config.get("model_kwargs", {}))
    return load_weights(model, run.models / "model.safetensors").eval()


def synthetic_set(cfg: ClassifierConfig, data: RealData, device) -> tuple[torch.Tensor, torch.Tensor, dict]:
    gen = load_generator(cfg.synthetic_from)
    check_same_subset(gen, cfg)
    filter_model = None
    if cfg.synthetic_min_confidence > 0:
        if not cfg.synthetic_filter_from:
            raise UserError("filtering synthetic images needs a real-data classifier of the same "
                            "subset (--filter-with RUN_DIR)")
        filter_model = load_filter_model(cfg.synthetic_filter_from, cfg).to(device)
    per_class = quotas(data.train_y, cfg.synthetic_ratio, data.info.num_classes)
    x, y, stats = draw(gen, per_class, cfg.seed + SYNTHETIC_SEED_OFFSET, device, filter_model,
                       cfg.synthetic_min_confidence)
    if len(y) == 0:
        raise UserError(f"no synthetic images: the filter kept none of {stats['drawn']} drawn from "
                        f"{gen.run.name} at --min-confidence {cfg.synthetic_min_confidence}; lower "
                        "it or train the generator longer")
    info = {"generator_run": str(gen.run.results), "generator": gen.cfg.arch, "count": len(y),
            "ratio": cfg.synthetic_ratio, "per_class": np.bincount(y.numpy(), minlength=len(per_class)).tolist(),
            "mode": cfg.synthetic_mode, "min_confidence": cfg.synthetic_min_confidence, **stats}
    return x, y, info


def mix_synthetic(cfg: ClassifierConfig, data: RealData, device, precision: str, out: Path):
    """Real training images followed by synthetic ones (mode "mix"), or the synthetic set alone
    for the pretraining phase (mode "pretrain"; the caller fine-tunes on real afterwards)."""
    x, y, info = synthetic_set(cfg, data, device)
    if cfg.synthetic_mode == "pretrain":
        return x, y, info
    return torch.cat([data.train_x, x]), torch.cat([data.train_y, y]), info
