"""`--precision auto` for training: bf16 only where the hardware has it natively *and* a timed
training step shows it is faster; the choice is measured once per machine and model, cached, and
the first process to cache it wins (two study workers agree)."""

from __future__ import annotations

import json
import time

import pytest
import torch

from ganaug import precision as prec
from ganaug.config import CLASSIFIER_DEFAULTS
from ganaug.data import get_dataset
from ganaug.fit import build_classifier, step_probe
from ganaug.gan_config import generator_config
from ganaug.train_generator import step_probe as generator_step_probe

CPU = torch.device("cpu")
SLOW = 0.02  # seconds a step takes in the slow precision of the fake steps below


def sleeping_probe(slow: str, calls: list | None = None, key: dict | None = None):
    """A probe whose step takes SLOW seconds in precision ``slow`` and no time in the other;
    ``calls`` collects the precision of every step it runs."""
    def probe():
        def step(precision: str) -> None:
            if calls is not None:
                calls.append(precision)
            torch.rand(1)  # consumes the global random stream, as a real step's dropout would
            if precision == slow:
                time.sleep(SLOW)
        return key or {"step": "test"}, step
    return probe


@pytest.fixture
def native_bf16(monkeypatch, tmp_path):
    """A CPU with native bf16 (the case where auto measures), and an empty cache."""
    monkeypatch.setattr(prec, "bf16_native", lambda device: True)
    monkeypatch.setenv(prec.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("slow, chosen", [("bf16", "fp32"), ("fp32", "bf16")])
def test_auto_keeps_the_precision_whose_step_is_faster(native_bf16, slow, chosen):
    got, how = prec.training_precision("auto", CPU, sleeping_probe(slow))
    assert got == chosen and how["rule"] == "measured"
    assert how["step_ms"][slow] >= SLOW * 1e3 > how["step_ms"][chosen]
    cached = json.loads(open(how["cache"]).read())
    assert cached["precision"] == chosen and cached["key"]["step"] == "test"
    assert cached["key"]["threads"] == torch.get_num_threads() and cached["key"]["torch"] == torch.__version__


def test_a_gain_below_the_threshold_keeps_fp32():
    assert prec.decide({"fp32": 1.05, "bf16": 1.0}) == "fp32"  # 5% is within a shared machine's noise
    assert prec.decide({"fp32": 1.2, "bf16": 1.0}) == "bf16"


def test_the_choice_is_measured_once_and_reused(native_bf16):
    calls: list = []
    first = prec.training_precision("auto", CPU, sleeping_probe("bf16", calls))
    # a later run whose timing would say otherwise (e.g. on a busy machine) keeps the cached choice
    again = prec.training_precision("auto", CPU, sleeping_probe("fp32", calls))
    steps = 2 * (prec.WARMUP_STEPS + prec.TIMED_ROUNDS)
    assert first == again and first[0] == "fp32" and len(calls) == steps
    # another model or batch size is measured on its own
    other = prec.training_precision("auto", CPU, sleeping_probe("fp32", calls, {"step": "other"}))
    assert other[0] == "bf16" and len(calls) == 2 * steps
    assert len(list((native_bf16 / "precision").iterdir())) == 2


def test_the_first_process_to_cache_a_choice_wins(tmp_path):
    path = tmp_path / "precision" / "key.json"
    first = {"precision": "bf16", "step_ms": {"fp32": 2.0, "bf16": 1.0}}
    assert prec._cached_choice(path, first) == first
    # a second worker that measured at the same time adopts the first one's choice
    assert prec._cached_choice(path, {"precision": "fp32", "step_ms": {"fp32": 1.0, "bf16": 2.0}}) == first
    assert [p.name for p in path.parent.iterdir()] == ["key.json"]  # no temporary files left
    path.write_text("{trunc")  # an unreadable entry (e.g. a full disk) is replaced by the next choice
    assert prec._cached_choice(path, {"precision": "fp32", "step_ms": {}})["precision"] == "fp32"
    assert prec._read_choice(path)["precision"] == "fp32"


def test_an_unwritable_cache_still_trains(native_bf16):
    native_bf16.write_text("a file where the cache folder should be")
    got, how = prec.training_precision("auto", CPU, sleeping_probe("bf16"))
    assert got == "fp32" and how["rule"] == "measured"


def test_measuring_leaves_the_runs_random_stream_alone(native_bf16):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    prec.training_precision("auto", CPU, sleeping_probe("bf16"))
    assert torch.equal(torch.rand(3), expected)


def test_requested_precisions_and_hardware_without_bf16_are_not_measured(monkeypatch, tmp_path):
    monkeypatch.setenv(prec.CACHE_ENV, str(tmp_path))
    calls: list = []
    assert prec.training_precision("fp32", CPU, sleeping_probe("bf16", calls)) == ("fp32", {"rule": "requested"})
    assert prec.training_precision("bf16", CPU, sleeping_probe("bf16", calls)) == ("bf16", {"rule": "requested"})
    monkeypatch.setattr(prec, "bf16_native", lambda device: False)
    assert prec.training_precision("auto", CPU, sleeping_probe("fp32", calls)) == ("fp32", {"rule": "no native bf16"})
    assert calls == [] and not any(tmp_path.iterdir())


def test_the_real_probes_train_throwaway_models_in_both_precisions():
    info = get_dataset("fashion-mnist")
    model = build_classifier("cnn", info)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    key, step = step_probe(model, CLASSIFIER_DEFAULTS["cnn"], info.num_classes, CPU)
    step("fp32")
    step("bf16")
    assert key["batch"] == CLASSIFIER_DEFAULTS["cnn"].batch_size and key["model"] == "CNN"
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # it trained
    # the key names the architecture: a wider MLP is another key
    wide, narrow = (step_probe(build_classifier("shallow", info, hidden=h), CLASSIFIER_DEFAULTS["shallow"],
                               info.num_classes, CPU)[0] for h in (256, 64))
    assert wide["layers"] != narrow["layers"] and wide["model"] == narrow["model"] == "ShallowNN"
    gkey, gstep = generator_step_probe(generator_config("cgan", epochs=1), info, CPU)
    gstep("fp32")
    gstep("bf16")
    assert gkey["arch"] == "cgan" and gkey["batch"] == generator_config("cgan").optim.batch_size
    assert gkey["layers"] != generator_step_probe(generator_config("acgan"), info, CPU)[0]["layers"]
