"""Resumable training checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so the restricted unpickler
can read it; anything else in the file (a tampered pickle that would run code) is refused.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from .errors import UserError
from .runs import atomic_save

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict) -> None:
    atomic_save(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; this run cannot be resumed (start a new one)")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles; the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).splitlines()[0][:160]
        raise UserError(f"refusing to load {path}: it contains objects other than weights "
                        f"({reason}); it may have been tampered with") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise UserError(f"{path} is damaged and cannot be read "
                        f"({str(exc).splitlines()[0][:160]}); start a new run") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise UserError(f"{path} is not a ganaug checkpoint")
    return state


def rng_state(generator: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "generator": generator.get_state()}


def restore_rng(state: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
