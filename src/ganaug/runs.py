"""Run folders: labels, atomic allocation of run indexes, atomic file writes, package versions."""

from __future__ import annotations

import json
import os
import platform
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

INCOMPLETE_MARKER = "INCOMPLETE"  # present while a run is being written; removed when it ends
RUN_PATTERN = re.compile(r"^(?P<label>.+) Run (?P<index>\d+)$")
KINDS = ("classifiers", "generators", "studies")


def run_label(architecture: str, dataset_type: str, model_type: str) -> str:
    """`<Architecture><DatasetType><ModelType>`, e.g. `CNNOriginalClassifier`."""
    return f"{architecture}{dataset_type}{model_type}"


# ---------------------------------------------------------------- atomic writes

def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, and setting it process-wide while
# other threads create folders would give those folders the wrong permissions.
_UMASK = _read_umask()


def _publish(tmp: str, path: Path) -> None:
    """Give a finished temporary file normal permissions (mkstemp makes it 0600) and move it in."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_save(path: str | Path, save) -> None:
    """Call ``save(tmp_path)`` for writers that want a file name (matplotlib, safetensors, onnx)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        save(tmp)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} is missing; is this a ganaug run folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None


# ---------------------------------------------------------------- run folders

@dataclass(frozen=True)
class Run:
    """The pair of folders one run writes: results (reports, plots) and models (weights)."""

    results: Path
    models: Path
    name: str  # "<label> Run <i>"

    def finish(self) -> None:
        for folder in (self.results, self.models):
            (folder / INCOMPLETE_MARKER).unlink(missing_ok=True)


def check_out_dir(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder; pass a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".ganaug-write-test-")
        probe.close()
    except OSError as exc:
        raise UserError(f"--out {out} is not writable ({exc.strerror}); pass a folder you can "
                        "write to") from None
    return out


def existing_indexes(folder: Path, label: str) -> list[int]:
    if not folder.is_dir():
        return []
    return [int(m["index"]) for p in folder.iterdir()
            if (m := RUN_PATTERN.match(p.name)) and m["label"] == label]


def allocate_run(out: str | Path, kind: str, label: str, with_models: bool = True) -> Run:
    """Create ``results/<kind>/<label> Run <i>`` and its ``models/`` twin with a fresh index.

    ``os.mkdir`` either creates the folder or fails, so two processes racing for the same index
    cannot both get it: the loser moves on to the next index. Both folders carry an
    INCOMPLETE marker until ``Run.finish``.
    """
    if kind not in KINDS:
        raise ValueError(kind)
    out = check_out_dir(out)
    results_root, models_root = out / "results" / kind, out / "models" / kind
    for root in (results_root, models_root) if with_models else (results_root,):
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the folder {root} ({exc.strerror}); move what is in "
                            "the way or pass another --out") from None
    index = 1 + max(existing_indexes(results_root, label) + existing_indexes(models_root, label),
                    default=0)
    while True:
        name = f"{label} Run {index}"
        try:
            os.mkdir(results_root / name)
        except FileExistsError:
            index += 1
            continue
        break
    run = Run(results_root / name, models_root / name, name)
    folders = (run.results, run.models) if with_models else (run.results,)
    if with_models:
        run.models.mkdir(exist_ok=True)
    for folder in folders:
        (folder / INCOMPLETE_MARKER).write_text("this run has not finished\n")
    return run


def resolve_run(path: str | Path, kind: str) -> Run:
    """A run from its ``results/`` folder or its ``models/`` folder (either may be passed)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"run folder {path} does not exist")
    path = path.resolve()
    parts = path.parts
    if len(parts) < 3 or parts[-2] != kind or parts[-3] not in ("results", "models"):
        raise UserError(f"{path} is not a ganaug {kind[:-1]} run folder (expected "
                        f".../results/{kind}/<label> Run <i>)")
    out = path.parent.parent.parent
    return Run(out / "results" / kind / path.name, out / "models" / kind / path.name, path.name)


# The weights file a finished run of each kind leaves in its models/ folder.
SAVED_WEIGHTS = {"classifiers": "model.safetensors", "generators": "generator.safetensors"}


def finished_run(run_dir: str | Path, kind: str) -> Run | None:
    """The run at ``run_dir`` if it finished and its saved weights are there, else None."""
    try:
        run = resolve_run(run_dir, kind)
    except UserError:
        return None
    if (run.results / INCOMPLETE_MARKER).exists() or not (run.models / SAVED_WEIGHTS[kind]).is_file():
        return None
    return run


def versions() -> dict[str, str]:
    """Versions of what decides the numbers, stored with every run."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("ganaug", "torch", "numpy", "scikit-learn", "onnx", "onnxruntime"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found
