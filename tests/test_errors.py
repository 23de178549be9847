"""User errors: one line `error: ...` on stderr, exit status 2, no traceback, nothing damaged.

Most cases run in-process through ``cli.run`` (an exception escaping it is a traceback); a few run
the real `ganaug` process to check what a shell sees.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from conftest import DATA_DIR, assert_user_error, ganaug, snapshot
from ganaug import cli
from ganaug.config import classifier_config
from ganaug.errors import UserError

# Put first, so that if a bad value were accepted the run it starts would still be tiny.
SMALL = ("--arch", "cnn", "--fraction", "0.01", "--epochs", "1")

TRAIN_CASES = {
    "fraction above 1": (["--fraction", "2"], "--fraction"),
    "fraction nan": (["--fraction", "nan"], "--fraction"),
    "fraction leaves one image per class": (["--fraction", "0.0001"], "--fraction"),
    "zero epochs": (["--epochs", "0"], "--epochs"),
    "epochs not a number": (["--epochs", "two"], "invalid int value"),
    "zero batch size": (["--batch-size", "0"], "--batch-size"),
    "negative lr": (["--lr", "-1"], "--lr"),
    "negative seed": (["--seed", "-1"], "--seed"),
    "unknown arch": (["--arch", "nope"], "--arch"),
    "unknown dataset": (["--dataset", "nope"], "--dataset"),
    "unknown precision": (["--precision", "fp8"], "--precision"),
    "unknown device": (["--device", "tpu"], "--device"),
    "unknown plot format": (["--plot-format", "bmp"], "--plot-format"),
    "unknown option": (["--bogus"], "unrecognized arguments: --bogus"),
    "ratio without a generator": (["--synthetic-ratio", "0.5"], "--synthetic-from"),
    "zero threads": (["--threads", "0"], "--threads"),
    "negative threads": (["--threads", "-1"], "--threads"),
    "missing pretrained file": (["--arch", "transfer", "--pretrained", "/nonexistent/r18.pth"],
                                "does not exist"),
}


@pytest.fixture(scope="module")
def out_with_a_run(cnn_runs, tmp_path_factory):
    """A copy of an --out folder holding finished runs, and its contents before any error."""
    out = tmp_path_factory.mktemp("errors") / "out"
    shutil.copytree(cnn_runs[0].out, out)
    return out, snapshot(out)


def assert_untouched(out_with_a_run):
    out, before = out_with_a_run
    assert snapshot(out) == before  # no file changed, none added (no new run folder)


def run_in_process(argv, capsys) -> str:
    status = cli.run([str(a) for a in argv])
    captured = capsys.readouterr()
    assert status == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    return lines[0]


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_bad_train_classifier_option(case, out_with_a_run, capsys):
    extra, fragment = TRAIN_CASES[case]
    line = run_in_process(["train-classifier", "--data-dir", DATA_DIR, "--out", out_with_a_run[0],
                           *SMALL, *extra], capsys)
    assert fragment in line
    assert_untouched(out_with_a_run)


OTHER_CASES = {
    "no command": ([], "required"),
    "unknown command": (["nope"], "invalid choice"),
    "data without a subcommand": (["data"], "required"),
    "check an unknown dataset": (["data", "check", "--dataset", "nope"], "unknown dataset 'nope'"),
    "download an unknown dataset": (["data", "download", "--dataset", "nope"], "unknown dataset"),
    "download without --dataset": (["data", "download"], "--dataset"),
    "missing --arch": (["train-classifier"], "--arch"),
}


@pytest.mark.parametrize("case", OTHER_CASES)
def test_bad_command_line(case, capsys):
    argv, fragment = OTHER_CASES[case]
    assert fragment in run_in_process(argv, capsys)


def test_cuda_requested_without_cuda(out_with_a_run, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = run_in_process(["train-classifier", "--data-dir", DATA_DIR, "--out", out_with_a_run[0],
                           *SMALL, "--device", "cuda"], capsys)
    assert "--device cpu" in line
    assert_untouched(out_with_a_run)


def test_missing_data_dir(tmp_path, capsys):
    line = run_in_process(["train-classifier", "--data-dir", tmp_path / "nothing", "--out", tmp_path,
                           *SMALL], capsys)
    assert "missing data file" in line and "ganaug data download" in line
    assert list(tmp_path.iterdir()) == []  # no run folder for a run that could not start


@pytest.mark.parametrize("where", ["a regular file", "below a regular file"])
def test_unusable_out(where, tmp_path, capsys):
    regular = tmp_path / "file"
    regular.write_text("keep me")
    out = regular if where == "a regular file" else regular / "out"
    line = run_in_process(["train-classifier", "--data-dir", DATA_DIR, "--out", out, *SMALL], capsys)
    assert str(out) in line
    assert regular.read_text() == "keep me" and sorted(tmp_path.iterdir()) == [regular]


@pytest.mark.parametrize("argv, fragment", [
    (["--fraction", "2"], "--fraction must be in (0, 1]"),
    (["--bogus"], "unrecognized arguments"),
    (["--arch", "nope"], "--arch must be one of"),
])
def test_real_process_reports_one_line_and_exit_2(argv, fragment, out_with_a_run):
    proc = ganaug("train-classifier", "--data-dir", DATA_DIR, "--out", out_with_a_run[0], *SMALL, *argv)
    assert_user_error(proc, fragment)
    assert proc.stdout == ""
    assert_untouched(out_with_a_run)


def test_real_process_unusable_out(tmp_path):
    (tmp_path / "file").write_text("keep me")
    proc = ganaug("train-classifier", "--data-dir", DATA_DIR, "--out", tmp_path / "file", *SMALL)
    assert_user_error(proc, "is not a folder")
    assert (tmp_path / "file").read_text() == "keep me"


def test_interrupted_run_is_marked_incomplete(tmp_path, monkeypatch, capsys):
    import ganaug.train_classifier

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C during training

    monkeypatch.setattr(ganaug.train_classifier, "fit", interrupted)
    status = cli.run(["train-classifier", "--data-dir", str(DATA_DIR), "--out", str(tmp_path), *SMALL])
    err = capsys.readouterr().err
    assert status == 2  # the contract: an interrupted run is a user error
    assert len(err.splitlines()) == 1 and err.startswith("error: interrupted")
    for kind in ("results", "models"):
        folder = tmp_path / kind / "classifiers" / "CNNOriginalClassifier Run 1"
        assert (folder / "INCOMPLETE").is_file()
        assert not (folder / "metrics.json").exists() and not (folder / "model.onnx").exists()


def test_infinite_lr_is_rejected():
    with pytest.raises(UserError, match="--lr"):
        classifier_config("cnn", lr=float("inf"))


def test_seed_beyond_64_bits_is_rejected():
    with pytest.raises(UserError, match="--seed"):
        classifier_config("cnn", seed=2**64)
