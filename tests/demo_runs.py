"""Helpers shared by the demo, browser and export tests: one real classifier and one real generator
trained by the real CLI on a 1% slice (once per session), and a real `ganaug demo` process.

Not a conftest fixture on purpose: the cache below makes the training happen once however many of
these test files run, without adding to the shared conftest.
"""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conftest import DATA_DIR, cli_env, ganaug

CLASSIFIER = "CNNOriginalClassifier Run 1"
GENERATOR = "CGANOriginalGenerator Run 1"
SERVER_START_TIMEOUT = 60  # seconds until `ganaug demo` prints its URL; a bound, not an expectation
URL = re.compile(r"http://\S+/")


@dataclass(frozen=True)
class TrainedOut:
    out: Path

    def results(self, kind: str) -> Path:
        return self.out / "results" / kind / (CLASSIFIER if kind == "classifiers" else GENERATOR)

    def models(self, kind: str) -> Path:
        return self.out / "models" / kind / (CLASSIFIER if kind == "classifiers" else GENERATOR)

    @property
    def classifier_onnx(self) -> Path:
        return self.models("classifiers") / "model.onnx"

    @property
    def generator_onnx(self) -> Path:
        return self.models("generators") / "generator.onnx"


_trained: list[TrainedOut] = []


def trained_out(tmp_path_factory) -> TrainedOut:
    """A --out holding a finished 1% CNN classifier and a 1% CGAN generator (1 epoch each).

    The classifier trains with --classical-aug, so its ONNX graph also holds the mirror-image
    average (flip_tta) that the default `transfer` model exports: the browser must run it too."""
    if not _trained:
        out = tmp_path_factory.mktemp("demo-runs")
        for command in (("train-classifier", "--arch", "cnn", "--classical-aug"),
                        ("train-generator", "--arch", "cgan", "--no-metrics")):
            proc = ganaug(*command, "--fraction", "0.01", "--epochs", "1", "--seed", "0",
                          "--data-dir", DATA_DIR, "--out", out)
            assert proc.returncode == 0, proc.stderr
        _trained.append(TrainedOut(out))
    trained = _trained[0]
    assert trained.classifier_onnx.is_file() and trained.generator_onnx.is_file()
    return trained


def _command() -> list[str]:
    script = Path(sys.executable).with_name("ganaug")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ganaug"]


@dataclass
class DemoProcess:
    proc: subprocess.Popen
    url: str  # e.g. http://127.0.0.1:41234/
    lines: list[str]  # what it printed before the URL

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])


@contextmanager
def running_demo(out: Path, *args: str, **env: str):
    """Start `ganaug demo --out OUT --port 0 ARGS` as a real process; stop it afterwards."""
    proc = subprocess.Popen([*_command(), "demo", "--out", str(out), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(**env))
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)  # the process closed its output: it ended

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"ganaug demo printed no URL: {seen} {proc.poll()}") from None
            if line is None:
                proc.wait(timeout=10)
                raise AssertionError(f"ganaug demo ended (status {proc.returncode}): "
                                     f"{''.join(seen)}{proc.stderr.read()}")
            seen.append(line)
            if match := URL.search(line):
                break
        yield DemoProcess(proc, match.group(0), seen)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
