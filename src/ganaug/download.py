"""`ganaug data check` and `ganaug data download`: checksums against the official files."""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path

from .data import SPLIT_FILES, dataset_dir, get_dataset, load_split
from .errors import UserError
from .runs import atomic_write_bytes

CHUNK = 1 << 20
TIMEOUT_SECONDS = 60


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_problem(path: Path, size: int, sha256: str) -> str | None:
    """Why ``path`` is not the official file, or None when it is."""
    if not path.is_file():
        return "missing"
    found = path.stat().st_size
    if found != size:
        return f"size {found} bytes, expected {size}"
    if sha256_file(path) != sha256:
        return "SHA-256 does not match the official file"
    return None


def check(data_dir: str | Path, dataset: str) -> list[str]:
    """Verify checksums and structure; return one line of counts per split. Raises UserError."""
    info = get_dataset(dataset)
    folder = dataset_dir(data_dir, dataset)
    problems = [f"{name}: {problem}" for name, (size, sha) in info.checksums.items()
                if (problem := file_problem(folder / name, size, sha))]
    if problems:
        raise UserError(f"{folder}: " + "; ".join(problems) +
                        f" (run `ganaug data download --dataset {dataset}`)")
    lines = []
    for split in SPLIT_FILES:
        _, labels = load_split(data_dir, dataset, split)
        counts = labels.bincount(minlength=info.num_classes).tolist()
        lines.append(f"{dataset} {split}: {len(labels)} images, per class {counts}")
    return lines


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - http(s) only
        return response.read()


def download(data_dir: str | Path, dataset: str, mirror: str | None = None) -> list[str]:
    """Fetch every missing or damaged file from the official mirrors (or ``mirror``).

    Each file is checked against its official size and SHA-256 before it is moved into place
    atomically, so a failed or partial download never leaves a damaged file behind.
    """
    info = get_dataset(dataset)
    folder = dataset_dir(data_dir, dataset)
    mirrors = (mirror,) if mirror else info.mirrors
    for base in mirrors:
        if not base.startswith(("http://", "https://")):
            raise UserError(f"--mirror must be an http(s) URL, got {base!r}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the data folder {folder} ({exc.strerror}); pass a "
                        "--data-dir you can write to") from None
    report = []
    for name, (size, sha) in info.checksums.items():
        if file_problem(folder / name, size, sha) is None:
            report.append(f"{name}: already present and verified")
            continue
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            try:
                payload = _fetch(url)
            # HTTPException: a dropped connection (IncompleteRead); ValueError: a malformed URL
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
                errors.append(f"{url}: {reason}")
                continue
            if len(payload) != size or hashlib.sha256(payload).hexdigest() != sha:
                errors.append(f"{url}: checksum mismatch")
                continue
            atomic_write_bytes(folder / name, payload)
            report.append(f"{name}: downloaded from {url} and verified")
            break
        else:
            raise UserError(f"could not download {name}: " + "; ".join(errors))
    return report
