"""Small pieces shared by the models."""

from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std inside the model, so every model file takes raw [0, 1] pixels.

    The statistics are non-persistent buffers: they are rebuilt from the data set named in the
    run's config, and the state dict keeps exactly the keys of the network itself.
    """

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean), persistent=False)
        self.register_buffer("std", torch.tensor(std), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
