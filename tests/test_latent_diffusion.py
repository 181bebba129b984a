"""Tests for tutorlib.latent_diffusion: guidance formula, autoencoder, label dropout, guided sampling."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tutorlib import diffusion as dif
from tutorlib import latent_diffusion as ld

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# The guidance formula
# ---------------------------------------------------------------------------------------------
def test_guided_eps_endpoints_are_the_conditional_and_unconditional_models():
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    assert torch.equal(ld.guided_eps(cond, uncond, 0.0), cond)
    assert torch.equal(ld.guided_eps(cond, uncond, -1.0), uncond)


@settings(max_examples=30, deadline=None)
@given(w=st.floats(-1.0, 20.0))
def test_guided_eps_matches_the_guidance_scale_form(w):
    g = torch.Generator().manual_seed(1)
    cond, uncond = (
        torch.randn(4, 2, dtype=torch.float64, generator=g),
        torch.randn(4, 2, dtype=torch.float64, generator=g),
    )
    s = ld.weight_to_scale(w)
    reference = uncond + s * (cond - uncond)  # diffusers / Stable Diffusion's form
    torch.testing.assert_close(ld.guided_eps(cond, uncond, w), reference, rtol=1e-12, atol=1e-12)
    assert ld.scale_to_weight(s) == pytest.approx(w)


def test_guided_eps_moves_away_from_the_unconditional_prediction():
    cond, uncond = torch.ones(1, 2), torch.zeros(1, 2)
    assert torch.equal(ld.guided_eps(cond, uncond, 2.0), torch.full((1, 2), 3.0))


def test_guided_model_endpoints_call_the_network_with_the_right_labels():
    torch.manual_seed(0)
    net = ld.ConditionalTimeMLP(3, num_classes=4, hidden=16, depth=2, embed_dim=8).eval()
    x, t, labels = torch.randn(6, 3), torch.rand(6), torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        cond, uncond = net(x, t, labels), net(x, t, torch.full((6,), 4))
        torch.testing.assert_close(ld.guided_model(net, labels, 0.0)(x, t), cond, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(ld.guided_model(net, labels, -1.0)(x, t), uncond, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(
            ld.guided_model(net, labels, 1.5)(x, t), 2.5 * cond - 1.5 * uncond, rtol=1e-5, atol=1e-5
        )


# ---------------------------------------------------------------------------------------------
# The guided sampler against an analytic noise predictor (Gaussian classes)
# ---------------------------------------------------------------------------------------------
class GaussianClasses(ld.ConditionalTimeMLP):
    r"""The exact :math:`E[\epsilon \mid z_t]` when :math:`z_0 \mid c \sim \mathcal N(\mu_c, \sigma_c^2 I)`.

    :math:`z_t = \sqrt{\bar\alpha} z_0 + \sqrt{1-\bar\alpha}\epsilon` is Gaussian, so
    :math:`E[\epsilon \mid z_t] = \sqrt{1-\bar\alpha}\,(z_t - \sqrt{\bar\alpha}\mu_c)
    / (\bar\alpha\sigma_c^2 + 1 - \bar\alpha)`.
    The null class is its own Gaussian.
    """

    def __init__(self, means, stds, alpha_bar):
        super().__init__(dim=means.shape[1], num_classes=means.shape[0] - 1, hidden=2, depth=1, embed_dim=2)
        self.means, self.stds, self.alpha_bar = means, stds, alpha_bar

    def forward(self, x, t, labels):
        T = len(self.alpha_bar)
        ab = self.alpha_bar[(t * T).round().long()].to(x)[:, None]  # (B, 1)
        mu, sd = self.means[labels], self.stds[labels][:, None]
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * sd**2 + 1 - ab)


@pytest.mark.parametrize(("w", "index"), [(0.0, 1), (-1.0, 2)])
def test_guided_ddim_samples_the_conditional_and_unconditional_gaussians(w, index):
    _, alpha_bar = ld.GuidanceConfig(T=1000).schedule_tensors()
    means = torch.tensor([[2.0, -1.0], [-3.0, 0.5], [0.0, 0.0]], dtype=torch.float64)  # row 2: the null class
    stds = torch.tensor([0.5, 0.3, 1.5], dtype=torch.float64)
    model = GaussianClasses(means, stds, alpha_bar)
    n = 20000
    z_T = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = ld.guided_ddim_sample(model, torch.full((n,), 1), w, z_T, alpha_bar, 200)
    se = stds[index] / math.sqrt(n)
    torch.testing.assert_close(z.mean(0), means[index], rtol=0, atol=float(5 * se) + 0.01)
    torch.testing.assert_close(z.std(0), stds[index].expand(2), rtol=0.03, atol=0.01)


# ---------------------------------------------------------------------------------------------
# The autoencoder
# ---------------------------------------------------------------------------------------------
def test_autoencoder_shapes_and_standardised_round_trip():
    torch.manual_seed(0)
    ae = ld.DigitsAutoencoder(latent_dim=5, hidden=32)
    x = torch.rand(40, 64) * 2 - 1
    ae.fit_latent_stats(x)
    z = ae.encode(x)
    assert z.shape == (40, 5) and ae.decode(z).shape == (40, 64) and ae(x).shape == (40, 64)
    torch.testing.assert_close(z.mean(0), torch.zeros(5), rtol=0, atol=1e-5)
    torch.testing.assert_close(z.std(0), torch.ones(5), rtol=1e-4, atol=1e-4)
    # standardisation is undone exactly by decode: the round trip is the raw network's
    with torch.no_grad():
        torch.testing.assert_close(ae(x), ae.decoder(ae.encoder(x)), rtol=1e-5, atol=1e-5)


def test_train_autoencoder_beats_the_mean_image():
    from tutorlib.metrics import load_digits_tensor

    digits, _ = load_digits_tensor()
    x = dif.digits_to_model(digits[:400])
    torch.manual_seed(0)
    ae = ld.DigitsAutoencoder(latent_dim=8, hidden=64)
    losses = ld.train_autoencoder(ae, x, ld.AutoencoderConfig(steps=300, batch_size=128), progress=False)
    with torch.no_grad():
        mse = (ae(x) - x).pow(2).mean().item()
    baseline = (x - x.mean(0)).pow(2).mean().item()  # the best constant reconstruction
    assert len(losses) == 300
    assert mse < 0.5 * baseline


# ---------------------------------------------------------------------------------------------
# Label dropout and the loss
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 0.1, 0.2, 1.0])
def test_drop_labels_rate(p):
    n = 200_000
    labels = torch.arange(n) % 10
    out = ld.drop_labels(labels, p, null_class=10, generator=torch.Generator().manual_seed(0))
    dropped = out == 10
    rate = dropped.float().mean().item()
    assert abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12
    assert torch.equal(out[~dropped], labels[~dropped])  # kept labels are untouched


def test_conditional_loss_is_zero_for_a_perfect_predictor():
    _, alpha_bar = ld.GuidanceConfig(T=50).schedule_tensors()

    class Oracle(ld.ConditionalTimeMLP):
        """z_0 is always 0, so z_t = sqrt(1 - alpha_bar) eps and eps = z_t / sqrt(1 - alpha_bar)."""

        def forward(self, x, t, labels):
            ab = alpha_bar[(t * 50).round().long()].to(x)[:, None]
            return x / (1 - ab).sqrt()

    oracle = Oracle(3, num_classes=2, hidden=2, depth=1, embed_dim=2)
    loss = ld.conditional_epsilon_loss(
        oracle,
        torch.zeros(64, 3),
        torch.zeros(64, dtype=torch.long),
        alpha_bar,
        0.5,
        generator=torch.Generator().manual_seed(0),
    )
    assert loss.item() < 1e-10


def test_train_conditional_denoiser_lowers_the_loss_and_trains_the_null_class():
    torch.manual_seed(0)
    net = ld.ConditionalTimeMLP(2, num_classes=3, hidden=32, depth=2, embed_dim=8)
    labels = torch.arange(300) % 3
    latents = torch.randn(300, 2) * 0.1 + labels[:, None].float()
    before = net.class_embedding.weight[3].clone()
    losses = ld.train_conditional_denoiser(
        net, latents, labels, ld.GuidanceConfig(T=100, steps=150, batch_size=64), progress=False
    )
    assert sum(losses[-20:]) / 20 < 0.8 * sum(losses[:20]) / 20
    assert not torch.equal(before, net.class_embedding.weight[3])  # dropout reached the null class


def test_train_conditional_denoiser_is_the_loop_written_out():
    """The reference: the loop this module had before it reused diffusion.train_denoiser (same draws)."""
    labels = torch.arange(200) % 3
    latents = torch.randn(200, 2, generator=torch.Generator().manual_seed(5)) * 0.1 + labels[:, None].float()
    config = ld.GuidanceConfig(T=100, steps=30, batch_size=32, ema=0.8, seed=4)
    torch.manual_seed(0)
    net = ld.ConditionalTimeMLP(2, num_classes=3, hidden=16, depth=2, embed_dim=8)
    reference = ld.ConditionalTimeMLP(2, num_classes=3, hidden=16, depth=2, embed_dim=8)
    reference.load_state_dict(net.state_dict())
    losses = ld.train_conditional_denoiser(net, latents, labels, config, progress=False)

    _, alpha_bar = config.schedule_tensors()
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(reference.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps,
                                                           eta_min=config.lr * config.lr_final)
    average = [p.detach().clone() for p in reference.parameters()]
    expected = []
    for _ in range(config.steps):
        index = torch.randint(0, len(latents), (config.batch_size,), generator=generator)
        loss = ld.conditional_epsilon_loss(reference, latents[index], labels[index], alpha_bar,
                                           config.p_uncond, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(reference.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        for p_avg, p in zip(average, reference.parameters(), strict=True):
            p_avg.lerp_(p.detach(), 1 - config.ema)
        expected.append(loss.item())
    assert losses == expected
    for p, p_avg in zip(net.parameters(), average, strict=True):
        assert torch.equal(p, p_avg)


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------
def test_linear_flops_matches_torch_flop_counter():
    net = ld.ConditionalTimeMLP(8, hidden=64, depth=3, embed_dim=16)
    x, t, labels = torch.randn(7, 8), torch.rand(7), torch.arange(7) % 10
    with FlopCounterMode(display=False) as counter:
        net(x, t, labels)
    assert ld.linear_flops(net, batch=7) == counter.get_total_flops()


def test_class_accuracy_with_a_known_classifier():
    class PixelZero(nn.Module):  # predicts the class written in pixel 0 (pixels arrive divided by 16)
        def forward(self, x):
            return nn.functional.one_hot((x[:, 0] * 16).round().long(), 10).float()

    images = torch.zeros(4, 64)
    images[:, 0] = torch.tensor([1.0, 2.0, 3.0, 9.0])
    assert ld.class_accuracy(images, torch.tensor([1, 2, 0, 9]), PixelZero()) == pytest.approx(0.75)


# ---------------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------------
def test_bad_arguments_raise_with_the_argument_name():
    a = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="eps_uncond"):
        ld.guided_eps(a, torch.zeros(3, 3), 1.0)
    with pytest.raises(ValueError, match="w"):
        ld.guided_eps(a, a, -1.5)
    with pytest.raises(ValueError, match="w"):
        ld.guided_eps(a, a, float("nan"))
    with pytest.raises(TypeError, match="eps_cond"):
        ld.guided_eps([0.0], a, 1.0)
    with pytest.raises(ValueError, match="s"):
        ld.scale_to_weight(-0.5)
    with pytest.raises(ValueError, match="p_uncond"):
        ld.drop_labels(torch.zeros(3, dtype=torch.long), 1.5, 10)
    with pytest.raises(ValueError, match="labels"):
        ld.drop_labels(torch.tensor([0, 10]), 0.1, 10)
    with pytest.raises(TypeError, match="labels"):
        ld.drop_labels(torch.tensor([0.0, 1.0]), 0.1, 10)
    net = ld.ConditionalTimeMLP(2, num_classes=3, hidden=8, depth=1, embed_dim=4)
    with pytest.raises(ValueError, match="labels"):
        net(a, 0.5, torch.tensor([0, 1, 4]))  # 3 is the null class, 4 is out of range
    with pytest.raises(ValueError, match="labels"):
        net(a, 0.5, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="x"):
        net(torch.zeros(3, 5), 0.5, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="labels"):
        ld.guided_model(net, torch.tensor([0, 3]), 1.0)  # the null class is not a condition
    with pytest.raises(ValueError, match="labels"):
        ld.guided_ddim_sample(
            net, torch.tensor([0, 1]), 1.0, a, ld.GuidanceConfig(T=10).schedule_tensors()[1], 5
        )
    with pytest.raises(ValueError, match="embed_dim"):
        ld.ConditionalTimeMLP(2, embed_dim=5)
    ae = ld.DigitsAutoencoder(latent_dim=4, hidden=16)
    with pytest.raises(ValueError, match="z"):
        ae.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="x"):
        ae.encode(torch.zeros(2, 63))
    with pytest.raises(ValueError, match="x"):
        ae.encode(torch.full((2, 64), float("nan")))
    with pytest.raises(TypeError, match="latent_dim"):
        ld.DigitsAutoencoder(latent_dim=2.0)
    with pytest.raises(ValueError, match="p_uncond"):
        ld.GuidanceConfig(p_uncond=-0.1)
    with pytest.raises(ValueError, match="schedule"):
        ld.GuidanceConfig(schedule="quadratic")
    with pytest.raises(ValueError, match="latent_noise"):
        ld.AutoencoderConfig(latent_noise=-1.0)
    with pytest.raises(TypeError, match="config"):
        ld.train_autoencoder(ae, torch.zeros(4, 64), ld.GuidanceConfig())
    with pytest.raises(TypeError, match="model"):
        ld.linear_flops("net")
    with pytest.raises(ValueError, match="labels"):
        ld.class_accuracy(torch.zeros(2, 64), torch.tensor([0, 10]))


def test_forward_and_loss_refuse_wrong_dtypes_and_ranks():
    net = ld.ConditionalTimeMLP(2, num_classes=3, hidden=8, depth=1, embed_dim=4)
    with pytest.raises(TypeError, match="x"):
        net(torch.zeros(3, 2, dtype=torch.long), 0.5, torch.tensor([0, 1, 2]))
    _, alpha_bar = ld.GuidanceConfig(T=10).schedule_tensors()
    labels = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="alpha_bar"):
        ld.conditional_epsilon_loss(net, torch.zeros(4, 2), labels, alpha_bar[0], 0.1)
    with pytest.raises(ValueError, match="alpha_bar"):
        ld.conditional_epsilon_loss(net, torch.zeros(4, 2), labels, alpha_bar[:, None], 0.1)
    with pytest.raises(TypeError, match="alpha_bar"):
        ld.conditional_epsilon_loss(net, torch.zeros(4, 2), labels, (alpha_bar * 10).long(), 0.1)
    # w = -1 is the unconditional model, a valid weight
    a, b = torch.randn(3, 2), torch.randn(3, 2)
    torch.testing.assert_close(ld.guided_eps(a, b, -1.0), b)
    assert ld.weight_to_scale(-1.0) == 0.0


def test_decode_raw_is_the_decoder_on_unstandardised_latents():
    ae = ld.DigitsAutoencoder(latent_dim=3, hidden=16)
    ae.latent_mean.fill_(0.5)
    ae.latent_std.fill_(2.0)
    h = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ae.decode_raw(h), ae.decoder(h))
    torch.testing.assert_close(ae.decode_raw(0.5 + 2.0 * h), ae.decode(h))  # h = mu + sigma z
    with pytest.raises(ValueError, match="h"):
        ae.decode_raw(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="h"):
        ae.decode_raw(torch.full((4, 3), math.nan))
