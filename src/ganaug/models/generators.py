"""Class-conditional generators and their discriminators for 28x28 grayscale images.

Every generator maps (z float [N, z_dim], label int64 [N]) to images [N, 1, 28, 28] in [0, 1] (the
tanh output is rescaled inside the module, so the ONNX file and the browser see [0, 1] too).
Discriminators take images in [0, 1] and labels, and return (adversarial logit [N],
class logits [N, classes] or None).

Families (``GENERATORS``):
  cgan    MLP generator and discriminator, label embedding concatenated (Mirza & Osindero, 2014)
  cdcgan  DCGAN-style transposed convolutions; the discriminator sees a learned label plane
  acgan   the same generator; the discriminator has an auxiliary classifier head (Odena et al., 2017)
  sngan   hinge loss, spectral normalisation, class-conditional BatchNorm in the generator and a
          projection discriminator (Miyato & Koyama, 2018)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .layers import GradInInputLayout, MinibatchStd

IMAGE_PIXELS = 28 * 28


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """tanh output in [-1, 1] -> image in [0, 1]."""
    return (torch.tanh(x) + 1) * 0.5


def _from_unit(x: torch.Tensor) -> torch.Tensor:
    return x * 2 - 1


# ---------------------------------------------------------------- MLP (cgan)

class MLPGenerator(nn.Module):
    def __init__(self, num_classes: int, z_dim: int, hidden: tuple[int, ...] = (256, 512, 1024)):
        super().__init__()
        self.z_dim = z_dim
        self.embed = nn.Embedding(num_classes, num_classes)
        layers, width = [], z_dim + num_classes
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.LeakyReLU(0.2, inplace=True)]
            width = h
        layers.append(nn.Linear(width, IMAGE_PIXELS))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        x = self.net(torch.cat([z, self.embed(label)], dim=1))
        return _to_unit(x).view(-1, 1, 28, 28)


class MLPDiscriminator(nn.Module):
    def __init__(self, num_classes: int, hidden: tuple[int, ...] = (512, 256), dropout: float = 0.3):
        super().__init__()
        self.embed = nn.Embedding(num_classes, num_classes)
        layers, width = [], IMAGE_PIXELS + num_classes
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2, inplace=True), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, label: torch.Tensor):
        h = torch.cat([_from_unit(x).flatten(1), self.embed(label)], dim=1)
        return self.net(h).squeeze(1), None


# ---------------------------------------------------------------- convolutional

class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (gain initialised to 1)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(label)[:, :, None, None] + self.bias(label)[:, :, None, None]


class ConvGenerator(nn.Module):
    """z (+ label) -> (2w)x7x7 -> (w)x14x14 -> 1x28x28 with stride-2 transposed convolutions.

    Lean at depth 0 (about 7 MMAC per image at w = 64), since on a laptop CPU convolutions dominate
    training time. ``conditioning="concat"`` feeds a label embedding with z
    (cDCGAN, ACGAN); ``"cbn"`` uses class-conditional BatchNorm instead (SNGAN-style).
    ``depth`` adds that many 3x3 convolution + BatchNorm + ReLU blocks at 7x7 and at 14x14 (each
    pair about 14 MMAC per image at w = 64, so depth 1 triples the generator's cost; a whole acgan
    training step at depth 2, its default, runs at 70% of depth 0's images/s here).
    """

    def __init__(self, num_classes: int, z_dim: int, width: int = 64, conditioning: str = "concat",
                 depth: int = 0):
        super().__init__()
        self.z_dim = z_dim
        self.conditioning = conditioning
        c7, c14 = width * 2, width
        self.c7 = c7
        z_in = z_dim + (num_classes if conditioning == "concat" else 0)
        self.embed = nn.Embedding(num_classes, num_classes) if conditioning == "concat" else None
        self.fc = nn.Linear(z_in, c7 * 7 * 7, bias=False)
        self.up14 = nn.ConvTranspose2d(c7, c14, 4, 2, 1, bias=False)
        self.up28 = nn.ConvTranspose2d(c14, 1, 4, 2, 1)
        if conditioning == "cbn":
            self.bn7 = ConditionalBatchNorm2d(c7, num_classes)
            self.bn14 = ConditionalBatchNorm2d(c14, num_classes)
        else:
            self.bn7, self.bn14 = nn.BatchNorm2d(c7), nn.BatchNorm2d(c14)
        norm = (lambda c: ConditionalBatchNorm2d(c, num_classes)) if conditioning == "cbn" else nn.BatchNorm2d
        self.conv7 = nn.ModuleList(nn.Conv2d(c7, c7, 3, 1, 1, bias=False) for _ in range(depth))
        self.norm7 = nn.ModuleList(norm(c7) for _ in range(depth))
        self.conv14 = nn.ModuleList(nn.Conv2d(c14, c14, 3, 1, 1, bias=False) for _ in range(depth))
        self.norm14 = nn.ModuleList(norm(c14) for _ in range(depth))
        self.grad_layout = GradInInputLayout()  # NCHW from the Linear, channels-last convolution next

    def _norm(self, bn, x, label):
        return F.relu(bn(x, label) if self.conditioning == "cbn" else bn(x))

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(label)], dim=1) if self.embed is not None else z
        h = self.grad_layout(self._norm(self.bn7, self.fc(h).view(-1, self.c7, 7, 7), label))
        for conv, bn in zip(self.conv7, self.norm7):
            h = self._norm(bn, conv(h), label)
        h = self._norm(self.bn14, self.up14(h), label)
        for conv, bn in zip(self.conv14, self.norm14):
            h = self._norm(bn, conv(h), label)
        return _to_unit(self.up28(h))


class ConvDiscriminator(nn.Module):
    """28x28 -> 14x14 -> 7x7 strided convolutions, flattened, then a conditional head.

    ``conditioning``: "plane" (a learned 28x28 label plane as a second input channel, cDCGAN),
    "aux" (no label input; an auxiliary classifier head, ACGAN), "projection" (inner product of
    a class embedding with the features summed over the 7x7 positions, Miyato & Koyama 2018; the
    unconditional term still sees every position). ``norm``: "bn" (DCGAN), "sn"
    (spectral norm on every layer) or "none". ``twin`` (with "aux"): the class head has twice the
    classes as outputs, the class logits and then those of TAC-GAN's twin classifier. ``mbstd``:
    group size of a minibatch standard-deviation channel added at 7x7 (0 = none). ``depth``: that
    many extra 3x3 convolution (+ norm) + LeakyReLU blocks at 14x14 and at 7x7. ``projection``
    (with "plane" or "aux"): the projection term is added beside that conditioning, its embedding
    zero at the start.
    """

    def __init__(self, num_classes: int, width: int = 64, conditioning: str = "plane",
                 norm: str = "bn", dropout: float = 0.0, twin: bool = False, mbstd: int = 0,
                 depth: int = 0, projection: bool = False):
        super().__init__()
        wrap = spectral_norm if norm == "sn" else (lambda m: m)
        self.conditioning = conditioning
        self.plane = nn.Embedding(num_classes, IMAGE_PIXELS) if conditioning == "plane" else None
        c_in = 2 if conditioning == "plane" else 1

        def block(c: int) -> list[nn.Module]:  # one extra 3x3 convolution at the current size
            return [wrap(nn.Conv2d(c, c, 3, 1, 1, bias=norm != "bn")),
                    *([nn.BatchNorm2d(c)] if norm == "bn" else []), nn.LeakyReLU(0.2, inplace=True)]

        layers: list[nn.Module] = [wrap(nn.Conv2d(c_in, width, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(depth):
            layers += block(width)
        layers += [wrap(nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm != "bn"))]
        if norm == "bn":
            layers.append(nn.BatchNorm2d(width * 2))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
        for _ in range(depth):
            layers += block(width * 2)
        if dropout:
            layers.append(nn.Dropout(dropout))
        if mbstd:
            layers.append(MinibatchStd(mbstd))
        # Flatten hands back an NCHW gradient; the layout shim keeps it in the activation's format
        self.features = nn.Sequential(*layers, GradInInputLayout(), nn.Flatten())
        features = (width * 2 + (1 if mbstd else 0)) * 7 * 7
        self.adv = wrap(nn.Linear(features, 1))
        self.aux = nn.Linear(features, num_classes * (2 if twin else 1)) if conditioning == "aux" else None
        # projection on globally sum-pooled channels, as the paper's discriminator: one
        # (2w)-vector per class rather than one per class and position, which learned the
        # conditioning poorly (GAN-test 0.70 at 15 epochs)
        self.embed = (wrap(nn.Embedding(num_classes, width * 2))
                      if conditioning == "projection" or projection else None)
        if projection and conditioning != "projection":  # beside another conditioning: start
            nn.init.zeros_(self.embed.weight)  # as that D alone, the class term grows in training

    def forward(self, x: torch.Tensor, label: torch.Tensor):
        h = _from_unit(x)
        if self.plane is not None:
            h = torch.cat([h, self.plane(label).view(-1, 1, 28, 28).to(h.dtype)], dim=1)
        h = self.features(h)
        out = self.adv(h).squeeze(1)
        if self.embed is not None:  # the first 2w * 49 flattened features are the 2w channels
            pooled = h[:, :self.embed.embedding_dim * 49].unflatten(1, (-1, 49)).sum(dim=2)
            emb = self.embed(label)
            out = out + (emb * pooled.to(emb.dtype)).sum(dim=1)
        return out, (self.aux(h) if self.aux is not None else None)


# ---------------------------------------------------------------- registry

@dataclass(frozen=True)
class Family:
    """One generator family: display name, adversarial loss, and how to build G and D.

    Widths are hidden units (cgan) or base channels (convolutional families).
    """

    name: str  # the <Architecture> part of run labels
    loss: str  # "bce" (non-saturating) or "hinge"
    aux_classifier: bool  # the discriminator also predicts the class (ACGAN)
    make_g: Callable[..., nn.Module]  # (num_classes, z_dim, width[, depth=N where convolutional])
    make_d: Callable[..., nn.Module]  # (num_classes, width, dropout[, twin=True, mbstd=N, depth=N])
    # make_g takes ``depth`` (ConvGenerator's extra 3x3 blocks) and make_d takes ``mbstd``,
    # ``depth`` and ``projection`` (ConvDiscriminator's minibatch standard-deviation channel, extra
    # blocks and projection term)
    convolutional: bool = False


GENERATORS: dict[str, Family] = {
    "cgan": Family(
        "CGAN", "bce", False,
        lambda nc, z, w: MLPGenerator(nc, z, hidden=(w, w * 2, w * 4)),
        lambda nc, w, p: MLPDiscriminator(nc, hidden=(w * 2, w), dropout=p)),
    "cdcgan": Family(
        "CDCGAN", "bce", False,
        lambda nc, z, w, depth=0: ConvGenerator(nc, z, w, "concat", depth),
        lambda nc, w, p, **conv: ConvDiscriminator(nc, w, "plane", "bn", dropout=p, **conv),
        convolutional=True),
    "acgan": Family(
        "ACGAN", "bce", True,
        lambda nc, z, w, depth=0: ConvGenerator(nc, z, w, "concat", depth),
        lambda nc, w, p, **conv: ConvDiscriminator(nc, w, "aux", "bn", dropout=p, **conv),
        convolutional=True),
    "sngan": Family(
        "SNGAN", "hinge", False,
        lambda nc, z, w, depth=0: ConvGenerator(nc, z, w, "cbn", depth),
        lambda nc, w, p, **conv: ConvDiscriminator(nc, w, "projection", "sn", dropout=p, **conv),
        convolutional=True),
}


def build_generator(arch: str, num_classes: int, z_dim: int, width: int, depth: int = 0) -> nn.Module:
    """Family ``arch``'s untrained generator; ``depth`` > 0 only where the family is ``convolutional``."""
    return GENERATORS[arch].make_g(num_classes, z_dim, width, **({"depth": depth} if depth else {}))
