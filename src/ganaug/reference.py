"""The reference feature network behind the generator metrics.

A ganaug CNN trained with its default settings on the full real *training* split (never the test
split), stored in the package under a versioned name with the real test-set feature statistics
it was built with. Rebuild with `ganaug build-reference --dataset NAME`; bump REFERENCE_VERSION
whenever the architecture or its training changes, since every generator metric depends on it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .data import get_dataset, load_cached, prepare
from .errors import UserError
from .export import load_weights, save_weights
from .fit import EVAL_BATCH, build_classifier, fit, predict, scores, step_probe, to_input
from .runs import atomic_write_json, versions
from .precision import training_precision
from .runtime import resolve_device, seed_everything

REFERENCE_VERSION = "v1"
REFERENCE_ARCH = "cnn"
# Pinned here rather than taken from the CNN's defaults: the feature space must not move when the
# classifier's defaults do (change these only with a new REFERENCE_VERSION).
REFERENCE_KWARGS = {"channels": (32, 64, 128), "hidden": 256, "dropout": 0.3}
REFERENCE_SEED = 0
ASSETS = Path(__file__).parent / "assets" / "reference"


def reference_path(dataset: str) -> Path:
    return ASSETS / f"{dataset}-{REFERENCE_ARCH}-{REFERENCE_VERSION}.safetensors"


@lru_cache(maxsize=4)
def load_reference(dataset: str) -> torch.nn.Module:
    path = reference_path(dataset)
    if not path.is_file():
        raise UserError(f"no reference network for {dataset} ({path}); build it with "
                        f"`ganaug build-reference --dataset {dataset}`")
    model = build_classifier(REFERENCE_ARCH, get_dataset(dataset), **REFERENCE_KWARGS)
    # channels_last: the metrics only run it forward, and its convolutions run ~1.7x faster
    # that way on CPU (measured, one thread)
    return load_weights(model, path).eval().to(memory_format=torch.channels_last)


@lru_cache(maxsize=4)
def reference_stats(dataset: str) -> dict:
    path = reference_path(dataset).with_suffix(".json")
    if not path.is_file():
        raise UserError(f"reference statistics for {dataset} are missing; run "
                        f"`ganaug build-reference --dataset {dataset}`")
    return json.loads(path.read_text())


@torch.no_grad()
def features_and_logits(model: torch.nn.Module, images: torch.Tensor,
                        batch_size: int = EVAL_BATCH) -> tuple[np.ndarray, torch.Tensor]:
    """Penultimate reference features (float64 [N, d]) and logits (float32 [N, classes]) of uint8
    images [N, 28, 28], from one forward pass."""
    model.eval()
    feats, logits = [], []
    for i in range(0, len(images), batch_size):
        embedding = model.embed(to_input(images[i:i + batch_size], channels_last=False))
        feats.append(embedding.double())
        logits.append(model.classify(embedding).float())
    return torch.cat(feats).numpy(), torch.cat(logits)


def features(model: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    """Penultimate reference features (float64 [N, d]) of uint8 images [N, 28, 28]."""
    return features_and_logits(model, images)[0]


def build_reference(dataset: str, data_dir: str | Path, device: str = "auto") -> dict:
    """Train the reference network on the full training split and store it with its statistics."""
    from .config import classifier_config

    cfg = classifier_config(REFERENCE_ARCH, dataset=dataset, seed=REFERENCE_SEED)
    dev = resolve_device(device)
    data = prepare(data_dir, dataset, 1.0, REFERENCE_SEED, cfg.val_fraction)
    generator = seed_everything(REFERENCE_SEED)
    model = build_classifier(REFERENCE_ARCH, data.info, **REFERENCE_KWARGS)
    precision, _ = training_precision("auto", dev, lambda: step_probe(
        build_classifier(REFERENCE_ARCH, data.info, **REFERENCE_KWARGS), cfg.optim,
        data.info.num_classes, dev))
    result = fit(model, cfg.optim, data.train_x, data.train_y, data.val_x, data.val_y, device=dev,
                 precision=precision, generator=generator,
                 description=f"reference network ({dataset})")
    model = model.cpu().eval()
    test_x, test_y = load_cached(data_dir, dataset, "test")
    test_feats = features(model, test_x)
    path = reference_path(dataset)
    save_weights(model, path)
    meta = {
        "version": REFERENCE_VERSION, "arch": REFERENCE_ARCH, "model_kwargs": REFERENCE_KWARGS,
        "dataset": dataset,
        "trained_on": f"the official training split ({len(data.train_y)} images; best epoch by "
                      f"{len(data.val_y)} held-out training images); the test split only "
                      "provides the statistics below",
        "rebuild": f"ganaug build-reference --dataset {dataset}",
        "epochs": result.epochs, "best_epoch": result.best_epoch, "seed": REFERENCE_SEED,
        "val_accuracy": scores(predict(model, data.val_x, torch.device("cpu")), data.val_y)["accuracy"],
        "test_accuracy": scores(predict(model, test_x, torch.device("cpu")), test_y)["accuracy"],
        "feature_dim": int(test_feats.shape[1]),
        "test_mu": test_feats.mean(axis=0).tolist(),
        "test_sigma": np.cov(test_feats, rowvar=False).tolist(),
        "versions": versions(),
    }
    atomic_write_json(path.with_suffix(".json"), meta)
    load_reference.cache_clear()
    reference_stats.cache_clear()
    return meta
