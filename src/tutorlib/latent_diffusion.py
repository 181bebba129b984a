r"""tutorlib.latent_diffusion: diffusion in an autoencoder's latent space, with classifier-free guidance.

Taught in the chapter "Latent diffusion and guidance" (``book/latent_diffusion.md``); it builds on
:mod:`tutorlib.diffusion` (schedules, :func:`~tutorlib.diffusion.q_sample`, the DDIM sampler),
which it imports rather than copies.

The recipe of Stable Diffusion (Rombach et al. 2022), at the scale of scikit-learn's 8×8 digits:

1. an autoencoder :math:`x \mapsto z = E(x) \mapsto \hat x = D(z)` compresses a 64-pixel image
   to a latent :math:`z` of a few dimensions (:class:`DigitsAutoencoder`); its latents are
   standardised (Stable Diffusion's "scale factor"), so the diffusion sees unit variance;
2. a class-conditional noise predictor :math:`\epsilon_\theta(z_t, t, c)` is trained in latent
   space (:class:`ConditionalTimeMLP`); the class :math:`c` is the toy stand-in for a text
   prompt. With probability :math:`p_{\text{uncond}}` the label is replaced by a *null class*
   :math:`\varnothing` (:func:`drop_labels`), so one network learns both the conditional and the
   unconditional model (Ho & Salimans 2022);
3. sampling mixes the two predictions (:func:`guided_eps`, classifier-free guidance)

   .. math::  \tilde\epsilon = (1 + w)\, \epsilon_\theta(z_t, t, c) - w\, \epsilon_\theta(z_t, t, \varnothing)

   and runs the unchanged DDIM sampler of :mod:`tutorlib.diffusion` on the mixture
   (:func:`guided_model` wraps the network as the ``model(x_t, t / T)`` the sampler expects), and
   the decoder renders the final latent.

Guidance conventions: Ho & Salimans write the weight :math:`w` (:math:`w = 0`: the conditional
model, :math:`w = -1`: the unconditional one). Stable Diffusion and diffusers write the
*guidance scale* :math:`s = 1 + w`, :math:`\tilde\epsilon = \epsilon_\varnothing + s(\epsilon_c -
\epsilon_\varnothing)` (:math:`s = 1`: no guidance; the default 7.5 is :math:`w = 6.5`). This module
takes :math:`w`; :func:`scale_to_weight` converts.

Legend: ``w`` :math:`w`, ``null_class`` :math:`\varnothing`, ``p_uncond`` :math:`p_{\text{uncond}}`,
``z`` :math:`z`, ``eps_cond`` :math:`\epsilon_\theta(z_t, t, c)`, ``eps_uncond``
:math:`\epsilon_\theta(z_t, t, \varnothing)`.

References:
    Rombach, Blattmann, Lorenz, Esser & Ommer (2022), "High-resolution image synthesis with latent
    diffusion models", CVPR.
    Ho & Salimans (2022), "Classifier-free diffusion guidance", arXiv:2207.12598 (NeurIPS 2021
    workshop on deep generative models).
    Dhariwal & Nichol (2021), "Diffusion models beat GANs on image synthesis", NeurIPS
    (classifier guidance).
    Song, Meng & Ermon (2021), "Denoising diffusion implicit models", ICLR.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib import diffusion as dif
from tutorlib.validation import check_int, check_real, check_tensor

__all__ = [
    "AutoencoderConfig",
    "ConditionalTimeMLP",
    "DigitsAutoencoder",
    "GuidanceConfig",
    "class_accuracy",
    "conditional_epsilon_loss",
    "drop_labels",
    "guided_ddim_sample",
    "guided_eps",
    "guided_model",
    "linear_flops",
    "scale_to_weight",
    "train_autoencoder",
    "train_conditional_denoiser",
    "weight_to_scale",
]


# --------------------------------------------------------------------------------------------
# Small private checks (tutorlib.validation has the scalar ones; these are the tensor shapes here)
# --------------------------------------------------------------------------------------------
def _check_batch(name: str, x: object, dim: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        want = f"(B, {dim})" if dim is not None else "(B, D)"
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got a tensor containing NaN or inf")
    return x


def _check_labels(name: str, labels: object, batch: int, num_labels: int) -> torch.Tensor:
    """Integer labels ``(B,)`` in ``[0, num_labels)`` (``num_labels`` counts the null class if allowed)."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"{name} must be an integer torch.Tensor of shape ({batch},), got {type(labels).__name__}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    if labels.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(labels.shape)}")
    if batch and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(
            f"{name} must lie in [0, {num_labels - 1}], got values in "
            f"[{labels.min().item()}, {labels.max().item()}]"
        )
    return labels.long()


def _check_weight(w: object) -> float:
    return check_real("w", w, low=-1.0)


# --------------------------------------------------------------------------------------------
# 1. The autoencoder: pixels <-> a few latent numbers
# --------------------------------------------------------------------------------------------
class DigitsAutoencoder(nn.Module):
    r"""An MLP autoencoder for 8×8 digits: :math:`E: \mathbb R^{64} \to \mathbb R^d` and a decoder :math:`D`.

    Encoder ``64 -> hidden -> hidden/2 -> d`` and decoder ``d -> hidden/2 -> hidden -> 64``, SiLU
    between layers, pixels in the model's scale :math:`[-1, 1]` (:func:`tutorlib.diffusion.digits_to_model`).
    :meth:`encode` returns *standardised* latents :math:`z = (h - \mu) / \sigma` with the
    per-coordinate mean and standard deviation of the training latents (:meth:`fit_latent_stats`),
    the role of Stable Diffusion's scale factor 0.18215: the diffusion's noise
    :math:`\mathcal N(0, I)` then has the scale of the data it is mixed with.

    Shapes: :meth:`encode` ``(B, 64) -> (B, d)``; :meth:`decode` ``(B, d) -> (B, 64)``;
    ``forward`` is the round trip ``(B, 64) -> (B, 64)``.
    """

    def __init__(self, latent_dim: int = 8, hidden: int = 256) -> None:
        super().__init__()
        check_int("latent_dim", latent_dim)
        check_int("hidden", hidden, minimum=2)
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Linear(64, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden // 2),
            nn.SiLU(),
            nn.Linear(hidden // 2, latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden // 2),
            nn.SiLU(),
            nn.Linear(hidden // 2, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 64),
        )
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output :math:`h = E(x)` before standardisation: ``(B, 64) -> (B, d)``."""
        return self.encoder(_check_batch("x", x, 64))

    def decode_raw(self, h: torch.Tensor) -> torch.Tensor:
        """The decoder applied to an unstandardised latent :math:`h`: ``(B, d) -> (B, 64)``."""
        return self.decoder(_check_batch("h", h, self.latent_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        r"""Standardised latents :math:`z = (E(x) - \mu) / \sigma`: ``(B, 64) -> (B, d)``."""
        return (self.encode_raw(x) - self.latent_mean) / self.latent_std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        r"""Pixels (model scale) from standardised latents :math:`D(\mu + \sigma z)`: ``(B, d) -> (B, 64)``"""
        z = _check_batch("z", z, self.latent_dim)
        return self.decoder(self.latent_mean + self.latent_std * z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def fit_latent_stats(self, x: torch.Tensor) -> None:
        """Set :math:`\\mu, \\sigma` to the per-coordinate mean and std of :math:`E(x)` over ``x`` (N, 64)."""
        x = _check_batch("x", x, 64)
        if len(x) < 2:
            raise ValueError(f"x must hold at least 2 images to estimate a std, got {len(x)}")
        h = self.encoder(x)
        self.latent_mean.copy_(h.mean(0))
        self.latent_std.copy_(h.std(0).clamp_min(1e-6))


@dataclass
class AutoencoderConfig:
    """A training recipe for :func:`train_autoencoder`."""

    steps: int = 1500  #: optimiser steps
    batch_size: int = 256  #: images per step
    lr: float = 2e-3  #: Adam's learning rate (cosine decay to lr * 0.05)
    latent_noise: float = 0.05  #: std of Gaussian noise added to h in training: a smooth decoder
    latent_penalty: float = (
        1e-3  #: weight of mean(h^2), keeps the latent scale near 1 (noise is relative to it)
    )
    seed: int = 0  #: seeds the batches and the latent noise

    def __post_init__(self) -> None:
        check_int("steps", self.steps)
        check_int("batch_size", self.batch_size)
        check_real("lr", self.lr, low=0.0, low_open=True)
        check_real("latent_noise", self.latent_noise, low=0.0)
        check_real("latent_penalty", self.latent_penalty, low=0.0)
        check_int("seed", self.seed, minimum=0)


def train_autoencoder(
    autoencoder: DigitsAutoencoder, data: torch.Tensor, config: AutoencoderConfig, progress: bool = True
) -> list[float]:
    r"""Train ``autoencoder`` in place on ``data`` ``(N, 64)`` (model scale), then fit its latent statistics.

    .. math::  L = \frac{1}{64} \lVert D(E(x) + \sigma_n n) - x \rVert^2
               + \lambda\, \frac1d \lVert E(x) \rVert^2,
               \qquad n \sim \mathcal N(0, I)

    The small latent noise :math:`\sigma_n` (``latent_noise``) asks nearby latents to decode to
    similar images, so the decoder stays sensible where a diffusion sample lands slightly off the
    training latents; :math:`\lambda` (``latent_penalty``) pins the latent scale to about 1 so that
    :math:`\sigma_n` means the same thing in every run.

    Returns:
        The reconstruction loss at every step.
    """
    if not isinstance(autoencoder, DigitsAutoencoder):
        raise TypeError(f"autoencoder must be a DigitsAutoencoder, got {type(autoencoder).__name__}")
    data = _check_batch("data", data, 64)
    if not isinstance(config, AutoencoderConfig):
        raise TypeError(f"config must be an AutoencoderConfig, got {type(config).__name__}")
    from tqdm.auto import trange

    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(autoencoder.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.steps, eta_min=config.lr * 0.05
    )
    losses = []
    autoencoder.train()
    for _ in trange(config.steps, desc="training the autoencoder", disable=not progress, leave=False):
        x = data[torch.randint(0, len(data), (config.batch_size,), generator=generator)]
        h = autoencoder.encoder(x)  # (B, d)
        noise = torch.randn(h.shape, generator=generator)
        reconstruction = (autoencoder.decoder(h + config.latent_noise * noise) - x).pow(2).mean()
        loss = reconstruction + config.latent_penalty * h.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(reconstruction.item())
    autoencoder.eval()
    autoencoder.fit_latent_stats(data)
    return losses


# --------------------------------------------------------------------------------------------
# 2. The class-conditional noise predictor, and label dropout
# --------------------------------------------------------------------------------------------
class ConditionalTimeMLP(nn.Module):
    r"""A class-conditional noise predictor :math:`\epsilon_\theta(x, t, c)` for vectors.

    :class:`tutorlib.diffusion.TimeMLP` with one more input: a learned embedding of the class
    :math:`c \in \{0, \dots, K-1\}` or of the null class :math:`\varnothing = K`
    (``null_class``), concatenated with :math:`x` and the sinusoidal embedding of :math:`t/T`
    (:func:`tutorlib.diffusion.time_embedding`). In Stable Diffusion the condition is a text
    encoder's output entering through cross-attention; here it is one of :math:`K + 1` vectors.

    Shapes: ``x`` ``(B, dim)``, ``t`` ``(B,)`` or a float, ``labels`` ``(B,)`` ints in
    :math:`[0, K]` -> ``(B, dim)``.
    """

    def __init__(
        self, dim: int, num_classes: int = 10, hidden: int = 256, depth: int = 3, embed_dim: int = 32
    ) -> None:
        super().__init__()
        check_int("dim", dim)
        check_int("num_classes", num_classes)
        check_int("hidden", hidden)
        check_int("depth", depth)
        check_int("embed_dim", embed_dim, minimum=2)
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even, got {embed_dim}")
        self.dim, self.num_classes, self.embed_dim = dim, num_classes, embed_dim
        self.class_embedding = nn.Embedding(num_classes + 1, embed_dim)  # row K is the null class
        layers: list[nn.Module] = []
        width = dim + 2 * embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    @property
    def null_class(self) -> int:
        r"""The index of :math:`\varnothing`, "no condition": ``num_classes``."""
        return self.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(getattr(x, 'shape', ()))}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
        B = x.shape[0]
        if not isinstance(t, torch.Tensor):
            t = torch.full((B,), float(t), dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(B)
        if t.shape != (B,):
            raise ValueError(f"t must have shape ({B},) to match x, got {tuple(t.shape)}")
        labels = _check_labels("labels", labels, B, self.num_classes + 1)
        emb_t = dif.time_embedding(t.to(x.dtype), self.embed_dim)  # (B, E)
        emb_c = self.class_embedding(labels)  # (B, E)
        return self.net(torch.cat([x, emb_t, emb_c], dim=1))  # (B, dim + 2E) -> (B, dim)


def drop_labels(
    labels: torch.Tensor, p_uncond: float, null_class: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Replace each label by the null class :math:`\varnothing` with probability :math:`p_{\text{uncond}}`.

    The training trick of classifier-free guidance (Ho & Salimans 2022, Algorithm 1): one network,
    trained on :math:`(z, c)` pairs where a fraction :math:`p_{\text{uncond}}` of the labels is
    hidden, learns :math:`\epsilon(z_t, t, c)` *and* :math:`\epsilon(z_t, t, \varnothing)`. The paper
    uses :math:`p_{\text{uncond}} \in \{0.1, 0.2\}`.

    Args:
        labels: ``(B,)`` ints in ``[0, null_class)``.
        p_uncond: in :math:`[0, 1]`.
        null_class: the index of :math:`\varnothing` (:attr:`ConditionalTimeMLP.null_class`).
        generator: draws the coin flips.

    Returns:
        ``(B,)`` long, a new tensor.
    """
    check_int("null_class", null_class)
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be an integer torch.Tensor (B,), got {type(labels).__name__}")
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (B,), got {tuple(labels.shape)}")
    labels = _check_labels("labels", labels, labels.shape[0], null_class)
    p_uncond = check_real("p_uncond", p_uncond, 0.0, 1.0)
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p_uncond
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def conditional_epsilon_loss(
    model: ConditionalTimeMLP,
    z0: torch.Tensor,
    labels: torch.Tensor,
    alpha_bar: torch.Tensor,
    p_uncond: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""DDPM's noise-prediction loss, the condition dropped with probability :math:`p_{\text{uncond}}`.

    .. math::  L = \mathbb E_{t, z_0, c, \epsilon, \text{drop}}
               \big\lVert \epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t} z_0
               + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t,\
               \text{drop} ? \varnothing : c) \big\rVert^2

    The noising is :func:`tutorlib.diffusion.q_sample`; the network sees :math:`t/T`
    (:func:`tutorlib.diffusion.scale_t`).

    Args:
        model: the conditional network.
        z0: clean latents ``(B, d)``; labels: ``(B,)`` ints in ``[0, K)``.
        alpha_bar: ``(T,)``.
        p_uncond: label-dropout probability.
        generator: draws :math:`t`, :math:`\epsilon` and the dropout.
    """
    if not isinstance(model, ConditionalTimeMLP):
        raise TypeError(f"model must be a ConditionalTimeMLP, got {type(model).__name__}")
    z0 = _check_batch("z0", z0, model.dim)
    labels = _check_labels("labels", labels, z0.shape[0], model.num_classes)
    # shape and dtype only (every training step): q_sample checks the values
    alpha_bar = check_tensor("alpha_bar", alpha_bar, (None,), finite=False)
    T = len(alpha_bar)
    t = torch.randint(0, T, (z0.shape[0],), generator=generator)  # (B,)
    noise = torch.randn(z0.shape, generator=generator, dtype=z0.dtype)
    z_t = dif.q_sample(z0, t, noise, alpha_bar)
    shown = drop_labels(labels, p_uncond, model.null_class, generator=generator)
    return (model(z_t, dif.scale_t(t, T).to(z0), shown) - noise).pow(2).mean()


@dataclass
class GuidanceConfig:
    """A training recipe for :func:`train_conditional_denoiser`."""

    T: int = 1000  #: diffusion steps
    schedule: str = "linear"  #: "linear" (DDPM) or "cosine"
    steps: int = 3000  #: optimiser steps
    batch_size: int = 256  #: latents per step
    lr: float = 2e-3  #: Adam's learning rate at the start (cosine decay to lr * lr_final)
    lr_final: float = 0.05  #: the decay's end, as a fraction of lr
    p_uncond: float = 0.1  #: label-dropout probability (Ho & Salimans: 0.1 or 0.2)
    ema: float = 0.0  #: weight averaging as in tutorlib.diffusion.train_denoiser (0: none)
    grad_clip: float = 1.0  #: clip the gradient norm
    seed: int = 0  #: seeds the batches, steps, noise and dropout

    def __post_init__(self) -> None:
        check_int("T", self.T, minimum=2)
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        check_int("steps", self.steps)
        check_int("batch_size", self.batch_size)
        check_real("lr", self.lr, low=0.0, low_open=True)
        check_real("lr_final", self.lr_final, 0.0, 1.0)
        check_real("p_uncond", self.p_uncond, 0.0, 1.0)
        check_real("ema", self.ema, 0.0, 1.0, high_open=True)
        check_real("grad_clip", self.grad_clip, low=0.0, low_open=True)
        check_int("seed", self.seed, minimum=0)

    def schedule_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(betas, alpha_bar)`` from :func:`tutorlib.diffusion.make_schedule`."""
        return dif.make_schedule(dif.DiffusionConfig(T=self.T, schedule=self.schedule))


def train_conditional_denoiser(
    model: ConditionalTimeMLP,
    latents: torch.Tensor,
    labels: torch.Tensor,
    config: GuidanceConfig,
    progress: bool = True,
) -> list[float]:
    """Train ``model`` in place with :func:`conditional_epsilon_loss` on ``latents`` (N, d), ``labels`` (N,).

    The loop is :func:`tutorlib.diffusion.train_denoiser` (Adam, cosine decay, gradient clipping,
    optional weight averaging), given a per-batch loss that also feeds the batch's labels and
    drops them with probability ``config.p_uncond``. Returns the loss at every step.
    """
    if not isinstance(model, ConditionalTimeMLP):
        raise TypeError(f"model must be a ConditionalTimeMLP, got {type(model).__name__}")
    latents = _check_batch("latents", latents, model.dim)
    labels = _check_labels("labels", labels, len(latents), model.num_classes)
    if not isinstance(config, GuidanceConfig):
        raise TypeError(f"config must be a GuidanceConfig, got {type(config).__name__}")
    recipe = dif.DiffusionConfig(
        T=config.T, schedule=config.schedule, steps=config.steps, batch_size=config.batch_size,
        lr=config.lr, lr_final=config.lr_final, ema=config.ema, grad_clip=config.grad_clip, seed=config.seed,
    )

    def loss_fn(net: nn.Module, index: torch.Tensor, alpha_bar: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        return conditional_epsilon_loss(net, latents[index], labels[index], alpha_bar, config.p_uncond,
                                        generator=generator)

    return dif.train_denoiser(model, latents, recipe, progress=progress, loss_fn=loss_fn,
                              desc="training the conditional denoiser")


# --------------------------------------------------------------------------------------------
# 3. Classifier-free guidance
# --------------------------------------------------------------------------------------------
def scale_to_weight(s: float) -> float:
    r"""Stable Diffusion's guidance scale :math:`s \ge 0` to Ho & Salimans' weight :math:`w = s - 1`."""
    return check_real("s", s, low=0.0) - 1.0


def weight_to_scale(w: float) -> float:
    r"""Ho & Salimans' weight :math:`w \ge -1` to the guidance scale :math:`s = 1 + w`."""
    return _check_weight(w) + 1.0


def guided_eps(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, w: float) -> torch.Tensor:
    r"""Classifier-free guidance: :math:`\tilde\epsilon = (1 + w)\, \epsilon_c - w\, \epsilon_\varnothing`.

    The same as :math:`\epsilon_c + w (\epsilon_c - \epsilon_\varnothing)`: step further along the
    direction by which the condition changes the prediction. Since
    :math:`\epsilon \approx -\sqrt{1-\bar\alpha_t}\, \nabla \log p`, it samples (approximately) from
    :math:`p(z) \, p(c \mid z)^{1+w}`: the implicit classifier :math:`p(c \mid z) \propto
    p(z \mid c) / p(z)` raised to a power (Ho & Salimans 2022, eq. 6).
    :math:`w = 0` is the conditional model, :math:`w = -1` the unconditional one.

    Args:
        eps_cond, eps_uncond: ``(B, ...)``, the same shape.
        w: the guidance weight, :math:`w \ge -1` (guidance scale :math:`s = 1 + w`).

    Returns:
        ``(B, ...)``.
    """
    for name, value in (("eps_cond", eps_cond), ("eps_uncond", eps_uncond)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(value).__name__}")
    if eps_cond.shape != eps_uncond.shape:
        raise ValueError(
            f"eps_uncond must have the shape of eps_cond {tuple(eps_cond.shape)}, "
            f"got {tuple(eps_uncond.shape)}"
        )
    w = _check_weight(w)
    return (1 + w) * eps_cond - w * eps_uncond


def guided_model(
    model: ConditionalTimeMLP, labels: torch.Tensor, w: float
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    r"""Wrap the conditional network as the ``model(x_t, t / T)`` that the DDIM/DDPM samplers call.

    Each call evaluates :math:`\epsilon_\theta(x_t, t, c)` and :math:`\epsilon_\theta(x_t, t, \varnothing)`
    in one batch of :math:`2B` (so guidance doubles the cost of a step) and returns
    :func:`guided_eps`. The samplers need no guidance hook: guidance is a change of the noise
    estimate, not of the update rule.

    Args:
        model: the conditional network; labels: ``(B,)`` ints in ``[0, K)``, one per sample;
        w: guidance weight :math:`\ge -1`.
    """
    if not isinstance(model, ConditionalTimeMLP):
        raise TypeError(f"model must be a ConditionalTimeMLP, got {type(model).__name__}")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D integer tensor (B,), got {getattr(labels, 'shape', labels)!r}"
        )
    labels = _check_labels("labels", labels, labels.shape[0], model.num_classes)
    w = _check_weight(w)
    null = torch.full_like(labels, model.null_class)

    def eps_hat(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        if B != labels.shape[0]:
            raise ValueError(f"x has {B} samples but {labels.shape[0]} labels were given")
        both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null]))  # (2B, d)
        return guided_eps(both[:B], both[B:], w)

    return eps_hat


def guided_ddim_sample(
    model: ConditionalTimeMLP,
    labels: torch.Tensor,
    w: float,
    z_T: torch.Tensor,
    alpha_bar: torch.Tensor,
    steps: int | Sequence[int],
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    clip_x0: float | None = None,
) -> torch.Tensor:
    r"""Guided latents: :func:`tutorlib.diffusion.ddim_sample` run on :func:`guided_model`.

    Args:
        model: the conditional network; labels: ``(B,)``; w: the guidance weight.
        z_T: starting noise ``(B, d)``; alpha_bar: ``(T,)``; steps, eta, generator: as in
            :func:`tutorlib.diffusion.ddim_sample` (:math:`2S` network evaluations in :math:`S`
            batched calls).
        clip_x0: clip the predicted clean latent :math:`\hat z_0` to :math:`[-c, c]` at every step (the
            latents are standardised, so :math:`c \approx 3`): strong guidance overshoots, and
            without a clip its latents leave the region the decoder was trained on (Imagen's
            thresholding, Saharia et al. 2022, plays the same role in pixel space).

    Returns:
        Latents ``(B, d)`` (decode them with :meth:`DigitsAutoencoder.decode`).
    """
    z_T = _check_batch("z_T", z_T, model.dim if isinstance(model, ConditionalTimeMLP) else None)
    fn = guided_model(model, labels, w)
    if labels.shape[0] != z_T.shape[0]:
        raise ValueError(f"labels must have shape ({z_T.shape[0]},) to match z_T, got {tuple(labels.shape)}")
    return dif.ddim_sample(fn, z_T, alpha_bar, steps, eta=eta, generator=generator, clip_x0=clip_x0)


# --------------------------------------------------------------------------------------------
# 4. Measuring: cost per step and class accuracy of samples
# --------------------------------------------------------------------------------------------
def linear_flops(model: nn.Module, batch: int = 1) -> int:
    r"""Floating-point operations of the ``nn.Linear`` layers of an MLP for ``batch`` inputs.

    Each ``Linear(n_in, n_out)`` costs :math:`2\, n_{\text{in}} n_{\text{out}}` per input (a
    multiply and an add per weight), the convention of ``torch.utils.flop_counter`` (biases and
    activations are not counted). Assumes each layer runs once per forward pass, as in an MLP.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_int("batch", batch)
    return sum(
        2 * m.in_features * m.out_features * batch for m in model.modules() if isinstance(m, nn.Linear)
    )


def class_accuracy(images: torch.Tensor, labels: torch.Tensor, classifier: nn.Module | None = None) -> float:
    r"""The share of ``images`` (N, 64) (pixels in :math:`[0, 16]`) classified as ``labels`` (N,).

    The judge is :func:`tutorlib.metrics.digits_classifier` (trained on real digits) unless
    ``classifier`` (pixels :math:`/ 16` in, 10 logits out) is given. The toy version of the
    Inception-score side of Ho & Salimans' trade-off: does the sample show the class it was asked for?
    """
    images = _check_batch("images", images, 64)
    labels = _check_labels("labels", labels, len(images), 10)
    if classifier is None:
        from tutorlib.metrics import digits_classifier

        classifier = digits_classifier()
    with torch.no_grad():
        predicted = classifier(images / 16).argmax(1)
    return float((predicted == labels).float().mean())
