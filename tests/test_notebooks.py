"""The notebooks run headless, top to bottom, with smoke settings, on a kernel of this interpreter
(the project's venv), and show their results as plots. They are stored without outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from conftest import DATA_DIR, REPO
from ganaug import cli

NOTEBOOKS = REPO / "notebooks"
NAMES = ("01_classifiers", "02_generators", "03_study")
KERNEL = "ganaug-test-venv"
CELL_TIMEOUT = 900  # seconds per cell; a bound so a hung kernel fails the test


def read(name: str):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


@pytest.fixture(scope="module")
def kernels(tmp_path_factory) -> Path:
    """A kernelspec folder whose kernel is this interpreter, with the smoke settings in its env."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ganaug (test venv)", "language": "python",
        "env": {"GANAUG_NOTEBOOK_SMOKE": "1", "GANAUG_PROGRESS": "0", "GANAUG_DATA_DIR": str(DATA_DIR),
                "GANAUG_NOTEBOOK_OUT": str(root / "out"), "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }))
    return root


def execute(name: str, kernels: Path):
    """Run every cell with the notebook's folder as working directory, as Jupyter would."""
    nb = read(name)
    manager = KernelManager(kernel_name=KERNEL,
                            kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    NotebookClient(nb, km=manager, timeout=CELL_TIMEOUT,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def outputs(nb) -> tuple[str, int]:
    """All text the cells printed or displayed, and how many images they showed."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text.append(out.get("text", ""))
            data = out.get("data", {})
            text.append(data.get("text/markdown", "") + data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(text), images


@pytest.mark.parametrize("name", NAMES)
def test_stored_without_outputs(name):
    nb = read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def test_01_classifiers(kernels):
    nb = execute("01_classifiers", kernels)
    text, images = outputs(nb)
    assert f"python {sys.executable}" in text  # the kernel is this venv's interpreter
    runs = sorted((kernels / "out" / "results" / "classifiers").iterdir())
    assert [r.name for r in runs] == ["CNNOriginalClassifier Run 1", "ShallowNNOriginalClassifier Run 1"]
    for run in runs:
        accuracy = json.loads((run / "metrics.json").read_text())["test"]["accuracy"]
        assert f"| {run.name} | {accuracy:.4f} |" in text  # the table shows each run's own score
    # bar chart, validation curves, curves.png, confusion_matrix.png, ONNX predictions
    assert images >= 5
    assert "ONNX accuracy on these 16 test images" in text


def test_02_generators(kernels):
    nb = execute("02_generators", kernels)
    text, images = outputs(nb)
    out = kernels / "out"
    run = out / "results" / "generators" / "CGANOriginalGenerator Run 1"
    assert (run / "samples.png").is_file()
    assert (out / "CGANOriginalGenerator Run 1 samples.npz").is_file()
    assert "(80, 28, 28) uint8 [8 8 8 8 8 8 8 8 8 8]" in text  # 8 per class from `ganaug generate`
    # samples.png, losses.png, the .npz grid, the ONNX latent walk
    assert images >= 4


@pytest.mark.skipif("study" not in cli.COMMANDS, reason="`ganaug study` is not registered yet")
def test_03_study(kernels):
    nb = execute("03_study", kernels)
    text, images = outputs(nb)
    studies = list((kernels / "out" / "results" / "studies").glob("* Run *"))
    assert len(studies) == 1
    study = studies[0]
    for name in ("report.md", "summary.csv", "stats.json"):
        assert (study / name).is_file()
    # smoke mode: the smoke preset cut to one baseline and one GAN method (2 seeds x 2 + 2 generators)
    assert len(list((study / "tasks").glob("*.json"))) == 6
    assert images == len(list(study.glob("*.png"))) >= 1  # every plot the study drew is shown
    assert (study / "report.md").read_text().splitlines()[0] in text  # the report, as Markdown
    rows = len((study / "summary.csv").read_text().strip().splitlines()) - 1
    keys = ", ".join(json.loads((study / "stats.json").read_text()))
    assert f"{rows} rows" in text and f"stats.json keys: {keys}" in text
