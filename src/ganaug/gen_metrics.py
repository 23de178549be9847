"""Generator metrics, each named by how it is measured.

Features come from ganaug's *reference network* (a CNN trained on the full real training split,
stored in the package under a versioned name; see `ganaug build-reference`), never from Inception:
the numbers are comparable across ganaug runs, not with published Inception FIDs.

  fd_domain            Fréchet distance to the real test-set feature statistics (cached)
  kid_domain           unbiased kernel inception distance (cubic polynomial kernel), mean over subsets
  precision_k3 / recall_k3 / density / coverage   k-NN manifold metrics (prdc, k = 3)
  fd_domain_per_class  Fréchet distance per class, generated class c vs real test class c
  gan_test_accuracy    the reference network's accuracy on generated images vs requested labels
  cas_accuracy         classification accuracy score: a CNN trained on generated images only,
                       tested on the real test split
"""

from __future__ import annotations

import contextlib
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .data import DatasetInfo, get_dataset, load_cached
from .fit import build_classifier, predict
from .reference import (REFERENCE_ARCH, features, features_and_logits, load_reference, reference_path,
                        reference_stats)

PRDC_K = 3
PRDC_REAL = 5000  # real test images (class-balanced) for the k-NN manifolds
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
SAMPLE_SEED_OFFSET = 10_007  # metric samples use other noise than the training run's grids


def gaussian_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


@lru_cache(maxsize=4)
def real_test_features(dataset: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_cached(data_dir, dataset, "test")
    return features(load_reference(dataset), x), y.numpy()


# ---------------------------------------------------------------- distances

def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), as in Heusel et al. (2017).

    Tr((S1 S2)^(1/2)) is the sum of the square roots of the eigenvalues of S1 S2, which are those
    of the symmetric R S2 R with R = S1^(1/2): two symmetric eigendecompositions instead of
    scipy's general sqrtm (4x faster at 256 features on one thread, same value to 1e-8; a collapsed
    generator's singular covariance needs no regularising, its eigenvalues are clipped at 0)."""
    diff = mu1 - mu2
    w, v = np.linalg.eigh(sigma1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    product = root @ sigma2 @ root
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    trace_covmean = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_covmean)


def kernel_distance(real: np.ndarray, fake: np.ndarray, subsets: int = KID_SUBSETS,
                    subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over random subsets (Binkowski 2018)."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(real), len(fake))
    d = real.shape[1]
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                      + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def balanced_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                           for c in np.unique(labels)])


# ---------------------------------------------------------------- all metrics

def feature_metrics(images: torch.Tensor, labels: torch.Tensor, dataset: str, data_dir: str) -> dict:
    """Every metric that needs only the reference network: fd, kid, prdc, per-class fd, GAN-test."""
    from prdc import compute_prdc

    info = get_dataset(dataset)
    ref = load_reference(dataset)
    real, real_y = real_test_features(dataset, str(Path(data_dir).resolve()))
    fake, logits = features_and_logits(ref, images)
    fake_y = labels.numpy()
    stats = reference_stats(dataset)
    mu_r, sigma_r = np.asarray(stats["test_mu"]), np.asarray(stats["test_sigma"])
    mu_f, sigma_f = gaussian_stats(fake)
    kid, kid_std = kernel_distance(real, fake)
    real_idx = balanced_subset(real_y, PRDC_REAL // info.num_classes, seed=0)
    fake_idx = balanced_subset(fake_y, PRDC_REAL // info.num_classes, seed=1)
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the sample counts
        prdc = compute_prdc(real_features=real[real_idx], fake_features=fake[fake_idx], nearest_k=PRDC_K)
    per_class = {}
    for c, name in enumerate(info.class_names):
        r, f = real[real_y == c], fake[fake_y == c]
        per_class[name] = frechet_distance(*gaussian_stats(f), *gaussian_stats(r)) if len(f) > 1 else None
    return {
        "fd_domain": frechet_distance(mu_f, sigma_f, mu_r, sigma_r),
        "kid_domain": kid, "kid_domain_std": kid_std,
        f"precision_k{PRDC_K}": float(prdc["precision"]), f"recall_k{PRDC_K}": float(prdc["recall"]),
        "density": float(prdc["density"]), "coverage": float(prdc["coverage"]),
        "fd_domain_per_class": per_class,
        "gan_test_accuracy": float((logits.argmax(1) == labels).float().mean()),
        "feature_network": f"{reference_path(dataset).name} (penultimate layer, {real.shape[1]} features)",
        "sample_counts": {"generated": len(images), "real_test": len(real),
                          "prdc_real": len(real_idx), "prdc_generated": len(fake_idx),
                          "kid_subsets": KID_SUBSETS,
                          "kid_subset_size": min(KID_SUBSET_SIZE, len(real), len(fake))},
    }


def cas_accuracy(images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, data_dir: str,
                 seed: int, device) -> dict:
    """Train ganaug's CNN (default settings) on generated images only; test on the real test split.

    Best-epoch selection uses a held-out 10% of the *generated* images, so no real label is seen.
    """
    from .config import classifier_config
    from .data import split_indices
    from .fit import fit, scores, step_probe
    from .precision import training_precision
    from .runtime import seed_everything

    cfg = classifier_config(REFERENCE_ARCH, dataset=info.name, seed=seed)
    train_idx, val_idx = split_indices(labels, 1.0, seed, cfg.val_fraction, info.num_classes)
    generator = seed_everything(seed)
    model = build_classifier(REFERENCE_ARCH, info)
    precision, _ = training_precision("auto", device, lambda: step_probe(
        build_classifier(REFERENCE_ARCH, info), cfg.optim, info.num_classes, device))
    fit(model, cfg.optim, images[train_idx], labels[train_idx], images[val_idx], labels[val_idx],
        device=device, precision=precision, generator=generator, description="CAS classifier")
    test_x, test_y = load_cached(data_dir, info.name, "test")
    result = scores(predict(model, test_x, device, cfg.optim.channels_last), test_y)
    return {"cas_accuracy": result["accuracy"], "cas_f1": result["f1"],
            "cas_counts": {"generated_train": len(train_idx), "generated_val": len(val_idx),
                           "real_test": len(test_y)}}


def evaluate_generator(sampler: torch.nn.Module, cfg, info: DatasetInfo, data_dir: str,
                       device) -> dict:
    """All metrics of one generator (its sampling network), on class-balanced generated images:
    ``cfg.metric_per_class`` per class for the feature metrics, ``cfg.cas_per_class`` for CAS."""
    from .train_generator import sample, to_uint8

    def generate(per_class: int, seed: int):
        labels = torch.arange(info.num_classes).repeat_interleave(per_class)
        return to_uint8(sample(sampler, labels, cfg.optim.z_dim, seed, device)), labels

    images, labels = generate(cfg.metric_per_class, cfg.seed + SAMPLE_SEED_OFFSET)
    metrics = feature_metrics(images, labels, info.name, data_dir)
    if cfg.cas:
        images, labels = generate(cfg.cas_per_class, cfg.seed + 2 * SAMPLE_SEED_OFFSET)
        metrics.update(cas_accuracy(images, labels, info, data_dir, cfg.seed, device))
    return metrics

