"""tutorlib.embeddings and tutorlib.corpus: word2vec against autograd, closed forms and brute force."""

import math
from collections import Counter

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from tutorlib import corpus as cp
from tutorlib import embeddings as emb

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: SGD steps on tiny tensors


@pytest.fixture(scope="module")
def small_corpus():
    sentences = cp.generate_corpus(6000, seed=3)
    vocab = cp.build_vocab(sentences)
    tokens, sentence_ids = cp.encode(sentences, vocab)
    return sentences, vocab, tokens, sentence_ids


# --------------------------------------------------------------------------------------------
# the loss and its gradient
# --------------------------------------------------------------------------------------------
def _random_sgns(B, k, d, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, d, generator=g, dtype=dtype), torch.randn(B, d, generator=g, dtype=dtype),
            torch.randn(B, k, d, generator=g, dtype=dtype))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 7), st.integers(1, 9), st.integers(0, 10_000))
def test_sgns_loss_is_binary_cross_entropy_of_positive_and_negatives(B, k, d, seed):
    w, c, n = _random_sgns(B, k, d, seed)
    positive = (w * c).sum(-1)
    negative = torch.stack([(w * n[:, j]).sum(-1) for j in range(k)], 1)  # (B, k), loop reference
    bce = F.binary_cross_entropy_with_logits
    reference = bce(positive, torch.ones_like(positive), reduction="none") + \
        bce(negative, torch.zeros_like(negative), reduction="none").sum(1)
    torch.testing.assert_close(emb.sgns_loss(w, c, n), reference, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 7), st.integers(1, 9), st.integers(0, 10_000))
def test_sgns_grad_matches_autograd(B, k, d, seed):
    w, c, n = (t.requires_grad_() for t in _random_sgns(B, k, d, seed))
    reference = torch.autograd.grad(emb.sgns_loss(w, c, n).sum(), (w, c, n))
    loss, *grads = emb.sgns_grad(w.detach(), c.detach(), n.detach())
    torch.testing.assert_close(loss, emb.sgns_loss(w, c, n).detach(), rtol=1e-12, atol=1e-12)
    for ours, ref in zip(grads, reference, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_sgns_grad_matches_finite_differences():
    w, c, n = _random_sgns(1, 3, 4, seed=7)
    _, grad_w, _, _ = emb.sgns_grad(w, c, n)
    eps = 1e-6
    for i in range(4):
        step = torch.zeros_like(w)
        step[0, i] = eps
        numeric = (emb.sgns_loss(w + step, c, n) - emb.sgns_loss(w - step, c, n)) / (2 * eps)
        assert numeric.item() == pytest.approx(grad_w[0, i].item(), rel=1e-6, abs=1e-9)


def test_sgns_grad_pulls_the_true_context_and_pushes_the_noise():
    w, c, n = _random_sgns(50, 4, 8, seed=1)
    _, _, grad_c, grad_n = emb.sgns_grad(w, c, n)
    # an SGD step moves c towards w (grad_c . w < 0) and each noise vector away from it
    assert ((grad_c * w).sum(-1) < 0).all()
    assert ((grad_n * w[:, None, :]).sum(-1) > 0).all()


def test_sgns_loss_rejects_bad_shapes():
    w, c, n = _random_sgns(3, 2, 4)
    with pytest.raises(ValueError, match="c must have shape"):
        emb.sgns_loss(w, c[:2], n)
    with pytest.raises(ValueError, match="negatives must have shape"):
        emb.sgns_grad(w, c, n[:, :, :3])
    with pytest.raises(ValueError, match="w must have shape"):
        emb.sgns_loss(w[0], c, n)
    with pytest.raises(TypeError, match="negatives"):
        emb.sgns_loss(w, c, n.long())


# --------------------------------------------------------------------------------------------
# negative sampling and subsampling
# --------------------------------------------------------------------------------------------
def test_noise_distribution_closed_form():
    counts = torch.tensor([1, 16, 81, 0])
    # 1, 16, 81 to the power 3/4 are 1, 8, 27; a word never seen is never drawn
    expected = torch.tensor([1.0, 8.0, 27.0, 0.0], dtype=torch.float64) / 36
    torch.testing.assert_close(emb.noise_distribution(counts, 0.75), expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(emb.noise_distribution(counts, 1.0), counts.double() / 98)
    torch.testing.assert_close(emb.noise_distribution(counts, 0.0),
                               torch.tensor([1, 1, 1, 0], dtype=torch.float64) / 3)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=40).filter(lambda c: sum(c) > 0),
       st.sampled_from([0.0, 0.5, 0.75, 1.0]), st.integers(50, 5000))
def test_noise_table_shares_are_within_one_slot_of_the_distribution(counts, power, size):
    counts = torch.tensor(counts)
    table = emb.noise_table(counts, power, size)
    share = torch.bincount(table, minlength=len(counts)).double() / size
    expected = emb.noise_distribution(counts, power)
    assert table.shape == (size,)
    assert (share - expected).abs().max() <= 1.0 / size + 1e-12


def test_noise_table_draws_follow_unigram_to_the_three_quarters():
    counts = torch.tensor([5000, 1000, 300, 50, 5])
    table = emb.noise_table(counts)
    g = torch.Generator().manual_seed(0)
    draws = table[torch.randint(len(table), (400_000,), generator=g)]
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    expected = counts.double() ** 0.75 / (counts.double() ** 0.75).sum()
    sd = (expected * (1 - expected) / len(draws)).sqrt()
    assert ((freq - expected).abs() < 5 * sd + 1e-6).all()
    # the 3/4 power flattens: the rarest word is drawn more often than its frequency
    assert freq[-1] > counts[-1] / counts.sum()


def test_keep_probability_closed_forms():
    counts = torch.tensor([600, 300, 95, 5])  # frequencies 0.6, 0.3, 0.095, 0.005
    t = 0.01
    f = torch.tensor([0.6, 0.3, 0.095, 0.005], dtype=torch.float64)
    paper = torch.minimum(torch.sqrt(t / f), torch.ones(4, dtype=torch.float64))
    code = torch.minimum(torch.sqrt(t / f) + t / f, torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(emb.keep_probability(counts, t), paper)
    torch.testing.assert_close(emb.keep_probability(counts, t, variant="word2vec.c"), code)
    # discard probability 1 - sqrt(t/f) of the paper, e.g. f = 0.6: 1 - sqrt(1/60)
    assert 1 - emb.keep_probability(counts, t)[0].item() == pytest.approx(1 - math.sqrt(1 / 60))
    assert emb.keep_probability(counts, t)[3].item() == 1.0  # f <= t: always kept


def test_subsample_keeps_each_word_at_its_rate():
    keep = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    tokens = torch.arange(3).repeat(20_000)
    mask = emb.subsample(tokens, keep, torch.Generator().manual_seed(0))
    rate = torch.stack([mask[tokens == i].double().mean() for i in range(3)])
    assert (rate - keep).abs().max() < 5 * math.sqrt(0.25 / 20_000)
    assert rate[2] == 1.0


# --------------------------------------------------------------------------------------------
# training examples
# --------------------------------------------------------------------------------------------
def _brute_pairs(sentences_ids, window):
    pairs = []
    for sentence in sentences_ids:
        for i, centre in enumerate(sentence):
            for j in range(max(0, i - window), min(len(sentence), i + window + 1)):
                if j != i:
                    pairs.append((centre, sentence[j]))
    return pairs


@pytest.mark.parametrize("window", [1, 2, 4])
def test_skipgram_pairs_match_a_python_loop(small_corpus, window):
    sentences, vocab, tokens, sentence_ids = small_corpus
    ids = [[vocab.index[w] for w in s] for s in sentences[:300]]
    n = sum(len(s) for s in ids)
    centres, contexts = emb.skipgram_pairs(tokens[:n], sentence_ids[:n], window)
    ours = Counter(zip(centres.tolist(), contexts.tolist(), strict=True))
    assert ours == Counter(_brute_pairs(ids, window))


def test_cbow_examples_match_a_python_loop(small_corpus):
    sentences, vocab, tokens, sentence_ids = small_corpus
    ids = [[vocab.index[w] for w in s] for s in sentences[:200]]
    n = sum(len(s) for s in ids)
    centres, contexts = emb.cbow_examples(tokens[:n], sentence_ids[:n], 2)
    expected = [(s[i], sorted(s[j] for j in range(max(0, i - 2), min(len(s), i + 3)) if j != i))
                for s in ids for i in range(len(s))]
    ours = [(c, sorted(x for x in row if x >= 0)) for c, row in zip(centres.tolist(), contexts.tolist(),
                                                                  strict=True)]
    assert ours == expected
    assert contexts.shape[1] == 4


def test_cooccurrence_counts_are_symmetric_and_match_counter(small_corpus):
    _, vocab, tokens, sentence_ids = small_corpus
    centres, contexts = emb.skipgram_pairs(tokens, sentence_ids, 2)
    cooc = emb.cooccurrence_counts(centres, contexts, len(vocab))
    torch.testing.assert_close(cooc, cooc.T)
    for (i, j), n in list(Counter(zip(centres.tolist(), contexts.tolist(), strict=True)).items())[:200]:
        assert cooc[i, j].item() == n
    assert cooc.sum().item() == len(centres)


# --------------------------------------------------------------------------------------------
# shifted PMI and its SVD
# --------------------------------------------------------------------------------------------
def test_shifted_pmi_is_pmi_minus_log_k_with_the_unigram_context_distribution():
    g = torch.Generator().manual_seed(0)
    cooc = torch.randint(0, 20, (6, 6), generator=g).double()
    cooc = cooc + cooc.T
    n = cooc.numpy()
    total = n.sum()
    with np.errstate(divide="ignore"):
        pmi = np.log(n * total / (n.sum(1, keepdims=True) * n.sum(0, keepdims=True)))
    for k in (1, 5, 15):
        np.testing.assert_allclose(emb.shifted_pmi(cooc, k).numpy(), pmi - math.log(k), rtol=1e-12)
    # a given noise distribution replaces the context marginal #(j)/|D|
    noise = torch.full((6,), 1 / 6, dtype=torch.float64)
    with np.errstate(divide="ignore"):
        expected = np.log(n / (n.sum(1, keepdims=True) * 5 / 6))
    np.testing.assert_allclose(emb.shifted_pmi(cooc, 5, noise).numpy(), expected, rtol=1e-12)


def test_sppmi_svd_vectors_carry_the_square_roots_of_the_singular_values():
    g = torch.Generator().manual_seed(1)
    cooc = torch.randint(0, 30, (8, 8), generator=g).double()
    W = emb.sppmi_svd(cooc, 2, dim=3)
    n = cooc.numpy()
    with np.errstate(divide="ignore"):
        m = np.log(n * n.sum() / (n.sum(1, keepdims=True) * n.sum(0, keepdims=True))) - math.log(2)
    singular = scipy.linalg.svdvals(np.maximum(m, 0.0))
    np.testing.assert_allclose((W**2).sum(0).numpy(), singular[:3], rtol=1e-10)
    assert W.shape == (8, 3)


# --------------------------------------------------------------------------------------------
# neighbours, analogies, PCA
# --------------------------------------------------------------------------------------------
def test_nearest_neighbours_match_scikit_learn():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 6, generator=g, dtype=torch.float64)
    ids, sims = emb.nearest_neighbours(X, torch.arange(40), k=4)
    ref = NearestNeighbors(n_neighbors=5, metric="cosine").fit(X.numpy())
    dist, ref_ids = ref.kneighbors(X.numpy())
    np.testing.assert_array_equal(ids.numpy(), ref_ids[:, 1:])  # sklearn returns the query first
    np.testing.assert_allclose(sims.numpy(), 1 - dist[:, 1:], atol=1e-12)


def _toy_vectors():
    # axes: male, female, royal, common, + one noise axis
    words = ["king", "queen", "man", "woman", "apple"]
    vectors = torch.tensor([[1, 0, 1, 0, 0.1], [0, 1, 1, 0, 0.0], [1, 0, 0, 1, 0.0],
                            [0, 1, 0, 1, 0.1], [0, 0, 0, 0, 1.0]], dtype=torch.float64)
    return words, vectors


def test_analogy_on_hand_built_vectors():
    words, X = _toy_vectors()
    i = {w: n for n, w in enumerate(words)}
    q = torch.tensor([[i["king"], i["queen"], i["man"], i["woman"]],
                      [i["man"], i["king"], i["woman"], i["queen"]],
                      [i["queen"], i["king"], i["woman"], i["man"]]])
    pred = emb.analogy(X, q[:, 0], q[:, 1], q[:, 2])
    assert pred.tolist() == q[:, 3].tolist()
    assert emb.analogy_accuracy(X, q) == 1.0


def test_analogy_without_exclusion_often_returns_a_query_word():
    _, X = _toy_vectors()
    # man : king = apple : ?  The offset is small next to apple itself: apple wins unless excluded
    a, a_star, b = torch.tensor([2]), torch.tensor([0]), torch.tensor([4])
    assert emb.analogy(X, a, a_star, b, exclude=False).item() == 4
    assert emb.analogy(X, a, a_star, b, exclude=True).item() not in (0, 2, 4)


def test_3cosadd_equals_the_sum_of_three_cosines():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(30, 5, generator=g, dtype=torch.float64)
    q = torch.randint(0, 30, (50, 3), generator=g)
    pred = emb.analogy(X, q[:, 0], q[:, 1], q[:, 2])
    unit = X / X.norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    for (a, a_star, b), p in zip(q.tolist(), pred.tolist(), strict=True):
        score = cos[:, a_star] - cos[:, a] + cos[:, b]
        score[[a, a_star, b]] = -math.inf
        assert p == score.argmax().item()


def test_pca_2d_matches_scikit_learn_up_to_sign():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 7, generator=g, dtype=torch.float64) * torch.arange(1, 8)
    ours = emb.pca_2d(X).numpy()
    ref = PCA(n_components=2).fit_transform(X.numpy())
    for j in range(2):
        sign = np.sign(ours[:, j] @ ref[:, j])
        np.testing.assert_allclose(ours[:, j], sign * ref[:, j], atol=1e-10)


# --------------------------------------------------------------------------------------------
# the toy language and training
# --------------------------------------------------------------------------------------------
def test_corpus_is_reproducible_and_relation_words_are_in_the_vocabulary(small_corpus):
    sentences, vocab, _, _ = small_corpus
    assert cp.generate_corpus(6000, seed=3) == sentences
    assert cp.generate_corpus(6000, seed=4) != sentences
    for relation, pairs in cp.RELATIONS.items():
        questions = cp.analogy_questions(vocab, relation)
        assert questions.shape == (len(pairs) * (len(pairs) - 1), 4)
    assert vocab.counts.tolist() == sorted(vocab.counts.tolist(), reverse=True)


def test_king_and_queen_differ_only_in_the_pronoun(small_corpus):
    """The grammar's promise: the two words' contexts differ only in the gender words."""
    _, vocab, tokens, sentence_ids = small_corpus
    cooc = emb.cooccurrence_counts(*emb.skipgram_pairs(tokens, sentence_ids, 2), len(vocab))
    king, queen = vocab.index["king"], vocab.index["queen"]
    only_king = {vocab.words[j] for j in range(len(vocab)) if cooc[king, j] > 0 and cooc[queen, j] == 0}
    only_queen = {vocab.words[j] for j in range(len(vocab)) if cooc[queen, j] > 0 and cooc[king, j] == 0}
    assert only_king == {"his"} and only_queen == {"her"}


@pytest.mark.parametrize("model", ["skipgram", "cbow"])
def test_training_lowers_the_loss_and_learns_analogies(small_corpus, model):
    _, vocab, tokens, sentence_ids = small_corpus
    lr = 0.025 if model == "skipgram" else 0.05
    config = emb.Word2VecConfig(model=model, dim=20, epochs=8, batch_size=64, lr=lr, checkpoints=(0, 10))
    result = emb.train_word2vec(tokens, sentence_ids, vocab.counts, config)
    k = config.negatives
    # at the start C = 0: every logit is 0 and the loss is (k + 1) log 2
    assert result.losses[0] == pytest.approx((k + 1) * math.log(2), rel=1e-6)
    assert np.mean(result.losses[-20:]) < 0.6 * result.losses[0]
    questions = torch.cat([cp.analogy_questions(vocab, r) for r in ("capital", "tense")])
    assert emb.analogy_accuracy(result.input_vectors, questions) > 0.5
    random_vectors = torch.randn(len(vocab), 20, generator=torch.Generator().manual_seed(0))
    assert emb.analogy_accuracy(random_vectors, questions) < 0.1
    assert sorted(result.snapshots) == [0, 10]
    assert not torch.equal(result.snapshots[10], result.snapshots[0])


@pytest.mark.parametrize("model", ["skipgram", "cbow"])
def test_two_full_batch_steps_equal_autograd_sgd(model):
    """train_word2vec's hand-written updates (index_add_, CBOW's 1/n share) == SGD on autograd's gradient."""
    sentences = cp.generate_corpus(40, seed=1)
    vocab = cp.build_vocab(sentences)
    tokens, sentence_ids = cp.encode(sentences, vocab)
    config = emb.Word2VecConfig(model=model, dim=4, negatives=3, threshold=None, epochs=2,
                                batch_size=100_000, lr=0.5, seed=7)  # one batch per epoch
    result = emb.train_word2vec(tokens, sentence_ids, vocab.counts, config)
    # replay the same random draws, in the same order, with autograd doing the calculus
    V, d, k = len(vocab), 4, 3
    g = torch.Generator().manual_seed(7)
    W = (torch.rand(V, d, generator=g) - 0.5) / d
    C = torch.zeros(V, d)
    table = emb.noise_table(vocab.counts, 0.75)
    if model == "skipgram":
        inputs, targets = emb.skipgram_pairs(tokens, sentence_ids, 2)
    else:
        targets, inputs = emb.cbow_examples(tokens, sentence_ids, 2)
    for lr in (0.5, 0.25):  # the rate decays linearly: half of it in the second of two epochs
        order = torch.randperm(len(targets), generator=g)
        noise = table[torch.randint(len(table), (len(order), k), generator=g)]
        W, C = W.clone().requires_grad_(), C.clone().requires_grad_()
        if model == "skipgram":
            h = W[inputs[order]]
        else:
            ctx = inputs[order]
            h = torch.stack([W[row[row >= 0]].mean(0) for row in ctx])  # mean of the context vectors
        loss = emb.sgns_loss(h, C[targets[order]], C[noise]).sum()
        grad_W, grad_C = torch.autograd.grad(loss, (W, C))
        W, C = (W - lr * grad_W).detach(), (C - lr * grad_C).detach()
    assert result.steps == 2
    torch.testing.assert_close(result.input_vectors, W, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.output_vectors, C, rtol=1e-5, atol=1e-6)
    assert not torch.equal(result.input_vectors, (torch.rand(V, d, generator=torch.Generator().manual_seed(7))
                                                  - 0.5) / d)  # W did move in step 2


def test_training_is_reproducible(small_corpus):
    _, vocab, tokens, sentence_ids = small_corpus
    config = emb.Word2VecConfig(dim=8, epochs=1, seed=5)
    one = emb.train_word2vec(tokens, sentence_ids, vocab.counts, config)
    two = emb.train_word2vec(tokens, sentence_ids, vocab.counts, config)
    assert torch.equal(one.input_vectors, two.input_vectors)


def test_training_raises_when_it_diverges(small_corpus):
    _, vocab, tokens, sentence_ids = small_corpus
    config = emb.Word2VecConfig(dim=8, epochs=1, lr=1e3, threshold=None, batch_size=2048)
    with pytest.raises(FloatingPointError, match="lower lr or batch_size"):
        emb.train_word2vec(tokens, sentence_ids, vocab.counts, config)


# --------------------------------------------------------------------------------------------
# argument errors name the argument
# --------------------------------------------------------------------------------------------
def test_argument_errors():
    counts = torch.tensor([3, 2, 1])
    with pytest.raises(TypeError, match="counts"):
        emb.noise_distribution([3, 2, 1])
    with pytest.raises(ValueError, match="counts"):
        emb.noise_distribution(torch.tensor([1, -1, 2]))
    with pytest.raises(ValueError, match="power"):
        emb.noise_distribution(counts, power=-0.5)
    with pytest.raises(ValueError, match="size"):
        emb.noise_table(counts, size=0)
    with pytest.raises(ValueError, match="threshold"):
        emb.keep_probability(counts, threshold=0.0)
    with pytest.raises(ValueError, match="variant"):
        emb.keep_probability(counts, variant="gensim")
    with pytest.raises(ValueError, match="tokens"):
        emb.subsample(torch.tensor([0, 5]), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="window"):
        emb.skipgram_pairs(torch.tensor([0, 1]), torch.tensor([0, 0]), 0)
    with pytest.raises(ValueError, match="same shape"):
        emb.cbow_examples(torch.tensor([0, 1]), torch.tensor([0]), 1)
    with pytest.raises(TypeError, match="tokens"):
        emb.skipgram_pairs(torch.tensor([0.0, 1.0]), torch.tensor([0, 0]), 1)
    X = torch.randn(5, 3)
    with pytest.raises(ValueError, match="k must be < V"):
        emb.nearest_neighbours(X, torch.tensor([0]), k=5)
    with pytest.raises(ValueError, match="query"):
        emb.nearest_neighbours(X, torch.tensor([7]), k=2)
    with pytest.raises(TypeError, match="a "):
        emb.analogy(X, torch.tensor([0.0]), torch.tensor([1]), torch.tensor([2]))
    with pytest.raises(ValueError, match="same shape"):
        emb.analogy(X, torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([2]))
    with pytest.raises(ValueError, match="vectors must be finite"):
        emb.analogy(torch.full((5, 3), math.nan), torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    with pytest.raises(ValueError, match="questions must have shape"):
        emb.analogy_accuracy(X, torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="negatives"):
        emb.shifted_pmi(torch.ones(3, 3), 0)
    with pytest.raises(ValueError, match="cooc"):
        emb.shifted_pmi(torch.ones(3, 4), 1)
    with pytest.raises(ValueError, match="dim"):
        emb.sppmi_svd(torch.ones(3, 3), 1, dim=4)
    with pytest.raises(ValueError, match="vocab_size"):
        emb.cooccurrence_counts(torch.tensor([0]), torch.tensor([1]), 0)
    with pytest.raises(ValueError, match="model"):
        emb.Word2VecConfig(model="glove")
    with pytest.raises(TypeError, match="dim"):
        emb.Word2VecConfig(dim=2.5)
    with pytest.raises(ValueError, match="lr"):
        emb.Word2VecConfig(lr=-1.0)
    with pytest.raises(TypeError, match="config"):
        emb.train_word2vec(torch.tensor([0]), torch.tensor([0]), counts, config={"dim": 3})
    with pytest.raises(ValueError, match="tokens"):
        emb.train_word2vec(torch.tensor([0, 9]), torch.tensor([0, 0]), counts)
    with pytest.raises(ValueError, match="n_sentences"):
        cp.generate_corpus(0)
    with pytest.raises(ValueError, match="relation"):
        cp.analogy_questions(cp.build_vocab([["a"]]), "colour")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        cp.build_vocab([["a", "b"]]).ids(["c"])
    with pytest.raises(TypeError, match="vocab"):
        cp.encode([["a"]], {"a": 0})
    with pytest.raises(ValueError, match="counts must have shape"):
        cp.Vocab(["a", "b"], torch.tensor([3]))
    with pytest.raises(ValueError, match="counts must be >= 0"):
        cp.Vocab(["a", "b"], torch.tensor([3, -1]))
    with pytest.raises(ValueError, match="words must not repeat"):
        cp.Vocab(["a", "a"], torch.tensor([3, 1]))
    w, c, n = _random_sgns(2, 3, 4)
    n[0, 1, 2] = math.nan
    with pytest.raises(ValueError, match="negatives must be finite"):
        emb.sgns_grad(w, c, n)
    with pytest.raises(ValueError, match="output_vectors must have the shape"):
        emb.Word2VecResult(torch.zeros(5, 3), torch.zeros(5, 2), [], 0)
    with pytest.raises(ValueError, match="steps"):
        emb.Word2VecResult(torch.zeros(5, 3), torch.zeros(5, 3), [], -1)
