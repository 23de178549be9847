"""`ganaug export RUN_DIR --format onnx`: a saved run's weights become its ONNX file again, and
that file computes what PyTorch computes, checked here from outside ganaug's export code."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from conftest import FASHION_CLASSES, assert_user_error, ganaug, snapshot
from demo_runs import CLASSIFIER, GENERATOR, trained_out
from ganaug import cli
from ganaug.models.classifiers import CNN
from ganaug.models.generators import GENERATORS

DIFF = re.compile(r"max abs diff PyTorch vs onnxruntime: (\S+) \(batch 1: (\S+), batch 64: (\S+)\)")


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    """A copy of the trained runs that these tests may change."""
    out = tmp_path_factory.mktemp("export") / "out"
    shutil.copytree(trained_out(tmp_path_factory).out, out)
    return out


def run_dirs(out, kind: str, where: str):
    name = CLASSIFIER if kind == "classifiers" else GENERATOR
    return out / where / kind / name


def check_io(model: onnx.ModelProto, inputs: list[str], output: str) -> None:
    assert [i.name for i in model.graph.input] == inputs
    assert [o.name for o in model.graph.output] == [output]
    for value in model.graph.input:
        assert value.type.tensor_type.shape.dim[0].dim_param  # a named, dynamic batch axis
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_classifier_from_its_results_folder(copied, fashion_test_set):
    models = run_dirs(copied, "classifiers", "models")
    (models / "model.onnx").unlink()
    proc = ganaug("export", run_dirs(copied, "classifiers", "results"), "--format", "onnx")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == f"wrote {models / 'model.onnx'}"
    worst, batch1, batch64 = map(float, DIFF.fullmatch(lines[1]).groups())
    assert worst == max(batch1, batch64) <= 1e-4

    check_io(onnx.load(models / "model.onnx"), ["image"], "logits")
    # PyTorch from the weights file, onnxruntime from the new ONNX file, real test images
    config = json.loads((models / "config.json").read_text())
    model = CNN(num_classes=10, mean=config["mean"], std=config["std"], **config["model_kwargs"])
    assert model.flip_tta  # trained with --classical-aug: the re-export keeps the mirror-image average
    model.load_state_dict(load_file(models / "model.safetensors"))
    images = torch.from_numpy(fashion_test_set[0][:50].copy()).unsqueeze(1).float() / 255
    with torch.no_grad():
        expected = model.eval()(images).numpy()
    session = ort.InferenceSession(str(models / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 50):
        got = session.run(["logits"], {"image": images[:batch].numpy()})[0]
        np.testing.assert_allclose(got, expected[:batch], rtol=0, atol=1e-4)


def test_generator_from_its_models_folder(copied):
    models = run_dirs(copied, "generators", "models")
    before = (models / "generator.onnx").stat().st_mtime_ns
    proc = ganaug("export", models)  # --format onnx is the default
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {models / 'generator.onnx'}\n")
    assert float(DIFF.search(proc.stdout).group(1)) <= 1e-4
    assert (models / "generator.onnx").stat().st_mtime_ns > before

    check_io(onnx.load(models / "generator.onnx"), ["z", "label"], "image")
    g = GENERATORS["cgan"].make_g(len(FASHION_CLASSES), 64, 256)
    g.load_state_dict(load_file(models / "generator.safetensors"))
    z = torch.randn(30, 64, generator=torch.Generator().manual_seed(3))
    labels = torch.arange(30) % 10
    with torch.no_grad():
        expected = g.eval()(z, labels).numpy()
    session = ort.InferenceSession(str(models / "generator.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["image"], {"z": z.numpy(), "label": labels.numpy()})[0]
    assert got.shape == (30, 1, 28, 28) and 0 <= got.min() and got.max() <= 1
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_unknown_format(copied, capsys):
    assert cli.run(["export", str(run_dirs(copied, "classifiers", "results")), "--format", "tflite"]) == 2
    assert capsys.readouterr().err == "error: --format must be one of onnx; got 'tflite'\n"


@pytest.mark.parametrize("where", ["out", "results", "missing", "a file"])
def test_not_a_run_folder(copied, capsys, where):
    path = {"out": copied, "results": copied / "results" / "classifiers",
            "missing": copied / "results" / "classifiers" / "CNNOriginalClassifier Run 99",
            "a file": run_dirs(copied, "classifiers", "results") / "metrics.json"}[where]
    assert cli.run(["export", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    expected = {"missing": "does not exist", "a file": "is a file, not a run folder"}
    assert expected.get(where, "is not a ganaug run folder") in err


def test_missing_weights_leave_the_run_untouched(tmp_path):
    run = tmp_path / "out" / "models" / "generators" / GENERATOR
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "generator.onnx").write_bytes(b"old")
    before = snapshot(tmp_path)
    assert_user_error(ganaug("export", run), "no generator.safetensors in", "finished run")
    assert snapshot(tmp_path) == before


def test_corrupt_weights_leave_the_old_onnx_file(copied, capsys):
    broken = copied.parent / "broken"
    shutil.copytree(copied, broken)
    models = run_dirs(broken, "classifiers", "models")
    (models / "model.safetensors").write_bytes(b"not safetensors")
    before = snapshot(broken)
    assert cli.run(["export", str(models)]) == 2
    assert "model.safetensors is not a readable safetensors file" in capsys.readouterr().err
    assert snapshot(broken) == before
