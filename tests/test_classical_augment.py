"""ClassicalAugment (--classical-aug): shifts, flips and erasing on real image batches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import FASHION, read_idx_numpy
from ganaug.augment import ClassicalAugment
from ganaug.config import AugmentConfig

N = 64


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    """64 real training images, float [64, 1, 28, 28] in [0, 1]."""
    images = read_idx_numpy(FASHION / "train-images-idx3-ubyte.gz")[:N]
    return torch.from_numpy(images.copy()).unsqueeze(1).float() / 255


def augment(cfg: AugmentConfig, x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return ClassicalAugment(cfg)(x, torch.Generator().manual_seed(seed))


def translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x [C, H, W] moved down by dy and right by dx, zeros shifted in."""
    h, w = x.shape[-2:]
    m = max(abs(dy), abs(dx))
    padded = F.pad(x, (m, m, m, m))
    return padded[..., m - dy: m - dy + h, m - dx: m - dx + w]


def test_shapes_dtype_and_memory_format_are_kept(batch):
    cfg = AugmentConfig(erase_p=1.0)
    out = augment(cfg, batch)
    assert out.shape == batch.shape and out.dtype == batch.dtype and out.is_contiguous()
    assert out.min() >= 0 and out.max() <= 1
    rgb = batch.repeat(1, 3, 1, 1).contiguous(memory_format=torch.channels_last)
    out = augment(cfg, rgb)
    assert out.shape == rgb.shape
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert torch.equal(batch, augment(AugmentConfig(0, 0.0, 0.0), batch))  # all off: identity


def test_same_seed_same_batch_other_seed_other_batch(batch):
    cfg = AugmentConfig()
    assert torch.equal(augment(cfg, batch, 1), augment(cfg, batch, 1))
    assert not torch.equal(augment(cfg, batch, 1), augment(cfg, batch, 2))


def test_shift_is_a_translation_within_the_range(batch):
    out = augment(AugmentConfig(max_shift=3, hflip_p=0.0, erase_p=0.0), batch)
    shifts = []
    for original, shifted in zip(batch, out):
        matches = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                   if torch.equal(translate(original, dy, dx), shifted)]
        assert matches, "augmented image is not a translation of its original by <= 3 pixels"
        shifts.append(matches[0])
    assert len(set(shifts)) > 10  # shifts vary across the batch, in both directions on both axes
    dys, dxs = {dy for dy, _ in shifts}, {dx for _, dx in shifts}
    assert min(dys) < 0 < max(dys) and min(dxs) < 0 < max(dxs)


def test_flip_mirrors_left_and_right(batch):
    assert torch.equal(augment(AugmentConfig(0, 1.0, 0.0), batch), batch.flip(3))
    out = augment(AugmentConfig(0, 0.5, 0.0), batch)
    flipped = [torch.equal(o, x.flip(2)) for o, x in zip(out, batch)]
    kept = [torch.equal(o, x) for o, x in zip(out, batch)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 <= sum(flipped) <= 48  # about half of 64


def test_erase_zeroes_one_rectangle_of_the_configured_size(batch):
    cfg = AugmentConfig(0, 0.0, erase_p=1.0, erase_scale=(0.02, 0.15))
    mask = augment(cfg, torch.ones_like(batch), seed=3) == 0
    out = augment(cfg, batch, seed=3)
    assert torch.equal(out, batch.masked_fill(mask, 0.0))  # erased pixels are zero, others kept
    for m in mask[:, 0]:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        box = m[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
        assert box.all()  # a filled rectangle
        area = int(m.sum())
        assert 0.01 * 784 <= area <= 0.2 * 784  # 2%..15% of the image, up to rounding
    some = augment(AugmentConfig(0, 0.0, erase_p=0.25), torch.ones(400, 1, 28, 28)) == 0
    assert 60 <= int(some.flatten(1).any(1).sum()) <= 140  # about a quarter of 400


@pytest.mark.parametrize("arch, flag, augmented, flip_tta", [
    ("transfer", [], True, True), ("transfer", ["--no-classical-aug"], False, False),
    ("transfer", ["--no-flip-tta"], True, False), ("cnn", [], False, False),
    ("cnn", ["--classical-aug"], True, True), ("cnn", ["--flip-tta"], False, True),
    ("shallow", [], False, False)])
def test_which_architectures_augment_by_default(arch, flag, augmented, flip_tta):
    """`transfer` trains with classical augmentation unless --no-classical-aug; the others only with
    --classical-aug. A model trained on mirror images is evaluated on both views unless
    --no-flip-tta. What train-classifier would train, read from its real command line."""
    from ganaug import cli

    args = cli.build_parser().parse_args(["train-classifier", "--arch", arch, *flag])
    cfg = cli.classifier_config_from_args(args)
    assert (cfg.classical_aug, cfg.flip_tta) == (augmented, flip_tta)
