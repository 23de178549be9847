"""Small pieces shared by the models."""

from __future__ import annotations

import torch
from torch import nn

from ..runtime import memory_format_of


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


class _GradInInputLayout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.memory_format = memory_format_of(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=ctx.memory_format)


class GradInInputLayout(nn.Module):
    """The identity, except that in training its gradient is handed back in its input's memory
    format (one copy).

    Written by hand because PyTorch's elementwise backward kernels (leaky_relu_backward,
    threshold_backward) fall to a slow path when the gradient and the saved activation differ in
    layout: 8 ms instead of 0.35 ms for a bf16 [128, 128, 7, 7] here. That happens wherever a
    channels-last activation meets an NCHW gradient, e.g. before a Flatten (whose gradient is
    NCHW) or after a Linear reshaped to NCHW that feeds a channels-last convolution. Values are
    unchanged, so results are bit-identical with and without it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GradInInputLayout.apply(x) if self.training and x.requires_grad else x


class MinibatchStd(nn.Module):
    """Appends one channel holding the batch's standard deviation (ProGAN's minibatch standard
    deviation, Karras et al. 2018): per group of ``group`` images, the std over the group of every
    feature, averaged to one number and broadcast over the image. A discriminator that sees it can
    tell a batch of near-identical fakes from a varied real batch, which pushes the generator toward
    within-class diversity. A batch not divisible by ``group`` uses its largest divisor below it.
    """

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = next(k for k in range(min(self.group, n), 0, -1) if n % k == 0)
        y = x.float().reshape(g, n // g, c, h, w)
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # [n // g]
        std = std.view(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w).reshape(n, 1, h, w)
        return torch.cat([x, std.to(x.dtype)], dim=1)


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True)]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
