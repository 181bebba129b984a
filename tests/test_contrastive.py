"""tutorlib.contrastive and contrastive_models: losses against F.cross_entropy and brute-force
loops, the Gaussian critic against scipy, augmentations against slicing and F.interpolate, and
every error path."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tutorlib import contrastive as cl
from tutorlib import contrastive_models as cm

f64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------
# losses
# ------------------------------------------------------------------------------------------
def brute_info_nce(scores):
    k = len(scores)
    total = 0.0
    for i in range(k):
        den = sum(math.exp(scores[i][j]) for j in range(k))
        total += -math.log(math.exp(scores[i][i]) / den)
    return total / k


def brute_nt_xent(z1, z2, tau):
    z = [v / np.linalg.norm(v) for v in np.concatenate([z1, z2])]
    n2 = len(z)
    n = n2 // 2
    total = 0.0
    for a in range(n2):
        p = (a + n) % n2
        den = sum(math.exp(z[a] @ z[b] / tau) for b in range(n2) if b != a)
        total += -math.log(math.exp(z[a] @ z[p] / tau) / den)
    return total / n2


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 7), st.integers(0, 10_000))
def test_info_nce_from_scores_matches_cross_entropy_and_loop(k, seed):
    scores = 3 * torch.randn(k, k, generator=gen(seed), dtype=f64)
    ours = cl.info_nce_from_scores(scores)
    ref = F.cross_entropy(scores, torch.arange(k))
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert ours.item() == pytest.approx(brute_info_nce(scores.tolist()), rel=1e-10, abs=1e-12)


def test_info_nce_constant_scores_give_log_k_and_bound_zero():
    for k in (1, 2, 16, 100):
        scores = torch.full((k, k), 0.3, dtype=f64)
        assert cl.info_nce_from_scores(scores).item() == pytest.approx(math.log(k), abs=1e-12)
        assert cl.info_nce_bound(scores).item() == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(0, 10_000), st.floats(0.01, 100.0))
def test_info_nce_bound_never_exceeds_log_k(k, seed, scale):
    scores = scale * torch.randn(k, k, generator=gen(seed), dtype=f64)
    scores.diagonal().add_(scale * 5)  # even with a very confident critic
    assert cl.info_nce_bound(scores).item() <= math.log(k) + 1e-12


@pytest.mark.parametrize("normalize", [True, False])
def test_info_nce_cosine_critic_matches_reference(normalize):
    q = torch.randn(6, 5, generator=gen(1), dtype=f64)
    k = torch.randn(6, 5, generator=gen(2), dtype=f64)
    tau = 0.3
    a, b = (F.normalize(q, dim=1), F.normalize(k, dim=1)) if normalize else (q, k)
    ref = F.cross_entropy(a @ b.T / tau, torch.arange(6))
    assert torch.allclose(cl.info_nce(q, k, tau, normalize=normalize), ref, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 10_000), st.floats(0.05, 2.0))
def test_nt_xent_matches_brute_force_loop(n, d, seed, tau):
    z1 = torch.randn(n, d, generator=gen(seed), dtype=f64)
    z2 = torch.randn(n, d, generator=gen(seed + 1), dtype=f64)
    ours = cl.nt_xent(z1, z2, tau).item()
    assert ours == pytest.approx(brute_nt_xent(z1.numpy(), z2.numpy(), tau), rel=1e-9, abs=1e-12)


def test_nt_xent_matches_masked_cross_entropy_symmetric_and_scale_free():
    n, tau = 8, 0.5
    z1 = torch.randn(n, 4, generator=gen(3), dtype=f64)
    z2 = torch.randn(n, 4, generator=gen(4), dtype=f64)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T / tau) - 1e9 * torch.eye(2 * n, dtype=f64)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    ref = F.cross_entropy(sim, target)
    ours = cl.nt_xent(z1, z2, tau)
    assert torch.allclose(ours, ref, rtol=1e-12)
    assert torch.allclose(cl.nt_xent(z2, z1, tau), ours, rtol=1e-12)
    assert torch.allclose(cl.nt_xent(3.0 * z1, 0.5 * z2, tau), ours, rtol=1e-12)


def test_nt_xent_perfect_pairs_beat_random_and_gradients_flow():
    z1 = torch.randn(16, 8, generator=gen(5), dtype=f64, requires_grad=True)
    z2 = torch.randn(16, 8, generator=gen(6), dtype=f64)
    assert cl.nt_xent(z1.detach(), z1.detach(), 0.1) < cl.nt_xent(z1.detach(), z2, 0.1)
    assert torch.autograd.gradcheck(lambda a: cl.nt_xent(a, z2, 0.7), (z1,))


def test_alignment_and_uniformity_match_loops():
    z1 = torch.randn(7, 3, generator=gen(7), dtype=f64)
    z2 = torch.randn(7, 3, generator=gen(8), dtype=f64)
    a = F.normalize(z1, dim=1).numpy()
    b = F.normalize(z2, dim=1).numpy()
    align = np.mean([np.linalg.norm(a[i] - b[i]) ** 2 for i in range(7)])
    assert cl.alignment(z1, z2).item() == pytest.approx(align, rel=1e-12)
    pairs = [np.exp(-2 * np.linalg.norm(a[i] - a[j]) ** 2) for i in range(7) for j in range(7) if i != j]
    assert cl.uniformity(z1).item() == pytest.approx(np.log(np.mean(pairs)), rel=1e-10)


def test_positive_negative_similarities():
    z1 = torch.randn(5, 3, generator=gen(9), dtype=f64)
    z2 = torch.randn(5, 3, generator=gen(10), dtype=f64)
    pos, neg = cl.positive_negative_similarities(z1, z2)
    cos = F.cosine_similarity(z1[:, None], z2[None], dim=-1)
    assert torch.allclose(pos, cos.diagonal())
    assert neg.shape == (20,)
    expected = sorted(cos[i, j].item() for i in range(5) for j in range(5) if i != j)
    assert np.allclose(sorted(neg.tolist()), expected)


# ------------------------------------------------------------------------------------------
# the InfoNCE bound on Gaussians
# ------------------------------------------------------------------------------------------
def test_gaussian_mi_matches_log_determinant_formula():
    for d, rho in [(1, 0.5), (3, 0.9), (10, -0.3)]:
        cov = np.block([[np.eye(d), rho * np.eye(d)], [rho * np.eye(d), np.eye(d)]])
        mi = -0.5 * np.linalg.slogdet(cov)[1]  # H(X) + H(Y) - H(X, Y) for unit marginals
        assert cl.gaussian_mutual_information(d, rho) == pytest.approx(mi, rel=1e-12)


def test_gaussian_critic_is_pointwise_mutual_information_from_scipy():
    rho, d = 0.7, 3
    x, y = cl.correlated_gaussians(4, d, rho, generator=gen(11))
    ours = cl.gaussian_critic(x, y, rho)
    s = math.sqrt(1 - rho**2)
    for i in range(4):
        for j in range(4):
            cond = stats.norm.logpdf(y[j].numpy(), loc=rho * x[i].numpy(), scale=s).sum()
            marg = stats.norm.logpdf(y[j].numpy()).sum()
            assert ours[i, j].item() == pytest.approx(cond - marg, rel=1e-10, abs=1e-10)


def test_correlated_gaussians_have_the_right_correlation_and_mean_pmi_is_mi():
    x, y = cl.correlated_gaussians(40_000, 2, 0.6, generator=gen(12))
    corr = np.corrcoef(x[:, 0].numpy(), y[:, 0].numpy())[0, 1]
    assert corr == pytest.approx(0.6, abs=0.01)
    pmi = cl.gaussian_critic(x[:2000], y[:2000], 0.6).diagonal().mean().item()
    assert pmi == pytest.approx(cl.gaussian_mutual_information(2, 0.6), abs=0.06)


def test_info_nce_bound_with_optimal_critic_tracks_small_mi_and_saturates_for_large():
    g = gen(13)
    small = cl.gaussian_mutual_information(1, 0.5)  # 0.144 nats << log 256
    def estimate(k, d, rho):
        x, y = cl.correlated_gaussians(k, d, rho, generator=g)
        return cl.info_nce_bound(cl.gaussian_critic(x, y, rho)).item()

    est = np.mean([estimate(256, 1, 0.5) for _ in range(20)])
    assert est == pytest.approx(small, abs=0.03)
    big = cl.gaussian_mutual_information(10, 0.95)  # 11.6 nats >> log 64 = 4.16
    est = estimate(64, 10, 0.95)
    assert math.log(64) - 0.2 < est <= math.log(64) < big


# ------------------------------------------------------------------------------------------
# augmentations
# ------------------------------------------------------------------------------------------
def test_affine_view_identity_and_integer_shift_equal_slicing():
    img = torch.rand(3, 8, 8, generator=gen(14), dtype=f64)
    ones = torch.ones(3, dtype=f64)
    assert torch.allclose(cm.affine_view(img, ones, torch.zeros(3, 2, dtype=f64)), img, atol=1e-12)
    right = cm.affine_view(img, ones, torch.tensor([[1.0, 0.0]] * 3, dtype=f64))
    assert torch.allclose(right[:, :, :7], img[:, :, 1:], atol=1e-12)
    assert torch.all(right[:, :, 7] == 0)
    down = cm.affine_view(img, ones, torch.tensor([[0.0, -2.0]] * 3, dtype=f64))
    assert torch.allclose(down[:, 2:, :], img[:, :6, :], atol=1e-12)
    assert torch.all(down[:, :2, :] == 0)


def test_affine_view_quarter_turn_equals_rot90():
    img = torch.rand(2, 8, 8, generator=gen(18), dtype=f64)
    out = cm.affine_view(img, torch.ones(2, dtype=f64), torch.zeros(2, 2, dtype=f64),
                         torch.full((2,), math.pi / 2, dtype=f64))
    assert torch.allclose(out, torch.rot90(img, 1, (1, 2)), atol=1e-12)


def test_affine_view_centre_crop_matches_interpolate_inside():
    img = torch.rand(2, 8, 8, generator=gen(15), dtype=f64)
    out = cm.affine_view(img, torch.full((2,), 0.5, dtype=f64), torch.zeros(2, 2, dtype=f64))
    ref = F.interpolate(img[:, None, 2:6, 2:6], size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    # the border pixels differ: interpolate clamps at the crop's edge, grid_sample reads beyond it
    assert torch.allclose(out[:, 1:7, 1:7], ref[:, 1:7, 1:7], atol=1e-12)


def test_augment_shapes_determinism_and_neutral_config():
    img = torch.rand(5, 8, 8, generator=gen(16))
    a = cm.augment(img, generator=gen(1))
    assert a.shape == img.shape and a.dtype == img.dtype
    assert torch.equal(a, cm.augment(img, generator=gen(1)))
    assert not torch.allclose(a, cm.augment(img, generator=gen(2)))
    neutral = cm.AugmentConfig(max_shift=0.0, min_scale=1.0, mask_prob=0.0, noise_std=0.0)
    assert torch.allclose(cm.augment(img, neutral, generator=gen(3)), img, atol=1e-6)


def test_augment_cutout_blanks_exactly_one_square_and_noise_has_its_std():
    img = torch.ones(50, 8, 8)
    cut = cm.AugmentConfig(max_shift=0.0, min_scale=1.0, mask_prob=1.0, mask_size=3, noise_std=0.0)
    out = cm.augment(img, cut, generator=gen(4))
    assert torch.all((out == 0).flatten(1).sum(1) == 9)
    assert torch.all((out == 0) | torch.isclose(out, torch.ones(())))
    noisy = cm.AugmentConfig(max_shift=0.0, min_scale=1.0, mask_prob=0.0, noise_std=0.2)
    resid = cm.augment(torch.zeros(200, 8, 8), noisy, generator=gen(5))
    assert resid.std().item() == pytest.approx(0.2, rel=0.05)


# ------------------------------------------------------------------------------------------
# data, training and the probe
# ------------------------------------------------------------------------------------------
def test_load_digit_split_and_label_subset():
    xtr, ytr, xte, _ = cm.load_digit_split()
    assert xtr.shape == (1347, 8, 8) and xte.shape == (450, 8, 8)
    assert 0.0 <= xtr.min() and xtr.max() <= 1.0
    idx = cm.label_subset(ytr, 0.01, generator=gen(0))
    assert torch.equal(torch.bincount(ytr[idx], minlength=10), torch.ones(10, dtype=torch.long))
    idx10 = cm.label_subset(ytr, 0.1, generator=gen(0))
    counts = torch.bincount(ytr[idx10], minlength=10)
    assert torch.all((counts - 0.1 * torch.bincount(ytr)).abs() <= 0.5)
    assert torch.equal(idx10, cm.label_subset(ytr, 0.1, generator=gen(0)))
    assert torch.equal(idx10, idx10.unique())
    assert len(cm.label_subset(ytr, 1.0, generator=gen(0))) == len(ytr)


def test_linear_probe_equals_sklearn_pipeline_and_separates_separable_features():
    g = gen(17)
    y = torch.randint(0, 3, (120,), generator=g)
    feats = torch.randn(120, 4, generator=g) + 2.0 * F.one_hot(y, 4).float()
    tr, te = slice(0, 80), slice(80, None)
    ours = cm.linear_probe(feats[tr], y[tr], feats[te], y[te], C=0.5)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
    ref = pipe.fit(feats[tr].numpy(), y[tr].numpy()).score(feats[te].numpy(), y[te].numpy())
    assert ours == pytest.approx(ref, abs=1e-12)
    pool = torch.randn(500, 4, generator=g) * 3 + 1
    pipe = make_pipeline(StandardScaler().fit(pool.numpy()), LogisticRegression(C=0.5, max_iter=2000))
    pipe.steps[1][1].fit(pipe.steps[0][1].transform(feats[tr].numpy()), y[tr].numpy())
    ref = pipe.score(feats[te].numpy(), y[te].numpy())
    ours = cm.linear_probe(feats[tr], y[tr], feats[te], y[te], C=0.5, standardize_with=pool)
    assert ours == pytest.approx(ref, abs=1e-12)
    sep = 10.0 * F.one_hot(y, 3).float()
    assert cm.linear_probe(sep[tr], y[tr], sep[te], y[te]) == 1.0


def test_train_simclr_is_deterministic_and_lowers_the_loss():
    xtr, _, _, _ = cm.load_digit_split()
    cfg = cm.SimCLRConfig(steps=40, batch_size=64, hidden=64, features=16, projection=8)
    model, losses = cm.train_simclr(xtr[:300], cfg)
    _, again = cm.train_simclr(xtr[:300], cfg)
    assert losses == again
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 0.3
    assert cm.encode(model.encoder, xtr[:5]).shape == (5, 16)
    assert model(xtr[:5]).shape == (5, 8)


def test_conv_encoder_shapes_and_same_seed_same_weights():
    torch.manual_seed(0)
    a = cm.SimCLR(arch="conv")
    torch.manual_seed(0)
    b = cm.SimCLR(arch="conv")
    x = torch.rand(3, 8, 8)
    assert cm.encode(a.encoder, x).shape == (3, 64) and a(x).shape == (3, 32)
    assert torch.equal(a(x), b(x))
    assert cm.make_encoder(36, features=5, arch="conv")(torch.rand(2, 6, 6)).shape == (2, 5)


def test_train_supervised_fits_its_training_labels():
    xtr, ytr, _, _ = cm.load_digit_split()
    config = cm.SupervisedConfig(steps=100, hidden=64, augment=False)
    net = cm.train_supervised(xtr[:200], ytr[:200], config=config)
    with torch.no_grad():
        acc = (net(xtr[:200]).argmax(1) == ytr[:200]).float().mean().item()
    assert acc > 0.9


# ------------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------------
def test_errors_name_the_argument():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="scores"):
        cl.info_nce_from_scores(torch.randn(3, 4))
    with pytest.raises(TypeError, match="scores"):
        cl.info_nce_bound([[1.0]])
    with pytest.raises(ValueError, match="scores"):
        cl.info_nce_from_scores(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="keys"):
        cl.info_nce(z, torch.randn(5, 3))
    with pytest.raises(ValueError, match="temperature"):
        cl.info_nce(z, z, temperature=0.0)
    with pytest.raises(ValueError, match="z2"):
        cl.nt_xent(z, torch.randn(4, 2))
    with pytest.raises(TypeError, match="temperature"):
        cl.nt_xent(z, z, temperature="hot")
    with pytest.raises(ValueError, match="alpha"):
        cl.alignment(z, z, alpha=-1.0)
    with pytest.raises(ValueError, match="z"):
        cl.uniformity(torch.randn(1, 3))
    with pytest.raises(ValueError, match="rho"):
        cl.gaussian_mutual_information(2, 1.0)
    with pytest.raises(TypeError, match="dim"):
        cl.correlated_gaussians(10, 2.0, 0.5, generator=gen())
    with pytest.raises(TypeError, match="generator"):
        cl.correlated_gaussians(10, 2, 0.5, generator=0)
    with pytest.raises(ValueError, match="y"):
        cl.gaussian_critic(torch.randn(3, 2), torch.randn(3, 4), 0.5)
    with pytest.raises(ValueError, match="scale"):
        cm.affine_view(torch.rand(2, 8, 8), torch.zeros(2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="shift"):
        cm.affine_view(torch.rand(2, 8, 8), torch.ones(2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="angle"):
        cm.affine_view(torch.rand(2, 8, 8), torch.ones(2), torch.zeros(2, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="max_rotation"):
        cm.AugmentConfig(max_rotation=-5.0)
    with pytest.raises(ValueError, match="images"):
        cm.augment(torch.rand(8, 8), generator=gen())
    with pytest.raises(ValueError, match="mask_size"):
        cm.augment(torch.rand(2, 4, 4), cm.AugmentConfig(mask_size=5), generator=gen())
    with pytest.raises(TypeError, match="config"):
        cm.augment(torch.rand(2, 8, 8), {"noise_std": 0.1}, generator=gen())
    with pytest.raises(ValueError, match="min_scale"):
        cm.AugmentConfig(min_scale=0.0)
    with pytest.raises(ValueError, match="mask_prob"):
        cm.AugmentConfig(mask_prob=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        cm.SimCLRConfig(batch_size=1)
    with pytest.raises(TypeError, match="augment"):
        cm.SimCLRConfig(augment=None)
    with pytest.raises(TypeError, match="augment"):
        cm.SupervisedConfig(augment=1)
    with pytest.raises(ValueError, match="images"):
        cm.train_simclr(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="labels"):
        cm.train_supervised(torch.rand(4, 8, 8), torch.tensor([0, 1, 2, 10]))
    with pytest.raises(TypeError, match="labels"):
        cm.train_supervised(torch.rand(4, 8, 8), torch.zeros(4))
    with pytest.raises(TypeError, match="encoder"):
        cm.encode(lambda x: x, torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match="fraction"):
        cm.label_subset(torch.arange(10), 0.0, generator=gen())
    with pytest.raises(ValueError, match="test_features"):
        cm.linear_probe(z, torch.arange(4), torch.randn(2, 5), torch.arange(2))
    with pytest.raises(ValueError, match="train_labels"):
        cm.linear_probe(z, torch.zeros(4, dtype=torch.long), z, torch.arange(4))
    with pytest.raises(ValueError, match="standardize_with"):
        cm.linear_probe(z, torch.arange(4), z, torch.arange(4), standardize_with=torch.randn(9, 2))
    with pytest.raises(ValueError, match="C"):
        cm.linear_probe(z, torch.arange(4), z, torch.arange(4), C=-1.0)
    with pytest.raises(ValueError, match="projection"):
        cm.SimCLR(projection=0)
    with pytest.raises(ValueError, match="arch"):
        cm.SimCLR(arch="resnet")
    with pytest.raises(ValueError, match="in_features"):
        cm.make_encoder(60, arch="conv")
    with pytest.raises(ValueError, match="arch"):
        cm.SupervisedConfig(arch="transformer")
    with pytest.raises(ValueError, match="x"):
        cm.SimCLR()(torch.rand(2, 4, 4))
    with pytest.raises(TypeError, match="x"):
        cm.SimCLR()(torch.ones(2, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        cm.label_subset(torch.tensor([0, -1]), 0.5, generator=gen())
    with pytest.raises(ValueError, match="test_labels"):
        cm.linear_probe(z, torch.arange(4), z, torch.tensor([0, 1, 2, -3]))
