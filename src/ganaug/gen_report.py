"""The human-readable files of a generator run: samples.png, losses.png, model_info.txt."""

from __future__ import annotations

import torch

from . import plots
from .data import DatasetInfo
from .models.layers import count_parameters
from .runs import Run, atomic_write_text

GRID_COLUMNS = 10  # samples per class in samples.png
GRID_SEED_OFFSET = 0  # the grid uses the run's own seed: the same z in every epoch and resume


def sample_grid(sampler, info: DatasetInfo, z_dim: int, seed: int, device) -> torch.Tensor:
    """uint8 [classes, GRID_COLUMNS, 28, 28]: row c holds class c, from fixed noise."""
    from .train_generator import sample, to_uint8

    labels = torch.arange(info.num_classes).repeat_interleave(GRID_COLUMNS)
    images = to_uint8(sample(sampler, labels, z_dim, seed + GRID_SEED_OFFSET, device))
    return images.view(info.num_classes, GRID_COLUMNS, 28, 28)


def write_generator_reports(run: Run, cfg, config: dict, state, sampler, metrics: dict,
                            info: DatasetInfo, device) -> None:
    ext = cfg.plot_format
    grid = sample_grid(sampler, info, cfg.optim.z_dim, cfg.seed, device)
    subtitle = (f"fd_domain {metrics['fd_domain']:.2f}, recall {metrics['recall_k3']:.2f}"
                if "fd_domain" in metrics else f"{state.epoch} epochs")
    plots.image_grid(grid.numpy(), list(info.class_names), run.results / f"samples.{ext}",
                     f"{run.name}: {subtitle}")
    plots.losses({"discriminator": state.history["d_loss"], "generator": state.history["g_loss"]},
                 run.results / f"losses.{ext}", f"{run.name}: mean loss per epoch")
    atomic_write_text(run.results / "model_info.txt", model_info(run, cfg, config, state, metrics))


def model_info(run: Run, cfg, config: dict, state, metrics: dict) -> str:
    o = cfg.optim
    counts = config["counts"]
    lines = [
        f"Run: {run.name}",
        f"Family: {cfg.arch} (loss {_family(cfg).loss}"
        + (", auxiliary classifier" if _family(cfg).aux_classifier else "") + ")",
        f"Generator parameters: {count_parameters(state.g):,} (width {o.g_width}"
        + (f", {o.g_depth} extra 3x3 conv block(s) at 7x7 and at 14x14" if o.g_depth else "") + ")",
        f"Discriminator parameters: {count_parameters(state.d):,}"
        + "".join(f" ({text})" for text in (
            f"{o.d_depth} extra 3x3 conv block(s) at 14x14 and at 7x7" if o.d_depth else "",
            f"minibatch standard-deviation channel, groups of {o.d_mbstd}" if o.d_mbstd else "",
            "a projection term: class embedding . channel sums" if o.d_projection else "") if text),
        f"Batch size: {o.batch_size}",
        f"Epochs: {state.epoch} ({state.step} steps; configured {o.epochs}, at least {o.min_steps} steps)",
        f"Optimizer: Adam, lr G {o.lr_g}, lr D {o.lr_d}, betas ({o.beta1}, {o.beta2})",
        f"z dimension: {o.z_dim}",
        "DiffAugment: " + (f"translation {o.diffaug_shift}, cutout {o.diffaug_cutout}"
                            if o.diffaugment else "off"),
        "Sampling weights: " + (f"EMA of the generator (decay {o.ema_decay})" if o.ema else "generator"),
        "Mode-seeking term: " + (f"weight {o.mode_seeking}" if o.mode_seeking else "off"),
        *([f"Class loss: weight {o.aux_weight}; the discriminator's class head learns from "
           + ("real images only" if o.aux_fake_weight == 0 else
              f"real images and fakes (fakes weighted {o.aux_fake_weight})")
           + (f"; a twin class head (TAC-GAN, weight {o.twin_weight}) learns from fakes, and G is "
              "rewarded for fooling it" if o.twin_weight else "")]
          if _family(cfg).aux_classifier else []),
        f"Precision: {config['precision_resolved']} on {config['device_resolved']}"
        + (", channels-last" if o.channels_last else ""),
        f"Data: {cfg.dataset}, fraction {cfg.fraction}; trained on {counts['train']} real images "
        f"(the training part of the subset; {counts['val']} validation images unused)",
        f"Seed: {cfg.seed}",
        f"Training time: {metrics['seconds']:.1f} s ({metrics['train_images_per_second']:.0f} real images/s)",
        "",
        "Generator:",
        str(state.g),
        "",
        "Discriminator:",
        str(state.d),
    ]
    return "\n".join(lines) + "\n"


def _family(cfg):
    from .models.generators import GENERATORS

    return GENERATORS[cfg.arch]
