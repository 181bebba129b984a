"""word2vec from scratch: the code behind the chapter ``book/word2vec.md``.

Skip-gram with negative sampling (SGNS) learns two vectors per word, an input vector
:math:`w` and an output ("context") vector :math:`c`, so that for a word and a context word
seen next to it :math:`\\sigma(w \\cdot c)` is large, and for :math:`k` "negative" words drawn
from a noise distribution :math:`P_n` it is small. Per (word, context) pair the loss is

.. math::  \\ell = -\\log \\sigma(w \\cdot c) - \\sum_{j=1}^{k} \\log \\sigma(-w \\cdot n_j),
           \\qquad n_j \\sim P_n(c) \\propto \\#(c)^{0.75}.

CBOW uses the same loss with :math:`w` replaced by the mean of the context words' input
vectors, predicting the centre word. Frequent words are randomly dropped before the windows
are formed (subsampling). Levy & Goldberg (2014) showed that at the optimum (with enough
dimensions) :math:`w_i \\cdot c_j = \\log \\frac{\\#(i, j)}{\\#(i)\\, k\\, P_n(j)}`, the
(shifted) pointwise mutual information of the pair; :func:`shifted_pmi` computes it from counts.

Legend (code name -> symbol): ``input_vectors`` -> :math:`W` (rows :math:`w_i`),
``output_vectors`` -> :math:`C` (rows :math:`c_j`), ``negatives`` -> :math:`k`,
``power`` -> the 0.75 exponent, ``threshold`` -> subsampling's :math:`t`, ``window`` -> the
number of words on each side of the centre.

References:
    Mikolov, Chen, Corrado, Dean (2013), "Efficient estimation of word representations in
    vector space" (skip-gram, CBOW). Mikolov, Sutskever, Chen, Corrado, Dean (2013),
    "Distributed representations of words and phrases and their compositionality" (negative
    sampling, subsampling). Levy & Goldberg (2014), "Neural word embedding as implicit matrix
    factorization"; Levy, Goldberg & Dagan (2015), "Improving distributional similarity with
    lessons learned from word embeddings" (SPPMI-SVD, context distribution smoothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tutorlib.validation import check_int, check_positive

__all__ = [
    "Word2VecConfig",
    "Word2VecResult",
    "analogy",
    "analogy_accuracy",
    "cbow_examples",
    "cooccurrence_counts",
    "keep_probability",
    "nearest_neighbours",
    "noise_distribution",
    "noise_table",
    "pca_2d",
    "sgns_grad",
    "sgns_loss",
    "shifted_pmi",
    "skipgram_pairs",
    "sppmi_svd",
    "subsample",
    "train_word2vec",
]


# --------------------------------------------------------------------------------------------
# argument checks (the shared ones live in tutorlib.validation)
# --------------------------------------------------------------------------------------------
def _check_counts(counts: object) -> torch.Tensor:
    if not isinstance(counts, torch.Tensor):
        raise TypeError(f"counts must be a torch.Tensor of shape (V,), got {type(counts).__name__}")
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(f"counts must have shape (V,) with V >= 1, got {tuple(counts.shape)}")
    if counts.is_floating_point() and not torch.isfinite(counts).all():
        raise ValueError("counts must be finite")
    if (counts < 0).any() or counts.sum() <= 0:
        raise ValueError("counts must be >= 0 with a positive total")
    return counts


def _check_ids(name: str, ids: object, vocab_size: int, ndim: int = 1) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be an int64 torch.Tensor of word ids, got {type(ids).__name__}")
    if ids.dtype != torch.long:
        raise TypeError(f"{name} must hold int64 word ids, got {ids.dtype}")
    if ids.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(ids.shape)}")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{name} must hold ids in [0, {vocab_size}), got range "
                         f"[{ids.min().item()}, {ids.max().item()}]")
    return ids


def _check_vectors(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (V, d), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape (V, d) with V, d >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


def _check_corpus(tokens: object, sentence_ids: object) -> None:
    for name, t in (("tokens", tokens), ("sentence_ids", sentence_ids)):
        if not isinstance(t, torch.Tensor) or t.dtype != torch.long or t.ndim != 1:
            got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"{name} must be a 1-D int64 torch.Tensor, got {got}")
    if tokens.shape != sentence_ids.shape:
        raise ValueError(f"tokens and sentence_ids must have the same shape, got "
                         f"{tuple(tokens.shape)} and {tuple(sentence_ids.shape)}")
    if tokens.numel() and (tokens.min() < 0):
        raise ValueError("tokens must hold word ids >= 0")


# --------------------------------------------------------------------------------------------
# 1. negative sampling: the unigram^0.75 noise distribution and word2vec's sampling table
# --------------------------------------------------------------------------------------------
def noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """The noise distribution of negative sampling, :math:`P_n(i) \\propto \\#(i)^{\\alpha}`.

    :math:`\\alpha = 0.75` (Mikolov et al. 2013b) flattens the unigram distribution: rare words
    are drawn more often than their frequency, frequent words less often.

    Args:
        counts: ``(V,)`` word counts, non-negative.
        power: :math:`\\alpha \\ge 0` (1 = unigram, 0 = uniform).

    Returns:
        ``(V,)`` float64 probabilities summing to 1.
    """
    counts = _check_counts(counts)
    power = check_positive("power", power, allow_zero=True)
    weights = counts.double() ** power
    weights[counts == 0] = 0.0  # 0 ** 0 is 1: a word never seen is never a negative
    return weights / weights.sum()


def noise_table(counts: torch.Tensor, power: float = 0.75, size: int = 1_000_000) -> torch.Tensor:
    """word2vec's unigram table: word ``i`` fills a fraction :math:`P_n(i)` of ``size`` slots.

    Drawing a negative is then one uniform integer, ``table[randint(size)]``, the trick of
    word2vec.c's ``InitUnigramTable`` (which uses 1e8 slots). Slot ``a`` holds the word whose
    cumulative probability interval contains ``(a + 0.5) / size``, so every word's share is
    within ``1 / size`` of :math:`P_n(i)`.

    Returns:
        ``(size,)`` int64 word ids, sorted.
    """
    probs = noise_distribution(counts, power)
    size = check_int("size", size, minimum=1)
    cumulative = torch.cumsum(probs, 0)
    slots = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    table = torch.searchsorted(cumulative, slots, right=True)
    return table.clamp_(max=len(probs) - 1)  # round-off: cumulative[-1] may be 1 - 1e-16


# --------------------------------------------------------------------------------------------
# 2. subsampling of frequent words
# --------------------------------------------------------------------------------------------
def keep_probability(counts: torch.Tensor, threshold: float = 1e-3, variant: str = "paper") -> torch.Tensor:
    """Probability that subsampling keeps each occurrence of a word of frequency :math:`f`.

    ``variant="paper"`` is eq. (5) of Mikolov et al. (2013b): discard with probability
    :math:`1 - \\sqrt{t / f}`, i.e. keep with :math:`\\min(1, \\sqrt{t/f})`.
    ``variant="word2vec.c"`` is what the released code does:
    keep with :math:`\\min\\big(1, \\sqrt{t/f} + t/f\\big)`, a little more.
    Words with :math:`f \\le t` are always kept under both.

    Args:
        counts: ``(V,)`` word counts; :math:`f = \\#(i) / \\sum_j \\#(j)`.
        threshold: :math:`t > 0`; the paper uses about 1e-5 on billions of words, the code
            defaults to 1e-3. It must be compared with the frequencies of *your* corpus.
        variant: ``"paper"`` or ``"word2vec.c"``.

    Returns:
        ``(V,)`` float64 keep probabilities in (0, 1].
    """
    counts = _check_counts(counts)
    threshold = check_positive("threshold", threshold)
    if variant not in ("paper", "word2vec.c"):
        raise ValueError(f"variant must be 'paper' or 'word2vec.c', got {variant!r}")
    f = counts.double() / counts.sum()
    ratio = threshold / f.clamp_min(1e-300)  # t / f
    keep = ratio.sqrt() if variant == "paper" else ratio.sqrt() + ratio
    return keep.clamp_(max=1.0)


def subsample(tokens: torch.Tensor, keep_prob: torch.Tensor, generator: torch.Generator | None = None
              ) -> torch.Tensor:
    """Draw which occurrences survive subsampling: ``(N,)`` bool, True with ``keep_prob[token]``."""
    if not isinstance(keep_prob, torch.Tensor) or keep_prob.ndim != 1:
        raise TypeError("keep_prob must be a (V,) tensor of probabilities")
    if not ((keep_prob >= 0) & (keep_prob <= 1)).all():
        raise ValueError("keep_prob must lie in [0, 1]")
    tokens = _check_ids("tokens", tokens, len(keep_prob))
    return torch.rand(tokens.shape, generator=generator, dtype=torch.float64) < keep_prob[tokens]


# --------------------------------------------------------------------------------------------
# 3. training examples: skip-gram pairs and CBOW windows
# --------------------------------------------------------------------------------------------
def skipgram_pairs(tokens: torch.Tensor, sentence_ids: torch.Tensor, window: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """All (centre, context) pairs at distance ``1..window`` inside the same sentence.

    Args:
        tokens: ``(N,)`` word ids of the (possibly subsampled) corpus.
        sentence_ids: ``(N,)`` sentence of each token; windows do not cross sentences.
        window: words on each side of the centre, at least 1.

    Returns:
        ``centres, contexts``, two ``(P,)`` int64 tensors; each unordered neighbour pair
        appears in both directions, ordered by offset.
    """
    _check_corpus(tokens, sentence_ids)
    window = check_int("window", window, minimum=1)
    centres, contexts = [], []
    for offset in range(1, window + 1):
        same = sentence_ids[:-offset] == sentence_ids[offset:]  # (N - offset,)
        left, right = tokens[:-offset][same], tokens[offset:][same]
        centres += [left, right]
        contexts += [right, left]
    if not centres:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty.clone()
    return torch.cat(centres), torch.cat(contexts)


def cbow_examples(tokens: torch.Tensor, sentence_ids: torch.Tensor, window: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """CBOW examples: each centre word with the ids of its up to ``2 * window`` context words.

    Returns:
        ``centres`` ``(P,)`` and ``contexts`` ``(P, 2 * window)`` int64, where a missing context
        (sentence boundary) is ``-1``. Centres without any context word are dropped.
    """
    _check_corpus(tokens, sentence_ids)
    window = check_int("window", window, minimum=1)
    n = len(tokens)
    offsets = [o for o in range(-window, window + 1) if o != 0]
    positions = torch.arange(n)[:, None] + torch.tensor(offsets)[None, :]  # (N, 2w)
    inside = (positions >= 0) & (positions < n)
    clamped = positions.clamp(0, max(n - 1, 0))
    valid = inside & (sentence_ids[clamped] == sentence_ids[:, None])
    contexts = torch.where(valid, tokens[clamped], torch.full_like(clamped, -1))
    keep = valid.any(dim=1)
    return tokens[keep], contexts[keep]


# --------------------------------------------------------------------------------------------
# 4. the negative-sampling loss and its gradient
# --------------------------------------------------------------------------------------------
def _check_sgns(w: object, c: object, negatives: object) -> tuple[int, int, int]:
    for name, t in (("w", w), ("c", c), ("negatives", negatives)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor")
    if w.ndim != 2:
        raise ValueError(f"w must have shape (B, d), got {tuple(w.shape)}")
    B, d = w.shape
    if c.shape != (B, d):
        raise ValueError(f"c must have shape ({B}, {d}) like w, got {tuple(c.shape)}")
    if negatives.ndim != 3 or negatives.shape[0] != B or negatives.shape[2] != d:
        raise ValueError(f"negatives must have shape ({B}, k, {d}), got {tuple(negatives.shape)}")
    return B, negatives.shape[1], d


def _check_finite_loss(loss: torch.Tensor, w: torch.Tensor, c: torch.Tensor, negatives: torch.Tensor) -> None:
    # One cheap test per call (this runs at every SGD step); the inputs are scanned only on failure.
    if torch.isfinite(loss).all():
        return
    for name, t in (("w", w), ("c", c), ("negatives", negatives)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} must be finite (no NaN or inf)")
    raise ValueError("the dot products w·c or w·n overflowed: w, c and negatives are too large")


def sgns_loss(w: torch.Tensor, c: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """The negative-sampling loss of each example.

    .. math::  \\ell = -\\log\\sigma(w\\cdot c) - \\sum_{j=1}^{k}\\log\\sigma(-w\\cdot n_j)

    Args:
        w: ``(B, d)`` input vectors (skip-gram: the centre word; CBOW: the mean of the context).
        c: ``(B, d)`` output vectors of the true word.
        negatives: ``(B, k, d)`` output vectors of the ``k`` noise words.

    Returns:
        ``(B,)`` losses.
    """
    _check_sgns(w, c, negatives)
    positive = (w * c).sum(-1)  # (B,)
    negative = (w.unsqueeze(1) * negatives).sum(-1)  # (B, k)
    loss = -F.logsigmoid(positive) - F.logsigmoid(-negative).sum(-1)
    _check_finite_loss(loss, w, c, negatives)
    return loss


def sgns_grad(w: torch.Tensor, c: torch.Tensor, negatives: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`sgns_loss` and its gradient in closed form, as word2vec.c computes them.

    Since :math:`\\frac{d}{dx}\\log\\sigma(x) = 1 - \\sigma(x)`:

    .. math::  \\frac{\\partial \\ell}{\\partial w} = (\\sigma(w\\cdot c) - 1)\\, c
                   + \\sum_j \\sigma(w\\cdot n_j)\\, n_j, \\quad
               \\frac{\\partial \\ell}{\\partial c} = (\\sigma(w\\cdot c) - 1)\\, w, \\quad
               \\frac{\\partial \\ell}{\\partial n_j} = \\sigma(w\\cdot n_j)\\, w.

    The true word is pulled towards :math:`w` with weight :math:`1-\\sigma(w\\cdot c)` (how
    wrong the model still is); each noise word is pushed away with weight :math:`\\sigma(w\\cdot n_j)`.

    Returns:
        ``loss (B,), grad_w (B, d), grad_c (B, d), grad_negatives (B, k, d)``.
    """
    _check_sgns(w, c, negatives)
    positive = (w * c).sum(-1, keepdim=True)  # (B, 1)
    negative = torch.bmm(negatives, w.unsqueeze(2)).squeeze(2)  # (B, k)
    loss = -F.logsigmoid(positive).squeeze(1) - F.logsigmoid(-negative).sum(-1)
    _check_finite_loss(loss, w, c, negatives)
    g_pos = torch.sigmoid(positive) - 1  # (B, 1), in (-1, 0)
    g_neg = torch.sigmoid(negative)  # (B, k), in (0, 1)
    grad_w = g_pos * c + torch.bmm(g_neg.unsqueeze(1), negatives).squeeze(1)
    grad_c = g_pos * w
    grad_negatives = g_neg.unsqueeze(2) * w.unsqueeze(1)  # (B, k, d)
    return loss, grad_w, grad_c, grad_negatives


# --------------------------------------------------------------------------------------------
# 5. training: vectorised mini-batch SGD with the closed-form gradient
# --------------------------------------------------------------------------------------------
@dataclass
class Word2VecConfig:
    """Hyperparameters of :func:`train_word2vec` (word2vec.c's names in brackets)."""

    model: str = "skipgram"  #: "skipgram" or "cbow" (-cbow)
    dim: int = 30  #: embedding size d (-size)
    window: int = 2  #: context words on each side; fixed, word2vec.c samples 1..window (-window)
    negatives: int = 5  #: noise words per example k (-negative)
    power: float = 0.75  #: exponent of the noise distribution
    threshold: float | None = 1e-3  #: subsampling t (-sample); None switches subsampling off
    variant: str = "paper"  #: subsampling formula: "paper" or "word2vec.c"
    epochs: int = 3  #: passes over the corpus (-iter)
    batch_size: int = 256  #: examples per SGD step; word2vec.c updates after every pair (=1)
    lr: float = 0.025  #: starting learning rate, decayed linearly to lr * 1e-4 (-alpha)
    seed: int = 0  #: seeds the initialisation, subsampling, shuffling and negatives
    checkpoints: Sequence[int] = ()  #: SGD steps after which a copy of W is kept

    def __post_init__(self) -> None:
        if self.model not in ("skipgram", "cbow"):
            raise ValueError(f"model must be 'skipgram' or 'cbow', got {self.model!r}")
        for name in ("dim", "window", "negatives", "epochs", "batch_size"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_positive("power", self.power, allow_zero=True)
        check_positive("lr", self.lr)
        if self.threshold is not None:
            check_positive("threshold", self.threshold)
        if self.variant not in ("paper", "word2vec.c"):
            raise ValueError(f"variant must be 'paper' or 'word2vec.c', got {self.variant!r}")
        for step in self.checkpoints:
            check_int("checkpoints", step, minimum=0)


@dataclass
class Word2VecResult:
    """What :func:`train_word2vec` returns."""

    input_vectors: torch.Tensor  #: (V, d) W: the word embeddings
    output_vectors: torch.Tensor  #: (V, d) C: the context vectors
    losses: list[float]  #: mean loss of each SGD step
    steps: int  #: number of SGD steps taken
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  #: step -> copy of W

    def __post_init__(self) -> None:
        _check_vectors("input_vectors", self.input_vectors)
        _check_vectors("output_vectors", self.output_vectors)
        if self.output_vectors.shape != self.input_vectors.shape:
            raise ValueError(f"output_vectors must have the shape of input_vectors "
                             f"{tuple(self.input_vectors.shape)}, got {tuple(self.output_vectors.shape)}")
        check_int("steps", self.steps, minimum=0)


def _diverged(epoch: int, config: Word2VecConfig) -> str:
    return (f"word2vec diverged in epoch {epoch + 1} (lr={config.lr}, batch_size={config.batch_size}, "
            f"threshold={config.threshold}): a word that occurs m times in a batch takes m summed "
            "steps; lower lr or batch_size, or switch subsampling on")


def train_word2vec(tokens: torch.Tensor, sentence_ids: torch.Tensor, counts: torch.Tensor,
                   config: Word2VecConfig | None = None, progress: bool = False) -> Word2VecResult:
    """Train skip-gram or CBOW with negative sampling by mini-batch SGD.

    Each epoch: subsample the corpus (if ``threshold``), form the examples
    (:func:`skipgram_pairs` or :func:`cbow_examples`), shuffle, and for every batch draw ``k``
    negatives per example from :func:`noise_table`, compute :func:`sgns_grad` and apply it with
    ``index_add_`` (a word that occurs several times in a batch gets the sum of its gradients,
    as if its updates were applied one after another from the same starting point). For CBOW
    the input is the mean of the context vectors and each context word receives the gradient
    divided by the number of context words (word2vec.c skips that division).

    Initialisation as in word2vec.c: :math:`W \\sim U(-0.5/d, 0.5/d)`, :math:`C = 0`.

    Speed: every step works on tensors of a few thousand numbers, so the cost is per-operation
    overhead. Call ``torch.set_num_threads(1)`` first: on a busy 2-core machine the default two
    threads made the unit tests' training runs about 50 times slower.

    Args:
        tokens, sentence_ids: the corpus, ``(N,)`` int64 each (see ``tutorlib.corpus.encode``).
        counts: ``(V,)`` word counts, for the noise distribution and subsampling.
        config: hyperparameters; defaults to :class:`Word2VecConfig()`.
        progress: show a tqdm progress bar over the epochs.

    Returns:
        :class:`Word2VecResult`.
    """
    config = Word2VecConfig() if config is None else config
    if not isinstance(config, Word2VecConfig):
        raise TypeError(f"config must be a Word2VecConfig, got {type(config).__name__}")
    counts = _check_counts(counts)
    _check_corpus(tokens, sentence_ids)
    V, d, k = len(counts), config.dim, config.negatives
    _check_ids("tokens", tokens, V)
    generator = torch.Generator().manual_seed(config.seed)
    W = (torch.rand(V, d, generator=generator) - 0.5) / d  # (V, d) input vectors
    C = torch.zeros(V, d)  # (V, d) output vectors
    table = noise_table(counts, config.power)
    keep = None if config.threshold is None else keep_probability(counts, config.threshold, config.variant)
    snapshots = {0: W.clone()} if 0 in config.checkpoints else {}
    losses: list[float] = []
    step = 0
    epochs = range(config.epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"{config.model} epochs")
    for epoch in epochs:
        if keep is None:
            toks, sids = tokens, sentence_ids
        else:
            mask = subsample(tokens, keep, generator)
            toks, sids = tokens[mask], sentence_ids[mask]
        if config.model == "skipgram":
            inputs, targets = skipgram_pairs(toks, sids, config.window)
        else:
            targets, inputs = cbow_examples(toks, sids, config.window)  # (P,), (P, 2w)
        order = torch.randperm(len(targets), generator=generator)
        n_batches = math.ceil(len(order) / config.batch_size)
        for b in range(n_batches):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            progress_frac = (epoch + b / n_batches) / config.epochs
            lr = config.lr * max(1e-4, 1.0 - progress_frac)
            target = targets[idx]  # (B,)
            noise = table[torch.randint(len(table), (len(idx), k), generator=generator)]  # (B, k)
            if config.model == "skipgram":
                centre = inputs[idx]  # (B,)
                w = W[centre]
            else:
                ctx = inputs[idx]  # (B, 2w), -1 = missing
                valid = (ctx >= 0).unsqueeze(-1).float()  # (B, 2w, 1)
                n_ctx = valid.sum(1)  # (B, 1)
                w = (W[ctx.clamp_min(0)] * valid).sum(1) / n_ctx  # (B, d) mean of the context
            c, n = C[target], C[noise]  # (B, d), (B, k, d)
            try:
                loss, grad_w, grad_c, grad_n = sgns_grad(w, c, n)
            except ValueError as error:  # NaN or inf vectors: the run has diverged
                raise FloatingPointError(_diverged(epoch, config)) from error
            losses.append(loss.mean().item())
            C.index_add_(0, target, grad_c, alpha=-lr)
            C.index_add_(0, noise.reshape(-1), grad_n.reshape(-1, d), alpha=-lr)
            if config.model == "skipgram":
                W.index_add_(0, centre, grad_w, alpha=-lr)
            else:
                per_word = (grad_w / n_ctx)[:, None, :] * valid  # (B, 2w, d)
                W.index_add_(0, ctx.clamp_min(0).reshape(-1), per_word.reshape(-1, d), alpha=-lr)
            step += 1
            if step in config.checkpoints:
                snapshots[step] = W.clone()
        if not (torch.isfinite(W).all() and torch.isfinite(C).all()):
            raise FloatingPointError(_diverged(epoch, config))
    return Word2VecResult(W, C, losses, step, snapshots)


# --------------------------------------------------------------------------------------------
# 6. using the vectors: neighbours, analogies, PCA
# --------------------------------------------------------------------------------------------
def _unit_rows(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest_neighbours(vectors: torch.Tensor, query: torch.Tensor, k: int = 5
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` words most cosine-similar to each query word, the query itself excluded.

    :math:`\\cos(u, v) = u \\cdot v / (\\lVert u\\rVert \\lVert v\\rVert)`.

    Args:
        vectors: ``(V, d)`` embeddings.
        query: ``(Q,)`` int64 word ids.
        k: neighbours per query, ``1 <= k < V``.

    Returns:
        ``ids (Q, k)`` and ``similarities (Q, k)``, most similar first.
    """
    vectors = _check_vectors("vectors", vectors)
    V = vectors.shape[0]
    query = _check_ids("query", query, V)
    k = check_int("k", k, minimum=1)
    if k >= V:
        raise ValueError(f"k must be < V = {V} (the query is excluded), got {k}")
    unit = _unit_rows(vectors)
    sims = unit[query] @ unit.T  # (Q, V)
    sims[torch.arange(len(query)), query] = -math.inf
    top = sims.topk(k, dim=1)
    return top.indices, top.values


def analogy(vectors: torch.Tensor, a: torch.Tensor, a_star: torch.Tensor, b: torch.Tensor,
            exclude: bool = True) -> torch.Tensor:
    """Answer ``a : a* = b : ?`` by vector arithmetic (3CosAdd).

    .. math::  \\hat b^\\ast = \\arg\\max_{x} \\cos(x,\\ \\hat a^\\ast - \\hat a + \\hat b)

    with unit-length vectors :math:`\\hat v = v/\\lVert v\\rVert`; the argmax equals
    :math:`\\arg\\max_x \\cos(x, a^\\ast) - \\cos(x, a) + \\cos(x, b)` (Levy & Goldberg 2014b).
    With ``exclude`` (the standard protocol of Mikolov et al. 2013) the three query words are
    not allowed as answers: without it the answer is very often ``b`` itself.

    Args:
        vectors: ``(V, d)`` embeddings.
        a, a_star, b: ``(Q,)`` int64 word ids.

    Returns:
        ``(Q,)`` int64 predicted ids.
    """
    vectors = _check_vectors("vectors", vectors)
    V = vectors.shape[0]
    a, a_star, b = (_check_ids(n, t, V) for n, t in (("a", a), ("a_star", a_star), ("b", b)))
    if not (a.shape == a_star.shape == b.shape):
        raise ValueError(f"a, a_star and b must have the same shape, got {tuple(a.shape)}, "
                         f"{tuple(a_star.shape)}, {tuple(b.shape)}")
    unit = _unit_rows(vectors)
    target = unit[a_star] - unit[a] + unit[b]  # (Q, d)
    scores = target @ unit.T  # (Q, V): cos up to the positive factor 1 / |target|
    if exclude:
        rows = torch.arange(len(a))
        for ids in (a, a_star, b):
            scores[rows, ids] = -math.inf
    return scores.argmax(dim=1)


def analogy_accuracy(vectors: torch.Tensor, questions: torch.Tensor, exclude: bool = True) -> float:
    """Fraction of questions ``(a, a*, b, b*)`` (rows of a ``(Q, 4)`` int64 tensor) answered ``b*``."""
    vectors = _check_vectors("vectors", vectors)
    questions = _check_ids("questions", questions, vectors.shape[0], ndim=2)
    if questions.shape[1] != 4 or questions.shape[0] == 0:
        raise ValueError(f"questions must have shape (Q, 4) with Q >= 1, got {tuple(questions.shape)}")
    a, a_star, b, b_star = questions.unbind(1)
    return (analogy(vectors, a, a_star, b, exclude) == b_star).double().mean().item()


def pca_2d(vectors: torch.Tensor) -> torch.Tensor:
    """Project ``(V, d)`` vectors on their first two principal components: ``(V, 2)``.

    Centre the rows, take the SVD :math:`X - \\bar x = U S V^\\top`, return :math:`U_{:, :2} S_{:2}`,
    with each component's sign fixed so that its largest-magnitude loading is positive
    (scikit-learn's convention, so the two can be compared).
    """
    vectors = _check_vectors("vectors", vectors)
    if min(vectors.shape) < 2:
        raise ValueError(f"vectors must have at least 2 rows and 2 columns, got {tuple(vectors.shape)}")
    centred = vectors - vectors.mean(0)
    U, S, Vh = torch.linalg.svd(centred, full_matrices=False)
    signs = torch.sign(Vh[:2].gather(1, Vh[:2].abs().argmax(1, keepdim=True))).squeeze(1)  # (2,)
    return U[:, :2] * S[:2] * signs


# --------------------------------------------------------------------------------------------
# 7. what SGNS factorises: shifted PMI from counts, and its explicit SVD
# --------------------------------------------------------------------------------------------
def cooccurrence_counts(centres: torch.Tensor, contexts: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``(V, V)`` float64 matrix :math:`\\#(i, j)`: how often word ``j`` is a context of word ``i``."""
    vocab_size = check_int("vocab_size", vocab_size, minimum=1)
    centres = _check_ids("centres", centres, vocab_size)
    contexts = _check_ids("contexts", contexts, vocab_size)
    if centres.shape != contexts.shape:
        raise ValueError(f"centres and contexts must have the same shape, got "
                         f"{tuple(centres.shape)} and {tuple(contexts.shape)}")
    flat = torch.bincount(centres * vocab_size + contexts, minlength=vocab_size**2)
    return flat.double().reshape(vocab_size, vocab_size)


def shifted_pmi(cooc: torch.Tensor, negatives: int, noise: torch.Tensor | None = None) -> torch.Tensor:
    """The matrix SGNS factorises (Levy & Goldberg 2014): :math:`w_i \\cdot c_j` at the optimum.

    .. math::  M_{ij} = \\log \\frac{\\#(i, j)}{\\#(i)\\; k\\; P_n(j)}
                     = \\mathrm{PMI}(i, j) - \\log k \\quad\\text{when } P_n(j) = \\#(j)/|D|,

    where :math:`\\#(i) = \\sum_j \\#(i, j)` and :math:`|D| = \\sum_{ij} \\#(i, j)`. With the
    unigram^0.75 noise, :math:`P_n` is the smoothed context distribution of Levy, Goldberg & Dagan
    (2015). Pairs never seen have :math:`M_{ij} = -\\infty`.

    Args:
        cooc: ``(V, V)`` co-occurrence counts (:func:`cooccurrence_counts`).
        negatives: :math:`k \\ge 1`.
        noise: ``(V,)`` noise distribution :math:`P_n`; ``None`` uses the context marginal
            :math:`\\#(j)/|D|`, which gives exactly :math:`\\mathrm{PMI} - \\log k`.

    Returns:
        ``(V, V)`` float64.
    """
    if not isinstance(cooc, torch.Tensor) or cooc.ndim != 2 or cooc.shape[0] != cooc.shape[1]:
        raise ValueError("cooc must be a square (V, V) tensor of counts")
    if (cooc < 0).any() or not torch.isfinite(cooc).all():
        raise ValueError("cooc must hold finite counts >= 0")
    negatives = check_int("negatives", negatives, minimum=1)
    cooc = cooc.double()
    V = cooc.shape[0]
    if noise is None:
        noise = cooc.sum(0) / cooc.sum()
    elif not isinstance(noise, torch.Tensor) or noise.shape != (V,):
        raise ValueError(f"noise must be a ({V},) tensor of probabilities")
    row = cooc.sum(1, keepdim=True)  # (V, 1): #(i)
    with torch.no_grad():
        return cooc.log() - row.log() - math.log(negatives) - noise.double().log()[None, :]


def sppmi_svd(cooc: torch.Tensor, negatives: int, dim: int, noise: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Explicit factorisation: the SVD of the shifted positive PMI matrix (Levy & Goldberg 2014).

    :math:`\\mathrm{SPPMI} = \\max(M, 0)` with :math:`M` from :func:`shifted_pmi` (the
    :math:`-\\infty` of unseen pairs become 0), :math:`\\mathrm{SPPMI} \\approx U_d \\Sigma_d V_d^\\top`,
    and the word vectors are :math:`W = U_d \\Sigma_d^{1/2}` (the symmetric split; Levy et al.
    2015 found it better than :math:`U_d\\Sigma_d`).

    Returns:
        ``(V, dim)`` float64 word vectors.
    """
    M = shifted_pmi(cooc, negatives, noise).clamp_min(0.0)
    dim = check_int("dim", dim, minimum=1)
    if dim > M.shape[0]:
        raise ValueError(f"dim must be <= V = {M.shape[0]}, got {dim}")
    U, S, _ = torch.linalg.svd(M)
    return U[:, :dim] * S[:dim].sqrt()
