"""Model files: safetensors weights and self-contained ONNX graphs with the contract's names."""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import UserError
from .runs import atomic_save

OPSET = 18
CLASSIFIER_IO = {"inputs": ["image"], "outputs": ["logits"]}
GENERATOR_IO = {"inputs": ["z", "label"], "outputs": ["image"]}


def save_weights(model: nn.Module, path: str | Path) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save(path, lambda tmp: save_file(state, tmp))


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} is missing")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise UserError(f"{path} is not a readable safetensors file ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{path} does not fit the model its config describes ({first})") from None
    return model


def _export(model: nn.Module, args: tuple, path: Path, input_names, output_names) -> None:
    model = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    batch = torch.export.Dim("batch", min=1, max=65536)
    names = list(inspect.signature(model.forward).parameters)
    dynamic = {name: {0: batch} for name in names[:len(args)]}

    def write(tmp: str) -> None:
        # The dynamo exporter is chatty (progress lines, deprecation notes); keep the CLI quiet.
        with warnings.catch_warnings(), _quiet_loggers():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, tmp, input_names=list(input_names),
                              output_names=list(output_names), dynamic_shapes=dynamic,
                              opset_version=OPSET, dynamo=True, external_data=False, verbose=False)

    atomic_save(path, write)


class _quiet_loggers:
    NAMES = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch.fx")

    def __enter__(self):
        self.saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in self.NAMES]
        for logger, _ in self.saved:
            logger.setLevel(logging.ERROR)
        self.devnull = open(os.devnull, "w")
        self.redirect = contextlib.redirect_stdout(self.devnull)
        self.redirect.__enter__()

    def __exit__(self, *exc):
        self.redirect.__exit__(*exc)
        self.devnull.close()
        for logger, level in self.saved:
            logger.setLevel(level)


def export_classifier(model: nn.Module, path: str | Path) -> Path:
    """input ``image`` float32 [N,1,28,28] in [0,1] -> output ``logits`` float32 [N,classes]."""
    _export(model, (torch.rand(2, 1, 28, 28),), Path(path), CLASSIFIER_IO["inputs"],
            CLASSIFIER_IO["outputs"])
    return Path(path)


def export_generator(model: nn.Module, path: str | Path, z_dim: int) -> Path:
    """inputs ``z`` float32 [N,z_dim] and ``label`` int64 [N] -> output ``image`` [N,1,28,28]."""
    args = (torch.randn(2, z_dim), torch.tensor([0, 1], dtype=torch.int64))
    _export(model, args, Path(path), GENERATOR_IO["inputs"], GENERATOR_IO["outputs"])
    return Path(path)


def onnx_session(path: str | Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for bad files
        raise UserError(f"{path} is not a loadable ONNX model ({str(exc).splitlines()[0]})") from None


def onnx_max_abs_diff(model: nn.Module, path: str | Path, inputs: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between PyTorch (fp32) and onnxruntime on ``inputs``."""
    model = copy.deepcopy(model).cpu().float().eval()
    with torch.no_grad():
        expected = model(*inputs.values()).numpy()
    got = onnx_session(path).run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    return float(np.abs(expected - got).max())
