"""Generator metrics: the Fréchet distance against its closed form and an independent
implementation, KID against torchmetrics, and the ranking of broken generators below real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import DATA_DIR
from ganaug.data import load_split
from ganaug.gen_metrics import feature_metrics, frechet_distance, kernel_distance
from ganaug.fit import predict
from ganaug.reference import features, features_and_logits, load_reference, reference_path, reference_stats


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    var1, var2 = rng.uniform(0.5, 2, size=d), rng.uniform(0.5, 2, size=d)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(closed, rel=1e-9)
    # a rotation of both covariances changes nothing
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    assert frechet_distance(q @ mu1, q @ np.diag(var1) @ q.T, q @ mu2, q @ np.diag(var2) @ q.T) == \
        pytest.approx(closed, rel=1e-7)
    assert frechet_distance(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0, abs=1e-9)


class _Identity(torch.nn.Module):
    """torchmetrics' feature-extractor hook: the 'images' are already feature vectors."""

    num_features = 8

    def forward(self, x):
        return x.double()


def test_frechet_and_kernel_distances_agree_with_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    rng = np.random.default_rng(1)
    real = rng.normal(size=(400, 8))
    fake = rng.normal(loc=0.3, scale=1.2, size=(400, 8))
    fid = FrechetInceptionDistance(feature=_Identity(), normalize=True)
    fid.update(torch.from_numpy(real), real=True)
    fid.update(torch.from_numpy(fake), real=False)
    ours = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert ours == pytest.approx(float(fid.compute()), rel=1e-5)

    # with one subset of all samples, both compute the same unbiased MMD^2
    kid = KernelInceptionDistance(feature=_Identity(), subsets=1, subset_size=400, normalize=True)
    kid.update(torch.from_numpy(real), real=True)
    kid.update(torch.from_numpy(fake), real=False)
    theirs, _ = kid.compute()
    ours, _ = kernel_distance(real, fake, subsets=1, subset_size=400)
    assert ours == pytest.approx(float(theirs), rel=1e-5)


def test_reference_network_is_stored_with_its_provenance():
    assert reference_path("fashion-mnist").is_file()
    meta = reference_stats("fashion-mnist")
    assert meta["rebuild"] == "ganaug build-reference --dataset fashion-mnist"
    assert "training split" in meta["trained_on"]
    assert meta["test_accuracy"] > 0.9
    # the cached test statistics are those of the stored network on the real test split
    x, _ = load_split(DATA_DIR, "fashion-mnist", "test")
    feats = features(load_reference("fashion-mnist"), x[:2000])
    assert feats.shape[1] == meta["feature_dim"] == len(meta["test_mu"])
    assert np.abs(feats.mean(0) - np.asarray(meta["test_mu"])).max() < 0.25 * np.asarray(meta["test_mu"]).std()


def test_one_reference_pass_gives_the_features_and_the_logits_of_the_whole_network():
    """The metrics take the GAN-test logits from the same pass as the features: they must be the
    network's own predictions (the stored test accuracy), not a second network's."""
    x, y = load_split(DATA_DIR, "fashion-mnist", "test")
    x, y = x[:2000], y[:2000]
    ref = load_reference("fashion-mnist")
    feats, logits = features_and_logits(ref, x)
    assert feats.shape == (2000, reference_stats("fashion-mnist")["feature_dim"]) and feats.dtype == np.float64
    direct = predict(ref, x, torch.device("cpu"))
    assert torch.equal(logits.argmax(1), direct.argmax(1))
    assert torch.allclose(logits, direct, atol=1e-4)
    assert float((logits.argmax(1) == y).float().mean()) > 0.9  # the stored network, not an untrained one


@pytest.fixture(scope="module")
def real_train_balanced():
    """300 real *training* images per class (the metrics compare against the test split)."""
    x, y = load_split(DATA_DIR, "fashion-mnist", "train")
    idx = torch.cat([torch.nonzero(y == c).squeeze(1)[:300] for c in range(10)])
    return x[idx], y[idx]


def test_metrics_rank_broken_generators_below_real_data(real_train_balanced):
    x, y = real_train_balanced
    real = feature_metrics(x, y, "fashion-mnist", str(DATA_DIR))
    # one prototype per class: recognisable, but no diversity at all
    protos = torch.cat([x[y == c][:1].repeat(300, 1, 1) for c in range(10)])
    one_mode = feature_metrics(protos, y, "fashion-mnist", str(DATA_DIR))
    noise = feature_metrics(torch.randint(0, 256, x.shape, dtype=torch.uint8,
                                          generator=torch.Generator().manual_seed(0)), y,
                            "fashion-mnist", str(DATA_DIR))
    assert real["fd_domain"] < one_mode["fd_domain"] and real["fd_domain"] < noise["fd_domain"]
    assert real["kid_domain"] < one_mode["kid_domain"] and real["kid_domain"] < noise["kid_domain"]
    assert real["recall_k3"] > 0.5 > one_mode["recall_k3"]
    assert real["coverage"] > 0.5 > one_mode["coverage"]
    # noise lands near some real points (precision is loose) but in sparse regions (density)
    assert noise["density"] < 0.3 < real["density"] and noise["precision_k3"] < real["precision_k3"]
    assert noise["gan_test_accuracy"] < 0.3
    assert real["gan_test_accuracy"] > 0.9
    # the trap the metrics must not fall into: prototypes look perfectly recognisable
    assert one_mode["gan_test_accuracy"] >= 0.9
    assert real["sample_counts"]["generated"] == 3000 and real["sample_counts"]["real_test"] == 10000
