"""From RNNs to Transformers and back: the code behind ``book/rnn_to_transformer.md``.

An RNN reads a sequence one step at a time and carries a hidden state,

.. math::  h_t = f(x_t, h_{t-1}),

so step :math:`t` must wait for step :math:`t-1`, and the gradient from :math:`h_T` back to
:math:`h_t` is a product of :math:`T-t` Jacobians. Attention lets every position read every
other position in one matrix product,

.. math::  \\mathrm{Attention}(Q, K, V) = \\mathrm{softmax}\\!\\Big(\\frac{QK^\\top}{\\sqrt{d}}\\Big) V,

at a cost quadratic in the length :math:`N`. Linear attention replaces the softmax by a feature
map :math:`\\phi`, so :math:`(\\phi(Q)\\phi(K)^\\top)V = \\phi(Q)(\\phi(K)^\\top V)` costs
:math:`O(N)`, and its causal form is again an RNN, with a matrix-valued state.

Every module here is written in plain tensor code and uses the parameter names of its PyTorch
counterpart (``nn.RNNCell``, ``nn.LSTMCell``, ``nn.GRUCell``, ``nn.MultiheadAttention``,
``nn.TransformerEncoderLayer``), so ``mine.load_state_dict(theirs.state_dict())`` copies the
weights and the two give the same outputs and gradients.

Legend (code name -> symbol): ``x`` -> :math:`x_t`, ``h`` -> :math:`h_t`, ``c`` -> the LSTM
cell :math:`c_t`, ``q, k, v`` -> :math:`Q, K, V`, ``d`` -> the head width :math:`d`,
``n`` -> the length :math:`N`, ``s, z`` -> the linear-attention state :math:`S_i, z_i`.

References:
    Elman (1990), Finding structure in time. Hochreiter & Schmidhuber (1997), Long short-term
    memory. Cho et al. (2014), GRU. Vaswani et al. (2017), Attention is all you need.
    Katharopoulos et al. (2020), Transformers are RNNs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tutorlib.validation import (
    check_choice,
    check_fields,
    check_finite,
    check_indices,
    check_int,
    check_positive,
    check_real,
    check_tensor,
    optional,
)

__all__ = [
    "AssociativeRecallModel",
    "GRUCell",
    "LSTMCell",
    "MultiHeadAttention",
    "RNNCell",
    "RecallConfig",
    "RecurrentClassifier",
    "TransformerClassifier",
    "TransformerEncoderBlock",
    "associative_recall_accuracy",
    "attention_mask",
    "elu_feature_map",
    "gated_linear_attention",
    "gated_linear_attention_recurrent",
    "graph_depth",
    "linear_attention",
    "linear_attention_recurrent",
    "make_associative_recall_batch",
    "make_model",
    "make_recall_task",
    "min_time",
    "scale_spectral_radius",
    "scaled_dot_product_attention",
    "sinusoidal_positional_encoding",
    "state_jacobian_norms",
    "train_associative_recall",
    "train_recall",
    "train_recall_curve",
    "train_step_time",
    "unroll",
]

# --------------------------------------------------------------------------------------------
# argument checks shared by the public functions
# --------------------------------------------------------------------------------------------


def _tensor(name: str, x: object, ndim: int | None = None, shape_hint: str = "") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor{shape_hint}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions{shape_hint}, got shape {tuple(x.shape)}")
    return x


def _check_input(x: object, input_size: int) -> torch.Tensor:
    x = _tensor("x", x, 2, " of shape (B, input_size)")
    if x.shape[1] != input_size:
        raise ValueError(f"x must have shape (B, {input_size}), got {tuple(x.shape)}")
    return x


def _check_state(name: str, h: object, batch: int, hidden_size: int) -> torch.Tensor:
    h = _tensor(name, h, 2, " of shape (B, hidden_size)")
    if h.shape != (batch, hidden_size):
        raise ValueError(f"{name} must have shape ({batch}, {hidden_size}), got {tuple(h.shape)}")
    return h


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """:math:`x W^\\top + b`, the affine map every cell is made of (``F.linear`` written out)."""
    out = x @ weight.T
    return out if bias is None else out + bias


def _init_cell(cell: nn.Module, input_size: int, hidden_size: int, gates: int) -> None:
    """Give ``cell`` PyTorch's RNN-cell parameters, initialised as PyTorch does.

    ``weight_ih`` ``(G·H, D)``, ``weight_hh`` ``(G·H, H)``, ``bias_ih`` and ``bias_hh`` ``(G·H,)``,
    with the :math:`G` gates stacked in PyTorch's order; every entry uniform in :math:`\\pm 1/\\sqrt{H}`.
    """
    cell.input_size = check_int("input_size", input_size)
    cell.hidden_size = check_int("hidden_size", hidden_size)
    H, D = hidden_size, input_size
    cell.weight_ih = nn.Parameter(torch.empty(gates * H, D))
    cell.weight_hh = nn.Parameter(torch.empty(gates * H, H))
    cell.bias_ih = nn.Parameter(torch.empty(gates * H))
    cell.bias_hh = nn.Parameter(torch.empty(gates * H))
    bound = 1.0 / math.sqrt(H)
    with torch.no_grad():
        for p in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh):
            p.uniform_(-bound, bound)


# --------------------------------------------------------------------------------------------
# 1. recurrent cells
# --------------------------------------------------------------------------------------------
class RNNCell(nn.Module):
    """Elman's RNN cell: :math:`h_t = \\tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`.

    Shapes: ``x`` is ``(B, input_size)``, ``h`` and the output are ``(B, hidden_size)``.
    Parameters are named like ``nn.RNNCell`` (``weight_ih`` is ``(H, D)``, ``weight_hh`` is
    ``(H, H)``), so its state dict loads as is.

    References:
        Elman (1990), Finding structure in time.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        _init_cell(self, input_size, hidden_size, gates=1)

    def init_state(self, x: torch.Tensor) -> torch.Tensor:
        """The zero state :math:`h_0`, shape ``(B, H)``."""
        x = _check_input(x, self.input_size)
        return x.new_zeros(x.shape[0], self.hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        x = _check_input(x, self.input_size)
        h = self.init_state(x) if h is None else _check_state("h", h, x.shape[0], self.hidden_size)
        return torch.tanh(_linear(x, self.weight_ih, self.bias_ih) + _linear(h, self.weight_hh, self.bias_hh))


class LSTMCell(nn.Module):
    """The LSTM cell: gates decide what the cell :math:`c_t` forgets, writes and shows.

    .. math::
        \\begin{aligned}
        i, f, g, o &= \\text{split}(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}) \\\\
        c_t &= \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g) \\\\
        h_t &= \\sigma(o) \\odot \\tanh(c_t)
        \\end{aligned}

    The additive update of :math:`c_t` is the point: :math:`\\partial c_t/\\partial c_{t-1}
    = \\mathrm{diag}(\\sigma(f))`, so with the forget gate open the gradient passes unchanged.
    The four gates are stacked in PyTorch's order ``i, f, g, o``: ``weight_ih`` is ``(4H, D)``.
    The state is the pair ``(h, c)``, each ``(B, H)``.

    References:
        Hochreiter & Schmidhuber (1997), Long short-term memory.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        _init_cell(self, input_size, hidden_size, gates=4)

    def init_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The zero state :math:`(h_0, c_0)`, each ``(B, H)``."""
        x = _check_input(x, self.input_size)
        zeros = x.new_zeros(x.shape[0], self.hidden_size)
        return zeros, zeros.clone()

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_input(x, self.input_size)
        if state is None:
            state = self.init_state(x)
        if not isinstance(state, tuple) or len(state) != 2:
            raise TypeError(f"state must be a tuple (h, c), got {type(state).__name__}")
        h = _check_state("h", state[0], x.shape[0], self.hidden_size)
        c = _check_state("c", state[1], x.shape[0], self.hidden_size)
        gates = _linear(x, self.weight_ih, self.bias_ih) + _linear(h, self.weight_hh, self.bias_hh)
        i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class GRUCell(nn.Module):
    """The GRU cell: a reset gate :math:`r` and an update gate :math:`z` on one state.

    .. math::
        \\begin{aligned}
        r &= \\sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\\\
        z &= \\sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\\\
        n &= \\tanh\\big(W_{in} x_t + b_{in} + r \\odot (W_{hn} h_{t-1} + b_{hn})\\big) \\\\
        h_t &= (1 - z) \\odot n + z \\odot h_{t-1}
        \\end{aligned}

    Gates are stacked in PyTorch's order ``r, z, n``: ``weight_ih`` is ``(3H, D)``.

    References:
        Cho et al. (2014), Learning phrase representations using RNN encoder-decoder.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        _init_cell(self, input_size, hidden_size, gates=3)

    def init_state(self, x: torch.Tensor) -> torch.Tensor:
        """The zero state :math:`h_0`, shape ``(B, H)``."""
        x = _check_input(x, self.input_size)
        return x.new_zeros(x.shape[0], self.hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        x = _check_input(x, self.input_size)
        h = self.init_state(x) if h is None else _check_state("h", h, x.shape[0], self.hidden_size)
        xr, xz, xn = _linear(x, self.weight_ih, self.bias_ih).chunk(3, dim=1)  # 3 x (B, H)
        hr, hz, hn = _linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)  # 3 x (B, H)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h


Cell = RNNCell | LSTMCell | GRUCell


def unroll(cell: Cell, x: torch.Tensor) -> torch.Tensor:
    """Run a cell over a sequence, one step after the other, from the zero state.

    This loop is what makes RNNs slow on parallel hardware: step :math:`t` needs
    :math:`h_{t-1}`, so the :math:`N` steps cannot run at the same time.

    Args:
        cell: an :class:`RNNCell`, :class:`LSTMCell` or :class:`GRUCell`.
        x: inputs, shape ``(B, N, input_size)``.

    Returns:
        The hidden states :math:`h_1, \\dots, h_N`, shape ``(B, N, hidden_size)``.
    """
    if not isinstance(cell, RNNCell | LSTMCell | GRUCell):
        raise TypeError(f"cell must be an RNNCell, LSTMCell or GRUCell, got {type(cell).__name__}")
    x = check_finite("x", _tensor("x", x, 3, " of shape (B, N, input_size)"))
    return _unroll(cell, x)


def _unroll(cell: Cell, x: torch.Tensor) -> torch.Tensor:
    """:func:`unroll` without the NaN scan (called in every forward pass of a classifier)."""
    state = cell.init_state(x[:, 0])
    hs = []
    for t in range(x.shape[1]):
        state = cell(x[:, t], state)
        hs.append(state[0] if isinstance(state, tuple) else state)
    return torch.stack(hs, dim=1)  # (B, N, H)


def state_jacobian_norms(
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], xs: torch.Tensor, s0: torch.Tensor
) -> torch.Tensor:
    """:math:`\\lVert \\partial s_T / \\partial s_t \\rVert_2` for :math:`t = T, T-1, \\dots, 0`.

    By the chain rule the Jacobian from step :math:`t` to step :math:`T` is a product,

    .. math::  \\frac{\\partial s_T}{\\partial s_t} = \\prod_{k=t+1}^{T} J_k, \\qquad
               J_k = \\frac{\\partial s_k}{\\partial s_{k-1}},

    whose norm shrinks or grows geometrically when the :math:`J_k` are contracting or expanding.
    This is the gradient that reaches :math:`s_t` from a loss at step :math:`T`.

    Args:
        step: one recurrence step ``s_k = step(x_k, s_{k-1})`` on a single sequence: ``x_k`` of
            shape ``(D,)`` and ``s`` of shape ``(S,)`` (for an LSTM, ``s`` is ``h`` and ``c``
            concatenated).
        xs: the inputs, shape ``(T, D)``.
        s0: the initial state, shape ``(S,)``.

    Returns:
        A ``(T + 1,)`` tensor whose entry ``j`` is the spectral norm of
        :math:`\\partial s_T / \\partial s_{T-j}` (entry 0 is the identity, norm 1).
    """
    if not callable(step):
        raise TypeError(f"step must be a function step(x, s) -> s, got {type(step).__name__}")
    xs = check_finite("xs", _tensor("xs", xs, 2, " of shape (T, D)"))
    s0 = check_finite("s0", _tensor("s0", s0, 1, " of shape (S,)"))
    states = [s0]
    with torch.no_grad():
        for x in xs:
            states.append(step(x, states[-1]))
    jac = torch.eye(s0.shape[0], dtype=s0.dtype)  # d s_T / d s_T
    norms = [torch.linalg.matrix_norm(jac, ord=2)]
    for k in range(len(xs), 0, -1):  # J_k = d s_k / d s_{k-1}, evaluated along the trajectory
        j_k = torch.func.jacrev(lambda s, x=xs[k - 1]: step(x, s))(states[k - 1])  # (S, S)
        jac = jac @ j_k
        norms.append(torch.linalg.matrix_norm(jac, ord=2))
    return torch.stack(norms).detach()  # a measurement, not part of a training graph


def scale_spectral_radius(weight: torch.Tensor, radius: float) -> torch.Tensor:
    """``weight`` rescaled so that its largest absolute eigenvalue is ``radius``.

    Args:
        weight: a square matrix ``(H, H)``.
        radius: the target spectral radius :math:`\\rho > 0`.
    """
    weight = _tensor("weight", weight, 2, " of shape (H, H)")
    if weight.shape[0] != weight.shape[1]:
        raise ValueError(f"weight must be square, got shape {tuple(weight.shape)}")
    check_finite("weight", weight)  # LAPACK's eigensolver can crash the process on NaN
    radius = check_positive("radius", radius)
    rho = torch.linalg.eigvals(weight).abs().max()
    if rho == 0:
        raise ValueError("weight has spectral radius 0 (nilpotent or zero): it cannot be rescaled")
    return weight * (radius / rho)


# --------------------------------------------------------------------------------------------
# 2. attention
# --------------------------------------------------------------------------------------------
def attention_mask(
    n_q: int, n_k: int, *, causal: bool = False, key_padding_mask: torch.Tensor | None = None
) -> torch.Tensor | None:
    """Boolean mask of the scores to hide (``True`` = the query may not look at this key).

    Args:
        n_q, n_k: numbers of queries and keys.
        causal: hide key :math:`j` from query :math:`i` when :math:`j > i` (the future).
        key_padding_mask: ``(B, n_k)``, ``True`` where a key is padding.

    Returns:
        ``None`` when nothing is masked, else a mask that broadcasts to ``(B, H, n_q, n_k)``.
    """
    check_int("n_q", n_q)
    check_int("n_k", n_k)
    mask = None
    if causal:
        mask = torch.ones(n_q, n_k, dtype=torch.bool).triu(diagonal=1)  # (n_q, n_k)
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            raise TypeError("key_padding_mask must be a bool tensor of shape (B, n_k), True = padding")
        if key_padding_mask.ndim != 2 or key_padding_mask.shape[1] != n_k:
            raise ValueError(
                f"key_padding_mask must have shape (B, {n_k}), got {tuple(key_padding_mask.shape)}"
            )
        pad = key_padding_mask[:, None, None, :]  # (B, 1, 1, n_k)
        if mask is not None:
            mask = mask.to(pad.device)
        mask = pad if mask is None else (mask | pad)
    return mask


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention with the scores and weights in plain sight: tutorlib's one softmax attention.

    .. math::  S = \\tau\\, Q K^\\top \\ \\big(\\tau = 1/\\sqrt d\\big), \\qquad
               A_{ij} = \\frac{e^{S_{ij}}}{\\sum_{j'} e^{S_{ij'}}}, \\qquad O = A V,

    where masked scores are set to :math:`-\\infty` first, so their weight is exactly 0.
    Row :math:`i` of :math:`A` says how much query :math:`i` reads from each key. The two
    :math:`n_q \\times n_k` matrices :math:`S` and :math:`A` are materialised: this is the
    "standard attention" that FlashAttention avoids (``tutorlib.flash.naive_attention`` calls
    this function), and the reference that ``tutorlib.flash`` and the tests compare with
    PyTorch's ``scaled_dot_product_attention``.

    Conventions (PyTorch's): shapes ``(B, H, N, d)`` = batch, heads, length, head width; a mask
    entry ``True`` means *hidden*. The causal mask is aligned at the top-left corner, as in
    ``scaled_dot_product_attention(is_causal=True)``: query :math:`i` sees keys
    :math:`j \\le i`, also when :math:`n_q \\ne n_k` (FlashAttention-2's kernels align it at the
    bottom right instead). A query whose keys are all hidden gets NaN weights.

    Args:
        q: queries ``(B, H, n_q, d)``; k: keys ``(B, H, n_k, d)``; v: values ``(B, H, n_k, d_v)``.
        causal: query :math:`i` sees keys :math:`j \\le i` only.
        key_padding_mask: ``(B, n_k)`` bool, ``True`` where a key is padding.
        scale: :math:`\\tau > 0`; ``None`` means :math:`1/\\sqrt d`.

    Returns:
        ``(O, A)``: the output ``(B, H, n_q, d_v)`` and the weights ``(B, H, n_q, n_k)``.

    References:
        Vaswani et al. (2017), Attention is all you need, eq. (1).
    """
    q = _tensor("q", q, 4, " of shape (B, H, n_q, d)")
    k = _tensor("k", k, 4, " of shape (B, H, n_k, d)")
    v = _tensor("v", v, 4, " of shape (B, H, n_k, d_v)")
    if k.shape[:2] != q.shape[:2] or k.shape[-1] != q.shape[-1] or v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"q, k, v must be (B, H, n_q, d), (B, H, n_k, d), (B, H, n_k, d_v); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    tau = 1.0 / math.sqrt(q.shape[-1]) if scale is None else check_positive("scale", scale)
    n_q, n_k = q.shape[2], k.shape[2]
    scores = (q @ k.transpose(-2, -1)) * tau  # (B, H, n_q, n_k): written to memory
    mask = attention_mask(n_q, n_k, causal=causal, key_padding_mask=key_padding_mask)
    if mask is not None:
        scores = scores.masked_fill(mask.to(scores.device), float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, H, n_q, n_k): rows sum to 1, also in memory
    return weights @ v, weights  # (B, H, n_q, d_v)


class _Affine(nn.Module):
    """Storage for ``weight (out, in)`` and ``bias (out,)``, named like ``nn.Linear``."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _linear(x, self.weight, self.bias)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, written out: project, split into heads, attend, merge, project.

    .. math::  \\mathrm{head}_h = \\mathrm{Attention}(X_q W^Q_h, X_k W^K_h, X_v W^V_h), \\qquad
               \\mathrm{MHA} = [\\mathrm{head}_1, \\dots, \\mathrm{head}_H]\\, W^O .

    Each head works in :math:`d = E / H` dimensions, so :math:`H` heads cost about what one
    full-width head costs. Batch-first shapes: inputs ``(B, N, E)``. Parameters are named like
    ``nn.MultiheadAttention`` (``in_proj_weight`` stacks :math:`W^Q, W^K, W^V` as ``(3E, E)``).

    References:
        Vaswani et al. (2017), Attention is all you need, section 3.2.2.
    """

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.embed_dim = check_int("embed_dim", embed_dim)
        self.num_heads = check_int("num_heads", num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        nn.init.xavier_uniform_(self.in_proj_weight)
        self.out_proj = _Affine(embed_dim, embed_dim)
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        causal: bool = False,
        key_padding_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(out (B, n_q, E), weights (B, H, n_q, n_k))``; ``key, value`` default to ``query``."""
        key = query if key is None else key
        value = key if value is None else value
        E, H = self.embed_dim, self.num_heads
        for name, t in (("query", query), ("key", key), ("value", value)):
            _tensor(name, t, 3, f" of shape (B, N, {E})")
            if t.shape[-1] != E:
                raise ValueError(f"{name} must have last dimension embed_dim={E}, got {tuple(t.shape)}")
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)  # 3 x (E, E)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)  # 3 x (E,)

        def split(x: torch.Tensor) -> torch.Tensor:
            B, N, _ = x.shape
            return x.view(B, N, H, E // H).transpose(1, 2)  # (B, H, N, d)

        q = split(_linear(query, w_q, b_q))
        k = split(_linear(key, w_k, b_k))
        v = split(_linear(value, w_v, b_v))
        out, weights = scaled_dot_product_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask)
        B, _, n_q, d = out.shape
        out = out.transpose(1, 2).reshape(B, n_q, H * d)  # (B, n_q, E): heads side by side
        return self.out_proj(out), weights


def sinusoidal_positional_encoding(n: int, d_model: int) -> torch.Tensor:
    """The fixed positional code of the Transformer.

    .. math::  P_{t, 2i} = \\sin\\!\\big(t / 10000^{2i/d}\\big), \\qquad
               P_{t, 2i+1} = \\cos\\!\\big(t / 10000^{2i/d}\\big),

    one sine/cosine pair per frequency, from one turn per :math:`2\\pi` positions down to one
    per :math:`2\\pi \\cdot 10000`. Attention alone is blind to order; adding :math:`P` to the
    inputs tells each token where it is.

    Args:
        n: number of positions; d_model: width :math:`d` (even).

    Returns:
        ``(n, d_model)``.
    """
    n, d_model = check_int("n", n), check_int("d_model", d_model)
    if d_model % 2:
        raise ValueError(f"d_model must be even (sine/cosine pairs), got {d_model}")
    t = torch.arange(n, dtype=torch.float64)[:, None]  # (n, 1)
    freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d/2,)
    pe = torch.empty(n, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(t * freq)
    pe[:, 1::2] = torch.cos(t * freq)
    return pe.to(torch.get_default_dtype())


class _LayerNorm(nn.Module):
    """:math:`\\gamma \\odot (x - \\mu)/\\sqrt{\\sigma^2 + \\epsilon} + \\beta` over the last axis."""

    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        var = x.var(-1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + self.eps) * self.weight + self.bias


class TransformerEncoderBlock(nn.Module):
    """One pre-norm Transformer encoder block: attention, then a feed-forward net, both residual.

    .. math::
        \\begin{aligned}
        X &\\leftarrow X + \\mathrm{MHA}(\\mathrm{LN}_1(X)) \\\\
        X &\\leftarrow X + W_2\\, \\mathrm{ReLU}(W_1 \\mathrm{LN}_2(X) + b_1) + b_2
        \\end{aligned}

    Shapes: ``(B, N, d_model)`` in and out. Parameters are named like
    ``nn.TransformerEncoderLayer(..., norm_first=True, batch_first=True)`` with dropout 0.

    References:
        Vaswani et al. (2017); Xiong et al. (2020), On layer normalization in the Transformer
        architecture (pre-norm).
    """

    def __init__(self, d_model: int, num_heads: int, dim_feedforward: int) -> None:
        super().__init__()
        check_int("d_model", d_model)
        check_int("num_heads", num_heads)
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.linear1 = _Affine(d_model, check_int("dim_feedforward", dim_feedforward))
        self.linear2 = _Affine(dim_feedforward, d_model)
        self.norm1 = _LayerNorm(d_model)
        self.norm2 = _LayerNorm(d_model)

    def forward(
        self, x: torch.Tensor, *, causal: bool = False, key_padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(x (B, N, d_model), attention weights (B, H, N, N))``."""
        d = self.self_attn.embed_dim
        _tensor("x", x, 3, f" of shape (B, N, {d})")
        if x.shape[-1] != d:
            raise ValueError(f"x must have shape (B, N, {d}), got {tuple(x.shape)}")
        a, weights = self.self_attn(self.norm1(x), causal=causal, key_padding_mask=key_padding_mask)
        x = x + a
        x = x + self.linear2(torch.relu(self.linear1(self.norm2(x))))
        return x, weights


# --------------------------------------------------------------------------------------------
# 3. linear attention
# --------------------------------------------------------------------------------------------
def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """:math:`\\phi(x) = \\mathrm{elu}(x) + 1`: positive, so the weights below are positive."""
    _tensor("x", x)
    return F.elu(x) + 1


def _check_linear_qkv(q: object, k: object, v: object) -> None:
    q = _tensor("q", q, 4, " of shape (B, H, N, d)")
    k = _tensor("k", k, 4, " of shape (B, H, N, d)")
    v = _tensor("v", v, 4, " of shape (B, H, N, d_v)")
    if k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"q, k must be (B, H, N, d) and v (B, H, N, d_v); "
            f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_finite(name, t)


def linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = False, eps: float = 1e-6
) -> torch.Tensor:
    """Linear attention, parallel form: the softmax kernel :math:`e^{q \\cdot k}` becomes
    :math:`\\phi(q) \\cdot \\phi(k)`.

    .. math::  O_i = \\frac{\\sum_j \\phi(Q_i)^\\top \\phi(K_j)\\, V_j}{\\sum_j \\phi(Q_i)^\\top \\phi(K_j)}
               = \\frac{\\phi(Q_i)^\\top \\big(\\sum_j \\phi(K_j) V_j^\\top\\big)}
                       {\\phi(Q_i)^\\top \\sum_j \\phi(K_j)} .

    Without causality the sums run over all :math:`j`, and by associativity
    :math:`(\\phi(Q)\\phi(K)^\\top)V = \\phi(Q)(\\phi(K)^\\top V)`: the :math:`d \\times d_v`
    matrix :math:`\\phi(K)^\\top V` is computed once, and the cost is :math:`O(N d\\, d_v)`,
    linear in :math:`N`. No :math:`N \\times N` matrix exists.

    With ``causal=True`` the sums stop at :math:`j \\le i`. This function then computes the
    masked :math:`N \\times N` matrix (parallel over positions, quadratic);
    :func:`linear_attention_recurrent` computes the same numbers as an RNN in :math:`O(N)`.

    Args:
        q, k: ``(B, H, N, d)``; v: ``(B, H, N, d_v)``.
        causal: sums over :math:`j \\le i` only.
        eps: added to the denominator.

    Returns:
        ``(B, H, N, d_v)``.

    References:
        Katharopoulos et al. (2020), Transformers are RNNs, eqs. (4)-(6).
    """
    _check_linear_qkv(q, k, v)
    check_positive("eps", eps)
    fq, fk = elu_feature_map(q), elu_feature_map(k)  # (B, H, N, d), positive
    if causal:
        n = q.shape[2]
        a = fq @ fk.transpose(-2, -1)  # (B, H, N, N): unnormalised weights
        a = a.masked_fill(torch.ones(n, n, dtype=torch.bool, device=a.device).triu(1), 0.0)
        return (a @ v) / (a.sum(-1, keepdim=True) + eps)
    kv = fk.transpose(-2, -1) @ v  # (B, H, d, d_v): one matrix for all queries
    z = fk.sum(dim=2)  # (B, H, d)
    numerator = fq @ kv  # (B, H, N, d_v)
    denominator = (fq * z[:, :, None, :]).sum(-1, keepdim=True)  # (B, H, N, 1)
    return numerator / (denominator + eps)


def linear_attention_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, eps: float = 1e-6
) -> torch.Tensor:
    """Causal linear attention as an RNN whose hidden state is a matrix.

    .. math::
        \\begin{aligned}
        S_i &= S_{i-1} + \\phi(K_i) V_i^\\top \\quad (d \\times d_v), &
        z_i &= z_{i-1} + \\phi(K_i), \\\\
        O_i &= \\frac{\\phi(Q_i)^\\top S_i}{\\phi(Q_i)^\\top z_i}, &
        S_0 &= 0,\\ z_0 = 0 .
        \\end{aligned}

    Each step costs :math:`O(d\\, d_v)` whatever :math:`i` is, and the state never grows: this
    is :math:`h_t = f(x_t, h_{t-1})` again, with :math:`h_t = (S_t, z_t)`.

    Args:
        q, k: ``(B, H, N, d)``; v: ``(B, H, N, d_v)``; eps: added to the denominator.

    Returns:
        ``(B, H, N, d_v)``, equal to ``linear_attention(q, k, v, causal=True)``.

    References:
        Katharopoulos et al. (2020), Transformers are RNNs, section 3.4.
    """
    _check_linear_qkv(q, k, v)
    check_positive("eps", eps)
    fq, fk = elu_feature_map(q), elu_feature_map(k)  # (B, H, N, d)
    B, H, N, d = fq.shape
    s = q.new_zeros(B, H, d, v.shape[-1])  # (B, H, d, d_v): the matrix-valued state
    z = q.new_zeros(B, H, d)  # (B, H, d): the normaliser
    outputs = []
    for i in range(N):
        s = s + fk[:, :, i, :, None] * v[:, :, i, None, :]  # outer product phi(k_i) v_i^T
        z = z + fk[:, :, i]
        num = (fq[:, :, i, None, :] @ s).squeeze(-2)  # (B, H, d_v)
        den = (fq[:, :, i] * z).sum(-1, keepdim=True)  # (B, H, 1)
        outputs.append(num / (den + eps))
    return torch.stack(outputs, dim=2)  # (B, H, N, d_v)


def _check_gates(gamma: object, q: torch.Tensor) -> torch.Tensor:
    """``gamma`` as a ``(B, H, N)`` tensor of decays in ``(0, 1]`` (a number is broadcast)."""
    B, H, N, _ = q.shape
    if isinstance(gamma, int | float) and not isinstance(gamma, bool):
        check_real("gamma", gamma, 0.0, 1.0, low_open=True)
        return q.new_full((B, H, N), float(gamma))
    g = check_tensor("gamma", gamma, (B, H, N))
    if g.dtype != q.dtype:
        raise TypeError(f"gamma must have q's dtype {q.dtype}, got {g.dtype}")
    if not bool(((g > 0) & (g <= 1)).all()):
        raise ValueError(f"gamma must lie in (0, 1] (a forget gate), got values in [{g.min().item():.3g}, "
                         f"{g.max().item():.3g}]")
    return g


def gated_linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma: float | torch.Tensor, *, eps: float = 1e-6
) -> torch.Tensor:
    """Causal linear attention with a forget gate, parallel form (decay mask on the N x N matrix).

    The recurrent form (:func:`gated_linear_attention_recurrent`) is
    :math:`S_i = \\gamma_i S_{i-1} + \\phi(K_i) V_i^\\top`, :math:`z_i = \\gamma_i z_{i-1} + \\phi(K_i)`,
    :math:`O_i = \\phi(Q_i)^\\top S_i / \\phi(Q_i)^\\top z_i`. Unrolled, key :math:`j` reaches
    query :math:`i \\ge j` multiplied by the product of the gates in between,

    .. math::  O_i = \\frac{\\sum_{j \\le i} D_{ij}\\, \\phi(Q_i)^\\top \\phi(K_j)\\, V_j}
                            {\\sum_{j \\le i} D_{ij}\\, \\phi(Q_i)^\\top \\phi(K_j)}, \\qquad
               D_{ij} = \\prod_{t=j+1}^{i} \\gamma_t = e^{c_i - c_j}, \\quad
               c_i = \\sum_{t \\le i} \\log \\gamma_t,

    so the parallel form is linear attention with the causal mask replaced by the decay mask
    :math:`D`. A constant :math:`\\gamma` gives RetNet's :math:`D_{ij} = \\gamma^{i-j}`; a gate per
    token and head is the scalar gate of Mamba-2 (GLA uses one per feature). :math:`\\gamma = 1`
    is :func:`linear_attention` with ``causal=True``. (RetNet and GLA drop the normaliser
    :math:`z` and normalise the output instead; we keep it, so that outputs stay averages of
    values.)

    Args:
        q, k: ``(B, H, N, d)``; v: ``(B, H, N, d_v)``.
        gamma: the forget gate :math:`\\gamma_i \\in (0, 1]`: a number, or a ``(B, H, N)`` tensor.
        eps: added to the denominator.

    Returns:
        ``(B, H, N, d_v)``.

    References:
        Sun et al. (2023), Retentive network, eqs. (1)-(5); Yang et al. (2024), Gated linear
        attention transformers; Dao & Gu (2024), Transformers are SSMs (Mamba-2), section 3.
    """
    _check_linear_qkv(q, k, v)
    check_positive("eps", eps)
    g = _check_gates(gamma, q)  # (B, H, N)
    fq, fk = elu_feature_map(q), elu_feature_map(k)  # (B, H, N, d)
    c = torch.cumsum(torch.log(g), dim=-1)  # (B, H, N): c_i = sum_{t <= i} log gamma_t
    n = q.shape[2]
    future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
    log_decay = (c[..., :, None] - c[..., None, :]).masked_fill(future, float("-inf"))  # (B, H, N, N)
    a = (fq @ fk.transpose(-2, -1)) * torch.exp(log_decay)  # D_ij phi(q_i).phi(k_j), 0 for j > i
    return (a @ v) / (a.sum(-1, keepdim=True) + eps)


def gated_linear_attention_recurrent(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma: float | torch.Tensor, *, eps: float = 1e-6
) -> torch.Tensor:
    """Gated linear attention as an RNN: the LSTM's forget gate on a matrix-valued state.

    .. math::
        \\begin{aligned}
        S_i &= \\gamma_i\\, S_{i-1} + \\phi(K_i) V_i^\\top, &
        z_i &= \\gamma_i\\, z_{i-1} + \\phi(K_i), \\\\
        O_i &= \\frac{\\phi(Q_i)^\\top S_i}{\\phi(Q_i)^\\top z_i}, &
        S_0 &= 0,\\ z_0 = 0,
        \\end{aligned}

    the same shape as the LSTM's :math:`c_t = \\sigma(f_t) \\odot c_{t-1} + \\sigma(i_t) \\odot g_t`.
    Arguments and result as :func:`gated_linear_attention`, whose outputs it equals.

    References:
        Sun et al. (2023); Yang et al. (2024); Dao & Gu (2024).
    """
    _check_linear_qkv(q, k, v)
    check_positive("eps", eps)
    g = _check_gates(gamma, q)  # (B, H, N)
    fq, fk = elu_feature_map(q), elu_feature_map(k)  # (B, H, N, d)
    B, H, N, d = fq.shape
    s = q.new_zeros(B, H, d, v.shape[-1])  # (B, H, d, d_v)
    z = q.new_zeros(B, H, d)  # (B, H, d)
    outputs = []
    for i in range(N):
        s = g[:, :, i, None, None] * s + fk[:, :, i, :, None] * v[:, :, i, None, :]  # forget, then write
        z = g[:, :, i, None] * z + fk[:, :, i]
        num = (fq[:, :, i, None, :] @ s).squeeze(-2)  # (B, H, d_v)
        den = (fq[:, :, i] * z).sum(-1, keepdim=True)  # (B, H, 1)
        outputs.append(num / (den + eps))
    return torch.stack(outputs, dim=2)  # (B, H, N, d_v)


def associative_recall_accuracy(
    n_pairs: int, d: int, *, n_trials: int = 20, memory: str = "linear", generator: torch.Generator
) -> float:
    """How many key-value pairs a :math:`d \\times d` state can hold: multi-query associative recall.

    Write ``n_pairs`` pairs :math:`(k_j, v_j)`, with random unit keys and values in
    :math:`\\mathbb{R}^d`, then query every key :math:`k_i` and count the queries whose answer is
    closer (by cosine) to :math:`v_i` than to every other stored value.

    - ``"linear"``: the state of linear attention without feature map or normaliser,
      :math:`S = \\sum_j k_j v_j^\\top` (:math:`d \\times d` numbers, whatever ``n_pairs`` is);
      the answer :math:`S^\\top k_i = v_i + \\sum_{j \\ne i} (k_j \\cdot k_i)\\, v_j` is exact only while
      the keys are orthogonal, i.e. for at most :math:`d` pairs.
    - ``"softmax"``: softmax attention over the stored pairs (scale :math:`\\tau = 4\\sqrt d`),
      whose memory, the list of keys and values, grows with ``n_pairs``.

    Args:
        n_pairs: pairs written; d: key and value width.
        n_trials: independent memories averaged over.
        memory: ``"linear"`` or ``"softmax"``.
        generator: the random source.

    Returns:
        The fraction of queries answered correctly.

    References:
        Schlag, Irie & Schmidhuber (2021), Linear transformers are secretly fast weight
        programmers; Arora et al. (2024), Zoology (multi-query associative recall).
    """
    n_pairs, d, n_trials = check_int("n_pairs", n_pairs), check_int("d", d), check_int("n_trials", n_trials)
    check_choice("memory", memory, ("linear", "softmax"))
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    shape = (n_trials, 1, n_pairs, d)  # (trials, one head, pairs, d)
    keys = F.normalize(torch.randn(shape, generator=generator, dtype=torch.float64), dim=-1)
    values = F.normalize(torch.randn(shape, generator=generator, dtype=torch.float64), dim=-1)
    if memory == "linear":
        state = keys.transpose(-2, -1) @ values  # (T, 1, d, d): the whole memory
        answers = keys @ state  # (T, 1, n_pairs, d): k_i^T S for every stored key
    else:
        answers = scaled_dot_product_attention(keys, keys, values, scale=4.0 * math.sqrt(d))[0]
    similarity = F.normalize(answers, dim=-1) @ values.transpose(-2, -1)  # (T, 1, n_pairs, n_pairs)
    hits = similarity.argmax(-1) == torch.arange(n_pairs)
    return hits.double().mean().item()


def make_associative_recall_batch(
    batch: int, n_pairs: int, *, n_keys: int = 64, n_values: int = 64, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-query associative recall (MQAR) as token ids: ``n_pairs`` pairs, then every key asked.

    Each row draws ``n_pairs`` distinct keys from a vocabulary of ``n_keys`` ids and a value for
    each from ``n_values`` ids (with repetition); the queries are the same keys in a random
    order, and the answer to a query is the value written with that key. Chance accuracy is
    :math:`1/n_\\text{values}`. Unlike Zoology's token stream, the pairing is given to the model
    (a key and its value arrive together), so a single layer can solve it.

    Returns:
        ``(keys, values, queries, answers)``, each ``(batch, n_pairs)`` long.

    References:
        Arora et al. (2024), Zoology: measuring and improving recall in efficient language models.
    """
    batch, n_pairs = check_int("batch", batch), check_int("n_pairs", n_pairs)
    n_keys, n_values = check_int("n_keys", n_keys), check_int("n_values", n_values)
    if n_pairs > n_keys:
        raise ValueError(f"n_pairs must be <= n_keys (distinct keys), got n_pairs={n_pairs}, n_keys={n_keys}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    keys = torch.rand(batch, n_keys, generator=generator).argsort(-1)[:, :n_pairs]  # distinct per row
    values = torch.randint(n_values, (batch, n_pairs), generator=generator)
    order = torch.rand(batch, n_pairs, generator=generator).argsort(-1)
    return keys, values, keys.gather(1, order), values.gather(1, order)


class AssociativeRecallModel(nn.Module):
    """One attention layer that writes the pairs into a memory and reads it with the queries.

    Token embeddings :math:`e(\\cdot) \\in \\mathbb{R}^d` (one table for keys and queries, one for
    values), learned projections :math:`k_j = W_K e(\\text{key}_j)`, :math:`v_j = W_V e(\\text{value}_j)`,
    :math:`q_i = W_Q e(\\text{query}_i)`, then

    - ``"linear"``: :math:`o_i = S^\\top q_i` with the :math:`d \\times d` state
      :math:`S = \\sum_j k_j v_j^\\top` (linear attention without feature map or normaliser, as in
      :func:`associative_recall_accuracy`): the memory has :math:`d^2` numbers for any :math:`n`;
    - ``"softmax"``: :math:`o_i = \\sum_j \\mathrm{softmax}_j(q_i \\cdot k_j / \\sqrt d)\\, v_j`, which
      keeps all :math:`n` keys and values;

    and logits :math:`W_O o_i + b` over the ``n_values`` value ids.

    Shapes: ids ``(B, n)`` in, logits ``(B, n, n_values)`` out.
    """

    def __init__(self, memory: str, d: int = 16, n_keys: int = 64, n_values: int = 64) -> None:
        super().__init__()
        self.memory = check_choice("memory", memory, ("linear", "softmax"))
        self.d, self.n_keys = check_int("d", d), check_int("n_keys", n_keys)
        self.n_values = check_int("n_values", n_values)
        self.key_embedding, self.value_embedding = nn.Embedding(n_keys, d), nn.Embedding(n_values, d)
        self.w_q, self.w_k, self.w_v = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.readout = nn.Linear(d, n_values)

    def forward(self, keys: torch.Tensor, values: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        dims: dict[str, int] = {}  # keys and values (B, n), queries (B, n_q): the same B, n
        for name, ids, shape, size in (("keys", keys, ("B", "n"), self.n_keys),
                                       ("values", values, ("B", "n"), self.n_values),
                                       ("queries", queries, ("B", "n_q"), self.n_keys)):
            check_tensor(name, ids, shape, dims=dims, dtype="int")
            check_indices(name, ids, size)
        k = self.w_k(self.key_embedding(keys))  # (B, n, d)
        v = self.w_v(self.value_embedding(values))  # (B, n, d)
        q = self.w_q(self.key_embedding(queries))  # (B, n_q, d)
        if self.memory == "linear":
            out = q @ (k.transpose(-2, -1) @ v)  # (B, n_q, d) via the (B, d, d) state S
        else:
            out = scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[0][:, 0]  # (B, n_q, d)
        return self.readout(out)  # (B, n_q, n_values)


def train_associative_recall(
    n_pairs: int, *, memory: str, d: int = 16, n_keys: int = 64, n_values: int = 64, steps: int = 150,
    batch: int = 64, lr: float = 2e-2, n_test: int = 512, seed: int = 0,
) -> float:
    """Train :class:`AssociativeRecallModel` on MQAR with ``n_pairs`` pairs; return its test accuracy.

    Adam (learning rate ``lr``) on ``steps`` fresh batches of :func:`make_associative_recall_batch`,
    cross-entropy over the value ids; then the fraction of the ``n_test · n_pairs`` queries of new
    sequences answered correctly. Runs on one CPU thread, seeded by ``seed``.
    """
    n_pairs = check_int("n_pairs", n_pairs)
    steps, batch, n_test = check_int("steps", steps), check_int("batch", batch), check_int("n_test", n_test)
    check_positive("lr", lr)
    seed = check_int("seed", seed, minimum=0)
    if n_pairs > check_int("n_keys", n_keys):
        raise ValueError(f"n_pairs must be <= n_keys (distinct keys), got n_pairs={n_pairs}, n_keys={n_keys}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = AssociativeRecallModel(memory, d, n_keys, n_values)
        g = torch.Generator().manual_seed(seed)
        task = {"n_keys": n_keys, "n_values": n_values, "generator": g}
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            keys, values, queries, answers = make_associative_recall_batch(batch, n_pairs, **task)
            loss = F.cross_entropy(model(keys, values, queries).flatten(0, 1), answers.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
        keys, values, queries, answers = make_associative_recall_batch(n_test, n_pairs, **task)
        with torch.no_grad():
            return (model(keys, values, queries).argmax(-1) == answers).double().mean().item()
    finally:
        torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# 4. the long-range recall task and three models for it
# --------------------------------------------------------------------------------------------
def make_recall_task(
    n: int, distance: int, *, n_classes: int = 8, n_distractors: int = 8, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recall the token seen ``distance`` steps ago.

    Each sequence is ``[c, d_1, ..., d_{L-1}, ?]``: a class token :math:`c \\in \\{0..C-1\\}`,
    :math:`L-1` random distractor tokens (ids :math:`C .. C+M-1`), and a query token
    (id :math:`C+M`). The label is :math:`c`. A model must carry :math:`c` over :math:`L` steps
    to answer at the query; guessing gives accuracy :math:`1/C`.

    Args:
        n: number of sequences; distance: :math:`L \\ge 1`.
        n_classes: :math:`C`; n_distractors: :math:`M`.
        generator: the random source.

    Returns:
        ``(tokens (n, L + 1) long, labels (n,) long)``. The vocabulary has ``C + M + 1`` ids.
    """
    n, distance = check_int("n", n), check_int("distance", distance)
    n_classes = check_int("n_classes", n_classes)
    n_distractors = check_int("n_distractors", n_distractors)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    labels = torch.randint(n_classes, (n,), generator=generator)
    noise = torch.randint(n_classes, n_classes + n_distractors, (n, distance - 1), generator=generator)
    query = torch.full((n, 1), n_classes + n_distractors)
    return torch.cat([labels[:, None], noise, query], dim=1), labels


class RecurrentClassifier(nn.Module):
    """Embedding -> a recurrent cell unrolled over the sequence -> linear read-out of the last state."""

    def __init__(self, cell: str, vocab: int, d_model: int, n_classes: int) -> None:
        super().__init__()
        cells = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
        if cell not in cells:
            raise ValueError(f"cell must be one of {sorted(cells)}, got {cell!r}")
        self.vocab = vocab
        self.embed = nn.Embedding(check_int("vocab", vocab), check_int("d_model", d_model))
        self.cell = cells[cell](d_model, d_model)
        self.head = _Affine(d_model, check_int("n_classes", n_classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens (B, N)`` -> logits ``(B, n_classes)``."""
        return self.head(_unroll(self.cell, _embed(self.embed, tokens, self.vocab))[:, -1])


class TransformerClassifier(nn.Module):
    """Embedding + sinusoidal positions -> encoder blocks -> linear read-out at the last token."""

    def __init__(
        self, vocab: int, d_model: int, n_classes: int, *, num_heads: int = 2, num_layers: int = 2
    ) -> None:
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(check_int("vocab", vocab), check_int("d_model", d_model))
        self.blocks = nn.ModuleList(
            TransformerEncoderBlock(d_model, num_heads, 2 * d_model)
            for _ in range(check_int("num_layers", num_layers))
        )
        self.norm = _LayerNorm(d_model)
        self.head = _Affine(d_model, check_int("n_classes", n_classes))

    def forward(self, tokens: torch.Tensor, *, return_attention: bool = False):
        """``tokens (B, N)`` -> logits ``(B, n_classes)`` [, list of ``(B, H, N, N)`` per layer]."""
        x = _embed(self.embed, tokens, self.vocab)  # (B, N, E)
        x = x + sinusoidal_positional_encoding(tokens.shape[1], x.shape[-1]).to(x)
        maps = []
        for block in self.blocks:
            x, a = block(x)
            maps.append(a)
        logits = self.head(self.norm(x[:, -1]))
        return (logits, maps) if return_attention else logits


def _embed(embed: nn.Embedding, tokens: object, vocab: int) -> torch.Tensor:
    """Embed token ids ``(B, N)`` in ``[0, vocab)``; every forward pass calls this, so the range is
    checked only when the embedding refuses an id (no extra reductions on the normal path)."""
    check_tensor("tokens", tokens, ("B", "N"), dtype="int", finite=False)
    try:
        return embed(tokens)
    except IndexError:
        check_indices("tokens", tokens, vocab)  # raises, naming the ids
        raise


@dataclass
class RecallConfig:
    """Training recipe for the recall task (kept tiny so a run takes seconds on a CPU)."""

    d_model: int = 32  #: width of embeddings and hidden states
    n_classes: int = 8  #: C; chance accuracy is 1/C
    n_distractors: int = 8  #: M distractor token ids
    steps: int = 150  #: Adam steps
    batch_size: int = 32
    lr: float = 3e-3
    n_test: int = 1000  #: held-out sequences for the accuracy
    #: LSTM only: the forget gate's bias b_f at initialisation (b_ih's forget slice; b_hh's is
    #: zeroed). ``None`` keeps PyTorch's uniform init (b_f about 0, sigma(b_f) about 1/2). Gers et al.
    #: (2000) and Jozefowicz et al. (2015) use 1; Tallec & Ollivier's chrono init uses log(T)
    #: for dependencies T steps long.
    forget_bias: float | None = None
    #: clip the gradient's global norm to this (Pascanu et al. 2013); ``None``: no clipping
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        check_fields(self, {"d_model": check_int, "n_classes": (check_int, 2), "n_distractors": check_int,
                            "steps": check_int, "batch_size": check_int, "lr": check_positive,
                            "n_test": check_int, "forget_bias": (optional, check_real),
                            "clip_norm": (optional, check_positive)})
        if self.d_model % 2:
            raise ValueError(f"RecallConfig.d_model must be even (sinusoidal positions), got {self.d_model}")


def _check_recall_config(cfg: object) -> RecallConfig:
    if not isinstance(cfg, RecallConfig):
        raise TypeError(f"cfg must be a RecallConfig, got {type(cfg).__name__}")
    cfg.__post_init__()  # fields may have been changed after construction
    return cfg


def make_model(kind: str, cfg: RecallConfig) -> nn.Module:
    """``"rnn"``, ``"lstm"``, ``"gru"`` or ``"transformer"``, sized by ``cfg``."""
    check_choice("kind", kind, ("rnn", "lstm", "gru", "transformer"))
    _check_recall_config(cfg)
    vocab = cfg.n_classes + cfg.n_distractors + 1
    if kind == "transformer":
        return TransformerClassifier(vocab, cfg.d_model, cfg.n_classes)
    model = RecurrentClassifier(kind, vocab, cfg.d_model, cfg.n_classes)
    if kind == "lstm" and cfg.forget_bias is not None:
        H = cfg.d_model
        with torch.no_grad():  # PyTorch's gate order i, f, g, o: the forget gate is rows H..2H
            model.cell.bias_ih[H:2 * H] = cfg.forget_bias
            model.cell.bias_hh[H:2 * H] = 0.0
    return model


def train_recall(kind: str, distance: int, cfg: RecallConfig, seed: int) -> tuple[nn.Module, float]:
    """Train one model on the recall task at ``distance``; return it and its test accuracy.

    Adam for ``cfg.steps`` steps on fresh batches, the gradient clipped to ``cfg.clip_norm`` when
    set; the accuracy is measured on ``cfg.n_test`` new sequences.
    """
    model, _, accuracy = _train_recall(kind, distance, cfg, seed, eval_every=None)
    return model, accuracy[-1]


def train_recall_curve(
    kind: str, distance: int, cfg: RecallConfig, seed: int, eval_every: int
) -> tuple[nn.Module, list[int], list[float]]:
    """:func:`train_recall`, measuring the test accuracy every ``eval_every`` steps.

    Returns:
        ``(model, steps, accuracies)``: the accuracy on one fixed set of ``cfg.n_test`` sequences
        after each of ``steps`` (``eval_every, 2·eval_every, ...``, and ``cfg.steps``).
    """
    return _train_recall(kind, distance, cfg, seed, eval_every=check_int("eval_every", eval_every))


def _train_recall(
    kind: str, distance: int, cfg: RecallConfig, seed: int, eval_every: int | None
) -> tuple[nn.Module, list[int], list[float]]:
    check_choice("kind", kind, ("rnn", "lstm", "gru", "transformer"))
    _check_recall_config(cfg)
    check_int("distance", distance)
    check_int("seed", seed, minimum=0)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = make_model(kind, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    task = {"n_classes": cfg.n_classes, "n_distractors": cfg.n_distractors}
    test = None
    if eval_every is not None:  # one fixed test set, drawn from its own generator
        test_generator = torch.Generator().manual_seed(seed + 10_000)
        test = make_recall_task(cfg.n_test, distance, **task, generator=test_generator)

    def accuracy(x: torch.Tensor, y: torch.Tensor) -> float:
        with torch.no_grad():
            return (model(x).argmax(-1) == y).double().mean().item()

    steps, accuracies = [], []
    for step in range(1, cfg.steps + 1):
        x, y = make_recall_task(cfg.batch_size, distance, **task, generator=g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if cfg.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        opt.step()
        if test is not None and (step % eval_every == 0 or step == cfg.steps):
            steps.append(step)
            accuracies.append(accuracy(*test))
    if test is None:
        test = make_recall_task(cfg.n_test, distance, **task, generator=g)  # after training, as always
        steps, accuracies = [cfg.steps], [accuracy(*test)]
    return model, steps, accuracies


# --------------------------------------------------------------------------------------------
# 5. timing
# --------------------------------------------------------------------------------------------
def min_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """The fastest of ``repeats`` calls of ``fn()``, in seconds of this process's CPU time.

    CPU time (``time.process_time``: user + system time of this process, all its threads) is what
    the call itself costs; wall-clock time would also count the moments the operating system gave
    the core to other jobs, which on a shared machine inflates long calls more than short ones.
    With ``torch.set_num_threads(1)`` the two agree on an idle machine. The minimum over repeats
    removes the remaining disturbances (cache misses after another job ran, page faults).
    """
    check_int("repeats", repeats)
    check_int("warmup", warmup, minimum=0)
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def graph_depth(output: torch.Tensor) -> int:
    """The longest chain of operations in the autograd graph that produced ``output``.

    Operations on one chain must run one after the other; operations on different chains may
    run at the same time. So the depth is the number of *sequential* steps a forward (or
    backward) pass needs on hardware with unlimited parallelism: it grows with :math:`N` for an
    unrolled RNN and does not for attention.

    Args:
        output: a tensor with a ``grad_fn`` (computed from tensors that require grad).

    Returns:
        The number of autograd nodes on the longest path from ``output`` to a leaf.
    """
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"output must be a torch.Tensor, got {type(output).__name__}")
    if output.grad_fn is None:
        raise ValueError("output has no grad_fn: compute it from tensors that require grad")
    order, seen, stack = [], set(), [(output.grad_fn, False)]
    while stack:  # iterative post-order DFS: an unrolled RNN is too deep for recursion
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if node in seen:
            continue
        seen.add(node)
        stack.append((node, True))
        children = [child for child, _ in node.next_functions if child is not None and child not in seen]
        stack.extend((child, False) for child in children)
    depth: dict[object, int] = {}
    for node in order:  # children come before parents in post-order
        depth[node] = 1 + max((depth[c] for c, _ in node.next_functions if c is not None), default=0)
    return depth[output.grad_fn]


def train_step_time(model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor, repeats: int = 3) -> float:
    """CPU seconds for one forward + backward pass of ``model`` on a batch (min over ``repeats``)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    dims: dict[str, int] = {}
    check_tensor("tokens", tokens, ("B", None), dims=dims, dtype="int")
    check_tensor("labels", labels, ("B",), dims=dims, dtype="int")

    def step() -> None:
        model.zero_grad()
        F.cross_entropy(model(tokens), labels).backward()

    return min_time(step, repeats=repeats)
