"""tutorlib.gan: losses against torch.nn.functional and closed forms, metrics, the training loop."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tutorlib import gan, toy2d
from tutorlib import ot as tot

pytestmark = pytest.mark.usefixtures("one_thread")

floats = st.floats(-30, 30, allow_nan=False, width=32)
logit_lists = st.lists(floats, min_size=1, max_size=16)


@given(logit_lists, logit_lists)
@settings(max_examples=50, deadline=None)
def test_discriminator_loss_is_bce(real, fake):
    r, f = torch.tensor(real, dtype=torch.float64), torch.tensor(fake, dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(r, torch.ones_like(r)) + F.binary_cross_entropy_with_logits(
        f, torch.zeros_like(f)
    )
    assert gan.discriminator_loss(r, f).item() == pytest.approx(expected.item(), rel=1e-10, abs=1e-12)


@given(logit_lists)
@settings(max_examples=50, deadline=None)
def test_generator_losses_match_their_formulas(fake):
    f = torch.tensor(fake, dtype=torch.float64)
    minimax = F.logsigmoid(-f).mean()  # E log(1 - D(G(z))), since 1 - sigmoid(l) = sigmoid(-l)
    nonsat = -F.logsigmoid(f).mean()  # -E log D(G(z))
    assert gan.generator_loss_minimax(f).item() == pytest.approx(minimax.item(), rel=1e-9, abs=1e-12)
    assert gan.generator_loss_nonsaturating(f).item() == pytest.approx(nonsat.item(), rel=1e-9, abs=1e-12)


def test_saturation_gradients():
    """d/dl of the minimax loss is -sigmoid(l) -> 0; of the non-saturating loss -sigmoid(-l) -> -1."""
    logit = torch.tensor([-10.0], dtype=torch.float64, requires_grad=True)
    (g_mm,) = torch.autograd.grad(gan.generator_loss_minimax(logit), logit)
    (g_ns,) = torch.autograd.grad(gan.generator_loss_nonsaturating(logit), logit)
    assert g_mm.item() == pytest.approx(-1 / (1 + math.exp(10)), rel=1e-12)
    assert g_ns.item() == pytest.approx(-1 / (1 + math.exp(-10)), rel=1e-12)


def test_wgan_losses_are_the_kr_objective():
    g = torch.Generator().manual_seed(0)
    r, f = torch.randn(7, generator=g), torch.randn(5, generator=g)
    assert gan.critic_loss_wgan(r, f).item() == pytest.approx((f.mean() - r.mean()).item(), abs=1e-7)
    assert gan.generator_loss_wgan(f).item() == pytest.approx(-f.mean().item(), abs=1e-7)


@pytest.mark.parametrize("w", [(3.0, 4.0), (0.6, 0.8), (0.0, 0.1), (-2.0, 0.0)])
def test_gradient_penalty_on_linear_critic(w):
    """A linear critic f(x) = w.x + b has gradient w everywhere: the penalty is (|w| - 1)^2 exactly."""
    critic = nn.Linear(2, 1, dtype=torch.float64)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([w], dtype=torch.float64))
        critic.bias.fill_(0.3)
    f = lambda x: critic(x).squeeze(-1)  # noqa: E731
    module = nn.Module()
    module.forward = f  # type: ignore[method-assign]
    g = torch.Generator().manual_seed(0)
    real = torch.randn(64, 2, generator=g, dtype=torch.float64)
    fake = torch.randn(64, 2, generator=g, dtype=torch.float64) + 1
    norm = math.hypot(*w)
    kr = (critic(fake).mean() - critic(real).mean()).item()
    got = gan.critic_loss_wgan_gp(module, real, fake, gp_weight=10.0, generator=g).item()
    assert got == pytest.approx(kr + 10.0 * (norm - 1) ** 2, rel=1e-10, abs=1e-10)


def test_gradient_penalty_flows_to_critic():
    torch.manual_seed(0)
    critic = tot.Critic(2, 16)
    real, fake = torch.randn(32, 2), torch.randn(32, 2)
    gan.critic_loss_wgan_gp(critic, real, fake).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in critic.parameters())


def test_clip_weights():
    torch.manual_seed(0)
    net = nn.Linear(4, 4)
    with torch.no_grad():
        net.weight.mul_(100)
    gan.clip_weights(net, 0.01)
    assert all(p.abs().max() <= 0.01 for p in net.parameters())


def test_ring_and_mode_coverage():
    g = torch.Generator().manual_seed(0)
    centers = toy2d.ring_centers(8, 2.0)
    assert torch.allclose(centers.norm(dim=1), torch.full((8,), 2.0))
    assert torch.allclose(centers[2], torch.tensor([0.0, 2.0]), atol=1e-6)
    x = toy2d.ring_of_gaussians(4000, std=0.02, generator=g)
    cov = gan.mode_coverage(x, centers, 0.02)
    assert cov.modes_covered == 8
    assert cov.high_quality > 0.98  # within 3 sigma in 2-D: 1 - exp(-9/2) = 0.989
    assert sum(cov.counts) == round(cov.high_quality * 4000)
    # a collapsed generator: all samples on one mode
    collapsed = centers[3] + 0.01 * torch.randn(500, 2, generator=g)
    cov = gan.mode_coverage(collapsed, centers, 0.02)
    assert cov.modes_covered == 1 and cov.counts[3] == 500
    # samples far from every mode are low quality
    assert gan.mode_coverage(torch.zeros(100, 2), centers, 0.02).high_quality == 0.0


@given(st.integers(0, 2**31 - 1), st.floats(0.05, 0.5), st.integers(1, 30))
@settings(max_examples=25, deadline=None)
def test_mode_coverage_matches_brute_force(seed, std, min_count):
    """Counts per mode by a plain loop over samples (NumPy), against the vectorised torch version."""
    g = torch.Generator().manual_seed(seed)
    centers = toy2d.ring_centers(8, 2.0)
    samples = 2.5 * torch.randn(300, 2, generator=g)
    cov = gan.mode_coverage(samples, centers, std, min_count)
    c, x = centers.double().numpy(), samples.double().numpy()
    counts = [0] * 8
    for point in x:
        dist = ((c - point) ** 2).sum(axis=1) ** 0.5
        if dist.min() <= 3 * std:
            counts[int(dist.argmin())] += 1
    assert cov.counts == counts
    assert cov.modes_covered == sum(n >= min_count for n in counts)
    assert cov.high_quality == pytest.approx(sum(counts) / 300, abs=1e-7)


def test_generator_shapes_and_skip():
    torch.manual_seed(0)
    net = gan.Generator(2, 2, 8, 2, skip=1.0)
    z = torch.randn(5, 2)
    assert net(z).shape == (5, 2)
    assert torch.allclose(net(z) - net.net(z), z)
    img = gan.Generator(16, 64, 32, 2, bounded=True)
    out = img(torch.randn(5, 16) * 100)
    assert out.shape == (5, 64) and out.abs().max() <= 1


@pytest.mark.parametrize("loss", gan.LOSSES)
def test_train_gan_runs_and_records_snapshots(loss):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    data = toy2d.ring_of_gaussians(512, generator=g)
    cfg = gan.published_config(loss, steps=6, batch_size=16, snapshot_every=3, snapshot_size=32)
    run = gan.train_gan(data, gan.Generator(2, 2, 8, 1), tot.Critic(2, 8), cfg, generator=g, progress=False)
    assert [s.step for s in run.snapshots] == [0, 3, 6]
    assert run.snapshots[0].fake.shape == (32, 2)
    assert len(run.critic_losses) == len(run.generator_losses) == 6
    assert all(math.isfinite(v) for v in run.critic_losses + run.generator_losses)
    if loss == "wgan":
        assert all(p.abs().max() <= cfg.clip for p in run.critic.parameters())


def test_critic_shapes_and_architecture():
    torch.manual_seed(0)
    critic = gan.Critic(3, 16, 2, activation="relu")
    assert critic(torch.randn(7, 3)).shape == (7,)
    linears = [m for m in critic.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 16), (16, 16), (16, 1)]
    assert sum(isinstance(m, nn.ReLU) for m in critic.modules()) == 2


def test_snapshot_estimate_is_the_final_critics_kr_objective():
    """The last snapshot is taken after the last update, so it must agree with the returned critic."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    data = toy2d.ring_of_gaussians(512, generator=g)
    cfg = gan.GANConfig(steps=4, batch_size=16, snapshot_every=2, snapshot_size=32, lr=1e-3)
    critic = gan.Critic(2, 8, 1, activation="relu")
    run = gan.train_gan(data, gan.Generator(2, 2, 8, 1), critic, cfg, g, progress=False)
    last = run.snapshots[-1]
    with torch.no_grad():
        expected = tot.critic_estimate(run.critic, run.real_eval, last.fake).item()
    assert last.critic_estimate == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert last.real_scores.shape == last.fake_scores.shape == (32,)
    assert not last.real_scores.requires_grad


@pytest.mark.parametrize("decay", [False, True])
def test_learning_rate_schedule(decay):
    """With lr_decay the rate falls linearly from lr to lr/steps (Gulrajani et al.'s CIFAR-10 schedule)."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    data = toy2d.ring_of_gaussians(256, generator=g)
    cfg = gan.published_config("nonsaturating", steps=5, batch_size=8, snapshot_every=5, snapshot_size=8,
                               lr=1e-3, lr_decay=decay)
    critic = gan.Critic(2, 8, 1, activation="relu")
    run = gan.train_gan(data, gan.Generator(2, 2, 8, 1), critic, cfg, g, progress=False)
    expected = [1e-3 * (1 - i / 5) for i in range(5)] if decay else [1e-3] * 5
    assert run.learning_rates == pytest.approx(expected, rel=1e-12)


def test_critic_is_trainable_again_after_the_generator_step():
    """The loop freezes the critic for each generator update; it must unfreeze it afterwards."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    data = toy2d.ring_of_gaussians(256, generator=g)
    cfg = gan.published_config("nonsaturating", steps=1, batch_size=8, snapshot_every=1, snapshot_size=8)
    critic = gan.Critic(2, 8, 1, activation="relu")
    run = gan.train_gan(data, gan.Generator(2, 2, 8, 1), critic, cfg, generator=g, progress=False)
    assert all(p.requires_grad for p in run.critic.parameters())
    assert all(p.requires_grad for p in run.generator.parameters())


def test_train_gan_is_deterministic():
    def once():
        g = torch.Generator().manual_seed(1)
        torch.manual_seed(1)
        data = toy2d.ring_of_gaussians(256, generator=g)
        cfg = gan.GANConfig(steps=4, batch_size=16, snapshot_every=2, snapshot_size=8)
        return gan.train_gan(data, gan.Generator(2, 2, 8, 1), tot.Critic(2, 8), cfg, g, progress=False)

    a, b = once(), once()
    assert torch.equal(a.snapshots[-1].fake, b.snapshots[-1].fake)


def test_published_defaults():
    cfg = gan.GANConfig()
    published = ("wgan-gp", 5, 1e-4, (0.0, 0.9), 10.0)
    assert (cfg.loss, cfg.n_critic, cfg.lr, cfg.betas, cfg.gp_weight) == published
    wgan = gan.published_config("wgan")
    assert (wgan.optimizer, wgan.lr, wgan.clip, wgan.n_critic) == ("rmsprop", 5e-5, 0.01, 5)
    assert gan.published_config("nonsaturating", lr=1e-3).lr == 1e-3


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"fake_logits must be a torch\.Tensor"):
        gan.generator_loss_minimax([0.0])
    with pytest.raises(ValueError, match=r"real_logits must have shape \(B,\)"):
        gan.discriminator_loss(torch.zeros(3, 1), torch.zeros(3))
    with pytest.raises(TypeError, match="floating-point"):
        gan.critic_loss_wgan(torch.zeros(3, dtype=torch.int64), torch.zeros(3))
    with pytest.raises(ValueError, match="real and fake must both have shape"):
        gan.critic_loss_wgan_gp(tot.Critic(), torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="gp_weight must be finite and >= 0"):
        gan.critic_loss_wgan_gp(tot.Critic(), torch.zeros(4, 2), torch.zeros(4, 2), gp_weight=-1.0)
    with pytest.raises(TypeError, match=r"critic must be an nn\.Module"):
        gan.critic_loss_wgan_gp(lambda x: x.sum(1), torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="clip must be finite and > 0"):
        gan.clip_weights(nn.Linear(1, 1), 0.0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        toy2d.ring_of_gaussians(0)
    with pytest.raises(TypeError, match="modes must be an int"):
        toy2d.ring_centers(8.0)
    with pytest.raises(ValueError, match="std must be finite and > 0"):
        gan.mode_coverage(torch.zeros(3, 2), toy2d.ring_centers(), -0.1)
    with pytest.raises(ValueError, match="same dimension"):
        gan.mode_coverage(torch.zeros(3, 3), toy2d.ring_centers(), 0.1)
    with pytest.raises(ValueError, match="skip needs latent_dim == out_dim"):
        gan.Generator(3, 2, skip=1.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        gan.published_config("hinge")
    data = torch.zeros(10, 2)
    with pytest.raises(ValueError, match=r"GANConfig\.loss must be one of"):
        gan.train_gan(data, gan.Generator(), tot.Critic(), gan.GANConfig(loss="hinge"), progress=False)
    with pytest.raises(ValueError, match=r"GANConfig\.steps must be >= 1"):
        gan.train_gan(data, gan.Generator(), tot.Critic(), gan.GANConfig(steps=0), progress=False)
    with pytest.raises(ValueError, match=r"data must have shape \(N, d\)"):
        gan.train_gan(torch.zeros(10), gan.Generator(), tot.Critic(), progress=False)
    with pytest.raises(TypeError, match="config must be a GANConfig"):
        gan.train_gan(data, gan.Generator(), tot.Critic(), {"steps": 3}, progress=False)
    with pytest.raises(TypeError, match="latent_dim"):
        gan.train_gan(data, nn.Linear(2, 2), tot.Critic(), progress=False)
    with pytest.raises(ValueError, match=r"GANConfig\.betas entries must be a finite number in \[0, 1\)"):
        gan.train_gan(data, gan.Generator(), tot.Critic(), gan.GANConfig(betas=(0.5, 1.0)), progress=False)
    with pytest.raises(ValueError, match="hidden must be >= 1"):
        gan.Critic(2, 0)
    with pytest.raises(TypeError, match="layers must be an int"):
        gan.Critic(2, 8, 2.0)


def test_generator_grad_norm_matches_manual_backward():
    torch.manual_seed(0)
    net, critic = gan.Generator(2, 2, 8, 1), tot.Critic(2, 8)
    z = torch.randn(16, 2)
    gan.generator_loss_nonsaturating(critic(net(z))).backward()
    manual = torch.cat([p.grad.flatten() for p in net.parameters()]).norm().item()
    got = gan.generator_grad_norm(net, critic, gan.generator_loss_nonsaturating, z)
    assert got == pytest.approx(manual, rel=1e-6)
    with pytest.raises(TypeError, match="loss_fn must be a function"):
        gan.generator_grad_norm(net, critic, "minimax", z)


def test_losses_and_config_refuse_nan_and_bad_fields():
    with pytest.raises(ValueError, match="real_logits must be finite"):
        gan.discriminator_loss(torch.tensor([float("nan")]), torch.zeros(1))
    with pytest.raises(ValueError, match="fake_scores must be finite"):
        gan.generator_loss_wgan(torch.tensor([float("inf")]))
    with pytest.raises(ValueError, match=r"GANConfig\.gp_weight must be finite and >= 0"):
        gan.GANConfig(gp_weight=-1.0)
    with pytest.raises(ValueError, match=r"GANConfig\.optimizer must be one of"):
        gan.GANConfig(optimizer="sgd")
    with pytest.raises(ValueError, match=r"z must have shape \(B, 2\), got \(4, 3\)"):
        gan.Generator()(torch.zeros(4, 3))
    with pytest.raises(TypeError, match=r"z must be a floating-point torch\.Tensor, got torch\.int64"):
        gan.Generator()(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator or None, got int"):
        gan.train_gan(torch.zeros(10, 2), gan.Generator(), tot.Critic(), generator=1, progress=False)
    with pytest.raises(ValueError, match="data must be finite"):
        gan.train_gan(torch.full((10, 2), float("nan")), gan.Generator(), tot.Critic(), progress=False)


def test_ema_update_is_the_closed_form():
    """k updates with a fixed source: avg_k = beta^k avg_0 + (1 - beta^k) theta (geometric series)."""
    torch.manual_seed(0)
    target, source = nn.Linear(3, 2, dtype=torch.float64), nn.Linear(3, 2, dtype=torch.float64)
    start = {k: v.clone() for k, v in target.state_dict().items()}
    beta, k = 0.9, 7
    for _ in range(k):
        gan.ema_update(target, source, beta)
    for name, value in source.state_dict().items():
        expected = beta**k * start[name] + (1 - beta**k) * value
        torch.testing.assert_close(target.state_dict()[name], expected, rtol=1e-12, atol=1e-14)
    gan.ema_update(target, source, 0.0)  # beta = 0 copies the source
    for name, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], value)


def test_ema_update_tracks_a_changing_source_and_copies_integer_buffers():
    """Against the recursion written out by hand, over a sequence of different sources."""
    torch.manual_seed(1)
    target = nn.BatchNorm1d(4)
    expected = {k: v.clone().double() for k, v in target.state_dict().items()}
    for step in range(5):
        source = nn.BatchNorm1d(4)
        with torch.no_grad():
            source.weight.normal_()
            source.running_mean.normal_()
        source.num_batches_tracked.fill_(step + 3)
        gan.ema_update(target, source, 0.8)
        for name, value in source.state_dict().items():
            if value.is_floating_point():
                expected[name] = 0.8 * expected[name] + 0.2 * value.double()
            else:
                expected[name] = value.clone()
    for name, value in target.state_dict().items():
        torch.testing.assert_close(value.double(), expected[name].double(), rtol=1e-6, atol=1e-7)
    assert target.num_batches_tracked.item() == 7


def test_ema_update_bad_arguments():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    with pytest.raises(ValueError, match="decay"):
        gan.ema_update(a, b, 1.0)
    with pytest.raises(ValueError, match="decay"):
        gan.ema_update(a, b, float("nan"))
    with pytest.raises(TypeError, match="decay"):
        gan.ema_update(a, b, "0.9")
    with pytest.raises(TypeError, match=r"source must be an nn\.Module"):
        gan.ema_update(a, {"weight": torch.zeros(2, 2)}, 0.9)
    with pytest.raises(TypeError, match=r"target must be an nn\.Module"):
        gan.ema_update(None, b, 0.9)
    with pytest.raises(ValueError, match="same parameters"):
        gan.ema_update(a, nn.Linear(2, 3), 0.9)
    with pytest.raises(ValueError, match="same parameters"):
        gan.ema_update(a, nn.Sequential(nn.Linear(2, 2)), 0.9)
    with pytest.raises(ValueError, match=r"GANConfig\.ema_decay"):
        gan.GANConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match=r"GANConfig\.ema_decay"):
        gan.GANConfig(ema_decay=-0.1)


def test_train_gan_ema_generator_is_the_average_of_the_iterates():
    """The loop's averaged generator equals ema_update applied by hand to the raw generator's
    weights after each update (recorded here with a second, EMA-free run of the same seed)."""
    def once(ema_decay, steps):
        g = torch.Generator().manual_seed(2)
        torch.manual_seed(2)
        data = toy2d.ring_of_gaussians(256, generator=g)
        cfg = gan.published_config("nonsaturating", steps=steps, batch_size=16, snapshot_every=2,
                                   snapshot_size=8, lr=1e-2, ema_decay=ema_decay)
        return gan.train_gan(data, gan.Generator(2, 2, 8, 1), tot.Critic(2, 8), cfg, g, progress=False)

    run = once(0.7, 4)
    torch.manual_seed(2)
    iterates = [gan.Generator(2, 2, 8, 1)] + [once(0.0, k).generator for k in range(1, 5)]  # init, then 1..4
    average = iterates[0]
    for net in iterates[1:]:
        gan.ema_update(average, net, 0.7)
    for (name, value), (_, expected) in zip(run.ema_generator.state_dict().items(),
                                            average.state_dict().items(), strict=True):
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7, msg=name)
    # averaging leaves the raw run unchanged, and the snapshots sample both generators
    plain = once(0.0, 4)
    assert torch.equal(run.snapshots[-1].fake, plain.snapshots[-1].fake)
    assert plain.ema_generator is None and plain.snapshots[-1].ema_fake is None
    assert [s.ema_fake.shape for s in run.snapshots] == [(8, 2)] * 3
    assert torch.equal(run.snapshots[0].ema_fake, run.snapshots[0].fake)  # the average starts at the init
    assert not torch.equal(run.snapshots[-1].ema_fake, run.snapshots[-1].fake)


class _Quadratic(nn.Module):
    """f(x) = 0.5 * sum_i a_i x_i^2 + w . x: gradient a * x + w (a closed form for R1)."""

    def __init__(self, a, w):
        super().__init__()
        self.a, self.w = nn.Parameter(a), nn.Parameter(w)

    def forward(self, x):
        return 0.5 * (self.a * x**2).sum(1) + x @ self.w


def test_r1_penalty_closed_forms():
    critic = nn.Linear(3, 1, dtype=torch.float64)
    real = torch.randn(5, 3, dtype=torch.float64)
    w = critic.weight.detach().flatten()
    linear = nn.Sequential(critic, nn.Flatten(0))  # (B, 3) -> (B,)
    assert gan.r1_penalty(linear, real).item() == pytest.approx(0.5 * w.pow(2).sum().item(), rel=1e-12)
    g = torch.Generator().manual_seed(0)
    a, v = torch.rand(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    quad = _Quadratic(a, v)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    expected = 0.5 * (a * x + v).pow(2).sum(1).mean()
    penalty = gan.r1_penalty(quad, x)
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-12)
    # differentiable in the critic's parameters: d/dv = mean(a * x + v), d/da = mean((a * x + v) * x)
    da, dv = torch.autograd.grad(penalty, [quad.a, quad.w])
    torch.testing.assert_close(dv, (a * x + v).mean(0), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(da, ((a * x + v) * x).mean(0), rtol=1e-12, atol=1e-14)
    assert not x.requires_grad  # the caller's tensor is left alone


def test_r1_penalty_bad_arguments():
    critic = tot.Critic(2, 8)
    with pytest.raises(TypeError, match=r"critic must be an nn\.Module"):
        gan.r1_penalty(lambda x: x.sum(1), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="real"):
        gan.r1_penalty(critic, torch.zeros(3))
    with pytest.raises(ValueError, match="real"):
        gan.r1_penalty(critic, torch.full((3, 2), float("nan")))
    with pytest.raises((TypeError, ValueError), match="real"):
        gan.r1_penalty(critic, torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"GANConfig\.r1_weight must be finite and >= 0"):
        gan.GANConfig(r1_weight=-1.0)


def test_train_gan_adds_the_r1_penalty_to_the_critic_loss():
    """The first recorded critic loss is the BCE plus r1_weight * R1 on the first real batch,
    recomputed here from the same random stream and the same initial networks."""
    def nets():
        torch.manual_seed(3)
        return gan.Generator(2, 2, 8, 1), tot.Critic(2, 8)

    data = toy2d.ring_of_gaussians(256, generator=torch.Generator().manual_seed(4))
    cfg = gan.published_config("nonsaturating", steps=1, batch_size=16, snapshot_every=1, snapshot_size=8,
                               r1_weight=7.0)
    run = gan.train_gan(data, *nets(), cfg, torch.Generator().manual_seed(5), progress=False)
    g = torch.Generator().manual_seed(5)
    net_g, net_c = nets()
    torch.randn(8, 2, generator=g)  # z_eval
    torch.randint(0, 256, (8,), generator=g)  # real_eval
    real = data[torch.randint(0, 256, (16,), generator=g)]
    fake = net_g(torch.randn(16, 2, generator=g)).detach()
    expected = gan.discriminator_loss(net_c(real), net_c(fake)) + 7.0 * gan.r1_penalty(net_c, real)
    assert run.critic_losses[0] == pytest.approx(expected.item(), rel=1e-5)
    no_r1 = dataclasses.replace(cfg, r1_weight=0.0)
    plain = gan.train_gan(data, *nets(), no_r1, torch.Generator().manual_seed(5), progress=False)
    bce = gan.discriminator_loss(net_c(real), net_c(fake)).item()
    assert plain.critic_losses[0] == pytest.approx(bce, rel=1e-5)
