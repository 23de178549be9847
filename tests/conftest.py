"""Shared fixtures: the vendored real data, an independent IDX reader, and the CLI runner.

Expensive results (a real CLI training run) are session-scoped so several tests can check them.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FASHION = DATA_DIR / "fashion-mnist"

# From the data's README (not from ganaug's code), so the tests check the code against the data.
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
FIRST_TEN = {"train": [9, 0, 0, 3, 0, 2, 7, 2, 5, 5], "test": [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]}
CLI_TIMEOUT = 300  # seconds; a bound so a hung child fails the test instead of the whole suite

# Under pytest-xdist (`make test` runs one worker per core) each worker, and every process it
# starts, gets its share of the cores, so workers do not oversubscribe them with torch threads.
# The variable reaches the processes a test starts; numpy's BLAS in this process was loaded
# before conftest ran (with a thread per core), so its pool is limited here too: two workers'
# BLAS threads on 2 cores made the in-process generator metrics 3.5x slower (93 s against 26 s).
# --precision auto caches its measured choice per machine and model; the tests keep theirs in one
# temporary folder per test session (shared by the xdist workers and the processes they start).
os.environ.setdefault("GANAUG_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"ganaug-test-cache-{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}"))

if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                     // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))
    threadpool_limits(limits=int(os.environ["OMP_NUM_THREADS"]))


def read_idx_numpy(path: Path) -> np.ndarray:
    """A minimal reader that shares no code with ganaug (as in the data README)."""
    raw = gzip.open(path).read()
    if raw[:4] == b"\x00\x00\x08\x03":
        return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)
    return np.frombuffer(raw, np.uint8, offset=8)


@pytest.fixture(scope="session")
def fashion_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The official t10k split: uint8 images [10000, 28, 28] and labels [10000]."""
    return (read_idx_numpy(FASHION / "t10k-images-idx3-ubyte.gz"),
            read_idx_numpy(FASHION / "t10k-labels-idx1-ubyte.gz"))


@pytest.fixture(scope="session")
def fashion_train_labels() -> np.ndarray:
    return read_idx_numpy(FASHION / "train-labels-idx1-ubyte.gz")


@pytest.fixture(scope="session")
def raw_idx() -> dict[str, bytes]:
    """Uncompressed bytes of the small real files and the first 200 training images."""
    images = gzip.open(FASHION / "train-images-idx3-ubyte.gz").read(16 + 200 * 784)
    return {"train-labels": gzip.open(FASHION / "train-labels-idx1-ubyte.gz").read(),
            "t10k-labels": gzip.open(FASHION / "t10k-labels-idx1-ubyte.gz").read(),
            "train-images-head": images}


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANAUG_")}
    env["GANAUG_PROGRESS"] = "0"
    env["GANAUG_CACHE_DIR"] = os.environ["GANAUG_CACHE_DIR"]
    env.update(extra)
    return env


def ganaug(*args: str, cwd: Path | None = None, timeout: float = CLI_TIMEOUT,
           **env: str) -> subprocess.CompletedProcess:
    """Run the installed `ganaug` console script as a user would."""
    script = Path(sys.executable).with_name("ganaug")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ganaug"]
    return subprocess.run([*command, *map(str, args)], cwd=cwd or REPO, env=cli_env(**env),
                          capture_output=True, text=True, timeout=timeout)


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit status 2, exactly one stderr line `error: ...`, no traceback; returns the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class CliRun:
    out: Path
    proc: subprocess.CompletedProcess
    results: Path
    models: Path


def train_cli(out: Path, *args: str) -> subprocess.CompletedProcess:
    proc = ganaug("train-classifier", "--data-dir", DATA_DIR, "--out", out, *args)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="session")
def cnn_runs(tmp_path_factory) -> list[CliRun]:
    """The same 1% CNN command run twice into one --out (Run 1 and Run 2)."""
    out = tmp_path_factory.mktemp("cnn")
    args = ("--arch", "cnn", "--fraction", "0.01", "--epochs", "2", "--seed", "0")
    runs = []
    for i in (1, 2):
        proc = train_cli(out, *args)
        name = f"CNNOriginalClassifier Run {i}"
        runs.append(CliRun(out, proc, out / "results" / "classifiers" / name,
                           out / "models" / "classifiers" / name))
    return runs
