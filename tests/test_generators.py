"""`ganaug train-generator` end to end on real data: the contract files, the training subset,
ONNX parity, kill-and-resume to identical weights, divergence handling, `generate`, and the error paths."""

from __future__ import annotations

import io
import json
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA_DIR, assert_user_error, cli_env, ganaug
from ganaug.data import prepare

TINY = ("--fraction", "0.01", "--data-dir", str(DATA_DIR))


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    proc = ganaug("train-generator", "--arch", "cgan", "--epochs", "3", "--no-cas", "--out", out, *TINY)
    assert proc.returncode == 0, proc.stderr
    name = "CGANOriginalGenerator Run 1"
    return out, out / "results" / "generators" / name, out / "models" / "generators" / name, proc


def test_train_generator_writes_the_contract_files(cgan_run):
    out, results, models, proc = cgan_run
    assert sorted(p.name for p in results.iterdir()) == [
        "config.json", "losses.png", "metrics.json", "model_info.txt", "samples.png"]
    assert sorted(p.name for p in models.iterdir()) == [
        "checkpoint.pt", "config.json", "generator.onnx", "generator.safetensors"]
    metrics = json.loads((results / "metrics.json").read_text())
    for key in ("fd_domain", "kid_domain", "precision_k3", "recall_k3", "density", "coverage",
                "gan_test_accuracy", "fd_domain_per_class", "sample_counts", "epochs", "seconds"):
        assert key in metrics, key
    assert "cas_accuracy" not in metrics  # --no-cas
    assert metrics["epochs"] == 3 and metrics["sample_counts"]["generated"] == 10000
    assert set(metrics["fd_domain_per_class"]) == {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}
    info = (results / "model_info.txt").read_text()
    assert "Batch size" in info and "DiffAugment" in info and "EMA" in info
    assert "fd_domain" in proc.stdout


def test_generator_trains_on_exactly_the_classifier_training_subset(cgan_run):
    _, results, _, _ = cgan_run
    config = json.loads((results / "config.json").read_text())
    data = prepare(DATA_DIR, "fashion-mnist", 0.01, 0, 0.1)
    assert config["counts"]["train"] == len(data.train_y) == 540  # not the 60 validation images


def test_generator_onnx_matches_pytorch(cgan_run):
    import onnxruntime as ort

    from ganaug.generate import load_generator

    _, results, models, _ = cgan_run
    gen = load_generator(results)
    session = ort.InferenceSession(str(models / "generator.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["z", "label"]
    assert session.get_inputs()[1].type == "tensor(int64)"
    for n in (1, 33):
        z = torch.randn(n, gen.z_dim, generator=torch.Generator().manual_seed(n))
        label = torch.arange(n) % 10
        (got,) = session.run(None, {"z": z.numpy(), "label": label.numpy()})
        with torch.no_grad():
            want = gen.model(z, label).numpy()
        assert got.shape == (n, 1, 28, 28)
        assert np.abs(got - want).max() < 1e-4


def test_generate_writes_a_balanced_npz(cgan_run, tmp_path):
    _, results, _, _ = cgan_run
    proc = ganaug("generate", results, "--per-class", "7", "--out", tmp_path / "s.npz")
    assert proc.returncode == 0, proc.stderr
    data = np.load(tmp_path / "s.npz")
    assert data["images"].dtype == np.uint8 and data["images"].shape == (70, 28, 28)
    assert data["labels"].dtype == np.int64 and np.bincount(data["labels"]).tolist() == [7] * 10
    again = ganaug("generate", results, "--per-class", "7", "--out", tmp_path / "t.npz")
    assert again.returncode == 0
    assert np.array_equal(np.load(tmp_path / "t.npz")["images"], data["images"])  # same seed


def test_generate_and_evaluate_errors(cgan_run, tmp_path):
    _, results, _, _ = cgan_run
    assert_user_error(ganaug("generate", tmp_path / "nope", "--per-class", "3", "--out", tmp_path / "a.npz"),
                      "does not exist")
    assert_user_error(ganaug("generate", results, "--per-class", "0", "--out", tmp_path / "a.npz"), "--per-class")
    assert_user_error(ganaug("generate", results, "--per-class", "2", "--out", tmp_path / "a.txt"), ".npz")
    assert_user_error(ganaug("evaluate-generator", tmp_path), "not a ganaug generator run")


def _train_args(out: Path, epochs: int) -> list[str]:
    return ["train-generator", "--arch", "cgan", "--epochs", str(epochs), "--batch-size", "256", "--no-metrics",
            "--out", str(out), *TINY]


def test_killed_run_resumes_to_identical_weights(tmp_path):
    epochs = 8
    whole = ganaug(*_train_args(tmp_path / "whole", epochs))
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    script = Path(sys.executable).with_name("ganaug")
    proc = subprocess.Popen([str(script), *_train_args(out, epochs)], env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "models" / "generators" / "CGANOriginalGenerator Run 1" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    epoch = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists():
            epoch = torch.load(ckpt, weights_only=True)["epoch"]
            if epoch >= 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None and 3 <= epoch < epochs, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = out / "results" / "generators" / "CGANOriginalGenerator Run 1"
    assert (run / "INCOMPLETE").exists()
    resumed = ganaug("train-generator", "--resume", run)
    assert resumed.returncode == 0, resumed.stderr
    a = (tmp_path / "whole" / "models" / "generators" / "CGANOriginalGenerator Run 1" / "generator.safetensors")
    b = ckpt.with_name("generator.safetensors")
    from safetensors.torch import load_file

    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not (run / "INCOMPLETE").exists()
    assert_user_error(ganaug("train-generator", "--resume", run), "already finished")


def test_damaged_and_tampered_checkpoints_are_refused(tmp_path):
    out = tmp_path / "o"
    proc = ganaug(*_train_args(out, 1))
    assert proc.returncode == 0, proc.stderr
    run = out / "results" / "generators" / "CGANOriginalGenerator Run 1"
    ckpt = out / "models" / "generators" / run.name / "checkpoint.pt"
    (run / "INCOMPLETE").write_text("pretend it was interrupted\n")

    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated
    assert_user_error(ganaug("train-generator", "--resume", run), "damaged")

    class Exploit:  # what a malicious checkpoint would carry
        def __reduce__(self):
            return (print, ("owned",))

    buffer = io.BytesIO()
    torch.save({"epoch": 1, "payload": Exploit()}, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    ckpt.write_bytes(buffer.getvalue())
    result = ganaug("train-generator", "--resume", run)
    assert_user_error(result, "refusing to load")
    assert "owned" not in result.stdout


def test_diverging_losses_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    import ganaug.train_generator as tg
    from ganaug import cli

    real_step = tg.train_step
    calls = {"n": 0}

    def step(*args, **kwargs):
        calls["n"] += 1
        losses = real_step(*args, **kwargs)
        return losses * float("nan") if calls["n"] > 8 else losses  # 540 images / 256 = 2 steps an epoch

    monkeypatch.setattr(tg, "train_step", step)
    status = cli.run(_train_args(tmp_path, 10))
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: training diverged in epoch 5")
    ckpt = tmp_path / "models" / "generators" / "CGANOriginalGenerator Run 1" / "checkpoint.pt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 4


@pytest.mark.parametrize("args, fragment", [
    (["--arch", "vae"], "--arch"), (["--arch", "cgan", "--epochs", "0"], "--epochs"),
    (["--arch", "cgan", "--lr-g", "-1"], "--lr-g"), (["--arch", "cgan", "--fraction", "3"], "--fraction"),
    (["--arch", "cgan", "--ema-decay", "1.5"], "--ema-decay"), ([], "--arch is required"),
    (["--arch", "cdcgan", "--mode-seeking", "-1"], "--mode-seeking"),
    (["--arch", "acgan", "--aux-fake-weight", "2"], "--aux-fake-weight"),
    (["--arch", "acgan", "--aux-weight", "nan"], "--aux-weight"),
    (["--arch", "cdcgan", "--twin-weight", "1"], "--twin-weight needs a family with a class head"),
    (["--arch", "acgan", "--twin-weight", "-1"], "--twin-weight"),
    (["--arch", "cgan", "--g-depth", "1"], "--g-depth needs a convolutional generator"),
    (["--arch", "acgan", "--g-depth", "-1"], "--g-depth"),
    (["--arch", "cgan", "--d-mbstd", "4"], "--d-mbstd needs a convolutional discriminator"),
    (["--arch", "acgan", "--d-mbstd", "-1"], "--d-mbstd"),
    (["--arch", "cgan", "--d-depth", "1"], "--d-depth needs a convolutional discriminator"),
    (["--arch", "acgan", "--d-depth", "-2"], "--d-depth"),
    (["--arch", "sngan", "--d-projection"], "--d-projection adds sngan's projection term"),
    (["--arch", "cgan", "--d-projection"], "--d-projection adds sngan's projection term"),
    (["--resume", "/nonexistent/run"], "does not exist")])
def test_bad_generator_options_are_user_errors(tmp_path, args, fragment):
    assert_user_error(ganaug("train-generator", *args, "--out", tmp_path, "--data-dir", DATA_DIR), fragment)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("metrics.json"))


def test_diffaugment_is_on_by_default_for_small_subsets_and_off_for_large_ones():
    """DiffAugment is for small data (on the full split it held cdcgan back, README): the
    default follows the real images the generator sees, an explicit choice wins, a run's
    config.json keeps what it trained with, and a study cell settles it from its own subset."""
    from ganaug.gan_config import DIFFAUGMENT_MAX_IMAGES, generator_config, generator_config_from_dict
    from ganaug.study_config import PRESETS, generator_config as study_generator_config

    full, tenth = generator_config("cdcgan"), generator_config("cdcgan", fraction=0.1)
    small = generator_config("cdcgan", fraction=0.01)
    assert (full.real_train_images, full.optim.diffaugment) == (54_000, False)
    assert (tenth.real_train_images, tenth.optim.diffaugment) == (5_400, False)
    assert (small.real_train_images, small.optim.diffaugment) == (540, True)
    assert generator_config("cdcgan", fraction=0.03).optim.diffaugment is True  # as --help says
    assert generator_config("cdcgan", diffaugment=True).optim.diffaugment is True
    assert generator_config("cgan", fraction=0.01, diffaugment=False).optim.diffaugment is False
    assert generator_config_from_dict(full.to_dict()).optim.diffaugment is False
    old_run = small.to_dict()  # a run from before the rule trained the full split with DiffAugment
    old_run.update(fraction=1.0)
    assert generator_config_from_dict(old_run).optim.diffaugment is True

    study = PRESETS["standard"].frozen()
    assert study.generator_recipes["acgan"]["diffaugment"] is None  # settled per cell
    cells = {f: study_generator_config(study, {"family": "acgan", "fraction": f, "seed": 0}, 0)
             for f in (0.01, 1.0)}
    assert cells[0.01].optim.diffaugment is True and cells[1.0].optim.diffaugment is False

    help_text = ganaug("train-generator", "--help").stdout
    assert f"{DIFFAUGMENT_MAX_IMAGES:,} real" in " ".join(help_text.split())
