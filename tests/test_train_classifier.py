"""`ganaug train-classifier` end to end: the real command on a 1% slice of the real data, then the
exact files it writes, checked from outside ganaug where possible (ONNX on the real test set)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file

from conftest import DATA_DIR, FASHION_CLASSES, REPO, CliRun, ganaug, train_cli
from ganaug.models.classifiers import CLASSIFIERS

RESULT_FILES = {"classification_report.txt", "confusion_matrix.png", "curves.png", "metrics.json",
                "model_info.txt", "config.json"}
MODEL_FILES = {"model.safetensors", "model.onnx", "config.json"}
SCORES = ("loss", "accuracy", "precision", "recall", "f1")
TIMING = ("seconds", "train_images_per_second")  # the only numbers allowed to differ between runs


def files(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def metrics(run: CliRun) -> dict:
    return json.loads((run.results / "metrics.json").read_text())


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 images [N, 28, 28] -> the models' input, float32 [N, 1, 28, 28] in [0, 1]."""
    return images[:, None].astype(np.float32) / 255


def onnx_logits(path, images: np.ndarray) -> np.ndarray:
    """Run model.onnx with onnxruntime as an outside user would: uint8 -> [0, 1] floats."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = pixels(images)
    return np.concatenate([session.run(["logits"], {"image": x[i:i + 2500]})[0]
                           for i in range(0, len(x), 2500)])


def rebuild(models_dir) -> torch.nn.Module:
    """The PyTorch model from model.safetensors and config.json alone."""
    cfg = json.loads((models_dir / "config.json").read_text())
    model = CLASSIFIERS[cfg["arch"]](num_classes=cfg["num_classes"], mean=cfg["mean"],
                                     std=cfg["std"], **cfg["model_kwargs"])
    model.load_state_dict(load_file(str(models_dir / "model.safetensors")))
    return model.eval()


# ---------------------------------------------------------------- the files of one run

def test_run_writes_exactly_the_contract_files(cnn_runs):
    run = cnn_runs[0]
    assert run.results.name == "CNNOriginalClassifier Run 1"
    assert files(run.results) == RESULT_FILES  # no INCOMPLETE marker, no temporary files
    assert files(run.models) == MODEL_FILES
    assert sorted(p.name for p in run.results.parent.iterdir()) == [
        "CNNOriginalClassifier Run 1", "CNNOriginalClassifier Run 2"]
    m = metrics(run)
    assert f"CNNOriginalClassifier Run 1: test accuracy {m['test']['accuracy']:.4f}" in run.proc.stdout
    assert run.proc.stderr == ""  # GANAUG_PROGRESS=0 and a quiet ONNX exporter


def test_metrics_json(cnn_runs):
    m = metrics(cnn_runs[0])
    for split in ("train", "val", "test"):
        assert set(m[split]) >= set(SCORES)
        assert m[split]["loss"] >= 0
        assert all(0 <= m[split][k] <= 1 for k in SCORES[1:])
    history = m["history"]
    assert set(history) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert [len(v) for v in history.values()] == [2, 2, 2, 2]
    assert m["seconds"] > 0
    # the best epoch's validation accuracy is what the saved model scores on validation
    assert m["val"]["accuracy"] == pytest.approx(max(history["val_accuracy"]), abs=1e-9)
    assert m["test"]["accuracy"] > 0.3  # far above chance (0.1) after 2 epochs on 540 images


def test_classification_report(cnn_runs):
    text = (cnn_runs[0].results / "classification_report.txt").read_text()
    m = metrics(cnn_runs[0])
    for name in FASHION_CLASSES:
        assert re.search(rf"^\s*{re.escape(name)}(\s+\d\.\d+){{3}}\s+1000$", text, re.M), name
    assert re.search(rf"^\s*accuracy\s+{m['test']['accuracy']:.4f}\s+10000$", text, re.M)
    assert re.search(rf"^\s*macro avg\s+{m['test']['precision']:.4f}\s+{m['test']['recall']:.4f}"
                     rf"\s+{m['test']['f1']:.4f}\s+10000$", text, re.M)
    assert re.search(r"^\s*weighted avg(\s+\d\.\d+){3}\s+10000$", text, re.M)


def test_plots_are_png_images(cnn_runs):
    for name in ("confusion_matrix.png", "curves.png"):
        data = (cnn_runs[0].results / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_model_info_and_config(cnn_runs):
    run = cnn_runs[0]
    info = (run.results / "model_info.txt").read_text()
    params = sum(p.numel() for p in rebuild(run.models).parameters())
    assert f"Parameters: {params:,}" in info
    assert "Batch size: 256" in info and re.search(r"^Epochs: 2\b", info, re.M)
    assert re.search(r"^Optimizer: adamw \(peak lr 0\.003, weight decay", info, re.M)
    assert "Conv2d(1, 48" in info  # the layers (CNN default channels 48, 96, 192)
    config = json.loads((run.results / "config.json").read_text())
    assert config["seed"] == 0 and config["arch"] == "cnn" and config["fraction"] == 0.01
    assert config["optim"]["epochs"] == 2
    assert config["counts"] == {"train": 540, "val": 60, "test": 10000, "synthetic": 0}
    assert config["train_per_class"] == [54] * 10
    assert config["versions"]["torch"] == torch.__version__ and "ganaug" in config["versions"]
    choice = config["precision_choice"]  # --precision auto, and why it resolved as it did
    if choice["rule"] == "measured":  # native bf16 here: a timed step of this CNN, cached
        cached = json.loads(Path(choice["cache"]).read_text())
        assert Path(choice["cache"]).is_relative_to(os.environ["GANAUG_CACHE_DIR"])
        assert cached["precision"] == config["precision_resolved"] and cached["key"]["batch"] == 256
        assert cached["step_ms"] == choice["step_ms"]
    else:
        assert choice == {"rule": "no native bf16"} and config["precision_resolved"] == "fp32"
    model_config = json.loads((run.models / "config.json").read_text())
    assert model_config["class_names"] == list(FASHION_CLASSES)
    assert model_config["onnx"]["input"] == "image" and model_config["onnx"]["output"] == "logits"


# ---------------------------------------------------------------- the model files

def test_onnx_reproduces_the_test_accuracy_outside_ganaug(cnn_runs, fashion_test_set):
    images, labels = fashion_test_set
    logits = onnx_logits(cnn_runs[0].models / "model.onnx", images)
    assert logits.shape == (10000, 10) and logits.dtype == np.float32
    accuracy = float((logits.argmax(1) == labels).mean())
    assert accuracy == metrics(cnn_runs[0])["test"]["accuracy"]


def test_onnx_graph_follows_the_contract(cnn_runs):
    graph = onnx.load(str(cnn_runs[0].models / "model.onnx"))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,), (out,) = graph.graph.input, graph.graph.output
    assert (inp.name, out.name) == ("image", "logits")
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]  # dynamic batch


@pytest.mark.parametrize("batch", [1, 64])
def test_onnx_matches_pytorch_rebuilt_from_the_files(cnn_runs, fashion_test_set, batch):
    images = fashion_test_set[0][100:100 + batch]
    model = rebuild(cnn_runs[0].models)
    with torch.no_grad():
        expected = model(torch.from_numpy(pixels(images))).numpy()
    got = onnx_logits(cnn_runs[0].models / "model.onnx", images)
    assert got.shape == (batch, 10)
    assert np.abs(got - expected).max() < 1e-4


def test_same_command_same_numbers_in_a_new_folder(cnn_runs):
    first, second = cnn_runs
    assert second.results.name == "CNNOriginalClassifier Run 2" and files(second.models) == MODEL_FILES
    a, b = metrics(first), metrics(second)
    for key in TIMING:
        a.pop(key), b.pop(key)
    assert a == b
    wa, wb = load_file(str(first.models / "model.safetensors")), load_file(str(second.models / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---------------------------------------------------------------- options

@pytest.fixture(scope="module")
def variant_run(tmp_path_factory) -> CliRun:
    """The base command plus --classical-aug --plot-format svg --tensorboard, run elsewhere."""
    out = tmp_path_factory.mktemp("variant")
    # --data-dir and --out from the environment this time (GANAUG_DATA_DIR, GANAUG_OUT)
    proc = ganaug("train-classifier", "--arch", "cnn", "--fraction", "0.01", "--epochs", "2",
                  "--seed", "0", "--classical-aug", "--plot-format", "svg", "--tensorboard",
                  cwd=out, GANAUG_DATA_DIR=str(DATA_DIR), GANAUG_OUT=str(out))
    assert proc.returncode == 0, proc.stderr
    name = "CNNOriginalClassifier Run 1"
    return CliRun(out, proc, out / "results" / "classifiers" / name, out / "models" / "classifiers" / name)


def test_plot_format_svg(variant_run):
    names = files(variant_run.results)
    assert {"confusion_matrix.svg", "curves.svg"} <= names
    assert not {n for n in names if n.endswith(".png")}
    for name in ("confusion_matrix.svg", "curves.svg"):
        assert "<svg" in (variant_run.results / name).read_text()[:2000]


def test_classical_aug_changes_training(variant_run, cnn_runs):
    config = json.loads((variant_run.results / "config.json").read_text())
    assert config["classical_aug"] is True
    assert "Classical augmentation: off" not in (variant_run.results / "model_info.txt").read_text()
    plain, augmented = metrics(cnn_runs[0])["history"], metrics(variant_run)["history"]
    assert plain["train_loss"] != augmented["train_loss"]  # same seed, different training batches


def test_flip_tta_model_averages_both_views_in_the_exported_model(variant_run, fashion_test_set):
    """With --classical-aug the run evaluates (and exports) the mean logits of each image and its
    mirror image; the single-view score is reported beside it. Checked with onnxruntime on the
    real test set and against the saved weights evaluated one view at a time."""
    m = metrics(variant_run)
    images, labels = fashion_test_set
    logits = onnx_logits(variant_run.models / "model.onnx", images)
    assert float((logits.argmax(1) == labels).mean()) == m["test"]["accuracy"]

    model = rebuild(variant_run.models)
    assert model.flip_tta is True
    model.flip_tta = False  # the same weights, one view per image
    x = torch.from_numpy(pixels(images))
    with torch.no_grad():
        plain, mirrored = model(x), model(x.flip(-1))
    np.testing.assert_allclose(logits, ((plain + mirrored) / 2).numpy(), atol=1e-4)
    single = float((plain.argmax(1).numpy() == labels).mean())
    assert m["test_single_view"]["accuracy"] == pytest.approx(single, abs=2e-4)  # ties at fp32 noise
    assert "Evaluation: mean logits of each image and its mirror image" in (
        variant_run.results / "model_info.txt").read_text()


def test_flip_tta_script_scores_an_older_run_both_ways(cnn_runs, variant_run, fashion_test_set):
    """scripts/flip_tta.py on a run trained without the average: its one-view test accuracy is the
    run's own, its mirror average is what the same weights give with flip_tta on; a run that has the
    average already is refused with a one-line error."""
    script = REPO / "scripts" / "flip_tta.py"
    run = subprocess.run([sys.executable, script, cnn_runs[0].results, "--data-dir", DATA_DIR],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    scores = {line.split(":")[0]: [float(v) for v in re.findall(r"(0\.\d{4})", line)]
              for line in run.stdout.splitlines()}
    m = metrics(cnn_runs[0])
    assert scores["val"][0] == pytest.approx(m["val"]["accuracy"], abs=1e-4)
    assert scores["test"][0] == pytest.approx(m["test"]["accuracy"], abs=1e-4)
    model = rebuild(cnn_runs[0].models)
    model.flip_tta = True
    images, labels = fashion_test_set
    with torch.no_grad():
        both = model(torch.from_numpy(pixels(images))).argmax(1).numpy()
    assert scores["test"][1] == pytest.approx(float((both == labels).mean()), abs=2e-4)

    refused = subprocess.run([sys.executable, script, variant_run.results, "--data-dir", DATA_DIR],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and refused.stderr.startswith("error: ")
    assert len(refused.stderr.strip().splitlines()) == 1 and "already" in refused.stderr


def test_tensorboard_logs_the_history(variant_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((variant_run.results / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    m = metrics(variant_run)
    for tag, values in m["history"].items():
        logged = acc.Scalars(tag)
        assert [e.step for e in logged] == [1, 2]
        assert [e.value for e in logged] == pytest.approx(values, rel=1e-6)
    assert acc.Scalars("test_accuracy")[0].value == pytest.approx(m["test"]["accuracy"], rel=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("arch, label", [("shallow", "ShallowNN"), ("deep", "DeepNN")])
def test_mlp_classifiers_run_end_to_end(arch, label, tmp_path, fashion_test_set):
    proc = train_cli(tmp_path, "--arch", arch, "--fraction", "0.01", "--epochs", "1")
    run = CliRun(tmp_path, proc, tmp_path / "results" / "classifiers" / f"{label}OriginalClassifier Run 1",
                 tmp_path / "models" / "classifiers" / f"{label}OriginalClassifier Run 1")
    assert files(run.results) == RESULT_FILES and files(run.models) == MODEL_FILES
    m = metrics(run)
    assert [len(v) for v in m["history"].values()] == [1, 1, 1, 1]
    assert m["test"]["accuracy"] > 0.2  # well above chance (0.1)
    images, labels = fashion_test_set
    accuracy = float((onnx_logits(run.models / "model.onnx", images).argmax(1) == labels).mean())
    assert accuracy == m["test"]["accuracy"]


def test_module_entry_point_and_version():
    proc = ganaug("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("ganaug ")
    module = subprocess.run([sys.executable, "-m", "ganaug", "--version"], capture_output=True,
                            text=True, timeout=60)
    assert module.returncode == 0 and module.stdout == proc.stdout


def test_a_last_batch_of_one_image_trains():
    """540 training images with --batch-size 539 leave a last batch of 1 (also happens whenever
    the training set size is 1 more than a multiple of the batch size, e.g. with synthetic data)."""
    from ganaug.config import classifier_config
    from ganaug.data import DATASETS
    from ganaug.fit import build_classifier, fit

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.tensor([0, 1, 2, 3, 4])
    cfg = classifier_config("deep", epochs=1, batch_size=4)
    model = build_classifier("deep", DATASETS["fashion-mnist"])
    result = fit(model, cfg.optim, x, y, x, y, device=torch.device("cpu"), precision="fp32",
                 generator=g)
    assert result.epochs == 1


def test_step_budget_raises_small_sets_and_caps_large_ones():
    """min_steps lifts a 1% subset to enough updates; max_steps gives real + synthetic sets the
    same number of updates as the real set alone (to the nearest whole epoch)."""
    from ganaug.config import OptimConfig
    from ganaug.fit import epochs_for

    optim = OptimConfig(epochs=15, batch_size=256, lr=1e-3, weight_decay=0, min_steps=500, max_steps=1700)
    steps = {n: epochs_for(optim, n) * -(-n // 256) for n in (540, 54000, 81000, 162000)}
    assert steps[540] >= 500  # 3 batches per epoch -> 167 epochs
    assert all(abs(s - 1700) <= 0.5 * -(-n // 256) for n, s in steps.items() if n > 540)
    assert epochs_for(OptimConfig(epochs=15, batch_size=256, lr=1e-3, weight_decay=0), 162000) == 15
    with pytest.raises(Exception, match="max_steps"):
        OptimConfig(epochs=1, batch_size=8, lr=1e-3, weight_decay=0, min_steps=100, max_steps=50)


def test_weight_ema_is_what_is_validated_and_kept():
    """With ema_decay the model left after fit is the moving average: not the raw weights of the
    same run (EMA draws no random numbers, so both runs take the same steps), and its accuracy
    on the validation images is the best one the history records."""
    from ganaug.config import classifier_config
    from ganaug.data import prepare
    from ganaug.fit import build_classifier, fit, predict, scores

    data = prepare(DATA_DIR, "fashion-mnist", 0.01, 0, 0.1)
    kept = {}
    for decay in (0.0, 0.9):
        cfg = classifier_config("shallow", epochs=3, ema_decay=decay)
        torch.manual_seed(0)
        model = build_classifier("shallow", data.info)
        result = fit(model, cfg.optim, data.train_x, data.train_y, data.val_x, data.val_y,
                     device=torch.device("cpu"), precision="fp32",
                     generator=torch.Generator().manual_seed(0))
        val = scores(predict(model, data.val_x, torch.device("cpu")), data.val_y)
        assert val["accuracy"] == max(result.history["val_accuracy"])
        kept[decay] = model.state_dict()
    assert not torch.equal(kept[0.0]["net.1.weight"], kept[0.9]["net.1.weight"])
    with pytest.raises(Exception, match="ema_decay"):
        classifier_config("shallow", ema_decay=1.0)
