"""Autoregressive flows: MADE, and the two ways to use it, MAF and IAF.

An autoregressive flow transforms feature :math:`i` by a scale and a shift that depend only on
the features before it,

.. math::  x_i = z_i\\, e^{s_i} + t_i, \\qquad (s_i, t_i) = \\text{function of the first } i - 1
           \\text{ features},

so the Jacobian is triangular and :math:`\\log|\\det| = \\sum_i s_i`, as in a coupling layer,
but *every* feature is transformed, each by a function of all the ones before it. MADE (Germain
et al. 2015) computes all :math:`(s_i, t_i)` in **one** pass of a network whose weights are
masked so that output :math:`i` never sees inputs :math:`i, i+1, \\dots`. Which side the
conditioning sits on decides what is fast:

- :class:`MAF` (Papamakarios et al. 2017) conditions on the *data*,
  :math:`(s_i, t_i) = \\text{MADE}(x)_i`: the density, :math:`z = (x - t) \\odot e^{-s}`, is one
  pass; sampling must produce :math:`x_1`, then :math:`x_2`, ...: :math:`D` passes.
- :class:`IAF` (Kingma et al. 2016) conditions on the *noise*,
  :math:`(s_i, t_i) = \\text{MADE}(z)_i`: sampling is one pass; the density of a given
  :math:`x` must recover :math:`z_1`, then :math:`z_2`, ...: :math:`D` passes.

Both follow the :class:`tutorlib.flows.FlowLayer` interface (``forward``: data -> latent with
the log-determinant; ``inverse``: latent -> data), and count the network passes they make in
``made.passes``.

Legend (code name -> symbol): ``log_scale`` -> :math:`s`, ``shift`` -> :math:`t`,
``degrees`` -> :math:`m(k)` (MADE's connectivity numbers).

References:
    Germain, Gregor, Murray, Larochelle (2015), "MADE: Masked autoencoder for distribution estimation".
    Papamakarios, Pavlakou, Murray (2017), "Masked autoregressive flow for density estimation".
    Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling (2016), "Improved variational inference
    with inverse autoregressive flow".
"""

from __future__ import annotations

import torch
from torch import nn

from tutorlib.flows import FlowLayer
from tutorlib.validation import check_int, check_positive, check_tensor

__all__ = ["IAF", "MADE", "MAF", "MaskedLinear"]


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 ``mask`` ``(out, in)``."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor) -> None:
        super().__init__(check_int("in_features", in_features), check_int("out_features", out_features))
        mask = check_tensor("mask", mask, (out_features, in_features), dtype=None)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_features) -> (N, out_features)``: :math:`x (W \\odot M)^\\top + b`."""
        x = check_tensor("x", x, ("N", self.in_features), finite=False)
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """A masked MLP that outputs a bounded log-scale and a shift per feature, autoregressively.

    Input :math:`j` gets degree :math:`j` (1-based), hidden unit :math:`k` a degree
    :math:`m(k) \\in \\{1, \\dots, D-1\\}` (cycling), output :math:`i` degree :math:`i`. A weight
    from degree :math:`a` into a hidden unit of degree :math:`b` is kept if :math:`b \\ge a`, into
    an output of degree :math:`i` if :math:`i > b`. Every path from input :math:`j` to output
    :math:`i` then needs :math:`j \\le m \\lt i`: output :math:`i` depends on :math:`x_{<i}` only,
    and output 1 is a constant.

    Args:
        dim: :math:`D`.
        hidden, depth: width and number of hidden (SiLU) layers.
        scale_bound: :math:`b`; the log-scale is :math:`b \\tanh(\\hat s / b)`.

    Shapes: ``(N, D) -> (log_scale (N, D), shift (N, D))``. ``passes`` counts the calls.
    """

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2, scale_bound: float = 2.0) -> None:
        super().__init__()
        self.dim = check_int("dim", dim)
        check_int("hidden", hidden)
        check_int("depth", depth)
        self.scale_bound = check_positive("scale_bound", scale_bound)
        d_in = torch.arange(1, dim + 1)
        d_hidden = torch.arange(hidden) % max(dim - 1, 1) + 1
        layers: list[nn.Module] = []
        previous = d_in
        for _ in range(depth):
            layers += [MaskedLinear(len(previous), hidden, d_hidden[:, None] >= previous[None]), nn.SiLU()]
            previous = d_hidden
        d_out = torch.cat([d_in, d_in])  # log-scale and shift of feature i both have degree i
        layers.append(MaskedLinear(hidden, 2 * dim, d_out[:, None] > previous[None]))
        self.net = nn.Sequential(*layers)
        self.passes = 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = check_tensor("x", x, ("N", self.dim), finite=False)
        self.passes += 1
        raw, shift = self.net(x).chunk(2, dim=1)
        return self.scale_bound * torch.tanh(raw / self.scale_bound), shift


class MAF(FlowLayer):
    """Masked autoregressive flow: :math:`z = (x - t(x)) \\odot e^{-s(x)}`, one MADE pass.

    ``forward`` (data -> latent) is one pass, :math:`\\log|\\det| = -\\sum_i s_i(x_{<i})`;
    ``inverse`` (sampling) fills in :math:`x_1, \\dots, x_D` one at a time, :math:`D` passes.
    """

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2, scale_bound: float = 2.0) -> None:
        super().__init__(dim)
        self.made = MADE(dim, hidden, depth, scale_bound)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, shift = self.made(x)
        return (x - shift) * torch.exp(-log_scale), -log_scale.sum(dim=1)

    def _inverse(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.zeros_like(z)
        for i in range(self.dim):  # x_i needs x_1 .. x_{i-1}: one pass each
            log_scale, shift = self.made(x)
            x = x.clone()
            x[:, i] = z[:, i] * torch.exp(log_scale[:, i]) + shift[:, i]
        return x


class IAF(FlowLayer):
    """Inverse autoregressive flow: :math:`x = z \\odot e^{s(z)} + t(z)`, one MADE pass to sample.

    ``inverse`` (sampling) is one pass; ``forward`` (the density of a given :math:`x`) recovers
    :math:`z_1, \\dots, z_D` one at a time, :math:`D` passes, with
    :math:`\\log|\\det| = -\\sum_i s_i(z_{<i})`.
    """

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2, scale_bound: float = 2.0) -> None:
        super().__init__(dim)
        self.made = MADE(dim, hidden, depth, scale_bound)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros_like(x)
        log_scales = []
        for i in range(self.dim):  # z_i needs z_1 .. z_{i-1}: one pass each
            log_scale, shift = self.made(z)
            z = z.clone()
            z[:, i] = (x[:, i] - shift[:, i]) * torch.exp(-log_scale[:, i])
            log_scales.append(log_scale[:, i])
        return z, -torch.stack(log_scales, dim=1).sum(dim=1)

    def _inverse(self, z: torch.Tensor) -> torch.Tensor:
        log_scale, shift = self.made(z)
        return z * torch.exp(log_scale) + shift
