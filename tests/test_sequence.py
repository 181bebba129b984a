"""tutorlib.sequence: recurrent cells, attention, the Transformer block and linear attention.

References: torch.nn.RNNCell / LSTMCell / GRUCell / MultiheadAttention / TransformerEncoderLayer
(outputs and gradients after loading the same weights, float64), torch.nn.functional's
scaled_dot_product_attention, and linear attention written out as explicit double sums here.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tutorlib import sequence as sq

TIGHT = {"rtol": 1e-10, "atol": 1e-12}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def randn(*shape, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


def grads(outputs, params, seed=7):
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    loss = sum((o * randn(*o.shape, seed=seed + i)).sum() for i, o in enumerate(outputs))
    return torch.autograd.grad(loss, params)


# --------------------------------------------------------------------------------------------
# recurrent cells against PyTorch
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("mine_cls", "ref_cls"), [(sq.RNNCell, nn.RNNCell), (sq.LSTMCell, nn.LSTMCell),
                                                   (sq.GRUCell, nn.GRUCell)])
def test_cells_match_pytorch_outputs_and_gradients(mine_cls, ref_cls):
    torch.manual_seed(0)
    ref = ref_cls(5, 7).double()
    mine = mine_cls(5, 7).double()
    mine.load_state_dict(ref.state_dict())
    x = randn(4, 5, seed=1, requires_grad=True)
    h = randn(4, 7, seed=2, requires_grad=True)
    if ref_cls is nn.LSTMCell:
        c = randn(4, 7, seed=3, requires_grad=True)
        out_ref, out_mine = ref(x, (h, c)), mine(x, (h, c))
        inputs = [x, h, c]
    else:
        out_ref, out_mine = ref(x, h), mine(x, h)
        inputs = [x, h]
    torch.testing.assert_close(out_mine, out_ref, **TIGHT)
    g_ref = grads(out_ref, [*inputs, *ref.parameters()])
    g_mine = grads(out_mine, [*inputs, *mine.parameters()])
    for a, b in zip(g_mine, g_ref, strict=True):
        torch.testing.assert_close(a, b, **TIGHT)


@pytest.mark.parametrize(("mine_cls", "ref_cls"), [(sq.RNNCell, nn.RNN), (sq.LSTMCell, nn.LSTM),
                                                   (sq.GRUCell, nn.GRU)])
def test_unroll_matches_pytorch_sequence_modules(mine_cls, ref_cls):
    torch.manual_seed(0)
    ref = ref_cls(3, 6, batch_first=True).double()
    mine = mine_cls(3, 6).double()
    mine.load_state_dict({k.removesuffix("_l0"): v for k, v in ref.state_dict().items()})
    x = randn(2, 9, 3, seed=4)
    torch.testing.assert_close(sq.unroll(mine, x), ref(x)[0], **TIGHT)


def test_cells_default_to_zero_state():
    cell = sq.GRUCell(3, 4).double()
    x = randn(2, 3)
    torch.testing.assert_close(cell(x), cell(x, torch.zeros(2, 4, dtype=torch.float64)))


def test_cell_init_is_pytorchs_uniform_range():
    cell = sq.LSTMCell(10, 25)
    bound = 1 / math.sqrt(25)
    assert all(p.abs().max() <= bound for p in cell.parameters())
    assert cell.weight_hh.std() > bound / 3  # not all zeros


def test_cell_errors():
    with pytest.raises(TypeError, match="hidden_size"):
        sq.RNNCell(3, 2.5)
    with pytest.raises(ValueError, match="input_size"):
        sq.LSTMCell(0, 3)
    cell = sq.RNNCell(3, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3\)"):
        cell(torch.zeros(2, 5))
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor"):
        cell([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"h must have shape \(2, 4\)"):
        cell(torch.zeros(2, 3), torch.zeros(2, 5))
    with pytest.raises(TypeError, match="state must be a tuple"):
        sq.LSTMCell(3, 4)(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="cell must be"):
        sq.unroll(nn.Linear(3, 4), torch.zeros(1, 2, 3))
    with pytest.raises(TypeError, match="floating-point"):
        cell(torch.zeros(2, 3, dtype=torch.long))


# --------------------------------------------------------------------------------------------
# gradients through time
# --------------------------------------------------------------------------------------------
def test_jacobian_norms_of_a_linear_recurrence_are_powers_of_the_radius():
    """s_k = rho * Q s_{k-1} with Q orthogonal: every singular value of the product is rho^j."""
    q, _ = torch.linalg.qr(randn(6, 6))
    step = lambda x, s: 0.7 * (q @ s) + x  # noqa: E731
    norms = sq.state_jacobian_norms(step, randn(5, 6, seed=1), randn(6, seed=2))
    torch.testing.assert_close(norms, 0.7 ** torch.arange(6, dtype=torch.float64), **TIGHT)


def test_jacobian_norms_match_autograd_for_a_tanh_rnn():
    cell = sq.RNNCell(3, 5).double()
    xs, s0 = randn(4, 3, seed=3), randn(5, seed=4)
    step = lambda x, s: cell(x[None], s[None])[0]  # noqa: E731
    norms = sq.state_jacobian_norms(step, xs, s0)

    def final_from(t, s_t):
        for x in xs[t:]:
            s_t = step(x, s_t)
        return s_t

    with torch.no_grad():
        states = [s0]
        for x in xs:
            states.append(step(x, states[-1]))
    for j in range(1, 5):
        t = 4 - j
        jac = torch.autograd.functional.jacobian(lambda s, t=t: final_from(t, s), states[t])
        torch.testing.assert_close(norms[j], torch.linalg.matrix_norm(jac, ord=2), **TIGHT)


def test_scale_spectral_radius():
    w = sq.scale_spectral_radius(randn(8, 8), 1.3)
    assert torch.linalg.eigvals(w).abs().max().item() == pytest.approx(1.3, rel=1e-10)
    with pytest.raises(ValueError, match="square"):
        sq.scale_spectral_radius(randn(3, 4), 1.0)
    with pytest.raises(ValueError, match="radius"):
        sq.scale_spectral_radius(randn(3, 3), 0.0)


# --------------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_sdpa(causal):
    q, k, v = (randn(2, 3, 6, 4, seed=s, requires_grad=True) for s in range(3))
    out, weights = sq.scaled_dot_product_attention(q, k, v, causal=causal)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(out, ref, **TIGHT)
    for a, b in zip(grads(out, [q, k, v]), grads(ref, [q, k, v]), strict=True):
        torch.testing.assert_close(a, b, **TIGHT)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 6, dtype=torch.float64), **TIGHT)
    if causal:
        assert torch.all(weights.triu(1) == 0)


def test_padding_mask_gives_padded_keys_zero_weight_and_ignores_their_values():
    q, k, v = (randn(2, 1, 5, 4, seed=s) for s in range(3))
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    out, weights = sq.scaled_dot_product_attention(q, k, v, key_padding_mask=pad)
    assert torch.all(weights[1, :, :, 3:] == 0)
    v2 = v.clone()
    v2[1, :, 3:] = 1e6  # change only the padded values
    out2, _ = sq.scaled_dot_product_attention(q, k, v2, key_padding_mask=pad)
    torch.testing.assert_close(out2, out, **TIGHT)
    trimmed, _ = sq.scaled_dot_product_attention(q[1:, :, :], k[1:, :, :3], v[1:, :, :3])
    torch.testing.assert_close(out[1:], trimmed, **TIGHT)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_multihead_attention_matches_pytorch(causal, heads):
    torch.manual_seed(heads)
    E = 8
    ref = nn.MultiheadAttention(E, heads, batch_first=True, dtype=torch.float64)
    mine = sq.MultiHeadAttention(E, heads).double()
    mine.load_state_dict(ref.state_dict())
    x = randn(3, 5, E, seed=1, requires_grad=True)
    pad = torch.tensor([[False] * 5, [False] * 4 + [True], [False] * 3 + [True] * 2])
    mask = torch.ones(5, 5, dtype=torch.bool).triu(1) if causal else None
    o_ref, w_ref = ref(x, x, x, key_padding_mask=pad, attn_mask=mask, average_attn_weights=False)
    o_mine, w_mine = mine(x, causal=causal, key_padding_mask=pad)
    torch.testing.assert_close(o_mine, o_ref, **TIGHT)
    torch.testing.assert_close(w_mine, w_ref, **TIGHT)
    g_ref = grads(o_ref, [x, *ref.parameters()])
    g_mine = grads(o_mine, [x, *mine.parameters()])
    for a, b in zip(g_mine, g_ref, strict=True):
        torch.testing.assert_close(a, b, **TIGHT)


def test_cross_attention_matches_pytorch():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(6, 3, batch_first=True, dtype=torch.float64)
    mine = sq.MultiHeadAttention(6, 3).double()
    mine.load_state_dict(ref.state_dict())
    q, kv = randn(2, 4, 6, seed=1), randn(2, 7, 6, seed=2)
    torch.testing.assert_close(mine(q, kv, kv)[0], ref(q, kv, kv)[0], **TIGHT)


def test_transformer_block_matches_pytorch():
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=True,
                                     dtype=torch.float64)
    mine = sq.TransformerEncoderBlock(8, 2, 16).double()
    mine.load_state_dict(ref.state_dict())
    x = randn(2, 6, 8, seed=1, requires_grad=True)
    mask = torch.ones(6, 6, dtype=torch.bool).triu(1)
    out_ref = ref(x, src_mask=mask, is_causal=True)
    out_mine, _ = mine(x, causal=True)
    torch.testing.assert_close(out_mine, out_ref, **TIGHT)
    for a, b in zip(grads(out_mine, [x, *mine.parameters()]), grads(out_ref, [x, *ref.parameters()]),
                    strict=True):
        torch.testing.assert_close(a, b, **TIGHT)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 12), shift=st.integers(0, 5))
def test_self_attention_without_positions_is_permutation_equivariant(n, shift):
    mha = sq.MultiHeadAttention(4, 2).double()
    x = randn(1, n, 4, seed=n)
    perm = torch.roll(torch.arange(n), shift)
    torch.testing.assert_close(mha(x[:, perm])[0], mha(x)[0][:, perm], **TIGHT)


def test_positional_encoding_values_and_shape():
    pe = sq.sinusoidal_positional_encoding(50, 8)
    assert pe.shape == (50, 8)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0] * 4))
    t, i = 7, 1  # second frequency pair: 10000^(-2/8)
    assert pe[t, 2 * i].item() == pytest.approx(math.sin(t / 10000 ** (2 * i / 8)), abs=1e-6)
    assert pe[t, 2 * i + 1].item() == pytest.approx(math.cos(t / 10000 ** (2 * i / 8)), abs=1e-6)
    with pytest.raises(ValueError, match="even"):
        sq.sinusoidal_positional_encoding(5, 7)


def test_attention_errors():
    q = torch.zeros(1, 1, 3, 4)
    with pytest.raises(ValueError, match="q, k, v must be"):
        sq.scaled_dot_product_attention(q, torch.zeros(1, 1, 3, 5), q)
    with pytest.raises(ValueError, match="q must have 4 dimensions"):
        sq.scaled_dot_product_attention(q[0], q, q)
    with pytest.raises(TypeError, match="key_padding_mask must be a bool"):
        sq.scaled_dot_product_attention(q, q, q, key_padding_mask=torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, 3\)"):
        sq.scaled_dot_product_attention(q, q, q, key_padding_mask=torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible"):
        sq.MultiHeadAttention(6, 4)
    with pytest.raises(ValueError, match="embed_dim=6"):
        sq.MultiHeadAttention(6, 2)(torch.zeros(1, 3, 5))


# --------------------------------------------------------------------------------------------
# linear attention
# --------------------------------------------------------------------------------------------
def linear_attention_by_sums(q, k, v, causal):
    """Katharopoulos et al. eq. (4) with explicit loops: the reference, independent of the library."""
    phi = lambda x: torch.where(x > 0, x + 1, torch.exp(x))  # noqa: E731  elu(x) + 1
    B, H, N, _ = q.shape
    out = torch.zeros(B, H, N, v.shape[-1], dtype=q.dtype)
    for i in range(N):
        js = range(i + 1) if causal else range(N)
        w = torch.stack([(phi(q[:, :, i]) * phi(k[:, :, j])).sum(-1) for j in js], -1)  # (B, H, |js|)
        out[:, :, i] = (w[..., None] * v[:, :, list(js)]).sum(2) / (w.sum(-1, keepdim=True) + 1e-6)
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_matches_the_explicit_sums(causal):
    q, k, v = randn(2, 2, 7, 3, seed=0), randn(2, 2, 7, 3, seed=1), randn(2, 2, 7, 5, seed=2)
    torch.testing.assert_close(sq.linear_attention(q, k, v, causal=causal),
                               linear_attention_by_sums(q, k, v, causal), **TIGHT)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 20), d=st.integers(1, 6), d_v=st.integers(1, 6), seed=st.integers(0, 1000))
def test_causal_linear_attention_is_an_rnn(n, d, d_v, seed):
    q, k = randn(1, 2, n, d, seed=seed), randn(1, 2, n, d, seed=seed + 1)
    v = randn(1, 2, n, d_v, seed=seed + 2)
    torch.testing.assert_close(sq.linear_attention_recurrent(q, k, v),
                               sq.linear_attention(q, k, v, causal=True), **TIGHT)


def test_linear_attention_recurrent_gradients_match_parallel():
    q, k, v = (randn(1, 1, 6, 3, seed=s, requires_grad=True) for s in range(3))
    a = grads(sq.linear_attention_recurrent(q, k, v), [q, k, v])
    b = grads(sq.linear_attention(q, k, v, causal=True), [q, k, v])
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, **TIGHT)


def test_linear_attention_outputs_are_convex_combinations_of_values():
    q, k, v = randn(1, 1, 9, 4, seed=0), randn(1, 1, 9, 4, seed=1), randn(1, 1, 9, 2, seed=2)
    out = sq.linear_attention(q, k, v)
    assert torch.all(out <= v.max(2, keepdim=True).values + 1e-9)
    assert torch.all(out >= v.min(2, keepdim=True).values - 1e-9)


def test_feature_map_is_positive_and_elu_plus_one():
    x = torch.linspace(-30, 5, 101, dtype=torch.float64)
    phi = sq.elu_feature_map(x)
    assert torch.all(phi > 0)
    torch.testing.assert_close(phi, torch.where(x > 0, x + 1, torch.exp(x)), **TIGHT)


def test_linear_attention_errors():
    q = torch.zeros(1, 1, 4, 3)
    with pytest.raises(ValueError, match="q, k must be"):
        sq.linear_attention(q, torch.zeros(1, 1, 5, 3), q)
    with pytest.raises(TypeError, match=r"v must be a torch\.Tensor"):
        sq.linear_attention_recurrent(q, q, None)


# --------------------------------------------------------------------------------------------
# the recall task and the models
# --------------------------------------------------------------------------------------------
def test_recall_task_layout():
    tokens, labels = sq.make_recall_task(50, 6, n_classes=3, n_distractors=4,
                                         generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (50, 7)
    assert torch.equal(tokens[:, 0], labels)
    assert torch.all((tokens[:, 1:-1] >= 3) & (tokens[:, 1:-1] < 7))
    assert torch.all(tokens[:, -1] == 7)
    with pytest.raises(ValueError, match="distance"):
        sq.make_recall_task(5, 0, generator=torch.Generator())


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "transformer"])
def test_models_give_logits_and_train(kind):
    cfg = sq.RecallConfig(steps=60, d_model=16, lr=1e-2, n_test=200)
    model, accuracy = sq.train_recall(kind, 2, cfg, seed=0)
    assert model(torch.zeros(3, 4, dtype=torch.long)).shape == (3, cfg.n_classes)
    assert accuracy > 0.9  # distance 2 is easy for every model


def test_transformer_returns_one_attention_map_per_layer():
    model = sq.TransformerClassifier(10, 8, 3, num_heads=2, num_layers=3)
    logits, maps = model(torch.zeros(2, 5, dtype=torch.long), return_attention=True)
    assert logits.shape == (2, 3) and len(maps) == 3 and maps[0].shape == (2, 2, 5, 5)
    with pytest.raises(ValueError, match="cell must be one of"):
        sq.RecurrentClassifier("transformer", 10, 8, 3)


def test_min_time_errors():
    with pytest.raises(ValueError, match="repeats"):
        sq.min_time(lambda: None, repeats=0)


def test_graph_depth_counts_the_longest_chain():
    x = torch.ones(3, requires_grad=True)
    y = x
    for _ in range(5):
        y = y * 2  # five operations in a row, then the leaf's AccumulateGrad
    assert sq.graph_depth(y) == 6
    assert sq.graph_depth((x * 2) + (x * 3) + (x * 4)) == 4  # branches run side by side
    with pytest.raises(ValueError, match="grad_fn"):
        sq.graph_depth(torch.ones(2))
    with pytest.raises(TypeError, match="output must be"):
        sq.graph_depth(3.0)


def test_rnn_depth_grows_with_length_and_attention_depth_does_not():
    cfg = sq.RecallConfig(d_model=8)
    depth = {}
    for kind in ("rnn", "transformer"):
        for n in (5, 20):
            torch.manual_seed(0)
            out = sq.make_model(kind, cfg)(torch.zeros(2, n, dtype=torch.long))
            depth[kind, n] = sq.graph_depth(out)
    assert depth["rnn", 20] - depth["rnn", 5] >= 15  # at least one op per extra step
    assert depth["transformer", 20] == depth["transformer", 5]


def test_scale_spectral_radius_refuses_nan_instead_of_crashing():
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    w[1, 2] = float("nan")  # LAPACK's eigensolver used to segfault here
    with pytest.raises(ValueError, match="weight must be finite"):
        sq.scale_spectral_radius(w, 0.9)
    with pytest.raises(ValueError, match="radius must be finite and > 0"):
        sq.scale_spectral_radius(torch.eye(3), -1.0)
    with pytest.raises(ValueError, match="spectral radius 0"):
        sq.scale_spectral_radius(torch.zeros(3, 3), 0.9)
    scaled = sq.scale_spectral_radius(torch.diag(torch.tensor([2.0, -4.0])), 0.5)
    torch.testing.assert_close(scaled, torch.diag(torch.tensor([0.25, -0.5])))


def test_attention_mask_by_hand():
    assert sq.attention_mask(2, 3) is None
    causal = sq.attention_mask(2, 3, causal=True)
    assert causal.tolist() == [[False, True, True], [False, False, True]]
    pad = torch.tensor([[False, False, True]])
    both = sq.attention_mask(2, 3, causal=True, key_padding_mask=pad)
    assert both.shape == (1, 1, 2, 3)
    assert both[0, 0].tolist() == [[False, True, True], [False, False, True]]
    only_pad = sq.attention_mask(2, 3, key_padding_mask=pad)
    assert only_pad[0, 0, 0].tolist() == [False, False, True]
    with pytest.raises(ValueError, match="n_q must be >= 1"):
        sq.attention_mask(0, 3)
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, 3\)"):
        sq.attention_mask(2, 3, key_padding_mask=torch.zeros(1, 4, dtype=torch.bool))


def test_attention_output_matches_a_loop():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    out = sq.scaled_dot_product_attention(q, k, v)[0]
    for h in range(2):
        for i in range(3):
            w = torch.softmax(torch.stack([q[0, h, i] @ k[0, h, j] for j in range(3)]) / 2.0, 0)
            torch.testing.assert_close(out[0, h, i], sum(w[j] * v[0, h, j] for j in range(3)))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_scale_and_unequal_lengths_match_sdpa(causal):
    q, k, v = randn(2, 3, 5, 4, seed=1), randn(2, 3, 7, 4, seed=2), randn(2, 3, 7, 6, seed=3)
    out, _ = sq.scaled_dot_product_attention(q, k, v, causal=causal, scale=0.7)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=0.7)  # top-left causal
    torch.testing.assert_close(out, ref, **TIGHT)
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        sq.scaled_dot_product_attention(q, k, v, scale=-1.0)
    with pytest.raises(TypeError, match="scale"):
        sq.scaled_dot_product_attention(q, k, v, scale="big")


def gla_reference(q, k, v, gamma, eps=1e-6):
    """Gated linear attention as explicit double sums with the gate products written out."""
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    B, H, N, _ = q.shape
    out = torch.zeros(B, H, N, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for i in range(N):
                num, den = 0.0, 0.0
                for j in range(i + 1):
                    decay = torch.prod(gamma[b, h, j + 1:i + 1])  # empty product = 1 for j = i
                    w = decay * (fq[b, h, i] @ fk[b, h, j])
                    num, den = num + w * v[b, h, j], den + w
                out[b, h, i] = num / (den + eps)
    return out


def test_gated_linear_attention_matches_the_explicit_sums_and_its_recurrence():
    q, k, v = randn(2, 2, 9, 3, seed=1), randn(2, 2, 9, 3, seed=2), randn(2, 2, 9, 5, seed=3)
    gamma = torch.sigmoid(randn(2, 2, 9, seed=4) + 1)
    parallel = sq.gated_linear_attention(q, k, v, gamma)
    torch.testing.assert_close(parallel, gla_reference(q, k, v, gamma), **TIGHT)
    torch.testing.assert_close(sq.gated_linear_attention_recurrent(q, k, v, gamma), parallel, **TIGHT)
    constant = sq.gated_linear_attention(q, k, v, 0.8)
    torch.testing.assert_close(constant, gla_reference(q, k, v, torch.full((2, 2, 9), 0.8, dtype=q.dtype)),
                               **TIGHT)
    ungated = sq.linear_attention(q, k, v, causal=True)
    torch.testing.assert_close(sq.gated_linear_attention(q, k, v, 1.0), ungated, **TIGHT)


def test_gated_linear_attention_gradients_match_between_forms():
    q, k, v = (randn(1, 2, 6, 3, seed=s, requires_grad=True) for s in (1, 2, 3))
    gamma = torch.sigmoid(randn(1, 2, 6, seed=4)).requires_grad_(True)
    g_par = grads(sq.gated_linear_attention(q, k, v, gamma), [q, k, v, gamma])
    g_rec = grads(sq.gated_linear_attention_recurrent(q, k, v, gamma), [q, k, v, gamma])
    for a, b in zip(g_par, g_rec, strict=True):
        torch.testing.assert_close(a, b, **TIGHT)


def test_gated_linear_attention_refuses_bad_gates():
    q = randn(1, 2, 4, 3)
    for fn in (sq.gated_linear_attention, sq.gated_linear_attention_recurrent):
        with pytest.raises(ValueError, match="gamma"):
            fn(q, q, q, 0.0)
        with pytest.raises(ValueError, match="gamma"):
            fn(q, q, q, 1.5)
        with pytest.raises(ValueError, match=r"gamma must lie in \(0, 1\]"):
            fn(q, q, q, torch.full((1, 2, 4), 1.2, dtype=torch.float64))
        with pytest.raises(ValueError, match="gamma"):
            fn(q, q, q, torch.full((1, 2, 3), 0.5, dtype=torch.float64))
        with pytest.raises(TypeError, match="gamma must have q's dtype"):
            fn(q, q, q, torch.full((1, 2, 4), 0.5))
        with pytest.raises(TypeError, match="gamma"):
            fn(q, q, q, "0.5")


def test_associative_recall_a_d_by_d_state_holds_about_d_pairs():
    g = torch.Generator().manual_seed(0)
    # orthogonal-ish keys in a wide space: every pair comes back
    assert sq.associative_recall_accuracy(4, 256, memory="linear", generator=g) == 1.0
    # many more pairs than dimensions: the crosstalk buries most answers, softmax keeps them all
    assert sq.associative_recall_accuracy(256, 16, memory="linear", generator=g) < 0.2
    assert sq.associative_recall_accuracy(256, 16, memory="softmax", generator=g) > 0.99
    with pytest.raises(ValueError, match="memory must be one of"):
        sq.associative_recall_accuracy(4, 4, memory="lstm", generator=g)
    with pytest.raises(ValueError, match="n_pairs must be >= 1"):
        sq.associative_recall_accuracy(0, 4, generator=g)
    with pytest.raises(TypeError, match="generator"):
        sq.associative_recall_accuracy(4, 4, generator=0)


def test_forget_bias_and_clipping_are_applied():
    H = 8
    lstm = sq.make_model("lstm", sq.RecallConfig(d_model=H, forget_bias=2.5))
    assert torch.all(lstm.cell.bias_ih[H:2 * H] == 2.5) and torch.all(lstm.cell.bias_hh[H:2 * H] == 0)
    assert lstm.cell.bias_ih[:H].abs().max() <= 1 / math.sqrt(H)  # the other gates keep PyTorch's init
    default = sq.make_model("lstm", sq.RecallConfig(d_model=H))
    assert default.cell.bias_ih[H:2 * H].abs().max() <= 1 / math.sqrt(H)

    def change(clip_norm):  # one Adam step; with a tiny clip the step is ~ lr * |g| / eps, far below lr
        cfg = sq.RecallConfig(d_model=H, steps=1, lr=1e-2, clip_norm=clip_norm, n_test=4)
        torch.manual_seed(3)
        before = [p.detach().clone() for p in sq.make_model("rnn", cfg).parameters()]
        after, _ = sq.train_recall("rnn", 3, cfg, seed=3)
        return max((a - b).abs().max().item() for a, b in zip(after.parameters(), before, strict=True))

    assert change(None) > 5e-3
    assert change(1e-12) < 1e-5


def test_train_recall_curve_reports_every_eval_step():
    cfg = sq.RecallConfig(d_model=8, steps=5, n_test=16, clip_norm=1.0)
    _, steps, accuracies = sq.train_recall_curve("lstm", 3, cfg, seed=0, eval_every=2)
    assert steps == [2, 4, 5] and len(accuracies) == 3
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    with pytest.raises(ValueError, match="eval_every must be >= 1"):
        sq.train_recall_curve("lstm", 3, cfg, seed=0, eval_every=0)
    with pytest.raises(ValueError, match=r"RecallConfig\.clip_norm must be finite and > 0"):
        sq.RecallConfig(clip_norm=-1.0)
    with pytest.raises(ValueError, match=r"RecallConfig\.forget_bias"):
        sq.RecallConfig(forget_bias=float("nan"))


def test_recall_models_and_config_check_their_arguments():
    with pytest.raises(ValueError, match=r"RecallConfig\.lr must be finite and > 0"):
        sq.RecallConfig(lr=-1.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        sq.make_model("cnn", sq.RecallConfig())
    model = sq.make_model("gru", sq.RecallConfig(d_model=8))
    with pytest.raises(ValueError, match=r"tokens must hold indices in \[0, 17\)"):
        model(torch.tensor([[0, 17]]))
    with pytest.raises(TypeError, match="tokens must be a integer tensor"):
        model(torch.zeros(1, 2))
    with pytest.raises(TypeError, match=r"generator must be a torch\.Generator"):
        sq.make_recall_task(2, 3, generator=0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 3\)"):
        sq.RNNCell(3, 4).init_state(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="q must be finite"):
        sq.linear_attention(torch.full((1, 1, 2, 2), float("nan")), torch.zeros(1, 1, 2, 2),
                            torch.zeros(1, 1, 2, 2))


# --------------------------------------------------------------------------------------------
# trained multi-query associative recall
# --------------------------------------------------------------------------------------------
def test_associative_recall_batch_pairs_every_query_with_its_value():
    g = torch.Generator().manual_seed(0)
    batch = sq.make_associative_recall_batch(32, 6, n_keys=10, n_values=5, generator=g)
    keys, values, queries, answers = batch
    assert all(t.shape == (32, 6) and t.dtype == torch.long for t in (keys, values, queries, answers))
    assert keys.min() >= 0 and keys.max() < 10 and values.min() >= 0 and values.max() < 5
    for b in range(32):  # brute force: distinct keys, the queries are the same keys, answers their values
        table = dict(zip(keys[b].tolist(), values[b].tolist(), strict=True))
        assert len(table) == 6 and sorted(queries[b].tolist()) == sorted(table)
        assert answers[b].tolist() == [table[q] for q in queries[b].tolist()]


@pytest.mark.parametrize("memory", ["linear", "softmax"])
def test_associative_recall_model_matches_explicit_sums(memory):
    torch.manual_seed(0)
    model = sq.AssociativeRecallModel(memory, d=4, n_keys=9, n_values=7).double()
    g = torch.Generator().manual_seed(1)
    keys, values, queries, _ = sq.make_associative_recall_batch(3, 5, n_keys=9, n_values=7, generator=g)
    queries = queries[:, :2]  # fewer queries than pairs is allowed
    logits = model(keys, values, queries)
    assert logits.shape == (3, 2, 7)
    k = model.w_k(model.key_embedding(keys))
    v = model.w_v(model.value_embedding(values))
    q = model.w_q(model.key_embedding(queries))
    if memory == "linear":  # o_i = sum_j (q_i . k_j) v_j, written out
        out = torch.stack([torch.stack([sum((q[b, i] @ k[b, j]) * v[b, j] for j in range(5))
                                        for i in range(2)]) for b in range(3)])
    else:
        out = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(logits, model.readout(out), **TIGHT)


def test_trained_associative_recall_learns_two_pairs_and_a_small_state_fails_many():
    for memory in ("linear", "softmax"):
        assert sq.train_associative_recall(2, memory=memory, d=8, n_keys=8, n_values=8, steps=60,
                                           batch=32, n_test=64) > 0.95
    # 32 pairs in a 4 x 4 state: far below softmax attention's recall with the same budget (0.25 vs 0.73)
    small = {m: sq.train_associative_recall(32, memory=m, d=4, n_keys=32, n_values=8, steps=100, batch=32,
                                            n_test=64) for m in ("linear", "softmax")}
    assert small["linear"] < 0.45 and small["softmax"] > small["linear"] + 0.3


def test_trained_associative_recall_checks_its_arguments():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="n_pairs must be <= n_keys"):
        sq.make_associative_recall_batch(2, 5, n_keys=4, generator=g)
    with pytest.raises(ValueError, match="batch"):
        sq.make_associative_recall_batch(0, 2, generator=g)
    with pytest.raises(ValueError, match="n_values"):
        sq.make_associative_recall_batch(2, 2, n_values=0, generator=g)
    with pytest.raises(TypeError, match="generator"):
        sq.make_associative_recall_batch(2, 2, generator=1)
    with pytest.raises(ValueError, match="memory"):
        sq.AssociativeRecallModel("lstm")
    with pytest.raises(ValueError, match="d"):
        sq.AssociativeRecallModel("linear", d=0)
    model = sq.AssociativeRecallModel("linear", d=4, n_keys=5, n_values=3)
    ids = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="values"):
        model(ids, torch.zeros(2, 4, dtype=torch.long), ids)
    with pytest.raises(ValueError, match="queries"):
        model(ids, ids, torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="keys"):
        model(torch.full((2, 3), 5), ids, ids)
    with pytest.raises(TypeError, match="keys"):
        model(torch.zeros(2, 3), ids, ids)
    with pytest.raises(ValueError, match="n_pairs must be <= n_keys"):
        sq.train_associative_recall(8, memory="linear", n_keys=4)
    with pytest.raises(ValueError, match="lr"):
        sq.train_associative_recall(2, memory="linear", lr=-1.0)
    with pytest.raises(ValueError, match="steps"):
        sq.train_associative_recall(2, memory="linear", steps=0)
    with pytest.raises(ValueError, match="seed"):
        sq.train_associative_recall(2, memory="linear", seed=-1)
    with pytest.raises(ValueError, match="memory"):
        sq.train_associative_recall(2, memory="gru")
