"""Conditional generator models and their training losses, one step at a time: the registry, the
mode-seeking and class-head terms, memory layout, and the generator and discriminator options."""

from __future__ import annotations

import pytest
import torch

from conftest import DATA_DIR
from ganaug.data import prepare
from ganaug.models.generators import GENERATORS


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


def channel_sums(d, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The discriminator's last feature map (2w = 128 channels at 7x7) summed over its positions,
    taken from ``d.features`` without the forward pass that the projection tests check."""
    h = x * 2 - 1
    if d.plane is not None:  # cdcgan's label plane, the second input channel
        h = torch.cat([h, d.plane(y).view(-1, 1, 28, 28)], dim=1)
    return d.features(h)[:, :128 * 49].unflatten(1, (128, 49)).sum(dim=2)


@pytest.mark.parametrize("mbstd", [0, 4])
def test_the_projection_discriminator_conditions_on_channel_sums(mbstd):
    """sngan's class term is the inner product of a class embedding with the discriminator's last
    feature map summed over its 7x7 positions (Miyato & Koyama's projection): changing the label
    of a real image moves the output by exactly (embed[a] - embed[b]) . channel sums, one 128-vector
    per class, and a minibatch-std channel is not part of the projection."""
    from ganaug.fit import to_input

    data = prepare(DATA_DIR, "fashion-mnist", 0.01, 0, 0.1)
    d = GENERATORS["sngan"].make_d(10, 64, 0.0, **({"mbstd": mbstd} if mbstd else {})).eval()
    x = to_input(data.train_x[:8], False)
    with torch.no_grad():
        a, b = torch.full((8,), 3), torch.full((8,), 7)
        sums = channel_sums(d, x, a)  # sngan's D has no label plane: the same for every label
        moved = d(x, a)[0] - d(x, b)[0]
        embed = d.embed.weight  # spectrally normalised, as the forward pass uses it
    assert embed.shape == (10, 128)
    torch.testing.assert_close(moved, sums @ (embed[3] - embed[7]), rtol=1e-4, atol=1e-4)
    assert moved.abs().min() > 0


@pytest.mark.parametrize("arch", ["cdcgan", "acgan"])
def test_d_projection_adds_the_class_term_beside_the_discriminators_own_conditioning(arch):
    """--d-projection: the discriminator is its family's own one (same weights, same class head)
    plus embed[label] . channel sums, and the term is zero until training moves the embedding."""
    from ganaug.fit import to_input

    data = prepare(DATA_DIR, "fashion-mnist", 0.01, 0, 0.1)
    x, y = to_input(data.train_x[:8], False), data.train_y[:8]
    plain = GENERATORS[arch].make_d(10, 64, 0.0, depth=1).eval()
    d = GENERATORS[arch].make_d(10, 64, 0.0, depth=1, projection=True).eval()
    assert d.load_state_dict(plain.state_dict(), strict=False).missing_keys == ["embed.weight"]
    with torch.no_grad():
        (out, cls), (out0, cls0) = d(x, y), plain(x, y)
        torch.testing.assert_close(out, out0)  # zero at the start
        d.embed.weight.normal_()
        sums = channel_sums(d, x, y)
        out, cls = d(x, y)
    torch.testing.assert_close(out - out0, (sums * d.embed.weight[y]).sum(1), rtol=1e-4, atol=1e-3)
    assert (cls is None) == (cls0 is None) and (cls is None or torch.equal(cls, cls0))
