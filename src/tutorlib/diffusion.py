r"""tutorlib.diffusion: denoising diffusion models, the noise schedule kept apart from the network.

This module starts with the network every diffusion chapter shares: :class:`TimeMLP`, an MLP
that takes a point :math:`x` and a noise level :math:`t` (one real number per sample) and
returns a vector of the same shape as :math:`x`. What that vector *means* (the noise
:math:`\epsilon`, the clean point :math:`x_0`, a velocity) is decided by the loss that trains
it, not by the network, as in diffusers where schedulers and models are separate objects.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tutorlib.validation import check_int

__all__ = ["TimeMLP", "time_embedding"]


def time_embedding(t: torch.Tensor, dim: int, max_frequency: float = 1000.0) -> torch.Tensor:
    r"""Sinusoidal features of a noise level: :math:`[\cos(\omega_k t), \sin(\omega_k t)]_k`.

    .. math::  \omega_k = \omega_{\max}^{k / (K - 1)}, \quad k = 0, \dots, K-1, \quad K = \text{dim}/2,

    so the frequencies run geometrically from 1 to ``max_frequency`` (the Transformer's
    positional encoding, Vaswani et al. 2017, as DDPM uses it for the step, Ho et al. 2020).
    Pass :math:`t` on a scale of about :math:`[0, 1]` (e.g. the step :math:`t/T`, or EDM's
    :math:`\tfrac14 \ln \sigma`): then the slowest feature changes once over the range and the
    fastest resolves steps of about :math:`1/\omega_{\max}`.

    Args:
        t: noise levels ``(B,)``.
        dim: an even number of features.
        max_frequency: :math:`\omega_{\max} \ge 1`.

    Returns:
        ``(B, dim)``.
    """
    if not isinstance(t, torch.Tensor) or t.ndim != 1:
        raise ValueError(f"t must be a 1-D tensor of noise levels (B,), got {getattr(t, 'shape', type(t))}")
    check_int("dim", dim, minimum=2)
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    if not max_frequency >= 1.0:
        raise ValueError(f"max_frequency must be >= 1, got {max_frequency}")
    k = dim // 2
    exponents = torch.arange(k, dtype=t.dtype, device=t.device) / max(k - 1, 1)
    omega = torch.exp(exponents * math.log(max_frequency))  # (K,)
    angles = t[:, None] * omega[None, :]  # (B, K)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)  # (B, 2K)


class TimeMLP(nn.Module):
    r"""An MLP :math:`f_\theta(x, t)` for vectors: the shared denoiser/velocity network for 2-D data.

    The input is :math:`[x, \mathrm{emb}(t)]` (see :func:`time_embedding`), followed by
    ``depth`` layers of width ``hidden`` with SiLU, and a linear map back to ``dim``.

    Shapes: ``x`` ``(B, dim)``, ``t`` ``(B,)`` or a float (the same level for the whole batch)
    -> ``(B, dim)``.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, embed_dim: int = 32,
                 max_frequency: float = 1000.0) -> None:
        super().__init__()
        check_int("dim", dim)
        check_int("hidden", hidden)
        check_int("depth", depth)
        check_int("embed_dim", embed_dim, minimum=2)
        if embed_dim % 2:
            raise ValueError(f"embed_dim must be even, got {embed_dim}")
        self.dim, self.embed_dim, self.max_frequency = dim, embed_dim, float(max_frequency)
        layers: list[nn.Module] = []
        width = dim + embed_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(getattr(x, 'shape', ()))}")
        if not isinstance(t, torch.Tensor):
            t = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},) to match x, got {tuple(t.shape)}")
        emb = time_embedding(t.to(x.dtype), self.embed_dim, self.max_frequency)  # (B, E)
        return self.net(torch.cat([x, emb], dim=1))
