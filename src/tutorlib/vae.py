r"""Likelihood models II: a VAE and its bounds on binary images, the code behind ``book/likelihood.md``.

A variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014) is a latent-variable
model: draw :math:`z \sim p(z) = \mathcal N(0, I_L)` and then every pixel independently,
:math:`x_i \sim \text{Bernoulli}(\sigma(\ell_i(z)))`, where the **decoder** :math:`\ell(z)` is an
MLP. Its likelihood :math:`p(x) = \int p(x \mid z) p(z)\,dz` has no closed form. An **encoder**
:math:`q(z \mid x) = \mathcal N(\mu(x), \operatorname{diag}\sigma^2(x))` proposes the latents
that explain :math:`x`, and gives lower bounds on :math:`\log p(x)`:

.. math::
    \text{ELBO}(x) &= \mathbb E_{q(z\mid x)} \log p(x \mid z) - \mathrm{KL}(q(z \mid x)\,\Vert\, p(z))
                    = \log p(x) - \mathrm{KL}(q(z\mid x)\,\Vert\, p(z \mid x)), \\
    \mathcal L_k(x) &= \mathbb E_{z_1..z_k \sim q} \log \frac1k \sum_{j=1}^k w_j,
    \qquad w_j = \frac{p(x, z_j)}{q(z_j \mid x)} ,

the second being the importance-weighted bound (IWAE, Burda et al. 2016):
:math:`\mathcal L_1 = \text{ELBO}`, :math:`\mathcal L_k \le \mathcal L_{k+1} \le \log p(x)`, and
:math:`\mathcal L_k \to \log p(x)` as :math:`k \to \infty`. Samples :math:`z = \mu + \sigma
\odot \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, I)` (the reparameterisation trick) make
the bounds differentiable in the encoder's parameters.

With a 2-D latent, :func:`log_marginal_quadrature` computes :math:`\log p(x)` by brute force on
a grid, the reference the bounds are checked against.

Legend (code name -> symbol): ``mu`` -> :math:`\mu(x)`, ``logvar`` -> :math:`\log\sigma^2(x)`,
``eps`` -> :math:`\varepsilon`, ``k`` -> :math:`k`, ``log_w`` -> :math:`\log w_j`,
``latent_dim`` -> :math:`L`.

References:
    Kingma, Welling (2014), "Auto-encoding variational Bayes", ICLR.
    Rezende, Mohamed, Wierstra (2014), "Stochastic backpropagation and approximate inference in
    deep generative models", ICML.
    Burda, Grosse, Salakhutdinov (2016), "Importance weighted autoencoders", ICLR.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tutorlib.likelihood import bernoulli_log_prob, check_binary_images
from tutorlib.validation import check_int, check_positive

__all__ = [
    "VAE",
    "elbo",
    "gaussian_kl_standard",
    "iwae_bound",
    "log_marginal_quadrature",
    "log_mean_exp",
    "log_normal",
    "reparameterize",
    "vae_loss",
    "vae_sample",
]

LOG_2PI = math.log(2 * math.pi)


def _check_tensor(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(x).__name__}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite, got a tensor containing NaN or inf")
    return x


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"{' and '.join(shapes)} must have the same shape (no broadcasting), got {shapes}")


# --------------------------------------------------------------------------------------------
# small pieces, each checked against torch in the tests
# --------------------------------------------------------------------------------------------
def log_mean_exp(a: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """:math:`\\log \\frac1k \\sum_j e^{a_j}` along ``dim``, computed stably.

    Subtract the maximum :math:`m` first, :math:`m + \\log \\frac1k \\sum_j e^{a_j - m}`, so
    that no :math:`e^{a_j}` overflows (log-weights of images are hundreds of nats) and at least
    one term is :math:`e^0 = 1`. Equal to ``torch.logsumexp(a, dim) - log k``.
    """
    a = _check_tensor("a", a)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -a.ndim <= dim < a.ndim:
        raise ValueError(
            f"dim must be an int in [{-a.ndim}, {a.ndim}) for a of shape {tuple(a.shape)}, got {dim!r}"
        )
    k = a.shape[dim]
    if k == 0:
        raise ValueError(f"a must have at least one entry along dim {dim}, got shape {tuple(a.shape)}")
    m = a.amax(dim=dim, keepdim=True)
    return (m + torch.log(torch.exp(a - m).mean(dim=dim, keepdim=True))).squeeze(dim)


def gaussian_kl_standard(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """:math:`\\mathrm{KL}(\\mathcal N(\\mu, \\operatorname{diag}\\sigma^2) \\Vert \\mathcal N(0, I))
    = \\tfrac12 \\sum_l (\\mu_l^2 + \\sigma_l^2 - \\log\\sigma_l^2 - 1)`.

    Args:
        mu, logvar: shape ``(..., L)`` each.

    Returns:
        The KL divergence in nats, shape ``(...)``.
    """
    mu, logvar = _check_tensor("mu", mu), _check_tensor("logvar", logvar)
    _check_same_shape(mu=mu, logvar=logvar)
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(-1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """:math:`\\log \\mathcal N(z; \\mu, \\operatorname{diag} e^{\\text{logvar}})`, summed over the last axis.

    ``mu`` and ``logvar`` have the same shape ``(..., L)``; ``z`` has that shape or is a stack of
    samples with extra leading axes (``(k, N, L)`` against ``(N, L)``), over which ``mu`` and
    ``logvar`` broadcast. Any other broadcasting is refused.
    """
    z, mu, logvar = _check_tensor("z", z), _check_tensor("mu", mu), _check_tensor("logvar", logvar)
    if z.ndim == 0 or mu.ndim == 0 or z.shape[-1] != mu.shape[-1] or mu.shape != logvar.shape:
        raise ValueError(f"z, mu, logvar: last axes must agree and mu, logvar match, got "
                         f"{tuple(z.shape)}, {tuple(mu.shape)}, {tuple(logvar.shape)}")
    if z.ndim < mu.ndim or z.shape[z.ndim - mu.ndim:] != mu.shape:
        raise ValueError(f"z must have the shape of mu {tuple(mu.shape)} or (k, *{tuple(mu.shape)}), "
                         f"got {tuple(z.shape)}")
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The reparameterisation trick: :math:`z = \\mu + \\sigma \\odot \\varepsilon`.

    :math:`\\sigma = \\exp(\\text{logvar} / 2)`.

    The randomness is in :math:`\\varepsilon \\sim \\mathcal N(0, I)`, which does not depend on
    the encoder, so :math:`\\partial z / \\partial \\mu = 1` and
    :math:`\\partial z / \\partial \\sigma = \\varepsilon`: gradients flow through the sample.

    Args:
        mu, logvar: ``(N, L)``.
        eps: ``(N, L)`` or a stack ``(k, N, L)`` of standard normal draws.
    """
    mu, logvar, eps = _check_tensor("mu", mu), _check_tensor("logvar", logvar), _check_tensor("eps", eps)
    _check_same_shape(mu=mu, logvar=logvar)
    if eps.shape[-mu.ndim:] != mu.shape:
        raise ValueError(
            f"eps must have shape {tuple(mu.shape)} or (k, *{tuple(mu.shape)}), got {tuple(eps.shape)}"
        )
    return mu + torch.exp(0.5 * logvar) * eps


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
class VAE(nn.Module):
    """Encoder :math:`x \\mapsto (\\mu, \\log\\sigma^2)` and Bernoulli decoder :math:`z \\mapsto \\ell`,
    each an MLP with two hidden ReLU layers of width ``hidden``.

    Args:
        dim: :math:`D`, pixels per image.
        latent_dim: :math:`L`.
        hidden: the hidden width of both MLPs.

    Shapes: ``encode``: ``(N, D) -> ((N, L), (N, L))``; ``decode``: ``(..., L) -> (..., D)`` logits.
    """

    def __init__(self, dim: int = 64, latent_dim: int = 2, hidden: int = 256) -> None:
        super().__init__()
        self.dim = check_int("dim", dim)
        self.latent_dim = check_int("latent_dim", latent_dim)
        hidden = check_int("hidden", hidden)
        self.encoder = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, dim),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = check_binary_images("x", x, self.dim)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (N, L) each
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        z = _check_tensor("z", z)
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have shape (..., {self.latent_dim}), got {tuple(z.shape)}")
        return self.decoder(z)


def _check_vae(vae: object) -> VAE:
    if not isinstance(vae, VAE):
        raise TypeError(f"vae must be a tutorlib.vae.VAE, got {type(vae).__name__}")
    return vae


# --------------------------------------------------------------------------------------------
# bounds on log p(x)
# --------------------------------------------------------------------------------------------
def elbo(
    vae: VAE, x: torch.Tensor, generator: torch.Generator | None = None, n_samples: int = 1
) -> torch.Tensor:
    """The evidence lower bound with the KL term in closed form.

    .. math::  \\text{ELBO}(x) \\approx \\frac1S \\sum_{s=1}^S \\log p(x \\mid z_s)
               - \\mathrm{KL}(q(z\\mid x) \\,\\Vert\\, \\mathcal N(0, I)),
               \\qquad z_s = \\mu(x) + \\sigma(x) \\odot \\varepsilon_s.

    Args:
        vae: the model.
        x: binary images ``(N, D)``.
        generator: draws :math:`\\varepsilon`.
        n_samples: :math:`S`, samples for the reconstruction term.

    Returns:
        ``(N,)`` estimates in nats (unbiased for the ELBO; differentiable).
    """
    vae = _check_vae(vae)
    n_samples = check_int("n_samples", n_samples)
    mu, logvar = vae.encode(x)
    eps = torch.randn((n_samples, *mu.shape), generator=generator)  # (S, N, L)
    z = reparameterize(mu, logvar, eps)
    reconstruction = bernoulli_log_prob(vae.decode(z), x.expand(n_samples, *x.shape)).mean(0)  # (N,)
    return reconstruction - gaussian_kl_standard(mu, logvar)


def vae_loss(vae: VAE, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training loss: minus the mean one-sample ELBO, nats per image (see :func:`tutorlib.likelihood.fit`)."""
    return -elbo(vae, x, generator).mean()


def _log_weights(vae: VAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Log importance weights :math:`\\log p(x\\mid z) + \\log p(z) - \\log q(z\\mid x)`, shape ``(k, N)``."""
    mu, logvar = vae.encode(x)
    z = reparameterize(mu, logvar, eps)  # (k, N, L)
    log_px_z = bernoulli_log_prob(vae.decode(z), x.expand(eps.shape[0], *x.shape))  # (k, N)
    log_pz = log_normal(z, torch.zeros_like(mu), torch.zeros_like(logvar))
    log_qz = log_normal(z, mu, logvar)
    return log_px_z + log_pz - log_qz


def iwae_bound(
    vae: VAE,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
    max_batch: int = 65_536,
) -> torch.Tensor:
    """One draw of the importance-weighted bound :math:`\\mathcal L_k` per image (Burda et al. 2016, Eq. 8).

    .. math::  \\hat{\\mathcal L}_k(x) = \\log \\frac1k \\sum_{j=1}^k
               \\frac{p(x \\mid z_j)\\, p(z_j)}{q(z_j \\mid x)}, \\qquad z_j \\sim q(z \\mid x).

    :math:`\\mathbb E\\,\\hat{\\mathcal L}_1 = \\text{ELBO}` (but with the KL term estimated by
    sampling); by Jensen, :math:`\\mathbb E\\,\\hat{\\mathcal L}_k \\le \\log p(x)`.

    Args:
        vae: the model.
        x: binary images ``(N, D)``.
        k: importance samples per image, :math:`\\ge 1`.
        generator: draws :math:`\\varepsilon`.
        max_batch: at most this many decoder evaluations at once (images are processed in
            chunks of ``max_batch // k``), which caps memory at about ``max_batch * D`` floats.

    Returns:
        ``(N,)`` in nats; differentiable (Burda et al. train on it).
    """
    vae = _check_vae(vae)
    x = check_binary_images("x", x, vae.dim)
    k = check_int("k", k)
    max_batch = check_int("max_batch", max_batch)
    chunk = max(1, max_batch // k)
    out = []
    for start in range(0, len(x), chunk):
        xc = x[start : start + chunk]
        eps = torch.randn((k, len(xc), vae.latent_dim), generator=generator)  # (k, n, L)
        out.append(log_mean_exp(_log_weights(vae, xc, eps), dim=0))
    return torch.cat(out)


def log_marginal_quadrature(
    vae: VAE, x: torch.Tensor, limit: float = 5.0, n_grid: int = 301
) -> torch.Tensor:
    """:math:`\\log p(x) = \\log \\int p(x\\mid z) p(z) dz` by the midpoint rule on a 2-D grid.

    Only for ``latent_dim == 2``: the decoder runs once on ``n_grid**2`` points of
    :math:`[-\\text{limit}, \\text{limit}]^2` (independent of :math:`x`), then
    :math:`\\log p(x\\mid z_g) = x \\cdot \\ell(z_g) - \\sum \\operatorname{softplus}(\\ell(z_g))` is one
    matrix product, and :math:`\\log p(x) \\approx \\operatorname{logsumexp}_g[\\log p(x \\mid z_g)
    + \\log p(z_g)] + \\log \\Delta^2`. The prior mass outside the square is :math:`< 10^{-5}`
    for ``limit = 5``; the grid must be fine enough to resolve the posterior (the tests compare
    two resolutions).

    Returns:
        ``(N,)`` in nats.
    """
    vae = _check_vae(vae)
    if vae.latent_dim != 2:
        raise ValueError(f"vae.latent_dim must be 2 for the grid quadrature, got {vae.latent_dim}")
    x = check_binary_images("x", x, vae.dim)
    limit = check_positive("limit", limit)
    n_grid = check_int("n_grid", n_grid, minimum=2)
    delta = 2 * limit / n_grid
    axis = -limit + delta * (torch.arange(n_grid) + 0.5)  # midpoints
    z = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)  # (G, 2)
    with torch.no_grad():
        logits = vae.decode(z)  # (G, D), once for all images
        log_pz = -0.5 * (LOG_2PI * 2 + z.pow(2).sum(-1))  # (G,)
        const = log_pz - torch.nn.functional.softplus(logits).sum(-1)  # (G,)
        out = []
        for start in range(0, len(x), 64):
            log_joint = x[start : start + 64] @ logits.T + const  # (n, G): log p(x|z_g) + log p(z_g)
            out.append(torch.logsumexp(log_joint, dim=1) + 2 * math.log(delta))
    return torch.cat(out)


def vae_sample(
    vae: VAE, n: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral sampling: :math:`z \\sim \\mathcal N(0, I)`, then the decoder.

    Returns:
        ``(means, pixels)``, both ``(n, D)``: the decoder's mean :math:`\\sigma(\\ell(z))` (grey
        values, what VAE papers usually show) and a Bernoulli draw of every pixel from it (an
        actual sample of the model).
    """
    vae = _check_vae(vae)
    n = check_int("n", n)
    z = torch.randn((n, vae.latent_dim), generator=generator)
    with torch.no_grad():
        means = torch.sigmoid(vae.decode(z))  # (n, D)
    return means, torch.bernoulli(means, generator=generator)
