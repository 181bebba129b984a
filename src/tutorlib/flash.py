"""tutorlib.flash: FlashAttention from the softmax up (chapter "FlashAttention", ``chapter-flash_attention``).

Attention of one head, with queries :math:`Q \\in \\mathbb{R}^{N_q \\times d}` and keys and values
:math:`K, V \\in \\mathbb{R}^{N_k \\times d}`, is

.. math::  S = \\tau\\, Q K^\\top, \\qquad P = \\mathrm{softmax}_{\\text{row}}(S), \\qquad O = P V,

with the scale :math:`\\tau = 1/\\sqrt d`. The standard implementation writes the
:math:`N_q \\times N_k` matrices :math:`S` and :math:`P` to memory; FlashAttention computes
:math:`O` block by block with an *online softmax* and never stores them.

What is here, from the reference to the fast paths (each one says what it reads and writes):

- :func:`naive_attention`: the three lines above, materialising :math:`S` and :math:`P` (it calls
  tutorlib's one softmax attention, :func:`tutorlib.sequence.scaled_dot_product_attention`);
- :func:`softmax_three_pass`, :func:`online_softmax`, :func:`online_softmax_steps`: the safe
  softmax and its one-pass normaliser (Milakov & Gimelshein 2018);
- :func:`tile_schedule`: which blocks of :math:`S` the tiled loops visit, and which the causal
  mask lets them skip;
- :func:`flash_attention`: the tiled algorithm in PyTorch, with a backward pass that recomputes
  the tiles (a ``torch.autograd.Function``);
- :func:`flash_attention_triton`: the forward pass as a Triton kernel. On CUDA tensors it is
  compiled; on CPU tensors it runs in the Triton *interpreter* (see below);
- :func:`flash_attention_triton_backward`: FlashAttention-2's backward pass as Triton kernels
  (:math:`D_i`, then :math:`dK, dV` per key block, then :math:`dQ` per query block), used by
  ``flash_attention_triton``'s autograd;
- :func:`hbm_traffic`: the elements moved between slow (HBM) and fast (SRAM) memory by the
  standard algorithm and by FlashAttention, counted by simulating their loops;
- :func:`peak_memory`: the peak of the CPU allocator during a call, from ``torch.profiler``;
- :func:`loglog_slope`: the exponent :math:`a` of a power law :math:`y \\propto x^a`.

Shapes follow PyTorch's ``scaled_dot_product_attention``: ``(B, H, N, d)`` = batch, heads,
sequence length, head dimension.

Names in code -> symbols in the chapter and the paper: ``scale`` -> :math:`\\tau`;
``m``, ``ell`` -> running max :math:`m` and sum :math:`\\ell`; ``acc`` -> the unnormalised
output :math:`A_i` (the paper updates :math:`O_i` directly); ``lse`` -> :math:`L = m + \\log \\ell`;
``block_q``, ``block_k`` (Triton: ``BLOCK_M``, ``BLOCK_N``) -> tile sizes :math:`b_q, b_k`
(the paper's :math:`B_r, B_c`); ``M`` -> fast-memory size in elements.

**The Triton interpreter.** Triton decides when a function is *decorated* with ``triton.jit``
whether it will be compiled or interpreted: it reads ``TRITON_INTERPRET`` at that moment. Its own
library functions (``tl.zeros``, ``tl.sum``, ``tl.max``) are decorated when ``triton`` is
imported, so the variable must be set *before the first* ``import triton``. Our choice: on a
machine without a CUDA GPU, where Triton can only interpret, importing this module sets
``TRITON_INTERPRET=1`` if triton has not been imported yet and the variable is unset (stated
here, done once, at the top of the module). Everything else is left alone: with a GPU the kernel
is compiled, and a reader who wants the interpreter there sets ``TRITON_INTERPRET=1`` before
starting Python. :func:`flash_attention_triton` raises a clear error if CPU tensors meet a
Triton that was imported in compile mode.

References:
    Dao, Fu, Ermon, Rudra, Ré (2022), "FlashAttention: fast and memory-efficient exact attention
    with IO-awareness", NeurIPS (Algorithm 0, Algorithm 1, Theorem 2).
    Dao (2023), "FlashAttention-2: faster attention with better parallelism and work
    partitioning" (loop order: queries outside, keys inside).
    Milakov & Gimelshein (2018), "Online normalizer calculation for softmax", arXiv:1805.02867.
    Rabe & Staats (2021), "Self-attention does not need O(n²) memory", arXiv:2112.05682.
"""

import contextlib
import functools
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from tutorlib.powerlaw import loglog_slope  # one home; re-exported here for the chapters
from tutorlib.sequence import scaled_dot_product_attention  # the one home of softmax attention
from tutorlib.validation import check_int

__all__ = [
    "TRITON_HEAD_DIMS",
    "FlashAttentionFunction",
    "OnlineSoftmaxTrace",
    "Tile",
    "Traffic",
    "count_reads",
    "flash2_block_size",
    "flash_attention",
    "flash_attention_triton",
    "flash_attention_triton_backward",
    "flash_backward",
    "flash_block_sizes",
    "flash_forward",
    "hbm_traffic",
    "loglog_slope",
    "naive_attention",
    "online_softmax",
    "online_softmax_steps",
    "peak_memory",
    "softmax_three_pass",
    "standard_tile_size",
    "tile_schedule",
    "triton_interpreted",
]

# Triton can only interpret on a machine without a CUDA GPU, and the choice is made when triton
# is imported (see the module docstring). Respect an explicit setting and an earlier import.
if "triton" not in sys.modules and "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

try:  # optional: only flash_attention_triton needs it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton is pinned in requirements.txt
    triton = None
    tl = None

#: Head dimensions the Triton kernel accepts: ``tl.arange`` needs a power of two and ``tl.dot``
#: needs at least 16 on every dimension; 256 would not fit a tile in shared memory.
TRITON_HEAD_DIMS: tuple[int, ...] = (16, 32, 64, 128)
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------
# argument checks (the public boundary)
# --------------------------------------------------------------------------------------------
def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (B, H, N, d), got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"{name} must have 4 dimensions (B, H, N, d), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
        if x.numel() == 0:
            raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
        # Finite iff its max and min are (NaN propagates through amax/amin): two reductions and
        # no N x d temporary, so the check adds nothing to the peak memory the chapter measures.
        if x.device.type != "meta" and not bool(torch.isfinite(torch.stack([x.amax(), x.amin()])).all()):
            raise ValueError(f"{name} must be finite, got a tensor containing NaN or inf")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.device == k.device == v.device:
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape (B, H, N_k, d), got {tuple(k.shape)} "
                         f"and {tuple(v.shape)}")
    B, H, _, d = q.shape
    if (k.shape[0], k.shape[1], k.shape[3]) != (B, H, d):
        raise ValueError(f"k and v must have shape ({B}, {H}, N_k, {d}) to match q of shape "
                         f"{tuple(q.shape)}, got {tuple(k.shape)}")


def _check_causal(causal: object) -> bool:
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be a bool, got {type(causal).__name__} {causal!r}")
    return bool(causal)


def _check_tiling(q, k, v, causal, block_q, block_k, scale) -> None:
    """The arguments of :func:`flash_forward` and :func:`flash_backward` (a negative block size
    would leave the output uninitialised)."""
    _check_qkv(q, k, v)
    _check_causal(causal)
    check_int("block_q", block_q)
    check_int("block_k", block_k)
    if scale is None or isinstance(scale, bool) or not isinstance(scale, int | float):
        raise TypeError(f"scale must be a number > 0, got {type(scale).__name__} {scale!r}")
    _resolve_scale(scale, q.shape[-1])


def _resolve_scale(scale: float | None, d: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(d)
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0 (or None for 1/sqrt(d)), got {scale}")
    return float(scale)


# --------------------------------------------------------------------------------------------
# 1. the reference: standard attention
# --------------------------------------------------------------------------------------------
def naive_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, scale: float | None = None
) -> torch.Tensor:
    """Standard attention, :math:`O = \\mathrm{softmax}(\\tau QK^\\top)V`, materialising S and P.

    .. math::  S = \\tau\\, Q K^\\top, \\quad P_{ij} = \\frac{e^{S_{ij}}}{\\sum_{j'} e^{S_{ij'}}},
               \\quad O = P V .

    The output of :func:`tutorlib.sequence.scaled_dot_product_attention` (tutorlib's one softmax
    attention), with this module's argument checks (finite inputs, ``k`` and ``v`` of one shape).
    With ``causal=True``, query :math:`i` sees keys :math:`j \\le i` only (:math:`S_{ij} = -\\infty`
    above the diagonal, aligned at the top-left corner like ``scaled_dot_product_attention``).

    Reads and writes: two :math:`N_q \\times N_k` matrices (the scores and the weights) are
    allocated and live at the same time; this is the memory that FlashAttention avoids.

    Args:
        q: queries, shape ``(B, H, N_q, d)``.
        k, v: keys and values, shape ``(B, H, N_k, d)``.
        causal: apply the causal mask.
        scale: :math:`\\tau`; ``None`` means :math:`1/\\sqrt d`.

    Returns:
        ``(B, H, N_q, d)``.
    """
    _check_qkv(q, k, v)
    causal = _check_causal(causal)
    tau = _resolve_scale(scale, q.shape[-1])
    return scaled_dot_product_attention(q, k, v, causal=causal, scale=tau)[0]


# --------------------------------------------------------------------------------------------
# 2. softmax: three passes, then online
# --------------------------------------------------------------------------------------------
def softmax_three_pass(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The safe softmax as a GPU kernel computes it: three passes over ``x``.

    .. math::  m = \\max_j x_j, \\qquad \\ell = \\sum_j e^{x_j - m}, \\qquad y_j = e^{x_j - m} / \\ell .

    Pass 1 reads ``x`` for :math:`m`, pass 2 reads it again for :math:`\\ell`, pass 3 reads it a
    third time to write :math:`y`. Subtracting :math:`m` changes nothing mathematically and keeps
    :math:`e^{x_j - m} \\le 1`, so nothing overflows.

    Args:
        x: any shape; dim: the axis to normalise.

    Returns:
        Same shape as ``x``; sums to 1 along ``dim``.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    if x.device.type != "meta" and bool(torch.isnan(x).any()):  # -inf (masked) is fine, NaN is not
        raise ValueError("x must not contain NaN (-inf, a masked score, is fine)")
    m = x.amax(dim=dim, keepdim=True)  # pass 1: read x
    ell = torch.exp(x - m).sum(dim=dim, keepdim=True)  # pass 2: read x
    return torch.exp(x - m) / ell  # pass 3: read x, write y


def _exp_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """:math:`e^{a - b}`, taken as 0 where both are :math:`-\\infty` (nothing seen yet)."""
    return torch.where(b == float("-inf"), torch.zeros_like(a), torch.exp(a - b))


def online_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax with the one-pass normaliser of Milakov & Gimelshein (2018).

    One pass over :math:`x_1, \\dots, x_n` keeps a running maximum and a running sum of
    exponentials *relative to that maximum*:

    .. math::  m_j = \\max(m_{j-1}, x_j), \\qquad
               \\ell_j = \\ell_{j-1}\\, e^{m_{j-1} - m_j} + e^{x_j - m_j},

    from :math:`m_0 = -\\infty`, :math:`\\ell_0 = 0`. When the maximum grows, the old sum is
    rescaled by :math:`e^{m_{j-1} - m_j} \\le 1`, so at every step
    :math:`\\ell_j = \\sum_{i \\le j} e^{x_i - m_j}`. A second pass writes
    :math:`y_j = e^{x_j - m_n} / \\ell_n`: two reads of ``x`` instead of the three of
    :func:`softmax_three_pass`. A row of :math:`-\\infty` gives NaN, as ``torch.softmax`` does.

    Args:
        x: any shape; dim: the axis to normalise (the loop runs along it).

    Returns:
        Same shape as ``x``.

    References:
        Milakov & Gimelshein (2018), "Online normalizer calculation for softmax".
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    if x.device.type != "meta" and bool(torch.isnan(x).any()):  # -inf (masked) is fine, NaN is not
        raise ValueError("x must not contain NaN (-inf, a masked score, is fine)")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension, got a scalar")
    xt = x.movedim(dim, -1)  # (..., n): the loop runs over the last axis
    m = torch.full(xt.shape[:-1], float("-inf"), dtype=x.dtype, device=x.device)  # (...,)
    ell = torch.zeros_like(m)  # (...,)
    for j in range(xt.shape[-1]):  # pass 1: read each x_j once
        m_new = torch.maximum(m, xt[..., j])
        ell = ell * _exp_diff(m, m_new) + _exp_diff(xt[..., j], m_new)
        m = m_new
    y = torch.exp(xt - m[..., None]) / ell[..., None]  # pass 2: read x, write y
    return y.movedim(-1, dim)


@dataclass
class OnlineSoftmaxTrace:
    """The running state of :func:`online_softmax_steps` after each element."""

    x: torch.Tensor  #: the input, shape (n,)
    m: torch.Tensor  #: running maximum m_j after x_1..x_j, shape (n,)
    ell: torch.Tensor  #: running sum ℓ_j = Σ_{i≤j} exp(x_i - m_j), shape (n,)
    rescale: torch.Tensor  #: factor exp(m_{j-1} - m_j) applied to the old sum at step j, shape (n,)
    y: torch.Tensor  #: the softmax, exp(x - m_n) / ℓ_n, shape (n,)

    def partial(self, j: int) -> torch.Tensor:
        """The softmax of ``x[:j+1]`` from the state after step ``j``: :math:`e^{x_i - m_j}/\\ell_j`."""
        if isinstance(j, bool) or not isinstance(j, int | np.integer):
            raise TypeError(f"j must be an int in [0, {len(self.x)}), got {type(j).__name__} {j!r}")
        if not 0 <= j < len(self.x):
            raise ValueError(f"j must be in [0, {len(self.x)}), got {j}")
        return torch.exp(self.x[: j + 1] - self.m[j]) / self.ell[j]


def online_softmax_steps(x: torch.Tensor) -> OnlineSoftmaxTrace:
    """:func:`online_softmax` of a 1-D tensor, keeping the state after every step (for figures).

    Args:
        x: shape ``(n,)``, finite.

    Returns:
        :class:`OnlineSoftmaxTrace` with :math:`m_j`, :math:`\\ell_j` and the rescale factors.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    if x.device.type != "meta" and bool(torch.isnan(x).any()):  # -inf (masked) is fine, NaN is not
        raise ValueError("x must not contain NaN (-inf, a masked score, is fine)")
    if x.ndim != 1 or x.numel() == 0:
        raise ValueError(f"x must have shape (n,) with n >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x must be finite")
    m_prev, ell = torch.tensor(float("-inf"), dtype=x.dtype), torch.tensor(0.0, dtype=x.dtype)
    ms, ells, rescales = [], [], []
    for xj in x:
        m_new = torch.maximum(m_prev, xj)
        rescale = _exp_diff(m_prev, m_new)
        ell = ell * rescale + torch.exp(xj - m_new)
        ms.append(m_new)
        ells.append(ell)
        rescales.append(rescale)
        m_prev = m_new
    m, ell_all = torch.stack(ms), torch.stack(ells)
    return OnlineSoftmaxTrace(x=x, m=m, ell=ell_all, rescale=torch.stack(rescales),
                              y=torch.exp(x - m[-1]) / ell_all[-1])


# --------------------------------------------------------------------------------------------
# 3. tiling: which blocks of S the loops visit
# --------------------------------------------------------------------------------------------
def _spans(n: int, block: int) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` of consecutive blocks of ``block`` rows; the last one may be shorter."""
    for start in range(0, n, block):
        yield start, min(start + block, n)


def _visible(q_start: int, q_stop: int, k_start: int, causal: bool) -> bool:
    """Whether any query row in ``[q_start, q_stop)`` may see a key from ``k_start`` on."""
    return not causal or k_start <= q_stop - 1


def _needs_mask(q_start: int, k_stop: int, causal: bool) -> bool:
    """Whether the block has keys above the diagonal (some, not all: see :func:`_visible`)."""
    return causal and k_stop - 1 > q_start


@dataclass(frozen=True)
class Tile:
    """One block :math:`S_{ij}` of the score matrix: query rows ``[q0, q1)``, key columns ``[k0, k1)``."""

    q0: int
    q1: int
    k0: int
    k1: int
    masked: bool  #: the block straddles the causal diagonal and needs an element-wise mask


def tile_schedule(n_q: int, n_k: int, block_q: int, block_k: int, causal: bool = False) -> list[Tile]:
    """The blocks of :math:`S` that :func:`flash_attention`'s forward loop computes, in order.

    Queries outside, keys inside (FlashAttention-2's order, also the Triton kernel's): for each
    query block the loop sweeps the key blocks, so only one :math:`b_q \\times b_k` tile of
    :math:`S` exists at a time. With ``causal=True`` blocks entirely above the diagonal are
    skipped: about half of them for :math:`N_q = N_k`.

    Args:
        n_q, n_k: numbers of queries and keys; block_q, block_k: tile sizes :math:`b_q, b_k`.
        causal: skip the blocks the causal mask hides completely.

    Returns:
        The visited :class:`Tile` objects in loop order.
    """
    n_q, n_k = check_int("n_q", n_q), check_int("n_k", n_k)
    block_q, block_k = check_int("block_q", block_q), check_int("block_k", block_k)
    causal = _check_causal(causal)
    return [
        Tile(q0, q1, k0, k1, _needs_mask(q0, k1, causal))
        for q0, q1 in _spans(n_q, block_q)
        for k0, k1 in _spans(n_k, block_k)
        if _visible(q0, q1, k0, causal)
    ]


# --------------------------------------------------------------------------------------------
# 4. FlashAttention in PyTorch: forward with an online softmax, backward by recomputation
# --------------------------------------------------------------------------------------------
def _causal_mask_(s: torch.Tensor, q0: int, k0: int) -> torch.Tensor:
    """Set :math:`S_{ij} = -\\infty` where key ``k0 + c`` comes after query ``q0 + r``, in place."""
    rows = torch.arange(q0, q0 + s.shape[-2], device=s.device)[:, None]
    cols = torch.arange(k0, k0 + s.shape[-1], device=s.device)[None, :]
    return s.masked_fill_(cols > rows, float("-inf"))


def flash_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, block_q: int, block_k: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tiled forward pass (:func:`flash_attention` is the differentiable entry point).

    For each query block :math:`Q_i` (:math:`b_q` rows) and each key block :math:`K_j, V_j`:

    .. math::
        S_{ij} = \\tau Q_i K_j^\\top, \\quad
        m_i^{\\text{new}} = \\max(m_i, \\operatorname{rowmax} S_{ij}), \\quad
        \\tilde P_{ij} = e^{S_{ij} - m_i^{\\text{new}}},

        \\ell_i \\leftarrow e^{m_i - m_i^{\\text{new}}} \\ell_i + \\operatorname{rowsum} \\tilde P_{ij},
        \\quad
        A_i \\leftarrow e^{m_i - m_i^{\\text{new}}} A_i + \\tilde P_{ij} V_j, \\quad
        m_i \\leftarrow m_i^{\\text{new}},

    then :math:`O_i = A_i / \\ell_i` and :math:`L_i = m_i + \\log \\ell_i`. This is the online
    softmax of :func:`online_softmax`, one block of keys at a time, carrying the weighted sum
    :math:`A_i` of values along with the normaliser.

    Reads and writes: ``q``, ``k``, ``v`` are read; ``o`` and ``lse`` (:math:`O(N_q d)`) are
    written once per query block. The tiles ``s``, ``p`` are :math:`b_q \\times b_k`, whatever N.

    Returns:
        ``o`` of shape ``(B, H, N_q, d)`` and the log-sum-exp ``lse`` :math:`L`, shape ``(B, H, N_q)``.
    """
    _check_tiling(q, k, v, causal, block_q, block_k, scale)
    B, H, n_q, _ = q.shape
    n_k = k.shape[2]
    o = torch.empty_like(q)  # (B, H, N_q, d)
    lse = torch.empty(B, H, n_q, dtype=q.dtype, device=q.device)  # (B, H, N_q)
    for q0, q1 in _spans(n_q, block_q):
        q_i = q[:, :, q0:q1] * scale  # (B, H, b_q, d): read once
        m_i = torch.full((B, H, q1 - q0), float("-inf"), dtype=q.dtype, device=q.device)
        ell_i = torch.zeros_like(m_i)  # (B, H, b_q)
        acc = torch.zeros_like(q_i)  # (B, H, b_q, d): A_i, the unnormalised output
        for k0, k1 in _spans(n_k, block_k):
            if not _visible(q0, q1, k0, causal):
                break  # every later key block is hidden too
            s_ij = q_i @ k[:, :, k0:k1].transpose(-2, -1)  # (B, H, b_q, b_k): a tile, never all of S
            if _needs_mask(q0, k1, causal):
                _causal_mask_(s_ij, q0, k0)
            # the first key block holds key 0, which every query may see: m_new is finite
            m_new = torch.maximum(m_i, s_ij.amax(dim=-1))  # (B, H, b_q)
            p_ij = torch.exp(s_ij - m_new[..., None])  # (B, H, b_q, b_k)
            alpha = torch.exp(m_i - m_new)  # (B, H, b_q): rescales what was summed so far
            ell_i = alpha * ell_i + p_ij.sum(dim=-1)
            acc = alpha[..., None] * acc + p_ij @ v[:, :, k0:k1]
            m_i = m_new
        o[:, :, q0:q1] = acc / ell_i[..., None]  # write O_i once
        lse[:, :, q0:q1] = m_i + torch.log(ell_i)
    return o, lse


def flash_backward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor, lse: torch.Tensor,
    do: torch.Tensor, causal: bool, block_q: int, block_k: int, scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tiled backward pass: recompute each tile of :math:`P` from :math:`L`, never store it.

    With :math:`D_i = \\operatorname{rowsum}(dO_i \\circ O_i)`, for every visible tile:

    .. math::
        P_{ij} = e^{\\tau Q_i K_j^\\top - L_i}, \\quad
        dV_j \\mathrel{+}= P_{ij}^\\top dO_i, \\quad
        dP_{ij} = dO_i V_j^\\top, \\quad
        dS_{ij} = P_{ij} \\circ (dP_{ij} - D_i),

        dQ_i \\mathrel{+}= \\tau\\, dS_{ij} K_j, \\qquad dK_j \\mathrel{+}= \\tau\\, dS_{ij}^\\top Q_i .

    (:math:`D_i = \\sum_j P_{ij} dP_{ij}` is the softmax's correction term; it equals the row sum of
    :math:`dO \\circ O`, so it costs :math:`O(Nd)` and needs no :math:`P`.) Key blocks are the outer
    loop, so :math:`dK_j, dV_j` stay in fast memory; :math:`dQ` is accumulated in slow memory.

    Returns:
        ``dq, dk, dv`` with the shapes of ``q, k, v``.
    """
    _check_tiling(q, k, v, causal, block_q, block_k, scale)
    for name, t, shape in (("o", o, q.shape), ("do", do, q.shape), ("lse", lse, q.shape[:3])):
        if not isinstance(t, torch.Tensor) or t.dtype != q.dtype:
            raise TypeError(f"{name} must be a {q.dtype} tensor, got {getattr(t, 'dtype', type(t).__name__)}")
        if t.shape != shape:
            raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    n_q, n_k = q.shape[2], k.shape[2]
    dq = torch.zeros_like(q)  # (B, H, N_q, d)
    dk, dv = torch.empty_like(k), torch.empty_like(v)  # (B, H, N_k, d)
    delta = (do * o).sum(dim=-1)  # (B, H, N_q): D
    for k0, k1 in _spans(n_k, block_k):
        k_j, v_j = k[:, :, k0:k1], v[:, :, k0:k1]  # (B, H, b_k, d)
        dk_j, dv_j = torch.zeros_like(k_j), torch.zeros_like(v_j)
        for q0, q1 in _spans(n_q, block_q):
            if not _visible(q0, q1, k0, causal):
                continue  # this query block sees none of these keys
            q_i, do_i = q[:, :, q0:q1], do[:, :, q0:q1]  # (B, H, b_q, d)
            s_ij = (q_i @ k_j.transpose(-2, -1)) * scale  # (B, H, b_q, b_k): recomputed
            if _needs_mask(q0, k1, causal):
                _causal_mask_(s_ij, q0, k0)
            p_ij = torch.exp(s_ij - lse[:, :, q0:q1, None])  # exact softmax rows, from L
            dv_j += p_ij.transpose(-2, -1) @ do_i
            dp_ij = do_i @ v_j.transpose(-2, -1)  # (B, H, b_q, b_k)
            ds_ij = p_ij * (dp_ij - delta[:, :, q0:q1, None])
            dq[:, :, q0:q1] += (ds_ij @ k_j) * scale
            dk_j += (ds_ij.transpose(-2, -1) @ q_i) * scale
        dk[:, :, k0:k1], dv[:, :, k0:k1] = dk_j, dv_j
    return dq, dk, dv


class FlashAttentionFunction(torch.autograd.Function):
    """Autograd glue: save only ``q, k, v, o`` and the log-sum-exp (:math:`O(Nd)`), not P."""

    @staticmethod
    def forward(ctx, q, k, v, causal, block_q, block_k, scale):
        o, lse = flash_forward(q, k, v, causal, block_q, block_k, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.config = (causal, block_q, block_k, scale)
        ctx.mark_non_differentiable(lse)
        return o, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do, _dlse):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = flash_backward(q, k, v, o, lse, do.contiguous(), *ctx.config)
        return dq, dk, dv, None, None, None, None


def flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, block_q: int = 64,
    block_k: int = 64, *, scale: float | None = None, return_lse: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Exact attention, tiled: :math:`O = \\mathrm{softmax}(\\tau QK^\\top)V` without storing S or P.

    The forward pass is :func:`flash_forward` (online softmax over key blocks), the backward
    pass :func:`flash_backward` (tiles of P recomputed from the log-sum-exp). Extra memory is
    :math:`O(N d)` plus one :math:`b_q \\times b_k` tile, instead of :math:`O(N^2)`.

    Args:
        q: ``(B, H, N_q, d)``; k, v: ``(B, H, N_k, d)``.
        causal: query :math:`i` sees keys :math:`j \\le i` (top-left aligned, as in
            ``scaled_dot_product_attention(is_causal=True)``); fully hidden blocks are skipped.
        block_q, block_k: tile sizes :math:`b_q, b_k` (any positive ints; N need not be a multiple).
        scale: :math:`\\tau`, default :math:`1/\\sqrt d`.
        return_lse: also return :math:`L_i = \\log \\sum_j e^{S_{ij}}` (no gradient flows into it).

    Returns:
        ``o`` of shape ``(B, H, N_q, d)``, or ``(o, lse)`` with ``lse`` of shape ``(B, H, N_q)``.

    References:
        Dao et al. (2022), Algorithms 1-2 and Appendix B; Dao (2023) for the loop order.
    """
    _check_qkv(q, k, v)
    block_q, block_k = check_int("block_q", block_q), check_int("block_k", block_k)
    tau = _resolve_scale(scale, q.shape[-1])
    o, lse = FlashAttentionFunction.apply(q, k, v, _check_causal(causal), block_q, block_k, tau)
    return (o, lse) if return_lse else o


# --------------------------------------------------------------------------------------------
# 5. the forward pass as a Triton kernel
# --------------------------------------------------------------------------------------------
if tl is not None:

    def flash_forward_kernel(
        Q, K, V, Out, LSE,  # pointers to (B·H, N_Q, D), (B·H, N_K, D) twice, (B·H, N_Q, D), (B·H, N_Q)
        n_q, n_k, scale,  # runtime sizes and τ
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    ):
        """One program = one block of BLOCK_M queries of one (batch, head); grid (⌈N_q/BLOCK_M⌉, B·H).

        Reads its Q block once and every visible K, V block once; writes its O block and its
        log-sum-exp once. S and P exist only as a BLOCK_M × BLOCK_N tile in registers.

        Exponentials in base 2, as in Triton's fused-attention tutorial: the scores are kept in
        units of log2, :math:`s' = \\tau \\log_2(e)\\, q \\cdot k`, so that
        :math:`e^{\\tau q \\cdot k - m} = 2^{s' - m'}` and one multiplication by ``qk_scale``
        replaces a multiplication inside every exponential (``exp2`` is the GPU's native
        instruction; ``exp`` is ``exp2`` of a scaled argument). The log-sum-exp is converted
        back to natural log when it is stored.
        """
        start_m = tl.program_id(0) * BLOCK_M  # first query row of this program
        bh = tl.program_id(1)  # which (batch, head)
        offs_m = start_m + tl.arange(0, BLOCK_M)  # (BLOCK_M,) query rows
        offs_n = tl.arange(0, BLOCK_N)  # (BLOCK_N,) key columns within a block
        offs_d = tl.arange(0, HEAD_DIM)  # (HEAD_DIM,)
        q_ptrs = Q + bh * n_q * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
        q = tl.load(q_ptrs, mask=offs_m[:, None] < n_q, other=0.0)  # (BLOCK_M, HEAD_DIM)

        qk_scale = scale * 1.4426950408889634  # τ·log2(e): scores in base-2 units
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max (base 2)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # unnormalised output
        hi = n_k  # end of the key blocks this program visits
        unmasked_end = n_k  # key blocks before this need no causal mask
        if CAUSAL:
            hi = tl.minimum(n_k, start_m + BLOCK_M)  # keys after the block's last query are hidden
            # a key block that ends at or before the first query row is visible to every row
            unmasked_end = tl.minimum((start_m // BLOCK_N) * BLOCK_N, hi)
        # stage 1: the key blocks every query row of the block may see, no causal mask
        for start_n in range(0, unmasked_end, BLOCK_N):
            cols = start_n + offs_n  # (BLOCK_N,) key indices
            kv_off = bh * n_k * HEAD_DIM + cols[:, None] * HEAD_DIM + offs_d[None, :]
            k = tl.load(K + kv_off, mask=cols[:, None] < n_k, other=0.0)  # (BLOCK_N, HEAD_DIM)
            v = tl.load(V + kv_off, mask=cols[:, None] < n_k, other=0.0)  # (BLOCK_N, HEAD_DIM)
            s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
            s = tl.where(cols[None, :] < n_k, s, float("-inf"))  # padding columns of the last block
            m_new = tl.maximum(m_i, tl.max(s, 1))  # (BLOCK_M,)
            p = tl.exp2(s - m_new[:, None])  # (BLOCK_M, BLOCK_N) = e^{τ q·k - m}
            alpha = tl.exp2(m_i - m_new)  # rescales the old sum and accumulator
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
            m_i = m_new
        # stage 2 (causal only): the blocks on the diagonal, masked element by element
        if CAUSAL:
            for start_n in range(unmasked_end, hi, BLOCK_N):
                cols = start_n + offs_n
                kv_off = bh * n_k * HEAD_DIM + cols[:, None] * HEAD_DIM + offs_d[None, :]
                k = tl.load(K + kv_off, mask=cols[:, None] < n_k, other=0.0)
                v = tl.load(V + kv_off, mask=cols[:, None] < n_k, other=0.0)
                s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale
                s = tl.where((cols[None, :] < n_k) & (cols[None, :] <= offs_m[:, None]), s, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(s, 1))
                p = tl.exp2(s - m_new[:, None])
                alpha = tl.exp2(m_i - m_new)
                l_i = l_i * alpha + tl.sum(p, 1)
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
                m_i = m_new

        acc = acc / l_i[:, None]
        o_ptrs = Out + bh * n_q * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
        tl.store(o_ptrs, acc.to(Out.dtype.element_ty), mask=offs_m[:, None] < n_q)
        lse = (m_i + tl.log2(l_i)) * 0.6931471805599453  # back to natural log: × ln 2
        tl.store(LSE + bh * n_q + offs_m, lse, mask=offs_m < n_q)

    def flash_backward_preprocess_kernel(
        Out, DO, Delta,  # pointers to (B·H, N_Q, D) twice and (B·H, N_Q)
        n_q, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    ):
        """:math:`D_i = \\operatorname{rowsum}(dO_i \\circ O_i)` for one block of rows; grid
        (⌈N_q/BLOCK_M⌉, B·H). Reads O and dO once, writes N_q numbers: the softmax's correction
        term without P."""
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        bh = tl.program_id(1)
        offs_d = tl.arange(0, HEAD_DIM)
        off = bh * n_q * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
        o = tl.load(Out + off, mask=offs_m[:, None] < n_q, other=0.0).to(tl.float32)
        do = tl.load(DO + off, mask=offs_m[:, None] < n_q, other=0.0).to(tl.float32)
        tl.store(Delta + bh * n_q + offs_m, tl.sum(o * do, 1), mask=offs_m < n_q)

    def flash_backward_dkdv_kernel(
        Q, K, V, DO, LSE, Delta, DK, DV,  # Q, dO: (B·H, N_Q, D); K, V, dK, dV: (B·H, N_K, D); L, D: (B·H,N_Q)
        n_q, n_k, scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    ):
        """One program = one block of BLOCK_N keys; grid (⌈N_k/BLOCK_N⌉, B·H). FlashAttention-2's
        Algorithm 2 for :math:`dK_j, dV_j`: they stay on chip while the loop sweeps the query
        blocks that can see these keys, rebuilding each tile of P from Q, K and the saved L.

        The tile is computed transposed, keys as rows (as in Triton's fused-attention tutorial):
        :math:`P_{ij}^\\top = 2^{s'^\\top - L_i \\log_2 e}` with :math:`s' = \\tau \\log_2(e)\\, QK^\\top`,
        then :math:`dV_j \\mathrel{+}= P^\\top dO_i`, :math:`dP^\\top = V_j dO_i^\\top`,
        :math:`dS^\\top = P^\\top \\circ (dP^\\top - D_i)`, :math:`dK_j \\mathrel{+}= \\tau\\, dS^\\top Q_i`.
        """
        start_n = tl.program_id(0) * BLOCK_N  # first key of this program
        bh = tl.program_id(1)
        offs_n = start_n + tl.arange(0, BLOCK_N)  # (BLOCK_N,) key indices
        offs_m = tl.arange(0, BLOCK_M)  # (BLOCK_M,) query rows within a block
        offs_d = tl.arange(0, HEAD_DIM)
        kv_off = bh * n_k * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
        k = tl.load(K + kv_off, mask=offs_n[:, None] < n_k, other=0.0)  # (BLOCK_N, HEAD_DIM)
        v = tl.load(V + kv_off, mask=offs_n[:, None] < n_k, other=0.0)  # (BLOCK_N, HEAD_DIM)
        qk_scale = scale * 1.4426950408889634  # τ·log2(e), as in the forward kernel
        dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        lo = 0  # first query row of the sweep (query blocks need not align with key blocks)
        if CAUSAL:
            lo = start_n  # queries before the first key see none of these keys
        for start_m in range(lo, n_q, BLOCK_M):
            rows = start_m + offs_m  # (BLOCK_M,) query indices
            q_off = bh * n_q * HEAD_DIM + rows[:, None] * HEAD_DIM + offs_d[None, :]
            q = tl.load(Q + q_off, mask=rows[:, None] < n_q, other=0.0)  # (BLOCK_M, HEAD_DIM)
            do = tl.load(DO + q_off, mask=rows[:, None] < n_q, other=0.0)
            lse2 = tl.load(LSE + bh * n_q + rows, mask=rows < n_q, other=0.0) * 1.4426950408889634
            delta = tl.load(Delta + bh * n_q + rows, mask=rows < n_q, other=0.0)  # D_i
            st = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
            visible = (offs_n[:, None] < n_k) & (rows[None, :] < n_q)
            if CAUSAL:
                visible = visible & (offs_n[:, None] <= rows[None, :])  # key j ≤ query i
            pt = tl.exp2(tl.where(visible, st, float("-inf")) - lse2[None, :])  # P^T, exact
            dv += tl.dot(pt.to(do.dtype), do, input_precision=DOT_PRECISION)
            dpt = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # dP^T (BLOCK_N, BLOCK_M)
            dst = pt * (dpt - delta[None, :])  # dS^T
            dk += tl.dot(dst.to(q.dtype), q, input_precision=DOT_PRECISION)
        tl.store(DK + kv_off, (dk * scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < n_k)
        tl.store(DV + kv_off, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < n_k)

    def flash_backward_dq_kernel(
        Q, K, V, DO, LSE, Delta, DQ,  # as in flash_backward_dkdv_kernel; DQ like Q
        n_q, n_k, scale,
        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr,
    ):
        """One program = one block of BLOCK_M queries; grid (⌈N_q/BLOCK_M⌉, B·H). The forward
        kernel's loop again, with :math:`P_{ij} = 2^{s' - L_i \\log_2 e}` rebuilt from the saved
        L instead of an online softmax: :math:`dP = dO_i V_j^\\top`,
        :math:`dS = P \\circ (dP - D_i)`, :math:`dQ_i \\mathrel{+}= \\tau\\, dS K_j`. A separate
        kernel, so that no two programs add to the same rows of dQ (no atomics)."""
        start_m = tl.program_id(0) * BLOCK_M
        bh = tl.program_id(1)
        rows = start_m + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        q_off = bh * n_q * HEAD_DIM + rows[:, None] * HEAD_DIM + offs_d[None, :]
        q = tl.load(Q + q_off, mask=rows[:, None] < n_q, other=0.0)  # (BLOCK_M, HEAD_DIM)
        do = tl.load(DO + q_off, mask=rows[:, None] < n_q, other=0.0)
        lse2 = tl.load(LSE + bh * n_q + rows, mask=rows < n_q, other=0.0) * 1.4426950408889634
        delta = tl.load(Delta + bh * n_q + rows, mask=rows < n_q, other=0.0)
        qk_scale = scale * 1.4426950408889634
        dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        hi = n_k
        if CAUSAL:
            hi = tl.minimum(n_k, start_m + BLOCK_M)  # keys after the block's last query are hidden
        for start_n in range(0, hi, BLOCK_N):
            cols = start_n + offs_n
            kv_off = bh * n_k * HEAD_DIM + cols[:, None] * HEAD_DIM + offs_d[None, :]
            k = tl.load(K + kv_off, mask=cols[:, None] < n_k, other=0.0)  # (BLOCK_N, HEAD_DIM)
            v = tl.load(V + kv_off, mask=cols[:, None] < n_k, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
            visible = cols[None, :] < n_k
            if CAUSAL:
                visible = visible & (cols[None, :] <= rows[:, None])
            p = tl.exp2(tl.where(visible, s, float("-inf")) - lse2[:, None])  # P, exact
            dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PRECISION)
        tl.store(DQ + q_off, (dq * scale).to(DQ.dtype.element_ty), mask=rows[:, None] < n_q)


def triton_interpreted() -> bool:
    """Whether Triton runs kernels in its interpreter in this process.

    Decided when ``triton`` was imported (``TRITON_INTERPRET=1`` then): its library functions
    such as ``tl.sum`` are interpreted functions. The interpreter runs the kernel's Python code
    with NumPy, on CPU tensors (and on CUDA tensors, through host copies).
    """
    if triton is None:
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.sum, InterpretedFunction)


@contextlib.contextmanager
def _triton_interpret_env(interpret: bool) -> Iterator[None]:
    """Set ``TRITON_INTERPRET`` for the duration of a ``triton.jit`` decoration, then restore it."""
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if interpret else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


@functools.cache
def _jitted(kernel: Callable, interpret: bool) -> Callable:
    """``kernel`` decorated with ``triton.jit``, in the same mode as Triton's own library
    functions (whatever ``TRITON_INTERPRET`` says now)."""
    with _triton_interpret_env(interpret):
        return triton.jit(kernel)


def _jitted_kernel(interpret: bool) -> Callable:
    """:func:`flash_forward_kernel`, jitted (see :func:`_jitted`)."""
    return _jitted(flash_forward_kernel, interpret)


def _check_block(name: str, value: int) -> int:
    value = check_int(name, value)
    if value < 16 or value > 256 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two in [16, 256] (tl.arange and tl.dot need it), "
                         f"got {value}")
    return value


def _check_triton_call(caller, q, k, v, block_m, block_n, scale) -> tuple[int, int, float]:
    """The checks every Triton entry point makes; returns the block sizes and :math:`\\tau`."""
    if triton is None:
        raise ImportError(f"{caller} needs triton: pip install triton")
    _check_qkv(q, k, v)
    d = q.shape[-1]
    if d not in TRITON_HEAD_DIMS:
        raise ValueError(f"head dimension d={d} is not supported by the Triton kernel; "
                         f"expected one of {TRITON_HEAD_DIMS} (pad the heads, or use flash_attention)")
    if q.dtype not in _TRITON_DTYPES:
        raise TypeError(f"the Triton kernel supports dtypes {_TRITON_DTYPES}, got {q.dtype}")
    if q.device.type not in ("cpu", "cuda"):
        raise ValueError(f"tensors must be on the CPU (interpreter) or a CUDA GPU, got {q.device}")
    if q.device.type == "cpu" and not triton_interpreted():
        raise RuntimeError(
            "CPU tensors need the Triton interpreter, but triton was imported in compile mode; "
            "set TRITON_INTERPRET=1 before the first `import triton` (restart the kernel), or move "
            "the tensors to a CUDA GPU")
    block_m, block_n = _check_block("block_m", block_m), _check_block("block_n", block_n)
    return block_m, block_n, _resolve_scale(scale, d)


def flash_attention_triton(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False, *,
    scale: float | None = None, return_lse: bool = False, block_m: int = 64, block_n: int = 64,
    num_warps: int = 4, num_stages: int = 2,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """FlashAttention's forward pass as a Triton kernel (:func:`flash_forward_kernel`).

    Same result as :func:`flash_attention`. On CUDA tensors the kernel is compiled; on CPU
    tensors it runs in the Triton interpreter (see :func:`triton_interpreted`), which executes
    the same code with NumPy, one program after another (slow: keep shapes small). Gradients,
    if asked for, come from the Triton backward kernels (:func:`flash_attention_triton_backward`),
    which rebuild P from the forward kernel's log-sum-exp.

    On a GPU, float32 inputs use IEEE products in ``tl.dot`` (exact, slow); use float16 or
    bfloat16 for speed (``bench/flash_attention.py``).

    Args:
        q: ``(B, H, N_q, d)``; k, v: ``(B, H, N_k, d)``; d must be one of :data:`TRITON_HEAD_DIMS`.
        causal: as in :func:`flash_attention`.
        scale: :math:`\\tau`, default :math:`1/\\sqrt d`.
        return_lse: also return the log-sum-exp, shape ``(B, H, N_q)``, float32.
        block_m, block_n: tile sizes, powers of two in [16, 256].
        num_warps, num_stages: launch options of the compiled kernel (ignored by the interpreter).

    Returns:
        ``o`` (dtype of ``q``), or ``(o, lse)``.

    Raises:
        ImportError: triton is not installed.
        ValueError, TypeError: bad shapes, dtypes, devices, head dimension or block sizes.
        RuntimeError: CPU tensors, but triton was imported without the interpreter.
    """
    block_m, block_n, tau = _check_triton_call("flash_attention_triton", q, k, v, block_m, block_n, scale)
    num_warps, num_stages = check_int("num_warps", num_warps), check_int("num_stages", num_stages)
    causal = _check_causal(causal)
    o, lse = _TritonFlashFunction.apply(q, k, v, causal, tau, block_m, block_n, num_warps, num_stages)
    return (o, lse) if return_lse else o


def _launch_triton(q, k, v, causal, scale, block_m, block_n, num_warps, num_stages):
    B, H, n_q, d = q.shape
    n_k = k.shape[2]
    q3 = q.reshape(B * H, n_q, d).contiguous()  # (B·H, N_q, d)
    k3 = k.reshape(B * H, n_k, d).contiguous()  # (B·H, N_k, d)
    v3 = v.reshape(B * H, n_k, d).contiguous()
    o3 = torch.empty_like(q3)  # (B·H, N_q, d)
    lse = torch.empty(B * H, n_q, dtype=torch.float32, device=q.device)  # (B·H, N_q)
    kernel = _jitted_kernel(triton_interpreted())
    grid = (triton.cdiv(n_q, block_m), B * H)
    kernel[grid](
        q3, k3, v3, o3, lse, n_q, n_k, scale,
        HEAD_DIM=d, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=num_warps, num_stages=num_stages,
    )
    return o3.reshape(B, H, n_q, d), lse.reshape(B, H, n_q)


def flash_attention_triton_backward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor, lse: torch.Tensor,
    do: torch.Tensor, causal: bool = False, *, scale: float | None = None, block_m: int = 64,
    block_n: int = 64, num_warps: int = 4, num_stages: int = 2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FlashAttention-2's backward pass (Dao 2023, Algorithm 2) as three Triton kernels.

    Given the forward pass's output ``o`` and log-sum-exp ``lse`` (:math:`L`) and the incoming
    gradient ``do`` (:math:`dO`), it returns :math:`dQ, dK, dV` without storing anything
    :math:`N_q \\times N_k`: each tile :math:`P_{ij} = e^{\\tau Q_i K_j^\\top - L_i}` is rebuilt on
    chip from Q, K and L, the same recomputation as :func:`flash_backward`.

    1. :func:`flash_backward_preprocess_kernel`: :math:`D_i = \\operatorname{rowsum}(dO_i \\circ O_i)`;
    2. :func:`flash_backward_dkdv_kernel`: one program per key block, looping over query blocks;
    3. :func:`flash_backward_dq_kernel`: one program per query block, looping over key blocks.

    Args:
        q: ``(B, H, N_q, d)``; k, v: ``(B, H, N_k, d)``; constraints as in :func:`flash_attention_triton`.
        o, do: shape, dtype and device of ``q``.
        lse: ``(B, H, N_q)``, a floating tensor on ``q``'s device (the forward's ``return_lse``).
        causal, scale, block_m, block_n, num_warps, num_stages: as in :func:`flash_attention_triton`
            (use the forward's ``causal`` and ``scale``).

    Returns:
        ``dq, dk, dv`` with the shapes and dtype of ``q, k, v``.
    """
    block_m, block_n, tau = _check_triton_call("flash_attention_triton_backward", q, k, v,
                                               block_m, block_n, scale)
    for name, t, shape in (("o", o, q.shape), ("do", do, q.shape), ("lse", lse, q.shape[:3])):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.shape != shape or t.device != q.device:
            raise ValueError(f"{name} must have shape {tuple(shape)} on {q.device}, "
                             f"got {tuple(t.shape)} on {t.device}")
        if (t.dtype != q.dtype) if name != "lse" else not t.dtype.is_floating_point:
            expected = q.dtype if name != "lse" else "a floating dtype"
            raise TypeError(f"{name} must have dtype {expected}, got {t.dtype}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite (the forward pass's output, its log-sum-exp and "
                             f"the incoming gradient are), got a NaN or infinity")
    causal = _check_causal(causal)
    num_warps = check_int("num_warps", num_warps)
    num_stages = check_int("num_stages", num_stages)
    return _launch_triton_backward(q, k, v, o, lse, do, causal, tau, block_m, block_n, num_warps, num_stages)


def _launch_triton_backward(q, k, v, o, lse, do, causal, scale, block_m, block_n, num_warps, num_stages):
    B, H, n_q, d = q.shape
    n_k = k.shape[2]
    q3, o3, do3 = (t.reshape(B * H, n_q, d).contiguous() for t in (q, o, do))  # (B·H, N_q, d)
    k3, v3 = (t.reshape(B * H, n_k, d).contiguous() for t in (k, v))  # (B·H, N_k, d)
    lse3 = lse.reshape(B * H, n_q).to(torch.float32).contiguous()  # (B·H, N_q)
    delta = torch.empty(B * H, n_q, dtype=torch.float32, device=q.device)  # D, (B·H, N_q)
    dq3, dk3, dv3 = torch.empty_like(q3), torch.empty_like(k3), torch.empty_like(v3)
    interpret = triton_interpreted()
    launch = {"num_warps": num_warps, "num_stages": num_stages}
    common = {"HEAD_DIM": d, "BLOCK_M": block_m, "BLOCK_N": block_n, "CAUSAL": causal,
              "DOT_PRECISION": "ieee" if q.dtype == torch.float32 else "tf32", **launch}
    _jitted(flash_backward_preprocess_kernel, interpret)[(triton.cdiv(n_q, block_m), B * H)](
        o3, do3, delta, n_q, HEAD_DIM=d, BLOCK_M=block_m, **launch)
    _jitted(flash_backward_dkdv_kernel, interpret)[(triton.cdiv(n_k, block_n), B * H)](
        q3, k3, v3, do3, lse3, delta, dk3, dv3, n_q, n_k, scale, **common)
    _jitted(flash_backward_dq_kernel, interpret)[(triton.cdiv(n_q, block_m), B * H)](
        q3, k3, v3, do3, lse3, delta, dq3, n_q, n_k, scale, **common)
    return dq3.reshape(q.shape), dk3.reshape(k.shape), dv3.reshape(v.shape)


class _TritonFlashFunction(torch.autograd.Function):
    """Triton forward, Triton backward (recomputing P from the kernel's log-sum-exp)."""

    @staticmethod
    def forward(ctx, q, k, v, causal, scale, block_m, block_n, num_warps, num_stages):
        o, lse = _launch_triton(q, k, v, causal, scale, block_m, block_n, num_warps, num_stages)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.config = (causal, block_m, block_n, scale, num_warps, num_stages)
        ctx.mark_non_differentiable(lse)
        return o, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do, _dlse):
        q, k, v, o, lse = ctx.saved_tensors
        causal, block_m, block_n, scale, num_warps, num_stages = ctx.config
        dq, dk, dv = _launch_triton_backward(q, k, v, o, lse, do.contiguous(), causal, scale,
                                             block_m, block_n, num_warps, num_stages)
        return dq, dk, dv, None, None, None, None, None, None


# --------------------------------------------------------------------------------------------
# 6. IO complexity: count the traffic between slow and fast memory
# --------------------------------------------------------------------------------------------
@dataclass
class Traffic:
    """Elements read from and written to slow memory (HBM), per matrix.

    Multiply by the bytes per element (4 for float32, 2 for float16) for bytes.
    """

    reads: dict[str, int] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)
    blocks: tuple[int, int] = (0, 0)  #: tile sizes the simulation used: (rows, columns)

    def read(self, name: str, n: int) -> None:
        """Count ``n >= 0`` elements of matrix ``name`` read from slow memory."""
        self.reads[_check_name(name)] = self.reads.get(name, 0) + _check_count(n)

    def write(self, name: str, n: int) -> None:
        """Count ``n >= 0`` elements of matrix ``name`` written to slow memory."""
        self.writes[_check_name(name)] = self.writes.get(name, 0) + _check_count(n)

    @property
    def total(self) -> int:
        """All elements moved, reads plus writes."""
        return sum(self.reads.values()) + sum(self.writes.values())


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str (the matrix), got {name!r}")
    return name


def _check_count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be an int >= 0 (a number of elements), got {n!r}")
    return int(n)


def flash_block_sizes(M: int, d: int) -> tuple[int, int]:
    """Algorithm 1's tiles for fast memory of ``M`` elements: :math:`B_c = \\lceil M/4d \\rceil`,
    :math:`B_r = \\min(\\lceil M/4d \\rceil, d)`. Each of the blocks of Q, K, V, O then takes at most
    a quarter of the memory (Dao et al. 2022, Algorithm 1, line 1)."""
    M, d = check_int("M", M), check_int("d", d)
    b_c = math.ceil(M / (4 * d))
    return min(b_c, d), b_c


def standard_tile_size(M: int, d: int) -> int:
    """The tile side :math:`b` of the standard algorithm's matrix products: the largest with
    :math:`2bd + b^2 \\le M` (a row block of Q, a row block of K and the tile of S fit together)."""
    M, d = check_int("M", M), check_int("d", d)
    return math.isqrt(d * d + M) - d


def flash2_block_size(M: int, d: int) -> int:
    """The square tile :math:`b` (``block_q = block_k = b``, as in :func:`flash_attention`) of the
    FlashAttention-2 loop order for fast memory of ``M`` elements: the largest with
    :math:`4bd + b^2 \\le M`, so that :math:`Q_i`, the accumulator :math:`A_i`, :math:`K_j`,
    :math:`V_j` and the tile :math:`S_{ij}` fit together (at least 1)."""
    M, d = check_int("M", M), check_int("d", d)
    return max(1, math.isqrt(4 * d * d + M) - 2 * d)


def hbm_traffic(N: int, d: int, M: int, algorithm: str, causal: bool = False) -> Traffic:
    """Elements moved between slow memory (HBM) and fast memory of ``M`` elements, by simulation.

    The loops of each algorithm are run with counters instead of arithmetic (one head, N
    queries and keys, head dimension d):

    - ``"standard"`` (Dao et al. 2022, Algorithm 0): (1) :math:`S = QK^\\top` as a tiled matrix
      product with :math:`b \\times b` tiles (:func:`standard_tile_size`): each row block of Q read
      once, the whole of K read once per row block, S written; (2) :math:`P = \\mathrm{softmax}(S)`
      row by row: S read (twice, with the online softmax, if a row does not fit: :math:`N > M`),
      P written; (3) :math:`O = PV` tiled the same way: P read, V read once per row block, O
      written. The causal mask is applied element-wise, so it saves no traffic.
      Total :math:`\\Theta(N^2 + N^2 d / b)`, i.e. :math:`\\Theta(Nd + N^2)` once :math:`b \\ge d`.
    - ``"flash"`` (FlashAttention-1, Algorithm 1: keys outside, queries inside): tiles from
      :func:`flash_block_sizes`; O, ℓ, m initialised in HBM; for each key block :math:`K_j, V_j`
      (read once), for each query block: read :math:`Q_i, O_i, \\ell_i, m_i`, write
      :math:`O_i, \\ell_i, m_i`. With ``causal=True`` hidden blocks are skipped. Total
      :math:`\\approx 12 N^2 d^2 / M` for :math:`d \\le M \\le Nd` (Theorem 2).
    - ``"flash2"`` (FlashAttention-2's order, the one :func:`flash_forward` and the Triton kernel
      use: queries outside, keys inside): :math:`b \\times b` tiles from :func:`flash2_block_size`;
      for each query block read :math:`Q_i` once, read every visible :math:`K_j, V_j`, then write
      :math:`O_i` and the log-sum-exp :math:`L_i` once. Total
      :math:`2N^2 d / b + 2Nd + N`: :math:`\\approx 8 N^2 d^2 / M` while :math:`b \\ll d`, and
      :math:`\\approx 2 N^2 d / \\sqrt M` once :math:`b \\gg d`.

    Args:
        N: sequence length; d: head dimension; M: fast-memory size in elements, at least 4d.
        algorithm: ``"standard"``, ``"flash"`` or ``"flash2"``.
        causal: skip the blocks the causal mask hides (FlashAttention only).

    Returns:
        :class:`Traffic`: elements read and written per matrix; ``.total`` sums them.

    References:
        Dao et al. (2022), Algorithms 0 and 1, Theorem 2; Dao (2023), Algorithm 1.
    """
    N, d, M = check_int("N", N), check_int("d", d), check_int("M", M)
    causal = _check_causal(causal)
    if M < 4 * d:
        raise ValueError(f"M must be >= 4*d = {4 * d} elements (one row of each of Q, K, V, O), got {M}")
    traffic = Traffic()
    if algorithm == "standard":
        b = standard_tile_size(M, d)
        traffic.blocks = (b, b)
        rows = list(_spans(N, b))
        for r0, r1 in rows:  # (1) S = Q Kᵀ
            traffic.read("Q", (r1 - r0) * d)
            for c0, c1 in rows:
                traffic.read("K", (c1 - c0) * d)
                traffic.write("S", (r1 - r0) * (c1 - c0))
        passes = 1 if N <= M else 2  # (2) softmax, row by row
        for _ in range(N):
            traffic.read("S", passes * N)
            traffic.write("P", N)
        for r0, r1 in rows:  # (3) O = P V
            for c0, c1 in rows:
                traffic.read("P", (r1 - r0) * (c1 - c0))
                traffic.read("V", (c1 - c0) * d)
            traffic.write("O", (r1 - r0) * d)
    elif algorithm == "flash":
        b_r, b_c = flash_block_sizes(M, d)
        traffic.blocks = (b_r, b_c)
        traffic.write("O", N * d)  # line 2: O = 0, ℓ = 0, m = -∞ in HBM
        traffic.write("ℓ, m", 2 * N)
        for k0, k1 in _spans(N, b_c):  # line 5
            traffic.read("K", (k1 - k0) * d)  # line 6
            traffic.read("V", (k1 - k0) * d)
            for q0, q1 in _spans(N, b_r):  # line 7
                if not _visible(q0, q1, k0, causal):
                    continue
                rows = q1 - q0
                traffic.read("Q", rows * d)  # line 8
                traffic.read("O", rows * d)
                traffic.read("ℓ, m", 2 * rows)
                traffic.write("O", rows * d)  # lines 12-13
                traffic.write("ℓ, m", 2 * rows)
    elif algorithm == "flash2":
        b = flash2_block_size(M, d)
        traffic.blocks = (b, b)
        for q0, q1 in _spans(N, b):  # outer loop: one query block (one Triton program)
            traffic.read("Q", (q1 - q0) * d)  # Q_i stays on chip for the whole inner loop
            for k0, k1 in _spans(N, b):
                if not _visible(q0, q1, k0, causal):
                    break
                traffic.read("K", (k1 - k0) * d)
                traffic.read("V", (k1 - k0) * d)
            traffic.write("O", (q1 - q0) * d)  # written once, normalised
            traffic.write("L", q1 - q0)  # the log-sum-exp, for the backward pass
    else:
        raise ValueError(f"algorithm must be 'standard', 'flash' or 'flash2', got {algorithm!r}")
    return traffic


def count_reads(fn: Callable[..., object], **tensors: torch.Tensor) -> dict[str, int]:
    """Elements of each named input tensor that ``fn(**tensors)`` reads through indexing.

    Every input is wrapped in a tensor subclass whose ``__getitem__`` adds the number of elements
    of the slice it returns to a tally (``torch.Tensor.__torch_function__``); everything else runs
    unchanged. Run on :func:`flash_forward`, this counts the loads its loops really make, an
    independent check of :func:`hbm_traffic`'s ``"flash2"`` simulation (a tiled loop reads
    each tile by slicing; whole-tensor reads that are not slices, such as the argument checks'
    reductions, are not counted).

    Args:
        fn: called as ``fn(**tensors)``.
        tensors: the inputs to track, by name (``q=..., k=..., v=...``).

    Returns:
        ``{name: elements read by slicing}``.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if not tensors:
        raise ValueError("count_reads needs at least one named tensor to track, e.g. q=q")
    counts = dict.fromkeys(tensors, 0)
    names: dict[int, str] = {}

    class _Tracked(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            with torch._C.DisableTorchFunctionSubclass():
                out = func(*args, **kwargs)
            if func is torch.Tensor.__getitem__ and id(args[0]) in names:
                counts[names[id(args[0])]] += out.numel()
            return out

    wrapped = {}
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        wrapped[name] = t.as_subclass(_Tracked)
        names[id(wrapped[name])] = name
    fn(**wrapped)
    return counts


# --------------------------------------------------------------------------------------------
# 7. measuring: peak memory on the CPU, power-law exponents
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _without_profiler_log_lines() -> Iterator[None]:
    """Drop the ``profiler_start`` / ``profiler_stop`` lines that the profiler's C++ side (Kineto)
    writes to file descriptor 2; every other line written there meanwhile is passed on."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = [line for line in lines if "ActivityProfilerHandler" not in line]
            if kept:
                sys.stderr.write("".join(kept))


def peak_memory(fn: Callable[..., object], *args: object, **kwargs: object) -> int:
    """Peak bytes the CPU allocator holds during ``fn(*args, **kwargs)``, beyond what existed before.

    ``torch.profiler`` with ``profile_memory=True`` records every allocation and every free of
    the CPU allocator, with a timestamp, including the temporaries inside operators. Replaying
    them in time order gives the live bytes at each moment; the peak is their maximum. Tensors
    that existed before the call (the inputs) are not counted; the result of ``fn`` is (it is
    freed at the end, after the peak).

    Args:
        fn: the function to measure; args, kwargs: passed to it.

    Returns:
        The peak, in bytes (an ``int``).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    with _without_profiler_log_lines(), profile(activities=activities, profile_memory=True) as prof:
        result = fn(*args, **kwargs)
        del result
    events = [
        e for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak

