r"""tutorlib.gan: generative adversarial networks, from the minimax game to WGAN-GP (chapter "GANs").

A generator :math:`G_\theta` maps noise :math:`z \sim p_z = \mathcal N(0, I)` to samples; a
discriminator (or, for Wasserstein GANs, a critic) :math:`D_\phi` scores samples. The losses are
plain functions of the scores, so the chapter can differentiate each one by itself.

Notation (legend from the chapter's symbols to the names in code):

==================================  =======================  ===============
math                                code                     shape
==================================  =======================  ===============
:math:`x \sim p_{\text{data}}`      ``real``                 ``(B, d)``
:math:`z \sim \mathcal N(0, I)`     ``z``                    ``(B, k)``
:math:`G_\theta(z)`                 ``fake``                 ``(B, d)``
:math:`\ell = D_\phi(x)` (logit)    ``real_logits``          ``(B,)``
:math:`\sigma(\ell)`, prob. "real"  ``torch.sigmoid(...)``   ``(B,)``
:math:`f_\phi(x)` (critic score)    ``real_scores``          ``(B,)``
:math:`\lambda` (penalty weight)    ``gp_weight``            scalar
:math:`c` (clipping bound)          ``clip``                 scalar
==================================  =======================  ===============

The networks are plain MLPs: :class:`Generator`, and :class:`Critic`, which *is*
:class:`tutorlib.ot.Critic` (one MLP critic for both chapters; here with ReLU layers, as in
Gulrajani et al.'s toy experiments). Any module that maps ``(B, d)`` to ``(B,)`` can serve as the
critic.

References:
    Goodfellow et al. (2014), "Generative adversarial nets", NeurIPS.
    Arjovsky, Chintala & Bottou (2017), "Wasserstein generative adversarial networks", ICML.
    Gulrajani et al. (2017), "Improved training of Wasserstein GANs", NeurIPS.
    Metz et al. (2017), "Unrolled generative adversarial networks", ICLR.
    Srivastava et al. (2017), "VEEGAN: reducing mode collapse in GANs using implicit variational
    learning", NeurIPS.
    Karras et al. (2018), "Progressive growing of GANs for improved quality, stability, and
    variation", ICLR (Adam with beta = (0, 0.99), lr 1e-3; an average of the generator's weights).
    Yazici et al. (2019), "The unusual effectiveness of averaging in GAN training", ICLR.
    Mescheder, Geiger & Nowozin (2018), "Which training methods for GANs do actually converge?", ICML.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from tutorlib import ot as tot
from tutorlib.validation import (
    check_choice,
    check_fields,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
    check_probability,
    check_real,
    check_tensor,
)

__all__ = [
    "LOSSES",
    "PUBLISHED",
    "Critic",
    "GANConfig",
    "GANRun",
    "Generator",
    "ModeCoverage",
    "Snapshot",
    "clip_weights",
    "critic_loss_wgan",
    "critic_loss_wgan_gp",
    "discriminator_loss",
    "ema_update",
    "generator_grad_norm",
    "generator_loss_minimax",
    "generator_loss_nonsaturating",
    "generator_loss_wgan",
    "mode_coverage",
    "published_config",
    "r1_penalty",
    "train_gan",
]

Loss = Literal["minimax", "nonsaturating", "wgan", "wgan-gp"]
#: The four games :func:`train_gan` can play.
LOSSES: tuple[str, ...] = ("minimax", "nonsaturating", "wgan", "wgan-gp")


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def _as_scores(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of scores, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (B,) with B >= 1 (one score per sample), got {tuple(x.shape)}"
        )
    return check_finite(name, x)


# --------------------------------------------------------------------------------------------
# 1. scoring samples against the ring of eight Gaussians (the data: tutorlib.toy2d)
# --------------------------------------------------------------------------------------------
@dataclass
class ModeCoverage:
    """What :func:`mode_coverage` measures."""

    modes_covered: int  #: modes with at least ``min_count`` high-quality samples
    high_quality: float  #: fraction of samples within ``3 std`` of their nearest mode
    counts: list[int]  #: high-quality samples per mode


def mode_coverage(
    samples: torch.Tensor, centers: torch.Tensor, std: float, min_count: int = 20
) -> ModeCoverage:
    r"""Mode coverage on a mixture of Gaussians (Metz et al. 2017; Srivastava et al. 2017).

    A sample is *high quality* if it lies within :math:`3\sigma` of its nearest centre
    :math:`\mu_k`; a mode is *covered* if at least ``min_count`` high-quality samples fall on it.
    Papers differ on ``min_count``; the default of 20 (of the usual 2500 samples) keeps a few
    stray samples from counting as a mode. With fewer samples, scale ``min_count`` down.

    Args:
        samples: ``(N, 2)``; centers: ``(K, 2)``; std: :math:`\sigma` of each Gaussian.
        min_count: high-quality samples a mode needs to count as covered.
    """
    for name, x in (("samples", samples), ("centers", centers)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must have shape (N, D) with N >= 1, got {tuple(x.shape)}")
    check_finite("samples", samples)
    check_finite("centers", centers)
    if samples.shape[1] != centers.shape[1]:
        raise ValueError(
            f"samples and centers must have the same dimension, got {samples.shape[1]} and {centers.shape[1]}"
        )
    std = check_positive("std", std)
    min_count = check_int("min_count", min_count)
    dist = torch.cdist(samples.detach().float(), centers.float())  # (N, K)
    nearest_dist, nearest = dist.min(dim=1)  # (N,), (N,)
    good = nearest_dist <= 3 * std  # (N,)
    counts = torch.bincount(nearest[good], minlength=centers.shape[0])  # (K,)
    return ModeCoverage(
        modes_covered=int((counts >= min_count).sum()),
        high_quality=good.float().mean().item(),
        counts=counts.tolist(),
    )


# --------------------------------------------------------------------------------------------
# 2. networks
# --------------------------------------------------------------------------------------------
class Generator(nn.Module):
    r"""An MLP generator :math:`G_\theta: \mathbb R^k \to \mathbb R^d`. Shapes: ``(B, k) -> (B, d)``.

    Args:
        latent_dim: :math:`k`; out_dim: :math:`d`; hidden: width of each hidden layer;
        layers: number of hidden layers;
        bounded: end with ``tanh`` (for data scaled to :math:`[-1, 1]`, e.g. images).
        skip: add ``skip * z`` to the output (needs ``latent_dim == out_dim``), so that the
            untrained generator already spreads its samples like the noise instead of
            squeezing them into a point; 0 turns it off.
    """

    def __init__(
        self,
        latent_dim: int = 2,
        out_dim: int = 2,
        hidden: int = 128,
        layers: int = 3,
        bounded: bool = False,
        skip: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("out_dim", out_dim), ("hidden", hidden),
                            ("layers", layers)):
            check_int(name, value)
        if skip and latent_dim != out_dim:
            raise ValueError(
                f"skip needs latent_dim == out_dim, got latent_dim={latent_dim}, out_dim={out_dim}"
            )
        if not isinstance(bounded, bool):
            raise TypeError(f"bounded must be a bool, got {type(bounded).__name__} {bounded!r}")
        self.latent_dim, self.skip = latent_dim, check_real("skip", skip)
        blocks: list[nn.Module] = []
        width = latent_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        blocks.append(nn.Linear(width, out_dim))
        if bounded:
            blocks.append(nn.Tanh())
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            got = getattr(z, "dtype", type(z).__name__)
            raise TypeError(f"z must be a floating-point torch.Tensor, got {got}")
        if z.shape[-1:] != (self.latent_dim,):
            raise ValueError(f"z must have shape (B, {self.latent_dim}), got {tuple(z.shape)}")
        out = self.net(z)  # (B, d)
        return out + self.skip * z if self.skip else out


#: The MLP critic/discriminator is :class:`tutorlib.ot.Critic` (one class for both chapters); this
#: chapter builds it with ReLU layers, ``Critic(2, 64, 3, activation="relu")``.
Critic = tot.Critic


# --------------------------------------------------------------------------------------------
# 3. losses: plain functions of the scores (each one is minimised by its player)
# --------------------------------------------------------------------------------------------
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The discriminator's side of the minimax game (binary cross-entropy), minimised:

    .. math::  -\,\mathbb E_x \log \sigma(\ell(x)) - \mathbb E_z \log\big(1 - \sigma(\ell(G(z)))\big)
               = \overline{\mathrm{softplus}(-\ell_{\text{real}})}
               + \overline{\mathrm{softplus}(\ell_{\text{fake}})}.

    Written with ``softplus`` (:math:`\log(1+e^u)`) so that confident logits do not overflow.
    The same loss serves the minimax and the non-saturating game.

    Args:
        real_logits: ``(B,)``; fake_logits: ``(B',)`` (logits, before the sigmoid).
    """
    real_logits = _as_scores(real_logits, "real_logits")
    fake_logits = _as_scores(fake_logits, "fake_logits")
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss_minimax(fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The generator's side of the original game, minimised: :math:`\mathbb E_z \log(1 - \sigma(\ell))`.

    :math:`\log(1 - \sigma(\ell)) = -\mathrm{softplus}(\ell)`, whose derivative
    :math:`-\sigma(\ell)` vanishes when the discriminator confidently rejects the fakes
    (:math:`\ell \to -\infty`): the loss *saturates* (Goodfellow et al. 2014, §3).
    """
    return -F.softplus(_as_scores(fake_logits, "fake_logits")).mean()


def generator_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    r"""Goodfellow et al.'s fix, minimised: :math:`-\mathbb E_z \log \sigma(\ell)`.

    Computed as :math:`\overline{\mathrm{softplus}(-\ell)}`.

    Same fixed point as :func:`generator_loss_minimax`, but the derivative :math:`-\sigma(-\ell)`
    tends to :math:`-1`, not :math:`0`, when the discriminator is confident.
    """
    return F.softplus(-_as_scores(fake_logits, "fake_logits")).mean()


def critic_loss_wgan(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    r"""The WGAN critic's loss, minimised: :math:`\overline{f(G(z))} - \overline{f(x)}`.

    Its negative is :func:`tutorlib.ot.critic_estimate`, the Kantorovich–Rubinstein objective,
    which estimates :math:`W_1` when :math:`f` is 1-Lipschitz (Arjovsky et al. 2017, Eq. 3).
    """
    real_scores = _as_scores(real_scores, "real_scores")
    fake_scores = _as_scores(fake_scores, "fake_scores")
    return fake_scores.mean() - real_scores.mean()


def generator_loss_wgan(fake_scores: torch.Tensor) -> torch.Tensor:
    r"""The WGAN generator's loss, minimised: :math:`-\overline{f(G(z))}` (WGAN and WGAN-GP)."""
    return -_as_scores(fake_scores, "fake_scores").mean()


def critic_loss_wgan_gp(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    gp_weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""WGAN-GP's critic loss: :func:`critic_loss_wgan` plus a gradient penalty.

    .. math::  \overline{f(G(z))} - \overline{f(x)} + \lambda\,\mathbb E(\lVert\nabla f(\hat x)\rVert - 1)^2

    The penalty is :func:`tutorlib.ot.gradient_penalty`, on random points :math:`\hat x` of the
    segments between paired real and fake samples; :math:`\lambda = 10` (Gulrajani et al. 2017,
    Algorithm 1).

    Args:
        critic: maps ``(B, d) -> (B,)``; real, fake: ``(B, d)``; gp_weight: :math:`\lambda \ge 0`.
    """
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be an nn.Module, got {type(critic).__name__}")
    for name, x in (("real", real), ("fake", fake)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(x).__name__}")
    if real.ndim != 2 or real.shape != fake.shape:
        raise ValueError(
            f"real and fake must both have shape (B, d), got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    gp_weight = check_positive("gp_weight", gp_weight, allow_zero=True)
    loss = critic_loss_wgan(critic(real), critic(fake))
    return loss + gp_weight * tot.gradient_penalty(critic, real, fake, generator)


def r1_penalty(critic: nn.Module, real: torch.Tensor) -> torch.Tensor:
    r"""Mescheder et al.'s (2018) R1 regulariser on real samples, to be added to the critic's loss:

    .. math::  \tfrac12\,\mathbb E_{x \sim p_{\text{data}}} \lVert \nabla_x D(x) \rVert^2

    (times a weight, their :math:`\gamma`, here ``GANConfig.r1_weight``). It penalises the
    discriminator's slope *on the data*, so that at the equilibrium (``fake`` = data, a flat
    discriminator) the game has no reason to rotate away; Mescheder et al. prove local convergence
    for the regularised game, where the plain one can circle for ever. Differentiable in the
    critic's parameters (the gradient is taken with ``create_graph=True``).

    Args:
        critic: maps ``(B, d) -> (B,)`` (logits); real: ``(B, d)`` data samples.

    Returns:
        A scalar tensor, :math:`\tfrac12` times the batch mean of :math:`\lVert \nabla_x D(x) \rVert^2`.
    """
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be an nn.Module, got {type(critic).__name__}")
    real = check_tensor("real", real, (None, None))
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(real).sum(), real, create_graph=True)  # (B, d)
    return 0.5 * grad.pow(2).sum(dim=1).mean()


def generator_grad_norm(
    generator_net: nn.Module, critic_net: nn.Module, loss_fn: object, z: torch.Tensor
) -> float:
    r""":math:`\lVert \nabla_\theta L_G \rVert_2`: how hard ``loss_fn`` pushes the generator's parameters.

    Args:
        generator_net: :math:`G_\theta`; critic_net: the (frozen) discriminator;
        loss_fn: a generator loss of the fake scores, e.g. :func:`generator_loss_minimax`;
        z: noise ``(B, latent_dim)``.

    Returns:
        The Euclidean norm of the gradient over all of the generator's parameters.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function of the fake scores, got {type(loss_fn).__name__}")
    for name, net in (("generator_net", generator_net), ("critic_net", critic_net)):
        if not isinstance(net, nn.Module):
            raise TypeError(f"{name} must be an nn.Module, got {type(net).__name__}")
    check_tensor("z", z, (None, None))
    params = [p for p in generator_net.parameters() if p.requires_grad]
    loss = loss_fn(critic_net(generator_net(z)))
    grads = torch.autograd.grad(loss, params)
    return torch.cat([g.flatten() for g in grads]).norm().item()


@torch.no_grad()
def clip_weights(module: nn.Module, clip: float = 0.01) -> None:
    r"""WGAN's crude Lipschitz constraint: clamp every parameter to :math:`[-c, c]` (in place).

    Arjovsky et al. (2017), Algorithm 1, with :math:`c = 0.01`.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    clip = check_positive("clip", clip)
    for p in module.parameters():
        p.clamp_(-clip, clip)


def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
    r"""One step of an exponential moving average of weights, in place on ``target``:

    .. math::  \bar\theta \leftarrow \gamma\,\bar\theta + (1 - \gamma)\,\theta,

    for every parameter (and floating-point buffer) :math:`\theta` of ``source`` and its twin
    :math:`\bar\theta` in ``target``. Called after every generator update, it gives the averaged
    generator of Karras et al. (2018, Appendix A.1, :math:`\gamma = 0.999`) and Yazici et al.
    (2019): the average of the last :math:`\approx 1/(1-\gamma)` iterates, which damps the
    oscillation of the game around its equilibrium. :math:`\gamma = 0` copies ``source``.

    Args:
        target: the averaged copy (e.g. ``copy.deepcopy(source)`` before training); changed in place.
        source: the network being trained; same architecture as ``target``.
        decay: :math:`\gamma \in [0, 1)`.
    """
    for name, net in (("target", target), ("source", source)):
        if not isinstance(net, nn.Module):
            raise TypeError(f"{name} must be an nn.Module, got {type(net).__name__}")
    decay = check_probability("decay", decay, allow_one=False)
    pairs = [*zip(target.state_dict().items(), source.state_dict().items(), strict=False)]
    if len(target.state_dict()) != len(source.state_dict()) or any(
        kt != ks or vt.shape != vs.shape for (kt, vt), (ks, vs) in pairs
    ):
        raise ValueError("target and source must have the same parameters and buffers (names and shapes)")
    with torch.no_grad():
        for (_, avg), (_, value) in pairs:
            if avg.is_floating_point():
                avg.lerp_(value, 1.0 - decay)  # avg + (1 - decay) * (value - avg)
            else:
                avg.copy_(value)  # integer buffers (e.g. counters) are copied, not averaged


# --------------------------------------------------------------------------------------------
# 4. the training loop
# --------------------------------------------------------------------------------------------
@dataclass
class GANConfig:
    """Hyperparameters of :func:`train_gan`. The defaults are WGAN-GP's (Gulrajani et al. 2017):
    Algorithm 1's :math:`n_{critic}`, λ, learning rate and β, and the batch of 256 of their toy
    script ``gan_toy.py`` (Algorithm 1 gives no batch size); :data:`PUBLISHED` holds the other
    games' published defaults."""

    loss: str = "wgan-gp"  #: one of :data:`LOSSES`
    steps: int = 1000  #: generator updates
    batch_size: int = 256  #: samples per batch (real and fake)
    n_critic: int = 5  #: critic updates per generator update
    optimizer: str = "adam"  #: "adam" or "rmsprop" (WGAN with clipping uses RMSprop)
    lr: float = 1e-4  #: learning rate of both players
    betas: tuple[float, float] = (0.0, 0.9)  #: Adam's (β1, β2)
    gp_weight: float = 10.0  #: λ, weight of the gradient penalty (WGAN-GP)
    clip: float = 0.01  #: c, weight-clipping bound (WGAN)
    #: weight of the R1 penalty (:func:`r1_penalty`, Mescheder et al. 2018) added to the critic's
    #: loss; 0 turns it off
    r1_weight: float = 0.0
    #: decay both learning rates linearly to 0 over ``steps`` (as Gulrajani et al.'s CIFAR-10 script)
    lr_decay: bool = False
    snapshot_every: int = 50  #: record a :class:`Snapshot` every this many generator updates
    snapshot_size: int = 256  #: samples per snapshot (fixed noise, so snapshots are comparable)
    #: decay γ of an exponential moving average of the generator's weights (:func:`ema_update`), kept in
    #: :attr:`GANRun.ema_generator` and sampled in every snapshot; 0 keeps no average
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self, {
            "loss": (check_choice, LOSSES), "optimizer": (check_choice, ("adam", "rmsprop")),
            "steps": check_int, "batch_size": check_int, "n_critic": check_int,
            "snapshot_every": check_int, "snapshot_size": check_int, "lr": check_positive,
            "clip": check_positive, "gp_weight": check_nonnegative, "betas": _check_betas,
            "ema_decay": _check_decay, "r1_weight": check_nonnegative,
        })
        if not isinstance(self.lr_decay, bool):
            raise TypeError(f"GANConfig.lr_decay must be a bool, got {self.lr_decay!r}")


def _check_decay(name: str, value: object) -> float:
    """A moving-average decay γ in [0, 1): 1 would never move the average."""
    return check_probability(name, value, allow_one=False)


def _check_betas(name: str, value: object) -> tuple[float, float]:
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise ValueError(f"{name} must be two numbers in [0, 1), got {value!r}")
    return tuple(check_real(f"{name} entries", b, 0.0, 1.0, high_open=True) for b in value)  # type: ignore


#: Published defaults per game: DCGAN's Adam settings (Radford et al. 2016) for the two classic
#: games, RMSprop with clipping for WGAN (Arjovsky et al. 2017), Algorithm 1 for WGAN-GP.
PUBLISHED: dict[str, dict[str, object]] = {
    "minimax": {"n_critic": 1, "optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.999)},
    "nonsaturating": {"n_critic": 1, "optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.999)},
    "wgan": {"n_critic": 5, "optimizer": "rmsprop", "lr": 5e-5, "clip": 0.01},
    "wgan-gp": {"n_critic": 5, "optimizer": "adam", "lr": 1e-4, "betas": (0.0, 0.9), "gp_weight": 10.0},
}


def published_config(loss: str, **overrides: object) -> GANConfig:
    """A :class:`GANConfig` with the published defaults of ``loss``, then ``overrides``."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return replace(GANConfig(loss=loss), **{**PUBLISHED[loss], **overrides})


@dataclass
class Snapshot:
    """The state of a run after ``step`` generator updates."""

    step: int
    fake: torch.Tensor  #: ``(snapshot_size, d)`` samples from the same noise at every snapshot
    real_scores: torch.Tensor  #: ``(snapshot_size,)`` the critic's scores on :attr:`GANRun.real_eval`
    fake_scores: torch.Tensor  #: ``(snapshot_size,)`` the critic's scores on :attr:`fake`
    #: ``(snapshot_size, d)`` the averaged generator's samples from the same noise (``None``
    #: without ``GANConfig.ema_decay``)
    ema_fake: torch.Tensor | None = None

    @property
    def critic_estimate(self) -> float:
        r"""Mean score of real minus fake, :math:`\overline{f(x)} - \overline{f(G(z))}`
        (:func:`tutorlib.ot.critic_estimate`): the critic's estimate of :math:`W_1` for WGANs."""
        return (self.real_scores.mean() - self.fake_scores.mean()).item()


@dataclass
class GANRun:
    """What :func:`train_gan` returns."""

    generator: Generator
    critic: nn.Module
    config: GANConfig
    real_eval: torch.Tensor  #: ``(snapshot_size, d)`` real samples the snapshots are scored against
    snapshots: list[Snapshot] = field(default_factory=list)
    critic_losses: list[float] = field(default_factory=list)
    generator_losses: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)  #: the generator's learning rate at each update
    seconds: float = 0.0
    #: the weight-averaged generator (:func:`ema_update`), ``None`` without ``GANConfig.ema_decay``
    ema_generator: nn.Module | None = None


def _check_config(config: GANConfig) -> None:
    if not isinstance(config, GANConfig):
        raise TypeError(f"config must be a GANConfig, got {type(config).__name__}")
    config.__post_init__()  # fields may have been changed after construction


def _optimizer(params: object, config: GANConfig) -> torch.optim.Optimizer:
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr)
    # fused: one kernel for all parameters, ~3x faster than the default loop for small nets
    return torch.optim.Adam(params, lr=config.lr, betas=config.betas, fused=True)


def train_gan(
    data: torch.Tensor,
    generator_net: Generator,
    critic_net: nn.Module,
    config: GANConfig | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> GANRun:
    r"""Play one of the four games of :data:`LOSSES` on ``data``; one loop for all of them.

    Each generator update follows ``n_critic`` critic (discriminator) updates on fresh batches.
    The critic's loss is :func:`discriminator_loss` for ``"minimax"``/``"nonsaturating"``,
    :func:`critic_loss_wgan` then :func:`clip_weights` for ``"wgan"``, and
    :func:`critic_loss_wgan_gp` for ``"wgan-gp"``, plus ``r1_weight`` times :func:`r1_penalty`
    if that is set. The generator's loss is
    :func:`generator_loss_minimax`, :func:`generator_loss_nonsaturating` or
    :func:`generator_loss_wgan`. Every ``snapshot_every`` updates (and at step 0) the run records
    samples from a fixed noise batch and the critic's estimate on them. With
    ``config.ema_decay`` :math:`> 0` it also keeps an average of the generator's weights
    (:func:`ema_update` after every generator update, starting from the initial weights) and
    records that generator's samples of the same noise.

    Args:
        data: the training set ``(N, d)``; batches are drawn with replacement.
        generator_net: maps ``(B, latent_dim) -> (B, d)``.
        critic_net: maps ``(B, d) -> (B,)`` (logits for the classic games, scores for WGANs).
        config: :class:`GANConfig` (WGAN-GP's defaults if ``None``).
        generator: the random source for batches, noise and penalty points (the networks'
            initialisation is up to the caller: seed it with ``tutorlib.seed_everything``).
        progress: show a tqdm progress bar.

    Returns:
        A :class:`GANRun` with both networks (in eval mode), the snapshots and the losses.
    """
    from tqdm.auto import trange

    if not isinstance(data, torch.Tensor) or not data.is_floating_point():
        raise TypeError(f"data must be a floating-point torch.Tensor, got {type(data).__name__}")
    if data.ndim != 2 or data.shape[0] < 2:
        raise ValueError(f"data must have shape (N, d) with N >= 2, got {tuple(data.shape)}")
    check_finite("data", data)
    for name, net in (("generator_net", generator_net), ("critic_net", critic_net)):
        if not isinstance(net, nn.Module):
            raise TypeError(f"{name} must be an nn.Module, got {type(net).__name__}")
    if not hasattr(generator_net, "latent_dim"):
        raise TypeError("generator_net needs a latent_dim attribute (use tutorlib.gan.Generator)")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    config = config or GANConfig()
    _check_config(config)

    k, n, b = generator_net.latent_dim, data.shape[0], config.batch_size
    opt_g = _optimizer(generator_net.parameters(), config)
    opt_c = _optimizer(critic_net.parameters(), config)
    z_eval = torch.randn(config.snapshot_size, k, generator=generator)
    real_eval = data[torch.randint(0, n, (config.snapshot_size,), generator=generator)]
    run = GANRun(generator_net, critic_net, config, real_eval)
    if config.ema_decay > 0:
        run.ema_generator = copy.deepcopy(generator_net).requires_grad_(False)

    optimizers = (opt_g, opt_c)
    schedules = [
        torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1.0 - i / config.steps))
        for opt in optimizers
    ] if config.lr_decay else []

    def snapshot(step: int) -> None:
        with torch.no_grad():
            fake = generator_net(z_eval)  # (S, d)
            ema_fake = None if run.ema_generator is None else run.ema_generator(z_eval)  # (S, d)
            run.snapshots.append(
                Snapshot(step, fake.clone(), critic_net(real_eval), critic_net(fake), ema_fake)
            )

    start = time.perf_counter()
    snapshot(0)
    for step in trange(1, config.steps + 1, desc=config.loss, disable=not progress, leave=False):
        for _ in range(config.n_critic):
            real = data[torch.randint(0, n, (b,), generator=generator)]  # (B, d)
            with torch.no_grad():
                fake = generator_net(torch.randn(b, k, generator=generator))  # (B, d)
            if config.loss == "wgan-gp":
                loss_c = critic_loss_wgan_gp(critic_net, real, fake, config.gp_weight, generator)
            elif config.loss == "wgan":
                loss_c = critic_loss_wgan(critic_net(real), critic_net(fake))
            else:
                loss_c = discriminator_loss(critic_net(real), critic_net(fake))
            if config.r1_weight > 0:
                loss_c = loss_c + config.r1_weight * r1_penalty(critic_net, real)
            opt_c.zero_grad()
            loss_c.backward()
            opt_c.step()
            if config.loss == "wgan":
                clip_weights(critic_net, config.clip)
        critic_net.requires_grad_(False)  # the generator's update needs no gradient for the critic
        scores = critic_net(generator_net(torch.randn(b, k, generator=generator)))  # (B,)
        if config.loss == "minimax":
            loss_g = generator_loss_minimax(scores)
        elif config.loss == "nonsaturating":
            loss_g = generator_loss_nonsaturating(scores)
        else:
            loss_g = generator_loss_wgan(scores)
        opt_g.zero_grad()
        loss_g.backward()
        run.learning_rates.append(opt_g.param_groups[0]["lr"])
        opt_g.step()
        if run.ema_generator is not None:
            ema_update(run.ema_generator, generator_net, config.ema_decay)
        critic_net.requires_grad_(True)
        for schedule in schedules:
            schedule.step()
        run.critic_losses.append(loss_c.item())
        run.generator_losses.append(loss_g.item())
        if step % config.snapshot_every == 0:
            snapshot(step)
    run.seconds = time.perf_counter() - start
    if run.ema_generator is not None:
        run.ema_generator.eval()
    generator_net.eval()
    critic_net.eval()
    return run
