"""Classical augmentation on whole tensor batches: random shifts, horizontal flips, random erasing.

Written by hand on purpose: kornia's equivalent pipeline (RandomCrop with padding, RandomHorizontalFlip,
RandomErasing) produced the same kind of images but took ~19 ms per batch of 256 here, a third of
a CNN training step; these gathers and masks take ~1 ms. Everything runs on batches in [0, 1]
(before the model's normalisation) and draws from an explicit generator, so runs repeat exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import AugmentConfig
from .runtime import memory_format_of


class ClassicalAugment:
    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: float [N, 1, H, W] in [0, 1] -> an augmented batch of the same shape and layout."""
        memory_format = memory_format_of(x)
        x = x.contiguous()
        if self.cfg.max_shift:
            x = random_shift(x, self.cfg.max_shift, generator)
        if self.cfg.hflip_p:
            x = random_hflip(x, self.cfg.hflip_p, generator)
        if self.cfg.erase_p:
            x = random_erase(x, self.cfg.erase_p, self.cfg.erase_scale, generator)
        return x.contiguous(memory_format=memory_format)


def _rand(n: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=generator).to(device)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero padding, then a random crop)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    padded = padded.gather(2, rows.expand(n, c, h, w + 2 * max_shift))
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return padded.gather(3, cols.expand(n, c, h, w))


def random_hflip(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    flip = (_rand(len(x), generator, x.device) < p)[:, None, None, None]
    return torch.where(flip, x.flip(3), x)


def random_erase(x: torch.Tensor, p: float, scale: tuple[float, float],
                 generator: torch.Generator) -> torch.Tensor:
    """Zero a random rectangle (area share in ``scale``, aspect ratio 1/3..3) with probability p."""
    n, _, h, w = x.shape
    dev = x.device
    area = (scale[0] + (scale[1] - scale[0]) * _rand(n, generator, dev)) * h * w
    log_ratio = (torch.rand(n, generator=generator).to(dev) * 2 - 1) * torch.log(torch.tensor(3.0))
    ratio = torch.exp(log_ratio)
    eh = torch.sqrt(area * ratio).round().clamp(1, h).long()
    ew = torch.sqrt(area / ratio).round().clamp(1, w).long()
    top = (_rand(n, generator, dev) * (h - eh + 1)).long()
    left = (_rand(n, generator, dev) * (w - ew + 1)).long()
    apply = _rand(n, generator, dev) < p
    ys = torch.arange(h, device=dev)[None, :]
    xs = torch.arange(w, device=dev)[None, :]
    in_rows = (ys >= top[:, None]) & (ys < (top + eh)[:, None])
    in_cols = (xs >= left[:, None]) & (xs < (left + ew)[:, None])
    mask = (in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None])[:, None]
    return x.masked_fill(mask, 0.0)


def diff_augment(x: torch.Tensor, shift: float, cutout: float, generator: torch.Generator) -> torch.Tensor:
    """DiffAugment (Zhao et al., 2020) for grayscale: translation and cutout, differentiable in x.

    Applied to real *and* generated batches before the discriminator, so it cannot tell them
    apart by the augmentation and the generator learns the un-augmented distribution.
    ``shift`` and ``cutout`` are shares of the image side, as in the paper (0.125 and 0.5).
    """
    n, _, h, w = x.shape
    max_shift = int(round(h * shift))
    if max_shift:
        x = random_shift(x.contiguous(), max_shift, generator)
    size = int(round(h * cutout))
    if size:
        dev = x.device
        cy = torch.randint(0, h + 1 - size % 2, (n,), generator=generator).to(dev)
        cx = torch.randint(0, w + 1 - size % 2, (n,), generator=generator).to(dev)
        ys = torch.arange(h, device=dev)[None, :]
        xs = torch.arange(w, device=dev)[None, :]
        in_rows = (ys >= (cy - size // 2)[:, None]) & (ys < (cy + (size + 1) // 2)[:, None])
        in_cols = (xs >= (cx - size // 2)[:, None]) & (xs < (cx + (size + 1) // 2)[:, None])
        keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
        x = x * keep[:, None].to(x.dtype)
    return x
