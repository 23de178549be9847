"""Where the `transfer` classifier's ResNet-18 starts: a torchvision ImageNet file the user passes
(`--pretrained FILE`), or a backbone ganaug pretrains on a source data set once and caches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from .config import DEFAULT_SOURCE, ClassifierConfig, classifier_config
from .data import prepare
from .errors import UserError
from .export import save_weights
from .fit import build_classifier, fit, predict, scores
from .models.classifiers import TransferLearningNN, adapt_backbone_state
from .runs import atomic_write_json
from .runtime import seed_everything

PRETRAIN_SEED = 0  # one cached backbone per source, like a published checkpoint


@dataclass
class Backbone:
    state: dict[str, torch.Tensor]  # keys of torchvision's ResNet-18 without fc.*
    origin: str

    def describe(self) -> str:
        return self.origin


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"--pretrained {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and safetensors errors all mean "not a weights file"
        raise UserError(f"--pretrained {path} is not a readable state dict "
                        f"({str(exc).splitlines()[0][:200]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"--pretrained {path} does not hold a state dict of tensors")
    return state


def check_fits(state: dict[str, torch.Tensor], origin: str) -> dict:
    """Load into a fresh 1-channel ResNet-18 to prove every backbone key and shape matches."""
    state = adapt_backbone_state(state)
    probe = TransferLearningNN(num_classes=10, mean=0.0, std=1.0)  # the stem does not change shapes
    try:
        missing, unexpected = probe.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise UserError(f"{origin} is not a ResNet-18 state dict with torchvision's layout "
                        f"({str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc})") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise UserError(f"{origin} is not a torchvision ResNet-18 state dict (missing "
                        f"{missing[:3]}, unexpected {unexpected[:3]})")
    return state


def pretrain_config(cfg: ClassifierConfig, source: str) -> ClassifierConfig:
    t = cfg.transfer
    # init_transfer's fit gets no augmentation: say so, rather than inherit transfer's default
    return classifier_config("transfer", dataset=source, epochs=t.pretrain_epochs, lr=t.pretrain_lr,
                             min_steps=0, seed=PRETRAIN_SEED, classical_aug=False, device=cfg.device,
                             precision=cfg.precision, transfer=t, export_onnx=False)


def cache_path(out: Path, source: str, cfg: ClassifierConfig) -> Path:
    t = cfg.transfer
    return (out / "models" / "backbones" /
            f"ResNet18 {source} stride{t.stem_stride}{' pool' if t.stem_pool else ''} {t.pretrain_epochs}ep "
            f"seed{PRETRAIN_SEED}.safetensors")


def init_transfer(cfg: ClassifierConfig, data_dir, out: Path, device: torch.device,
                  precision: str) -> Backbone:
    if cfg.transfer.pretrained:
        path = Path(cfg.transfer.pretrained)
        state = check_fits(read_state_dict(path), f"--pretrained {path}")
        return Backbone(state, f"torchvision-format weights from {path}")
    source = cfg.transfer.source_dataset or DEFAULT_SOURCE[cfg.dataset]
    path = cache_path(out, source, cfg)
    if path.is_file():
        state = check_fits(load_file(str(path)), str(path))
        return Backbone(state, f"pretrained by ganaug on {source} (cached: {path})")
    pre = pretrain_config(cfg, source)
    data = prepare(data_dir, source, 1.0, PRETRAIN_SEED, pre.val_fraction)
    generator = seed_everything(PRETRAIN_SEED)
    model = build_classifier("transfer", data.info, **cfg.transfer.model_kwargs())
    result = fit(model, pre.optim, data.train_x, data.train_y, data.val_x, data.val_y,
                 device=device, precision=precision, generator=generator,
                 description=f"pretraining ResNet-18 on {source}")
    val = scores(predict(model, data.val_x, device, pre.optim.channels_last), data.val_y)
    model.cpu()
    save_weights(model, path)
    atomic_write_json(path.with_suffix(".json"), {
        "source_dataset": source, "epochs": result.epochs, "seconds": round(result.seconds, 1),
        "val_accuracy_on_source": val["accuracy"], "optim": pre.optim.__dict__,
        **cfg.transfer.model_kwargs(), "seed": PRETRAIN_SEED})
    state = adapt_backbone_state(model.state_dict())
    return Backbone(state, f"pretrained by ganaug on {source} for {result.epochs} epochs "
                           f"(validation accuracy {val['accuracy']:.4f}; cached: {path})")

