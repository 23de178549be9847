"""`ganaug train-classifier --resume`: an interrupted classifier run continues in its own folder
from its last checkpoint and ends with the same weights and numbers as a run never interrupted;
a finished run leaves no checkpoint behind; bad resumes are one-line errors. Real 1% slices."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import DATA_DIR, assert_user_error, cli_env, ganaug

TIMING = ("seconds", "train_images_per_second")  # the only numbers allowed to differ
CNN = "CNNOriginalClassifier Run 1"


def cnn_args(out: Path, epochs: int) -> list[str]:
    return ["train-classifier", "--arch", "cnn", "--fraction", "0.01", "--epochs", str(epochs),
            "--checkpoint-every", "0", "--data-dir", str(DATA_DIR), "--out", str(out)]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def without_timing(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING}


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights_and_numbers(tmp_path):
    epochs = 20
    whole = ganaug(*cnn_args(tmp_path / "whole", epochs))
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("ganaug")), *cnn_args(out, epochs)],
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "models" / "classifiers" / CNN / "checkpoint.pt"
    deadline, epoch = time.monotonic() + 300, 0
    while time.monotonic() < deadline and proc.poll() is None:
        if ckpt.exists():
            epoch = torch.load(ckpt, weights_only=True)["epoch"]
            if epoch >= 3:
                break
        time.sleep(0.02)
    assert proc.poll() is None and 3 <= epoch < epochs, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = out / "results" / "classifiers" / CNN
    assert (run / "INCOMPLETE").exists() and not (run / "metrics.json").exists()

    resumed = ganaug("train-classifier", "--resume", run)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{CNN}: test accuracy" in resumed.stdout
    assert same_weights(tmp_path / "whole" / "models" / "classifiers" / CNN / "model.safetensors",
                        ckpt.with_name("model.safetensors"))
    got = json.loads((run / "metrics.json").read_text())
    want = json.loads((tmp_path / "whole" / "results" / "classifiers" / CNN / "metrics.json").read_text())
    assert without_timing(got) == without_timing(want)  # history, best epoch, every score
    assert not (run / "INCOMPLETE").exists() and not ckpt.exists()  # finished: checkpoint removed
    assert_user_error(ganaug("train-classifier", "--resume", run), "already finished")

    # a tampered checkpoint (a pickle that would run code) is refused, the run folder kept
    (run / "INCOMPLETE").write_text("pretend it was interrupted\n")
    (run / "metrics.json").unlink()
    torch.save({"epoch": 1, "evil": print}, ckpt)
    assert_user_error(ganaug("train-classifier", "--resume", run), "refusing to load")
    assert (run / "config.json").is_file() and ckpt.is_file()


def test_pretrain_then_fine_tune_resumes_in_either_phase(tmp_path, monkeypatch):
    """A run that pretrains on synthetic images and then fine-tunes on real ones, stopped right
    after a checkpoint in each of its two phases, resumes to the weights of the whole run."""
    from ganaug import fit as fit_module
    from ganaug.config import classifier_config
    from ganaug.gan_config import generator_config
    from ganaug.train_classifier import resume_classifier, train_classifier
    from ganaug.train_generator import train_generator

    gen = train_generator(generator_config("cgan", fraction=0.01, epochs=1, cas=False, evaluate=False,
                                           export_onnx=False), DATA_DIR, tmp_path / "gen")
    cfg = classifier_config("cnn", fraction=0.01, epochs=4, synthetic_from=str(gen.run.results),
                            synthetic_ratio=1.0, synthetic_mode="pretrain", checkpoint_seconds=0,
                            export_onnx=False)
    whole = train_classifier(cfg, DATA_DIR, tmp_path / "whole")

    class Killed(Exception):
        pass

    real_save = fit_module.EpochCheckpoint.save
    for stop_after in (2, 6):  # 4 pretraining epochs, then 4 fine-tuning epochs
        saves = []

        def save_then_die(self, state, saves=saves, stop_after=stop_after):
            real_save(self, state)
            saves.append(self.phase)
            if len(saves) == stop_after:
                raise Killed

        monkeypatch.setattr(fit_module.EpochCheckpoint, "save", save_then_die)
        out = tmp_path / f"stopped-{stop_after}"
        with pytest.raises(Killed):
            train_classifier(cfg, DATA_DIR, out)
        assert saves[-1] == ("pretrain" if stop_after <= 4 else "train")
        monkeypatch.setattr(fit_module.EpochCheckpoint, "save", real_save)
        resumed = resume_classifier(out / "results" / "classifiers" / whole.run.name)
        assert same_weights(whole.run.models / "model.safetensors", resumed.run.models / "model.safetensors")
        assert without_timing(resumed.metrics) == without_timing(whole.metrics)


def test_bad_resumes_are_one_line_errors(tmp_path):
    assert_user_error(ganaug("train-classifier", "--resume", tmp_path / "nowhere"), "does not exist")
    assert_user_error(ganaug("train-classifier", "--resume", tmp_path), "not a ganaug classifier run folder")
    assert_user_error(ganaug("train-classifier", "--out", tmp_path), "--arch is required")
    assert_user_error(ganaug(*cnn_args(tmp_path, 1)[:-4], "--checkpoint-every", "-1"), "--checkpoint-every")
