"""The models and experiments of the chapter "Training in less memory".

``book/efficient_training.md`` teaches this module together with :mod:`tutorlib.efficient`
(which holds the methods: number formats, loss scaling, saved-tensor counting, checkpointing):

- :class:`ResidualBlock`, :func:`make_mlp`: the deep MLP whose activations are checkpointed;
- :class:`TinyTransformer`, :func:`transformer_param_count`,
  :func:`transformer_activation_bytes`: where the memory of training goes, measured vs formula;
- :class:`PrecisionConfig`, :func:`train_precision`, :func:`precision_gradients`: one small
  model trained in fp32, bf16 autocast and fp16 autocast with and without loss scaling;
- :func:`naive_attention`: the attention that keeps its :math:`N \\times N` matrix for backward.

References:
    Micikevicius et al., "Mixed Precision Training", ICLR 2018.
    Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models", 2023.
    Dao et al., "FlashAttention", NeurIPS 2022.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from tutorlib.efficient import DynamicLossScaler, checkpoint
from tutorlib.sequence import scaled_dot_product_attention
from tutorlib.validation import all_finite, check_int, check_positive

__all__ = [
    "PRECISIONS",
    "PrecisionConfig",
    "ResidualBlock",
    "TinyTransformer",
    "make_mlp",
    "make_regression",
    "make_regressor",
    "naive_attention",
    "precision_gradients",
    "train_precision",
    "transformer_activation_bytes",
    "transformer_param_count",
]


class ResidualBlock(nn.Module):
    """:math:`x + W_2 \\tanh(W_1 x + b_1) + b_2` with a ``expansion``-times wider hidden layer.

    Autograd keeps, per block and sample, :math:`d` floats of input and :math:`4d` of hidden
    activation (``tanh`` keeps its output, which is also ``W_2``'s input): 5 "units" of
    :math:`Bd` floats, of which a checkpoint keeps only the first.
    """

    def __init__(self, width: int, expansion: int = 4, generator: torch.Generator | None = None) -> None:
        super().__init__()
        check_int("width", width)
        check_int("expansion", expansion)
        self.fc1, self.fc2 = nn.Linear(width, expansion * width), nn.Linear(expansion * width, width)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.randn(self.fc1.weight.shape, generator=generator) / math.sqrt(width))
            std2 = 0.5 / math.sqrt(expansion * width)  # small: the residual stream grows slowly
            self.fc2.weight.copy_(torch.randn(self.fc2.weight.shape, generator=generator) * std2)
            self.fc1.bias.zero_()
            self.fc2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., width)`` → ``(..., width)``."""
        width = self.fc1.in_features
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.ndim < 2 or x.shape[-1] != width:
            raise ValueError(f"x must have shape (B, {width}), got {tuple(x.shape)}")
        return x + self.fc2(torch.tanh(self.fc1(x)))


def make_mlp(depth: int, width: int, expansion: int = 4, seed: int = 0) -> nn.Sequential:
    """A deep residual MLP: ``depth`` :class:`ResidualBlock` of ``width``, seeded."""
    check_int("depth", depth)
    check_int("width", width)
    g = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    return nn.Sequential(*(ResidualBlock(width, expansion, g) for _ in range(depth)))


# ---------------------------------------------------------------------------------------------
# A small Transformer, and where its training memory goes
# ---------------------------------------------------------------------------------------------


class _Block(nn.Module):
    """Pre-LN Transformer block: naive causal attention and a 4x GELU MLP, no dropout."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, d = x.shape
        H = self.heads
        q, k, v = self.qkv(self.ln1(x)).view(B, N, 3, H, d // H).permute(2, 0, 3, 1, 4)  # (3, B, H, N, dh)
        scores = (q @ k.transpose(-2, -1)) * (d // H) ** -0.5  # (B, H, N, N)
        mask = torch.ones(N, N, dtype=torch.bool, device=x.device).triu(1)
        p = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        y = (p @ v).transpose(1, 2).reshape(B, N, d)  # (B, N, d)
        x = x + self.proj(y)
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class TinyTransformer(nn.Module):
    """A GPT-style language model: token + position embeddings, ``layers`` blocks, LN, head.

    Shapes: tokens ``(B, N)`` int64 → logits ``(B, N, vocab)``. The head is untied.
    """

    def __init__(
        self, vocab: int = 64, d: int = 64, heads: int = 4, layers: int = 4, max_len: int = 256
    ) -> None:
        super().__init__()
        sizes = {"vocab": vocab, "d": d, "heads": heads, "layers": layers, "max_len": max_len}
        for name, value in sizes.items():
            check_int(name, value)
        if d % heads:
            raise ValueError(f"d must be divisible by heads, got d={d}, heads={heads}")
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(_Block(d, heads) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, tokens: torch.Tensor, checkpoint_blocks: bool = False) -> torch.Tensor:
        """``(B, N)`` tokens → ``(B, N, V)`` logits.

        ``checkpoint_blocks``: keep only each block's input and recompute the block in backward
        (:func:`tutorlib.efficient.checkpoint`).
        """
        if not isinstance(checkpoint_blocks, bool):
            raise TypeError(f"checkpoint_blocks must be a bool, got {checkpoint_blocks!r}")
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.int64 or tokens.ndim != 2:
            raise TypeError("tokens must be an int64 tensor of shape (B, N)")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.tok.num_embeddings):
            raise ValueError(f"tokens must lie in [0, {self.tok.num_embeddings}), got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        if tokens.shape[1] > self.pos.num_embeddings:
            raise ValueError(f"tokens has length {tokens.shape[1]} > max_len {self.pos.num_embeddings}")
        x = self.tok(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = checkpoint(block, x, list(block.parameters())) if checkpoint_blocks else block(x)
        return self.head(self.ln(x))


def transformer_param_count(vocab: int, d: int, layers: int, max_len: int) -> int:
    """Parameters of :class:`TinyTransformer`: :math:`L(12d^2 + 13d) + (V + N_{max})d + 2d + dV`.

    Per block: ``qkv`` :math:`3d^2 + 3d`, ``proj`` :math:`d^2 + d`, ``fc1`` :math:`4d^2 + 4d`,
    ``fc2`` :math:`4d^2 + d`, two LayerNorms :math:`4d`.
    """
    for name, value in (("vocab", vocab), ("d", d), ("layers", layers), ("max_len", max_len)):
        check_int(name, value)
    return layers * (12 * d * d + 13 * d) + (vocab + max_len) * d + 2 * d + d * vocab


def transformer_activation_bytes(batch: int, seq: int, d: int, heads: int, layers: int, vocab: int) -> int:
    """Bytes autograd keeps for backward in :class:`TinyTransformer` + cross-entropy (fp32, no dropout).

    Counted op by op, in the style of Korthikanti et al. (2023). Per block, in floats, in units
    of :math:`BNd` unless noted: LayerNorm-1 input 1 and output 1, the contiguous copies of
    :math:`q`, :math:`k^\\top`, :math:`v` that the batched products keep 3, attention
    probabilities :math:`HBN^2`, attention output 1, LayerNorm-2 input 1 and output 1, MLP hidden
    before and after GELU 4 + 4, LayerNorm statistics :math:`4BN`; plus the boolean causal mask
    (:math:`N^2` bytes). After the blocks: the final LayerNorm's input, output and statistics,
    and the log-probabilities (:math:`BNV`). Total, for contiguous ``(B, N)`` tokens and targets:

    .. math:: 4\\,[L(16BNd + HBN^2 + 4BN) + 2BNd + 2BN + BNV] + LN^2 + 16BN + 8N + 4,

    the last terms being the int64 token and target indices, the positions and the loss.
    """
    for name, value in (("batch", batch), ("seq", seq), ("d", d), ("heads", heads), ("layers", layers),
                        ("vocab", vocab)):
        check_int(name, value)
    B, N, L = batch, seq, layers
    floats = L * (16 * B * N * d + heads * B * N * N + 4 * B * N) + 2 * B * N * d + 2 * B * N + B * N * vocab
    return 4 * floats + L * N * N + 16 * B * N + 8 * N + 4


# ---------------------------------------------------------------------------------------------
# The same model in fp32, bf16 autocast and fp16 autocast (with and without loss scaling)
# ---------------------------------------------------------------------------------------------

PRECISIONS = ("fp32", "bf16", "fp16", "fp16+scaling")


@dataclass
class PrecisionConfig:
    """The toy regression every precision is trained on (CPU, seeded)."""

    n: int = 1024  #: training points, one full batch per step
    width: int = 64  #: hidden width of the 3-hidden-layer tanh MLP
    steps: int = 800  #: Adam steps
    lr: float = 3e-3  #: Adam's initial learning rate, decayed to 0 on a cosine
    target_scale: float = 0.01  #: the target is this small, so the gradients are small
    init_scale: float = 2.0**16  #: loss scaler: initial scale (GradScaler's default)
    growth_interval: int = 200  #: loss scaler: clean steps before doubling (GradScaler: 2000)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n", "width", "steps", "growth_interval"):
            check_int(f"cfg.{name}", getattr(self, name))
        check_int("cfg.seed", self.seed, minimum=0)
        for name in ("lr", "target_scale", "init_scale"):
            check_positive(f"cfg.{name}", getattr(self, name))


def make_regression(cfg: PrecisionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Points :math:`x \\sim U[-2, 2]`, target :math:`c\\,(\\tfrac12 \\sin 3x + 0.1 x^2)`.

    Returns:
        ``x`` and ``y``, each of shape ``(n, 1)``.
    """
    if not isinstance(cfg, PrecisionConfig):
        raise TypeError(f"cfg must be a PrecisionConfig, got {type(cfg).__name__}")
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.rand(cfg.n, 1, generator=g) * 4 - 2
    return x, cfg.target_scale * (0.5 * torch.sin(3 * x) + 0.1 * x**2)


def make_regressor(cfg: PrecisionConfig) -> nn.Sequential:
    """The 1 → width → width → width → 1 tanh MLP, initialised from ``cfg.seed``."""
    if not isinstance(cfg, PrecisionConfig):
        raise TypeError(f"cfg must be a PrecisionConfig, got {type(cfg).__name__}")
    torch.manual_seed(cfg.seed)
    w = cfg.width
    return nn.Sequential(nn.Linear(1, w), nn.Tanh(), nn.Linear(w, w), nn.Tanh(),
                         nn.Linear(w, w), nn.Tanh(), nn.Linear(w, 1))


def _autocast(precision: str) -> torch.autocast:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp16+scaling": torch.float16}.get(precision)
    return torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def _check_precision(precision: object) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return str(precision)


def precision_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str,
                        scale: float = 1.0) -> list[torch.Tensor]:
    """Parameter gradients of the MSE at the current weights, computed under ``precision``.

    The loss is multiplied by ``scale`` before backward and the gradients divided by it after,
    as a loss scaler does. Under fp16 autocast, the matrix products, and so the gradients that
    flow back through them, are fp16: entries below half the smallest subnormal become 0.
    """
    _check_precision(precision)
    check_positive("scale", scale)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor")
        if t.ndim != 2 or t.shape[1] != 1 or t.shape[0] == 0:
            raise ValueError(f"{name} must have shape (N, 1), got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    with _autocast(precision):
        out = model(x)
    loss = ((out.float() - y) ** 2).mean()
    grads = torch.autograd.grad(loss * scale, list(model.parameters()))
    return [g / scale for g in grads]


def train_precision(precision: str, cfg: PrecisionConfig | None = None) -> dict[str, object]:
    """Train :func:`make_regressor` on :func:`make_regression` with Adam under ``precision``.

    ``"fp32"``: plain; ``"bf16"`` / ``"fp16"``: ``torch.autocast("cpu", dtype)`` (weights and
    optimizer stay fp32, matrix products run in 16 bits); ``"fp16+scaling"``: fp16 autocast
    with :class:`DynamicLossScaler`.

    Returns:
        ``{"model", "loss" (per step, list), "final_loss" (fp32 evaluation), "zero_grad_fraction"
        (per step: share of parameter-gradient entries exactly 0), "scale" (per step), "skipped"}``.
    """
    _check_precision(precision)
    cfg = PrecisionConfig() if cfg is None else cfg
    if not isinstance(cfg, PrecisionConfig):
        raise TypeError(f"cfg must be a PrecisionConfig, got {type(cfg).__name__}")
    x, y = make_regression(cfg)
    model = make_regressor(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # cosine decay to 0: the run ends smoothly, so final losses compare precisions, not luck
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    scaler = None
    if precision == "fp16+scaling":
        scaler = DynamicLossScaler(cfg.init_scale, growth_interval=cfg.growth_interval)
    n_params = sum(p.numel() for p in model.parameters())
    losses, zeros, scales = [], [], []
    for _ in range(cfg.steps):
        with _autocast(precision):
            out = model(x)
        loss = ((out.float() - y) ** 2).mean()
        opt.zero_grad(set_to_none=False)
        if scaler is None:
            loss.backward()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        zeros.append(sum(int((p.grad == 0).sum()) for p in model.parameters()) / n_params)
        if scaler is None:
            opt.step()
            scales.append(1.0)
        else:
            scales.append(scaler.get_scale())
            scaler.step(opt)
            scaler.update()
        schedule.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = float(((model(x) - y) ** 2).mean())
    return {"model": model, "loss": losses, "final_loss": final, "zero_grad_fraction": zeros,
            "scale": scales, "skipped": scaler.skipped if scaler else 0}


# ---------------------------------------------------------------------------------------------
# Attention: what naive attention and a fused kernel keep for backward
# ---------------------------------------------------------------------------------------------


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """:math:`\\operatorname{softmax}(QK^\\top/\\sqrt{d})\\,V`, materialising the ``(B, H, N, N)`` matrix.

    Shapes: ``q, k, v`` ``(B, H, N, d)`` → ``(B, H, N, d)``. Autograd keeps the probabilities
    :math:`P` (:math:`N^2` per head) for backward; FlashAttention keeps only the output and one
    log-sum-exp per row and recomputes :math:`P` block by block in backward. The arithmetic is
    :func:`tutorlib.sequence.scaled_dot_product_attention`, the library's one softmax attention;
    this wrapper adds the self-attention shape rule (one shape for ``q, k, v``).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4:
            raise ValueError(f"{name} must be a 4-D tensor (B, H, N, d)")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
        if not all_finite(t):
            raise ValueError(f"{name} contains NaN or inf")
    if q.shape != k.shape or q.shape != v.shape:
        shapes = [tuple(t.shape) for t in (q, k, v)]
        raise ValueError(f"q, k, v must have one shape, got {shapes}")
    return scaled_dot_product_attention(q, k, v)[0]  # keeps the (B, H, N, N) weights for backward
