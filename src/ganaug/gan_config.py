"""Generator training configuration: per-family defaults, validated on construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from .config import (DEVICES, PLOT_FORMATS, PRECISIONS, check, check_choice, check_seed,
                     with_overrides)
from .models.generators import GENERATORS


@dataclass(frozen=True)
class GanOptim:
    """How one family trains. Defaults per family in ``GENERATOR_DEFAULTS``."""

    epochs: int
    batch_size: int
    lr_g: float
    lr_d: float
    beta1: float = 0.5
    beta2: float = 0.999
    z_dim: int = 64
    g_width: int = 64
    g_depth: int = 0  # convolutional generators: extra 3x3 conv blocks at 7x7 and at 14x14
    d_width: int = 64
    d_dropout: float = 0.0
    # convolutional families: group size of a minibatch standard-deviation channel in D (ProGAN;
    # 0 = off), so D can see a batch of near-identical fakes
    d_mbstd: int = 0
    d_depth: int = 0  # convolutional families: extra 3x3 conv blocks in D at 14x14 and at 7x7
    # cdcgan, acgan: sngan's projection term (a class embedding . D's channel sums over the 7x7
    # positions) added to D's output beside its own conditioning; zero at the start
    d_projection: bool = False
    aux_weight: float = 1.0  # ACGAN: weight of the class loss
    # ACGAN: share of the discriminator's class loss taken on fakes (1 = Odena et al.; 0 = the
    # class head learns from real images only, so it cannot reward G for easy "prototype" fakes)
    aux_fake_weight: float = 1.0
    # ACGAN: weight of TAC-GAN's twin classifier (Gong et al. 2019; 0 = off, the paper uses the
    # class-loss weight): a second class head trained on fakes only, which G is rewarded for fooling
    # (loss - w * CE(twin(G(z, y)), y)). It cancels ACGAN's pull toward easy, low-diversity samples.
    twin_weight: float = 0.0
    # Small subsets: at least this many steps, so a 1% generator is not stopped after 100 updates.
    min_steps: int = 0
    # differentiable translation + cutout on real and fake (Zhao et al. 2020); None: on when the
    # generator sees fewer than DIFFAUGMENT_MAX_IMAGES real training images (GeneratorConfig decides)
    diffaugment: bool | None = None
    diffaug_shift: float = 0.125  # translation, share of the image side
    diffaug_cutout: float = 0.5  # cutout square side, share of the image side
    ema: bool = True  # sample from an exponential moving average of the generator's weights
    ema_decay: float = 0.999
    channels_last: bool = False
    # Mode-seeking regularisation (Mao et al. 2019, MSGAN): weight of 1 / (image distance / noise
    # distance) between pairs of fakes that share a label. Conditional GANs tend to ignore z and
    # draw one image per class (recall ~0); this term rewards G for letting z change the image.
    mode_seeking: float = 0.0

    def __post_init__(self):
        check(self.epochs >= 1, f"--epochs must be at least 1; got {self.epochs}")
        check(self.batch_size >= 2, f"--batch-size must be at least 2; got {self.batch_size}")
        check(all(math.isfinite(v) and v > 0 for v in (self.lr_g, self.lr_d)),
              f"--lr-g and --lr-d must be positive numbers; got {self.lr_g} and {self.lr_d}")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "Adam betas must be in [0, 1)")
        check(self.z_dim >= 1 and self.g_width >= 4 and self.d_width >= 4, "model sizes too small")
        check(0 <= self.d_dropout < 1, "d_dropout must be in [0, 1)")
        check(self.g_depth >= 0, f"--g-depth must be 0 or more; got {self.g_depth}")
        check(self.d_depth >= 0, f"--d-depth must be 0 or more; got {self.d_depth}")
        check(self.d_mbstd >= 0, f"--d-mbstd must be 0 (off) or a group size >= 1; got {self.d_mbstd}")
        check(math.isfinite(self.aux_weight) and self.aux_weight >= 0,
              f"--aux-weight must be a number >= 0; got {self.aux_weight}")
        check(0 <= self.aux_fake_weight <= 1,
              f"--aux-fake-weight must be in [0, 1]; got {self.aux_fake_weight}")
        check(math.isfinite(self.twin_weight) and self.twin_weight >= 0,
              f"--twin-weight must be a number >= 0; got {self.twin_weight}")
        check(self.min_steps >= 0, "min_steps must be >= 0")
        check(0 <= self.diffaug_shift < 0.5 and 0 <= self.diffaug_cutout < 1,
              "diffaug_shift must be in [0, 0.5) and diffaug_cutout in [0, 1)")
        check(0 < self.ema_decay < 1, f"--ema-decay must be in (0, 1); got {self.ema_decay}")
        check(math.isfinite(self.mode_seeking) and self.mode_seeking >= 0,
              f"--mode-seeking must be a number >= 0; got {self.mode_seeking}")


# DiffAugment (translation + a cutout of half the side) is for very small data. Measured on
# cdcgan's recipe, seed 0: on the full split (54,000 images, 15 epochs) turning it off gave fd_domain
# 2.55 -> 0.64, recall 0.49 -> 0.63, coverage 0.60 -> 0.83, GAN-test 0.85 -> 0.92, CAS 0.826 ->
# 0.869; on a 10% subset (5,400 images, 3,024 steps) fd 4.86 -> 1.14, recall 0.43 -> 0.51,
# coverage 0.41 -> 0.77, GAN-test 0.82 -> 0.92. On a 1% subset (540 images, 3,000 steps) D
# memorises without it: recall 0.43 -> 0.002, coverage 0.43 -> 0.34, fd 4.31 -> 7.01. So it stays on
# below this many real training images (between the two measured sizes):
DIFFAUGMENT_MAX_IMAGES = 2_000

# The convolutional families' shared recipe, measured on acgan (full data, 15 epochs, seed 0):
# mode-seeking 0.2: fd_domain 15.0 -> 8.3, recall 0.00 -> 0.08, gan_test 0.83 -> 0.88, CAS 0.56 ->
# 0.67 (README, "Generators on full Fashion-MNIST"). Two extra 3x3 blocks in G (g_depth 2): CAS 0.711
# -> 0.749 (depth 1) -> 0.770, fd_domain 4.39 -> 4.69 -> 3.73, recall 0.106 -> 0.139 -> 0.127;
# training 22 -> 31 min. One extra 3x3 block pair in D (d_depth 1) with that G: fd_domain 3.73 ->
# 2.04, precision 0.52 -> 0.73, recall 0.127 -> 0.171, coverage 0.28 -> 0.49, GAN-test 0.989 ->
# 0.997, CAS 0.770 -> 0.784, at 1.5x the time per epoch (against 20 epochs without it: CAS 0.790,
# fd 3.96, coverage 0.28).
CONV_RECIPE = dict(epochs=15, batch_size=128, lr_g=2e-4, lr_d=2e-4, min_steps=3000, channels_last=True,
                   mode_seeking=0.2, g_depth=2, d_depth=1)

GENERATOR_DEFAULTS: dict[str, GanOptim] = {
    # batch 512: 9,700 images/s against 8,100 at 256 here (benchmarks/bench_generator.py --sweep)
    "cgan": GanOptim(epochs=30, batch_size=512, lr_g=2e-4, lr_d=2e-4, g_width=256, d_width=256,
                     d_dropout=0.3, min_steps=3000),
    # The recipe, full data, 15 epochs: fd_domain 2.62 / 2.81, recall 0.49 / 0.49, coverage 0.59 /
    # 0.57, GAN-test 0.84 / 0.84, CAS 0.816 / 0.822 (seeds 0 / 1), the best CAS of the four families
    # (acgan 0.784, sngan 0.792): no class loss pulls its samples to one prototype per class, so they
    # keep more of each class's variety. sngan's projection term beside the label plane
    # (d_projection), seed 0: fd_domain 2.55, coverage 0.60, GAN-test 0.848, CAS 0.826, same time.
    # All with DiffAugment; without it (the full split's default, DIFFAUGMENT_MAX_IMAGES), seeds 0 and 1:
    # fd_domain 0.64 / 0.65, coverage 0.83 / 0.84, GAN-test 0.922 / 0.920, CAS 0.869 / 0.862.
    "cdcgan": GanOptim(**CONV_RECIPE, d_projection=True),
    # Class head on real images only (aux_fake_weight 0), full data, 15 epochs: fd_domain 8.35 -> 4.39,
    # coverage 0.21 -> 0.29, gan_test 0.88 -> 0.98, CAS 0.67 -> 0.71 (10 epochs: 5.48, 0.25, 0.97, 0.70).
    "acgan": GanOptim(**CONV_RECIPE, aux_fake_weight=0.0),
    # Projection on sum-pooled channels (2026-12-07; it was per position) and the recipe, full data,
    # 15 epochs, seed 0: fd_domain 10.68 -> 3.36, recall 0.19 -> 0.31, coverage 0.22 -> 0.53,
    # GAN-test 0.70 -> 0.83, CAS 0.647 -> 0.792 (acgan's defaults: 0.784).
    "sngan": GanOptim(**CONV_RECIPE, beta1=0.0, beta2=0.9),
}


@dataclass(frozen=True)
class GeneratorConfig:
    arch: str
    optim: GanOptim
    dataset: str = "fashion-mnist"
    fraction: float = 1.0
    val_fraction: float = 0.1
    seed: int = 0
    precision: str = "auto"
    device: str = "auto"
    plot_format: str = "png"
    tensorboard: bool = False
    evaluate: bool = True  # compute the generator metrics when training ends
    cas: bool = True  # include the classification accuracy score (trains a CNN; minutes)
    metric_per_class: int = 1000  # generated images per class for fd/kid/prdc/GAN-test
    cas_per_class: int = 5000  # generated images per class the CAS classifier trains on
    export_onnx: bool = True
    # Stop when the discriminator loss stays below this (it has won; G gets no signal) ...
    collapse_d_loss: float = 1e-4
    collapse_patience: int = 3  # ... for this many consecutive epochs

    def __post_init__(self):
        from .data import DATASETS

        check_choice("--arch", self.arch, tuple(GENERATORS))
        check_choice("--dataset", self.dataset, tuple(DATASETS))
        check(0 < self.fraction <= 1, f"--fraction must be in (0, 1]; got {self.fraction}")
        check(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1); got {self.val_fraction}")
        check_seed(self.seed)
        check_choice("--precision", self.precision, PRECISIONS)
        check_choice("--device", self.device, DEVICES)
        check_choice("--plot-format", self.plot_format, PLOT_FORMATS)
        check(self.collapse_patience >= 1, "collapse_patience must be at least 1")
        check(not self.optim.twin_weight or GENERATORS[self.arch].aux_classifier,
              f"--twin-weight needs a family with a class head (acgan); {self.arch} has none")
        convolutional = tuple(name for name, family in GENERATORS.items() if family.convolutional)
        check(not self.optim.g_depth or self.arch in convolutional,
              f"--g-depth needs a convolutional generator ({', '.join(convolutional)}); {self.arch} has none")
        for option, value in (("--d-mbstd", self.optim.d_mbstd), ("--d-depth", self.optim.d_depth)):
            check(not value or self.arch in convolutional,
                  f"{option} needs a convolutional discriminator ({', '.join(convolutional)}); "
                  f"{self.arch} has none")
        check(not self.optim.d_projection or self.arch in ("cdcgan", "acgan"),
              f"--d-projection adds sngan's projection term to cdcgan's or acgan's discriminator; "
              f"got --arch {self.arch}")
        check(self.metric_per_class >= 2 and self.cas_per_class >= 2,
              "metric_per_class and cas_per_class must be at least 2")
        if self.optim.diffaugment is None:  # frozen: settle the data-dependent default once
            object.__setattr__(self, "optim", replace(
                self.optim, diffaugment=self.real_train_images < DIFFAUGMENT_MAX_IMAGES))

    @property
    def real_train_images(self) -> int:
        """About how many real images the generator trains on (its subset less the validation part)."""
        from .data import approx_train_images

        return approx_train_images(self.dataset, self.fraction, self.val_fraction)

    def to_dict(self) -> dict:
        return asdict(self)


def generator_config(arch: str, **overrides) -> GeneratorConfig:
    """A config for family ``arch`` with its defaults; keyword overrides (None = keep default)
    may name any field of ``GeneratorConfig`` or ``GanOptim``."""
    check_choice("--arch", arch, tuple(GENERATORS))
    return with_overrides(GeneratorConfig, arch, GENERATOR_DEFAULTS[arch], overrides, "generator")


def generator_config_from_dict(data: dict) -> GeneratorConfig:
    known = {f.name for f in fields(GeneratorConfig)}
    rest = {k: v for k, v in data.items() if k in known and k not in ("arch", "optim")}
    return GeneratorConfig(arch=data["arch"], optim=GanOptim(**data["optim"]), **rest)
