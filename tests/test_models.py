"""The four classifiers, ResNet-18 compatibility with torchvision, and backbone weight files."""

from __future__ import annotations

import io
import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import FIXTURES, FASHION, read_idx_numpy
from ganaug.backbone import check_fits, read_state_dict
from ganaug.errors import UserError
from ganaug.export import load_weights, save_weights
from ganaug.models.classifiers import CLASSIFIERS, ResNet18, TransferLearningNN, adapt_backbone_state

MEAN, STD = 0.2860, 0.3530


@pytest.fixture(scope="module")
def real_batch() -> torch.Tensor:
    """16 real test images as the contract's model input: float [16, 1, 28, 28] in [0, 1]."""
    images = read_idx_numpy(FASHION / "t10k-images-idx3-ubyte.gz")[:16]
    return torch.from_numpy(images.copy()).unsqueeze(1).float() / 255


@pytest.fixture(scope="module")
def torchvision_keys() -> list[tuple[str, tuple[int, ...]]]:
    doc = json.loads((FIXTURES / "resnet18_torchvision_keys.json").read_text())
    return [(k, tuple(s)) for k, s in doc["keys"]]


def torchvision_like_state(keys, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the exact keys, shapes and dtypes of torchvision's resnet18()."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in keys:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


@pytest.mark.parametrize("arch", sorted(CLASSIFIERS))
def test_classifier_maps_images_to_logits(arch, real_batch):
    torch.manual_seed(0)
    model = CLASSIFIERS[arch](num_classes=10, mean=MEAN, std=STD).eval()
    with torch.no_grad():
        logits = model(real_batch)
        single = model(real_batch[:1])
    assert logits.shape == (16, 10) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert torch.allclose(single, logits[:1], atol=1e-5)  # eval mode: no batch coupling
    assert logits.std(0).abs().sum() > 0  # different images, different logits
    # normalisation lives inside the model but is not part of the weights file
    assert not any(k.startswith("normalize") for k in model.state_dict())


@pytest.mark.parametrize("arch", sorted(CLASSIFIERS))
def test_classifier_trains_on_channels_last_input(arch, real_batch):
    torch.manual_seed(0)
    model = CLASSIFIERS[arch](num_classes=10, mean=MEAN, std=STD).train()
    x = real_batch[:8].contiguous(memory_format=torch.channels_last)
    loss = torch.nn.functional.cross_entropy(model(x), torch.arange(8) % 10)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("arch", sorted(CLASSIFIERS))
def test_flip_tta_averages_the_mirror_image_when_evaluating_only(arch, real_batch):
    """flip_tta adds no weights; evaluating, the logits are the mean over the image and its
    mirror image (a mirrored input gives the same answer); training passes see one view."""
    torch.manual_seed(0)
    model = CLASSIFIERS[arch](num_classes=10, mean=MEAN, std=STD, flip_tta=True)
    plain = CLASSIFIERS[arch](num_classes=10, mean=MEAN, std=STD)
    assert list(model.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(model.state_dict())
    model.eval(), plain.eval()
    with torch.no_grad():
        both = model(real_batch)
        np.testing.assert_allclose(both, (plain(real_batch) + plain(real_batch.flip(-1))) / 2, atol=1e-5)
        np.testing.assert_allclose(model(real_batch.flip(-1)), both, atol=1e-5)
        assert not torch.allclose(plain(real_batch), both, atol=1e-3)  # the mirror view counts
    model.train(), plain.train()
    torch.manual_seed(1)
    one = model(real_batch)
    torch.manual_seed(1)
    assert torch.equal(one, plain(real_batch))  # same dropout draws, one view


def test_transfer_state_dict_has_torchvision_keys_and_shapes(torchvision_keys):
    model = TransferLearningNN(num_classes=10, mean=MEAN, std=STD)
    state = model.state_dict()
    assert list(state) == [k for k, _ in torchvision_keys]
    changed = {"conv1.weight": (64, 1, 7, 7), "fc.weight": (10, 512), "fc.bias": (10,)}
    for key, shape in torchvision_keys:
        assert tuple(state[key].shape) == changed.get(key, shape), key
    assert state["layer1.0.bn1.num_batches_tracked"].dtype == torch.int64
    rgb = ResNet18(num_classes=1000, in_channels=3)
    assert [(k, tuple(v.shape)) for k, v in rgb.state_dict().items()] == torchvision_keys
    assert sum(p.numel() for p in rgb.parameters()) == 11_689_512  # torchvision's count


@pytest.mark.parametrize("stride, pool, side", [(2, False, 14), (1, True, 14), (1, False, 28)])
def test_transfer_stems_share_one_state_dict(stride, pool, side, real_batch):
    """Every stem option keeps torchvision's keys and shapes (one backbone file fits all) and
    sets the resolution layer1 works at."""
    model = TransferLearningNN(num_classes=10, mean=MEAN, std=STD, stem_stride=stride, stem_pool=pool).eval()
    reference = TransferLearningNN(num_classes=10, mean=MEAN, std=STD)
    model.load_state_dict(reference.state_dict())
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(real_batch[:2]))))
    assert tuple(model.layer1(x).shape[-2:]) == (side, side)


def test_adapt_backbone_sums_rgb_filters_and_drops_the_head(torchvision_keys, real_batch):
    state = torchvision_like_state(torchvision_keys)
    adapted = adapt_backbone_state(state)
    assert not any(k.startswith("fc.") for k in adapted)
    assert set(adapted) == set(state) - {"fc.weight", "fc.bias"}
    assert torch.equal(adapted["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(adapted["layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"])
    assert state["conv1.weight"].shape == (64, 3, 7, 7)  # the input is not modified

    # Summing the stem's channels is exact: a grey image is R = G = B, so the adapted 1-channel
    # network computes the same features as the RGB network on the grey image repeated 3 times.
    rgb = ResNet18(num_classes=1000, in_channels=3).eval()
    rgb.load_state_dict(state)
    gray = TransferLearningNN(num_classes=10, mean=0.0, std=1.0).eval()
    missing, unexpected = gray.load_state_dict(adapted, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []
    with torch.no_grad():
        expected = rgb.features(real_batch.repeat(1, 3, 1, 1))
        got = gray.features(real_batch)
    assert torch.allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_torchvision_weight_files_are_read_and_checked(tmp_path, torchvision_keys):
    state = torchvision_like_state(torchvision_keys)
    torch.save(state, tmp_path / "resnet18.pth")
    torch.save({"state_dict": state, "epoch": 90}, tmp_path / "checkpoint.pth")
    save_file(state, str(tmp_path / "resnet18.safetensors"))
    for name in ("resnet18.pth", "checkpoint.pth", "resnet18.safetensors"):
        fitted = check_fits(read_state_dict(tmp_path / name), name)
        assert torch.equal(fitted["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _bad_weight_files(tmp_path, torchvision_keys) -> dict[str, tuple]:
    """name -> (path, fragment of the expected message)."""
    files = {}
    cnn = CLASSIFIERS["cnn"](num_classes=10, mean=MEAN, std=STD)
    torch.save(cnn.state_dict(), tmp_path / "cnn.pth")
    files["a CNN, not a ResNet"] = (tmp_path / "cnn.pth", "not a torchvision ResNet-18")
    wrong = torchvision_like_state(torchvision_keys)
    wrong["layer2.0.conv1.weight"] = torch.zeros(128, 32, 3, 3)
    torch.save(wrong, tmp_path / "wrong_shape.pth")
    files["a wrong shape"] = (tmp_path / "wrong_shape.pth", "not a ResNet-18 state dict")
    buffer = io.BytesIO()
    torch.save(torchvision_like_state(torchvision_keys), buffer)
    data = bytearray(buffer.getvalue())
    start = data.index(b"\x80\x02")  # the pickle (data.pkl) that describes the tensors
    data[start + 2: start + 34] = b"\xff" * 32
    (tmp_path / "tampered.pth").write_bytes(bytes(data))
    files["tampered pickle"] = (tmp_path / "tampered.pth", "not a readable state dict")
    (tmp_path / "exploit.pth").write_bytes(pickle.dumps({"conv1.weight": _Exploit()}, protocol=2))
    files["code in a pickle"] = (tmp_path / "exploit.pth", "not a readable state dict")
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    files["a list"] = (tmp_path / "list.pth", "does not hold a state dict of tensors")
    (tmp_path / "damaged.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{nonsense")
    files["damaged safetensors"] = (tmp_path / "damaged.safetensors", "not a readable state dict")
    files["missing"] = (tmp_path / "nope.pth", "does not exist")
    return files


def test_bad_weight_files_are_user_errors(tmp_path, torchvision_keys, capfd):
    for name, (path, fragment) in _bad_weight_files(tmp_path, torchvision_keys).items():
        with pytest.raises(UserError) as err:
            check_fits(read_state_dict(path), f"--pretrained {path}")
        assert fragment in str(err.value) and str(path) in str(err.value), name
    assert "pwned" not in capfd.readouterr().out  # the pickle's code never ran


def test_weights_round_trip_and_mismatch(tmp_path, real_batch):
    torch.manual_seed(0)
    model = CLASSIFIERS["cnn"](num_classes=10, mean=MEAN, std=STD).eval()
    save_weights(model, tmp_path / "model.safetensors")
    torch.manual_seed(1)
    again = load_weights(CLASSIFIERS["cnn"](num_classes=10, mean=MEAN, std=STD).eval(),
                         tmp_path / "model.safetensors")
    with torch.no_grad():
        assert torch.equal(again(real_batch), model(real_batch))
    with pytest.raises(UserError, match="does not fit"):
        load_weights(CLASSIFIERS["deep"](num_classes=10, mean=MEAN, std=STD),
                     tmp_path / "model.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_weights(model, tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match="missing"):
        load_weights(model, tmp_path / "nope.safetensors")
