"""Conditional generators: the model registry, `ganaug train-generator` end to end on real data,
kill-and-resume to identical weights, divergence handling, `generate`, and the error paths."""

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
from ganaug.models.generators import GENERATORS

TINY = ("--fraction", "0.01", "--data-dir", str(DATA_DIR))


@pytest.mark.parametrize("family", sorted(GENERATORS))
def test_every_family_maps_noise_and_labels_to_images(family):
    fam = GENERATORS[family]
    g, d = fam.make_g(10, 16, 16), fam.make_d(10, 16, 0.0)
    z, label = torch.randn(5, 16), torch.arange(5)
    images = g(z, label)
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1
    out, aux = d(images, label)
    assert out.shape == (5,)
    assert (aux is not None) == fam.aux_classifier
    # the label conditions the output (class-conditional BatchNorm starts as the identity, so
    # give its per-class gains and biases values first, as training would)
    for m in g.modules():
        if isinstance(m, torch.nn.Embedding):
            torch.nn.init.normal_(m.weight)
    g.eval()
    assert not torch.allclose(g(z[:1], torch.tensor([0])), g(z[:1], torch.tensor([7])))


def test_mode_seeking_pairs_share_labels_and_reward_diversity():
    """The mode-seeking term compares pairs (i, i + n/2) that share a label: it is large when z
    changes nothing (one image per class) and small when it does."""
    from dataclasses import replace

    from ganaug.gan_config import generator_config
    from ganaug.train_generator import build_state, mode_seeking_loss, train_step
    from ganaug.data import get_dataset

    z = torch.randn(8, 16)
    same = torch.rand(1, 1, 28, 28).expand(8, 1, 28, 28)
    varied = torch.rand(8, 1, 28, 28)
    assert mode_seeking_loss(same, z) > 1000 * mode_seeking_loss(varied, z)

    seen = {}
    real_forward = GENERATORS["cdcgan"].make_g(10, 64, 64).__class__.forward

    def spy(self, z, label):
        seen["label"] = label.clone()
        return real_forward(self, z, label)

    cfg = generator_config("cdcgan", epochs=1, batch_size=10, mode_seeking=1.0, diffaugment=False)
    state = build_state(cfg, get_dataset("fashion-mnist"), torch.device("cpu"))
    state.g.forward = spy.__get__(state.g)
    real = torch.rand(10, 1, 28, 28)
    losses = train_step(state, GENERATORS["cdcgan"], cfg, real, torch.arange(10), 10, torch.device("cpu"), "fp32")
    assert torch.isfinite(losses).all()
    assert torch.equal(seen["label"][:5], seen["label"][5:])
    odd = replace(cfg, optim=replace(cfg.optim, batch_size=7))
    train_step(state, GENERATORS["cdcgan"], odd, real[:7], torch.arange(7), 10, torch.device("cpu"), "fp32")
    assert torch.equal(seen["label"][:3], seen["label"][4:])  # pairs (i, i + 4) of 7


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_acgan_class_head_learns_from_fakes_only_when_asked(share):
    """With aux_fake_weight 0 (acgan's default) the discriminator's class head is trained on real
    images only: one training step from the same discriminator and real batch leaves the same
    class head whatever the generator drew, so it cannot reward G for easy prototypes."""
    from ganaug.data import get_dataset
    from ganaug.gan_config import GENERATOR_DEFAULTS, generator_config
    from ganaug.train_generator import build_state, train_step

    assert GENERATOR_DEFAULTS["acgan"].aux_fake_weight == 0.0
    cfg = generator_config("acgan", epochs=1, batch_size=16, aux_fake_weight=share,
                           diffaugment=False, mode_seeking=0.0, channels_last=False)
    real, real_y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    heads = []
    for g_seed in (1, 2):  # same discriminator, two different generators
        state = build_state(cfg, get_dataset("fashion-mnist"), torch.device("cpu"))
        torch.manual_seed(g_seed)
        for p in state.g.parameters():
            p.data.normal_(0, 0.05)
        train_step(state, GENERATORS["acgan"], cfg, real, real_y, 10, torch.device("cpu"), "fp32")
        heads.append(state.d.aux.weight.detach().clone())
    assert torch.equal(heads[0], heads[1]) == (share == 0.0)


def test_tac_twin_head_learns_from_fakes_while_the_class_head_sees_real_images_only():
    """--twin-weight (TAC-GAN): the discriminator's second class head is trained on fakes, so
    it moves with what G drew; the first head still learns from real images only."""
    from ganaug.data import get_dataset
    from ganaug.gan_config import generator_config
    from ganaug.train_generator import build_state, train_step

    cfg = generator_config("acgan", epochs=1, batch_size=16, twin_weight=1.0,
                           diffaugment=False, mode_seeking=0.0, channels_last=False)
    real, real_y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    heads = []
    for g_seed in (1, 2):
        state = build_state(cfg, get_dataset("fashion-mnist"), torch.device("cpu"))
        assert state.d.aux.out_features == 20  # 10 class logits, then 10 twin logits
        torch.manual_seed(g_seed)
        for p in state.g.parameters():
            p.data.normal_(0, 0.05)
        losses = train_step(state, GENERATORS["acgan"], cfg, real, real_y, 10, torch.device("cpu"), "fp32")
        assert torch.isfinite(losses).all()
        heads.append(state.d.aux.weight.detach().clone())
    assert torch.equal(heads[0][:10], heads[1][:10])
    assert not torch.equal(heads[0][10:], heads[1][10:])


def test_channels_last_gradients_keep_the_activation_layout_and_the_numbers(monkeypatch):
    """The conv families' layout shim (models.layers.GradInInputLayout) hands each gradient back
    in its activation's memory format, where PyTorch's elementwise backward is 20x slower on a
    mismatch, and changes no number: three channels-last bf16 steps with and without it end
    with bit-identical G and D."""
    from ganaug.data import get_dataset
    from ganaug.gan_config import generator_config
    from ganaug.models.layers import GradInInputLayout
    from ganaug.train_generator import build_state, train_step

    shim = GradInInputLayout().train()
    x = torch.randn(4, 8, 7, 7).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(4, 8 * 7 * 7)
    (shim(x).flatten(1) * w).sum().backward()  # Flatten alone would hand back an NCHW gradient
    assert x.grad.is_contiguous(memory_format=torch.channels_last) and not x.grad.is_contiguous()
    assert torch.equal(x.grad, w.view(4, 8, 7, 7))
    assert shim.eval()(x) is x  # sampling and ONNX export see the plain identity

    cfg = generator_config("acgan", epochs=1, batch_size=32, channels_last=True)
    real = torch.rand(32, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    real_y = torch.arange(32) % 10
    weights = []
    for patched in (False, True):
        if patched:
            monkeypatch.setattr(GradInInputLayout, "forward", lambda self, h: h)
        state = build_state(cfg, get_dataset("fashion-mnist"), torch.device("cpu"))
        for _ in range(3):
            train_step(state, GENERATORS["acgan"], cfg, real, real_y, 10, torch.device("cpu"), "bf16")
        weights.append({**state.g.state_dict(), **{f"d.{k}": v for k, v in state.d.state_dict().items()}})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_deeper_generator_trains_saves_and_rebuilds_from_its_model_config(tmp_path):
    """--g-depth adds 3x3 blocks to the convolutional generator; models/…/config.json records the
    depth, so `ganaug export` and `generate` rebuild the same network, and its ONNX file agrees."""
    from ganaug.data import get_dataset
    from ganaug.export import export_generator, load_weights, onnx_max_abs_diff, save_weights
    from ganaug.export_cmd import rebuild
    from ganaug.fit import to_input
    from ganaug.gan_config import generator_config
    from ganaug.train_generator import build_state, generator_model_config, train_step

    info = get_dataset("fashion-mnist")
    data = prepare(DATA_DIR, "fashion-mnist", 0.01, 0, 0.1)
    real, real_y = to_input(data.train_x[:32], False), data.train_y[:32]
    shallow = build_state(generator_config("acgan", epochs=1, batch_size=32, g_depth=0), info, torch.device("cpu"))
    cfg = generator_config("acgan", epochs=1, batch_size=32, g_depth=2)
    state = build_state(cfg, info, torch.device("cpu"))
    extra = sum(p.numel() for p in state.g.parameters()) - sum(p.numel() for p in shallow.g.parameters())
    assert extra == 2 * (128 * 128 * 9 + 64 * 64 * 9) + 2 * 2 * (128 + 64)  # convs + BatchNorm affine
    for _ in range(2):
        losses = train_step(state, GENERATORS["acgan"], cfg, real, real_y, 10, torch.device("cpu"), "fp32")
        assert torch.isfinite(losses).all()
    trained = state.sampler.eval()
    model_config = generator_model_config(cfg, info)
    assert model_config["g_depth"] == 2
    save_weights(trained, tmp_path / "generator.safetensors")
    rebuilt, shape = rebuild("generators", model_config, tmp_path / "config.json")
    load_weights(rebuilt, tmp_path / "generator.safetensors").eval()
    z, label = torch.randn(8, shape["z_dim"]), torch.arange(8)
    with torch.no_grad():
        assert torch.allclose(rebuilt(z, label), trained(z, label), atol=1e-6)
    onnx = export_generator(rebuilt, tmp_path / "generator.onnx", shape["z_dim"])
    assert onnx_max_abs_diff(rebuilt, onnx, {"z": z, "label": label}) < 1e-4


def test_the_minibatch_std_channel_lets_the_discriminator_tell_one_prototype_from_real_variety():
    """--d-mbstd adds a channel holding the batch's spread: near zero for 32 copies of one real
    image, clearly above zero for 32 different real images; the discriminator's heads grow by that
    one 7x7 channel and a training step with a batch the group size does not divide stays finite."""
    from ganaug.data import get_dataset
    from ganaug.fit import to_input
    from ganaug.gan_config import generator_config
    from ganaug.models.layers import MinibatchStd
    from ganaug.train_generator import build_state, train_step

    data = prepare(DATA_DIR, "fashion-mnist", 0.01, 0, 0.1)
    varied = to_input(data.train_x[:32], False)
    prototype = varied[:1].expand(32, -1, -1, -1)
    spread = {name: MinibatchStd(4)(x)[:, -1] for name, x in (("varied", varied), ("one", prototype))}
    assert spread["one"].max() < 1e-3 and spread["varied"].min() > 0.1
    info = get_dataset("fashion-mnist")
    plain = build_state(generator_config("acgan", epochs=1, batch_size=30), info, torch.device("cpu"))
    cfg = generator_config("acgan", epochs=1, batch_size=30, d_mbstd=4)
    state = build_state(cfg, info, torch.device("cpu"))
    extra = sum(p.numel() for p in state.d.parameters()) - sum(p.numel() for p in plain.d.parameters())
    assert extra == 7 * 7 * (1 + 10)  # the adversarial head and the 10-class head
    for _ in range(2):  # batch 30: groups of 3
        losses = train_step(state, GENERATORS["acgan"], cfg, varied[:30], data.train_y[:30], 10,
                            torch.device("cpu"), "fp32")
        assert torch.isfinite(losses).all()


@pytest.mark.parametrize("arch, norm_params", [("acgan", 2), ("sngan", 1)])  # BatchNorm affine / conv bias
def test_a_deeper_discriminator_adds_one_3x3_block_per_size_and_trains(arch, norm_params):
    """--d-depth 1 adds a 3x3 convolution at 14x14 (64 channels) and at 7x7 (128), with BatchNorm
    (or spectral norm and a bias for sngan); a training step on real images stays finite."""
    from ganaug.data import get_dataset
    from ganaug.fit import to_input
    from ganaug.gan_config import generator_config
    from ganaug.train_generator import build_state, train_step

    info = get_dataset("fashion-mnist")
    data = prepare(DATA_DIR, "fashion-mnist", 0.01, 0, 0.1)
    plain = build_state(generator_config(arch, epochs=1, batch_size=32, d_depth=0), info,
                        torch.device("cpu"))
    cfg = generator_config(arch, epochs=1, batch_size=32, d_depth=1)
    state = build_state(cfg, info, torch.device("cpu"))
    extra = sum(p.numel() for p in state.d.parameters()) - sum(p.numel() for p in plain.d.parameters())
    assert extra == 64 * 64 * 9 + 128 * 128 * 9 + norm_params * (64 + 128)
    losses = train_step(state, GENERATORS[arch], cfg, to_input(data.train_x[:32], False),
                        data.train_y[:32], 10, torch.device("cpu"), "fp32")
    assert torch.isfinite(losses).all()


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
    (["--resume", "/nonexistent/run"], "does not exist")])
def test_bad_generator_options_are_user_errors(tmp_path, args, fragment):
    assert_user_error(ganaug("train-generator", *args, "--out", tmp_path, "--data-dir", DATA_DIR), fragment)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("metrics.json"))
