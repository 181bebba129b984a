"""tutorlib.efficient and efficient_models: formats vs torch.finfo and casts, the loss scaler vs
torch.amp.GradScaler, saved bytes vs hand counts, checkpointing vs torch.utils.checkpoint."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.checkpoint import checkpoint_sequential as torch_checkpoint_sequential

from tutorlib import efficient as ef
from tutorlib import efficient_models as em

pytestmark = pytest.mark.usefixtures("one_thread")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# --------------------------------------------------------------------------- number formats


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"])
def test_limits_equal_finfo(name):
    lim, fi = ef.format_limits(name), torch.finfo(DTYPES[name])
    assert lim["max"] == fi.max
    assert lim["smallest_normal"] == fi.smallest_normal == fi.tiny
    assert lim["eps"] == fi.eps
    after_zero = torch.nextafter(torch.zeros((), dtype=DTYPES[name]), torch.ones((), dtype=DTYPES[name]))
    assert lim["smallest_subnormal"] == after_zero.item()
    assert ef.FORMATS[name].bits == fi.bits


def test_limits_closed_form_for_fp16():
    # IEEE 754 binary16: max 65504, smallest normal 2^-14, smallest subnormal 2^-24, eps 2^-10
    assert ef.format_limits("fp16") == {"max": 65504.0, "smallest_normal": 2.0**-14,
                                        "smallest_subnormal": 2.0**-24, "eps": 2.0**-10}


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"])
def test_rounding_equals_torch_cast_on_wide_random_values(name):
    g = torch.Generator().manual_seed(1)
    mags = torch.exp(torch.randn(50_000, generator=g) * 25).clamp(max=3e38)
    x = (torch.randn(50_000, generator=g).sign() * mags).float()
    ours = ef.round_to_format(x, name)
    assert torch.equal(ours, x.to(DTYPES[name]).double())


@pytest.mark.parametrize("name", ["fp16", "bf16"])
def test_rounding_at_every_tie_and_boundary(name):
    # every representable fp32 value halfway between two consecutive 16-bit numbers (ties)
    dtype = DTYPES[name]
    bits = torch.arange(0, 2**15 - 2**(ef.FORMATS[name].mantissa_bits), dtype=torch.int32).to(torch.int16)
    lo = bits.view(dtype).double()
    hi = (bits + 1).view(dtype).double()
    mid = ((lo + hi) / 2).float()  # exact in fp32 for both formats
    finite = torch.isfinite(mid)
    mid = mid[finite]
    assert torch.equal(ef.round_to_format(mid, name), mid.to(dtype).double())


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_rounding_property_fp16(value):
    ours = ef.round_to_format(value, "fp16").item()
    assert ours == torch.tensor(value, dtype=torch.float32).to(torch.float16).item() or (
        math.isnan(ours) and math.isnan(value))


def test_rounding_overflow_nan_and_signed_zero():
    out = ef.round_to_format(torch.tensor([65519.0, 65520.0, -1e6, float("nan"), -0.0, float("inf")]), "fp16")
    assert out[0] == 65504.0 and out[1] == math.inf and out[2] == -math.inf
    assert math.isnan(out[3]) and out[4] == 0 and math.copysign(1, out[4]) < 0 and out[5] == math.inf


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"])
def test_spacing_equals_nextafter(name):
    dtype = DTYPES[name]
    values = torch.tensor([1e-30, 3e-8, 1e-5, 0.1, 1.0, 3.0, 1000.1, 6e4], dtype=dtype)
    up = torch.nextafter(values, torch.full_like(values, math.inf))
    assert torch.equal(ef.spacing(values.double(), name), up.double() - values.double())


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("value", [1.0, -2.5, 0.1, 1e-7, 3e-39, 65504.0, 1e5, 0.0, -0.0])
def test_float_bits_equal_the_stored_bits(name, value):
    dtype = DTYPES[name]
    int_dtype = torch.int32 if name == "fp32" else torch.int16
    stored = torch.tensor(value, dtype=torch.float32).to(dtype).view(int_dtype).item()
    width = ef.FORMATS[name].bits
    expected = format(stored & (2**width - 1), f"0{width}b")
    assert "".join(ef.float_bits(value, name)) == expected


def test_underflow_fraction_counts_flushes():
    values = torch.tensor([2.0**-26, 2.0**-25, 2.0**-24, 1.0])  # 2^-25 ties to the even neighbour 0
    assert ef.underflow_fraction(values, "fp16") == 0.5
    assert ef.underflow_fraction(values, "fp16", scale=4.0) == 0.0
    assert ef.underflow_fraction(values, "bf16") == 0.0


def test_format_argument_errors():
    with pytest.raises(ValueError, match="fmt"):
        ef.format_limits("fp8")
    with pytest.raises(TypeError, match="fmt"):
        ef.round_to_format(1.0, 16)
    with pytest.raises(TypeError, match="x"):
        ef.round_to_format("1.0", "fp16")
    with pytest.raises(TypeError, match="x"):
        ef.float_bits(torch.tensor(1.0), "fp16")
    with pytest.raises(ValueError, match="exponent_bits"):
        ef.FloatFormat("bad", 1, 3)
    with pytest.raises(TypeError, match="mantissa_bits"):
        ef.FloatFormat("bad", 5, 2.0)
    with pytest.raises(TypeError, match="values"):
        ef.underflow_fraction([1.0], "fp16")
    with pytest.raises(ValueError, match="scale"):
        ef.underflow_fraction(torch.ones(3), "fp16", scale=-1.0)
    with pytest.raises(ValueError, match="nonzero"):
        ef.underflow_fraction(torch.zeros(3), "fp16")


# --------------------------------------------------------------------------- loss scaling


def _pair(growth_interval, backoff=0.5, growth=2.0, init=2.0**16):
    torch.manual_seed(0)
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    oa, ob = torch.optim.SGD(a.parameters(), lr=0.05), torch.optim.SGD(b.parameters(), lr=0.05)
    ours = ef.DynamicLossScaler(init, growth, backoff, growth_interval)
    theirs = torch.amp.GradScaler("cpu", init_scale=init, growth_factor=growth, backoff_factor=backoff,
                                  growth_interval=growth_interval)
    return (a, oa, ours), (b, ob, theirs)


@pytest.mark.parametrize("growth_interval", [1, 2, 5])
def test_scaler_matches_gradscaler_step_by_step(growth_interval):
    rng = np.random.default_rng(growth_interval)
    bad_steps = set(rng.choice(30, size=8, replace=False).tolist())
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(2))
    pairs = _pair(growth_interval, backoff=0.25, growth=4.0, init=8.0)
    for step in range(30):
        stepped = []
        for net, opt, scaler in pairs:
            opt.zero_grad()
            poison = {0: 1.0, 1: math.inf, 2: math.nan}[(step in bad_steps) * (1 + step % 2)]
            loss = net(x).pow(2).mean() * poison
            scaler.scale(loss).backward()
            stepped.append(scaler.step(opt))
            scaler.update()
        (a, _, ours), (b, _, theirs) = pairs
        assert ours.get_scale() == theirs.get_scale()
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
        assert (stepped[0] is False) == (step in bad_steps)
    assert pairs[0][2].skipped == len(bad_steps)


def test_scaler_default_semantics_grow_after_2000():
    s = ef.DynamicLossScaler()
    assert s.get_scale() == 2.0**16 and s.growth_interval == 2000
    net = nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    for _ in range(1999):
        opt.zero_grad()
        s.scale(net(torch.ones(1, 2)).sum()).backward()
        s.step(opt)
        s.update()
    assert s.get_scale() == 2.0**16
    opt.zero_grad()
    s.scale(net(torch.ones(1, 2)).sum()).backward()
    s.step(opt)
    s.update()
    assert s.get_scale() == 2.0**17 and s.growth_tracker == 0


def test_unscale_divides_gradients_by_the_scale():
    net = nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    reference = torch.autograd.grad(net(x).sum(), [net.weight])[0]
    s = ef.DynamicLossScaler(init_scale=1024.0)
    s.scale(net(x).sum()).backward()
    assert not s.unscale_(opt)
    torch.testing.assert_close(net.weight.grad, reference, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="unscale_"):
        s.unscale_(opt)


def test_scaler_argument_errors():
    with pytest.raises(ValueError, match="init_scale"):
        ef.DynamicLossScaler(init_scale=0.0)
    with pytest.raises(ValueError, match="growth_factor"):
        ef.DynamicLossScaler(growth_factor=1.0)
    with pytest.raises(ValueError, match="backoff_factor"):
        ef.DynamicLossScaler(backoff_factor=1.5)
    with pytest.raises(TypeError, match="growth_interval"):
        ef.DynamicLossScaler(growth_interval=2.5)
    s = ef.DynamicLossScaler()
    with pytest.raises(TypeError, match="loss"):
        s.scale(1.0)
    with pytest.raises(TypeError, match="optimizer"):
        s.step(None)
    with pytest.raises(RuntimeError, match="update"):
        s.update()


# --------------------------------------------------------------------------- saved bytes


def test_tracker_counts_a_linear_relu_chain_by_hand():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(5, 8)
    tracker = ef.SavedTensorTracker(exclude=list(net.parameters()))
    with tracker:
        out = net(x)
    # Linear1 keeps x (5x8); ReLU keeps its output (5x16), which Linear2 keeps too (one storage)
    assert tracker.live_bytes == 4 * (5 * 8 + 5 * 16)
    del out
    assert tracker.live_bytes == 0  # freed with the graph
    assert tracker.peak_bytes == 4 * (5 * 8 + 5 * 16)


def test_tracker_frees_during_backward():
    net = em.make_mlp(4, 8)
    tracker = ef.SavedTensorTracker(exclude=list(net.parameters()))
    with tracker:
        net(torch.randn(3, 8)).sum().backward()
    assert tracker.live_bytes == 0 and tracker.history[-1] == 0
    assert tracker.peak_bytes == max(tracker.history) == 4 * 3 * 8 * 5 * 4  # 4 blocks x (1 + 4) units


def test_tracker_argument_errors():
    with pytest.raises(TypeError, match="exclude"):
        ef.SavedTensorTracker(exclude=[1.0])


# --------------------------------------------------------------------------- checkpointing


@pytest.mark.parametrize("segments", [1, 2, 3, 5, 9])
def test_checkpoint_sequential_equals_torch(segments):
    net = em.make_mlp(9, 16, seed=3)
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(4), requires_grad=True)
    params = list(net.parameters())

    def run(fn):
        for p in params:
            p.grad = None
        x.grad = None
        tracker = ef.SavedTensorTracker(exclude=[*params, x])
        with tracker:
            out = fn()
            tracker.mark()
            out.pow(2).sum().backward()
        return out.detach(), [p.grad.clone() for p in params] + [x.grad.clone()], tracker.forward_bytes

    plain = run(lambda: net(x))
    ours = run(lambda: ef.checkpoint_sequential(list(net), segments, x))
    theirs = run(lambda: torch_checkpoint_sequential(net, segments, x, use_reentrant=False))
    assert torch.equal(ours[0], plain[0])
    for a, b, c in zip(ours[1], theirs[1], plain[1], strict=False):
        torch.testing.assert_close(a, c, rtol=1e-6, atol=1e-7)
        assert torch.equal(a, b)
    assert ours[2] == theirs[2]


@pytest.mark.parametrize("n", [12, 13, 16])
def test_checkpoint_peak_matches_the_segment_formula_for_every_k(n):
    width, batch = 8, 2
    net = em.make_mlp(n, width)
    x = torch.randn(batch, width)
    unit = 4 * batch * width
    for k in range(1, n + 1):
        tracker = ef.SavedTensorTracker(exclude=list(net.parameters()))
        with tracker:
            ef.checkpoint_sequential(list(net), k, x).pow(2).sum().backward()
        s = n // k
        r = n - (k - 1) * s  # the last segment, kept whole, takes the remainder
        # k-1 checkpoints + the largest segment alive at once (5 units per block) + the loss's input
        assert tracker.peak_bytes == unit * ((k - 1) + 5 * max(s, r) + 1), k


def test_checkpoint_recomputes_each_checkpointed_block_once():
    net = em.make_mlp(16, 8)
    calls = [0]
    for block in net:
        block.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    ef.checkpoint_sequential(list(net), 4, torch.randn(2, 8)).sum().backward()
    assert calls[0] == 16 + 12  # three checkpointed segments of 4 run twice


def test_checkpoint_argument_errors():
    net = em.make_mlp(4, 8)
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match="segments"):
        ef.checkpoint_sequential(list(net), 5, x)
    with pytest.raises(TypeError, match="segments"):
        ef.checkpoint_sequential(list(net), 2.0, x)
    with pytest.raises(TypeError, match="layers"):
        ef.checkpoint_sequential([lambda t: t], 1, x)
    with pytest.raises(TypeError, match="x"):
        ef.checkpoint_sequential(list(net), 2, [1.0])
    with pytest.raises(TypeError, match="fn"):
        ef.checkpoint(3, x)
    with pytest.raises(TypeError, match="params"):
        ef.checkpoint(net, x, params=[1.0])
    with pytest.raises(TypeError, match="depth"):
        em.make_mlp(2.0, 8)


# --------------------------------------------------------------------------- accumulation


@pytest.mark.parametrize("micro", [1, 2, 3, 7, 10])
def test_accumulated_gradients_equal_full_batch(micro):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 2, dtype=torch.float64)
    net = net.double()
    full = torch.autograd.grad(nn.functional.mse_loss(net(x), y), list(net.parameters()))
    acc = ef.accumulated_gradients(net, nn.functional.mse_loss, x, y, micro)
    for a, f in zip(acc, full, strict=False):
        torch.testing.assert_close(a, f, rtol=1e-12, atol=1e-14)
    assert all(p.grad is None for p in net.parameters())


def test_accumulation_argument_errors():
    net = nn.Linear(3, 1)
    with pytest.raises(TypeError, match="model"):
        ef.accumulated_gradients(lambda t: t, nn.functional.mse_loss, torch.ones(2, 3), torch.ones(2, 1), 1)
    with pytest.raises(ValueError, match="first dimension"):
        ef.accumulated_gradients(net, nn.functional.mse_loss, torch.ones(2, 3), torch.ones(3, 1), 1)
    with pytest.raises(ValueError, match="micro_batch"):
        ef.accumulated_gradients(net, nn.functional.mse_loss, torch.ones(2, 3), torch.ones(2, 1), 0)


# --------------------------------------------------------------------------- Transformer memory


@pytest.mark.parametrize(("V", "d", "H", "L", "N", "B"), [(16, 8, 2, 1, 4, 3), (32, 16, 4, 2, 12, 2)])
def test_transformer_param_and_activation_formulas_exact(V, d, H, L, N, B):
    torch.manual_seed(0)
    m = em.TinyTransformer(V, d, H, L, max_len=N + 3)
    assert sum(p.numel() for p in m.parameters()) == em.transformer_param_count(V, d, L, N + 3)
    tok, tgt = torch.randint(0, V, (B, N)), torch.randint(0, V, (B, N))
    tracker = ef.SavedTensorTracker(exclude=list(m.parameters()))
    with tracker:
        loss = nn.functional.cross_entropy(m(tok).reshape(-1, V), tgt.reshape(-1))
    assert tracker.live_bytes == em.transformer_activation_bytes(B, N, d, H, L, V)
    loss.backward()


def test_transformer_attention_is_causal():
    torch.manual_seed(0)
    m = em.TinyTransformer(16, 8, 2, 2, max_len=10)
    tok = torch.randint(0, 16, (1, 10))
    changed = tok.clone()
    changed[0, 7] = (tok[0, 7] + 1) % 16
    a, b = m(tok), m(changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_naive_attention_equals_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    reference = nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(em.naive_attention(q, k, v), reference)
    with pytest.raises(ValueError, match="q"):
        em.naive_attention(q[0], k, v)
    with pytest.raises(ValueError, match="one shape"):
        em.naive_attention(q, k[:, :, :3], v)


def test_model_argument_errors():
    with pytest.raises(ValueError, match="divisible"):
        em.TinyTransformer(16, 10, 3, 1)
    with pytest.raises(TypeError, match="layers"):
        em.TinyTransformer(16, 8, 2, 1.5)
    m = em.TinyTransformer(16, 8, 2, 1, max_len=4)
    with pytest.raises(TypeError, match="tokens"):
        m(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="max_len"):
        m(torch.zeros(1, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="batch"):
        em.transformer_activation_bytes(0, 4, 8, 2, 1, 16)
    with pytest.raises(ValueError, match="precision"):
        em.train_precision("fp8")
    with pytest.raises(TypeError, match="cfg"):
        em.make_regression({"n": 3})


# --------------------------------------------------------------------------- precisions


def test_fp16_without_scaling_loses_gradients_that_scaling_keeps():
    cfg = em.PrecisionConfig(steps=150)
    run = em.train_precision("fp32", cfg)
    x, y = em.make_regression(cfg)
    g32 = em.precision_gradients(run["model"], x, y, "fp32")
    g16 = em.precision_gradients(run["model"], x, y, "fp16")
    g16s = em.precision_gradients(run["model"], x, y, "fp16", scale=2.0**16)
    zeros = lambda gs: sum(int((g == 0).sum()) for g in gs)  # noqa: E731
    assert zeros(g32) == 0 and zeros(g16s) == 0 and zeros(g16) > 0


def test_training_scaled_fp16_tracks_fp32():
    cfg = em.PrecisionConfig(steps=150)
    fp32 = em.train_precision("fp32", cfg)
    scaled = em.train_precision("fp16+scaling", cfg)
    assert scaled["final_loss"] < 2 * fp32["final_loss"]
    assert fp32["final_loss"] < 0.05 * fp32["loss"][0]  # it trains at all
    assert scaled["scale"][0] == 2.0**16


def test_checkpoint_and_accumulation_refuse_bad_activations():
    net = em.make_mlp(4, 8)
    with pytest.raises(TypeError, match="x"):
        ef.checkpoint_sequential(list(net), 2, torch.ones(2, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="x contains NaN"):
        ef.checkpoint(net, torch.full((2, 8), math.nan))
    with pytest.raises(ValueError, match="x"):
        ef.checkpoint_sequential(list(net), 2, torch.ones(2, 5))
    with pytest.raises(ValueError, match="x"):
        ef.checkpoint_sequential(list(net), 1, torch.ones(2, 5))
    with pytest.raises(ValueError, match="x of shape"):  # a segment that is not ours raises RuntimeError
        ef.checkpoint_sequential([nn.Linear(8, 8), nn.Linear(8, 8)], 2, torch.ones(2, 5))
    with pytest.raises(ValueError, match="x of shape"):
        ef.checkpoint_sequential([nn.Linear(8, 8)], 1, torch.ones(2, 5))
    with pytest.raises(ValueError, match="y contains NaN"):
        ef.accumulated_gradients(nn.Linear(3, 1), nn.functional.mse_loss, torch.ones(2, 3),
                                 torch.full((2, 1), math.nan), 1)
    with pytest.raises(TypeError, match="loss"):
        ef.DynamicLossScaler().scale(torch.ones((), dtype=torch.int64))


@pytest.mark.parametrize(("field", "bad"), [("steps", -1), ("n", 2.5), ("lr", math.nan), ("init_scale", -1.0),
                                            ("growth_interval", 0), ("seed", -1), ("width", "a")])
def test_precision_config_checks_every_field(field, bad):
    with pytest.raises((TypeError, ValueError), match=f"cfg.{field}"):
        em.PrecisionConfig(**{field: bad})


def test_model_inputs_are_checked():
    block = em.ResidualBlock(8)
    with pytest.raises(ValueError, match="x must have shape"):
        block(torch.ones(2, 5))
    with pytest.raises(TypeError, match="x"):
        block(torch.ones(2, 8, dtype=torch.int64))
    m = em.TinyTransformer(16, 8, 2, 1, max_len=4)
    with pytest.raises(ValueError, match="tokens must lie"):
        m(torch.full((1, 3), 16, dtype=torch.int64))
    cfg = em.PrecisionConfig(n=8)
    x, y = em.make_regression(cfg)
    net = em.make_regressor(cfg)
    with pytest.raises(ValueError, match="y must have shape"):
        em.precision_gradients(net, x, y[:, 0], "fp32")
    with pytest.raises(ValueError, match="x contains NaN"):
        em.precision_gradients(net, x * math.nan, y, "fp32")
    with pytest.raises(ValueError, match="x and y"):
        em.precision_gradients(net, x, y[:4], "fp32")
    with pytest.raises(TypeError, match="q must be floating"):
        ones = torch.ones(1, 1, 2, 2)
        em.naive_attention(ones.long(), ones, ones)


def test_float8_e5m2_from_its_bits():
    e5m2 = ef.FloatFormat("e5m2", 5, 2)
    lim, fi = ef.format_limits(e5m2), torch.finfo(torch.float8_e5m2)
    assert (lim["max"], lim["smallest_normal"], lim["eps"]) == (fi.max, fi.smallest_normal, fi.eps)
    x = torch.exp(torch.randn(5000, generator=torch.Generator().manual_seed(5)) * 4).float()
    assert torch.equal(ef.round_to_format(x, e5m2), x.to(torch.float8_e5m2).double())


def test_accumulation_names_x_when_the_model_refuses_it():
    with pytest.raises(ValueError, match="x of shape"):
        ef.accumulated_gradients(nn.Linear(3, 1), nn.functional.mse_loss, torch.ones(2, 4),
                                 torch.ones(2, 1), 1)


def test_transformer_block_checkpointing_same_gradients_less_memory():
    torch.manual_seed(0)
    m = em.TinyTransformer(16, 16, 2, 3, max_len=32)
    tok, tgt = torch.randint(0, 16, (2, 32)), torch.randint(0, 16, (2, 32))
    out = {}
    for flag in (False, True):
        m.zero_grad()
        tracker = ef.SavedTensorTracker(exclude=list(m.parameters()))
        with tracker:
            logits = m(tok, checkpoint_blocks=flag)
            nn.functional.cross_entropy(logits.reshape(-1, 16), tgt.reshape(-1)).backward()
        out[flag] = (tracker.peak_bytes, [p.grad.clone() for p in m.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(out[False][1], out[True][1], strict=True))
    assert out[True][0] < out[False][0] / 2
    with pytest.raises(TypeError, match="checkpoint_blocks"):
        m(tok, checkpoint_blocks=1)


def test_accumulation_refuses_float_targets_that_would_broadcast():
    net = nn.Linear(3, 1)
    with pytest.raises(ValueError, match="y"):  # (N,) against (N, 1): mse_loss would broadcast to (N, N)
        ef.accumulated_gradients(net, nn.functional.mse_loss, torch.ones(4, 3), torch.ones(4), 2)
    with pytest.raises(ValueError, match="y"):
        ef.accumulated_gradients(net, nn.functional.mse_loss, torch.ones(4, 3), torch.ones(4, 1, 1), 2)
    # integer class targets of another shape are the loss's business
    clf = nn.Linear(3, 5)
    grads = ef.accumulated_gradients(clf, nn.functional.cross_entropy, torch.ones(4, 3),
                                     torch.tensor([0, 1, 2, 3]), 2)
    assert [g.shape for g in grads] == [p.shape for p in clf.parameters()]
