"""tutorlib.flash: attention, online softmax, tiling, the Triton kernel and the IO count.

Reference: torch.nn.functional.scaled_dot_product_attention (outputs and gradients), torch.softmax,
torch.logsumexp, and closed-form counts of Algorithms 0 and 1 of Dao et al. (2022) written out here.
The Triton kernel runs in the interpreter on CPU tensors (tutorlib.flash enables it on import
when there is no GPU and triton has not been imported yet).
"""

import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tutorlib import flash as fl

ROOT = Path(__file__).resolve().parents[1]

# The kernel tests run CPU tensors in the Triton interpreter (a machine without a CUDA GPU); on a
# GPU machine Triton compiles instead and the GPU test below runs. Without triton (macOS,
# Windows, Colab's CPU runtime) every Triton test is skipped, as the chapter skips its cells.
needs_triton = pytest.mark.skipif(fl.triton is None, reason="triton is not installed")
interpreter_only = pytest.mark.skipif(
    fl.triton is None or not fl.triton_interpreted(),
    reason="needs triton in interpreter mode (no CUDA GPU): these tests run CPU tensors",
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def qkv(B, H, n_q, n_k, d, dtype=torch.float64, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, n_q, d, generator=g, dtype=dtype)
    k = torch.randn(B, H, n_k, d, generator=g, dtype=dtype)
    v = torch.randn(B, H, n_k, d, generator=g, dtype=dtype)
    return tuple(x.requires_grad_(requires_grad) for x in (q, k, v))


def sdpa(q, k, v, causal=False, scale=None):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)


def grads(out, inputs, seed=1):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    return torch.autograd.grad(out, inputs, g)


# --------------------------------------------------------------------------------------------
# naive attention and the softmaxes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("n_q", "n_k"), [(1, 1), (7, 7), (13, 29), (29, 13)])
def test_naive_attention_matches_sdpa(causal, n_q, n_k):
    q, k, v = qkv(2, 3, n_q, n_k, 8)
    torch.testing.assert_close(fl.naive_attention(q, k, v, causal=causal), sdpa(q, k, v, causal),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fl.naive_attention(q, k, v, scale=0.3), sdpa(q, k, v, scale=0.3),
                               rtol=1e-12, atol=1e-12)


finite_rows = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(finite_rows)
def test_online_and_three_pass_softmax_match_torch_even_for_huge_logits(row):
    x = torch.tensor(row, dtype=torch.float64)
    ref = torch.softmax(x, dim=0)
    torch.testing.assert_close(fl.online_softmax(x), ref, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(fl.softmax_three_pass(x), ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dim", [0, 1, -1, 2])
def test_online_softmax_along_any_dim(dim):
    x = torch.randn(3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 30
    torch.testing.assert_close(fl.online_softmax(x, dim=dim), torch.softmax(x, dim=dim), rtol=1e-12, atol=0)


def test_online_softmax_handles_minus_infinity_like_torch():
    x = torch.tensor([[float("-inf"), 1.0, float("-inf"), 2.0],
                      [float("-inf")] * 4])  # a row that is all -inf is NaN in torch too
    ours, ref = fl.online_softmax(x), torch.softmax(x, dim=-1)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-6, atol=0)
    assert torch.isnan(ours[1]).all() and torch.isnan(ref[1]).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=1, max_size=25))
def test_online_softmax_state_is_the_running_max_and_rescaled_sum(row):
    x = torch.tensor(row, dtype=torch.float64)
    trace = fl.online_softmax_steps(x)
    torch.testing.assert_close(trace.m, torch.cummax(x, 0).values, rtol=0, atol=0)
    for j in range(len(x)):
        direct = torch.exp(x[: j + 1] - trace.m[j]).sum()
        torch.testing.assert_close(trace.ell[j], direct, rtol=1e-12, atol=0)
        torch.testing.assert_close(trace.partial(j), torch.softmax(x[: j + 1], 0), rtol=1e-12, atol=1e-15)
    assert trace.rescale[0] == 0 and torch.all(trace.rescale <= 1)
    grew = trace.m[1:] > trace.m[:-1]
    assert torch.all(trace.rescale[1:][~grew] == 1), "the old sum is kept as it is while the max stays"
    assert torch.all(grew[trace.rescale[1:] < 1]), "and shrunk only when the maximum grows"
    torch.testing.assert_close(trace.y, torch.softmax(x, 0), rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------------------------
# tiling and FlashAttention in PyTorch
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("n_q", "n_k", "bq", "bk"), [(37, 37, 8, 16), (50, 23, 16, 5), (23, 50, 7, 64)])
def test_tile_schedule_covers_what_the_mask_keeps_and_only_that(causal, n_q, n_k, bq, bk):
    tiles = fl.tile_schedule(n_q, n_k, bq, bk, causal)
    covered = torch.zeros(n_q, n_k, dtype=torch.int64)
    for t in tiles:
        covered[t.q0:t.q1, t.k0:t.k1] += 1
        block = torch.ones(t.q1 - t.q0, t.k1 - t.k0, dtype=torch.bool)
        rows = torch.arange(t.q0, t.q1)[:, None]
        cols = torch.arange(t.k0, t.k1)[None, :]
        assert t.masked == bool(causal and (cols > rows)[block].any())
    keep = torch.ones(n_q, n_k, dtype=torch.bool)
    if causal:
        keep = keep.tril()
    assert covered.max() <= 1, "no tile is computed twice"
    assert torch.all(covered[keep] == 1), "every score the mask keeps is computed"
    all_tiles = {(t.q0, t.k0) for t in fl.tile_schedule(n_q, n_k, bq, bk, False)}
    for q0, k0 in all_tiles - {(t.q0, t.k0) for t in tiles}:
        assert not keep[q0:q0 + bq, k0:k0 + bk].any(), "a skipped tile holds no visible score"


def test_causal_skips_about_half_the_tiles():
    full, causal = fl.tile_schedule(1024, 1024, 64, 64), fl.tile_schedule(1024, 1024, 64, 64, causal=True)
    assert len(full) == 256 and len(causal) == 16 * 17 // 2


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("n_q", "n_k", "bq", "bk"), [
    (77, 77, 16, 16), (77, 77, 64, 64), (100, 37, 32, 8), (37, 100, 5, 128), (1, 1, 64, 64)])
def test_flash_attention_output_lse_and_gradients_match_sdpa_float64(causal, n_q, n_k, bq, bk):
    q, k, v = qkv(2, 2, n_q, n_k, 16, requires_grad=True)
    o, lse = fl.flash_attention(q, k, v, causal=causal, block_q=bq, block_k=bk, return_lse=True)
    ref = sdpa(q, k, v, causal)
    torch.testing.assert_close(o, ref, rtol=1e-12, atol=1e-12)
    s = (q @ k.transpose(-2, -1)) / math.sqrt(16)
    if causal:
        s = s.masked_fill(torch.ones(n_q, n_k, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(lse, torch.logsumexp(s, dim=-1), rtol=1e-12, atol=1e-12)
    assert not lse.requires_grad
    for ours, theirs in zip(grads(o, (q, k, v)), grads(ref, (q, k, v)), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_float32_tight_against_sdpa_for_odd_sizes(causal):
    q, k, v = qkv(2, 4, 203, 203, 64, dtype=torch.float32, requires_grad=True)
    o = fl.flash_attention(q, k, v, causal=causal)  # 203 = 3 * 64 + 11
    ref = sdpa(q, k, v, causal)
    torch.testing.assert_close(o, ref, rtol=1e-5, atol=2e-6)
    for ours, theirs in zip(grads(o, (q, k, v)), grads(ref, (q, k, v)), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 6), st.integers(1, 17), st.integers(1, 17),
       st.booleans(), st.integers(0, 2**16))
def test_flash_attention_equals_naive_for_any_shape_and_block(n_q, n_k, d, bq, bk, causal, seed):
    q, k, v = qkv(1, 2, n_q, n_k, d, seed=seed)
    torch.testing.assert_close(fl.flash_attention(q, k, v, causal, bq, bk),
                               fl.naive_attention(q, k, v, causal), rtol=1e-11, atol=1e-12)


def test_flash_attention_passes_gradcheck():
    q, k, v = qkv(1, 1, 9, 7, 3, requires_grad=True)
    for causal in (False, True):
        assert torch.autograd.gradcheck(lambda a, b, c, cz=causal: fl.flash_attention(a, b, c, cz, 4, 3),
                                        (q, k, v))


def test_flash_attention_keeps_no_n_by_n_tensor_for_backward():
    q, k, v = qkv(1, 1, 256, 256, 8, requires_grad=True)
    o = fl.flash_attention(q, k, v)
    saved = o.grad_fn.saved_tensors
    assert max(t.numel() for t in saved) == 256 * 8, [tuple(t.shape) for t in saved]


# --------------------------------------------------------------------------------------------
# the Triton kernel, in the interpreter
# --------------------------------------------------------------------------------------------
@interpreter_only
def test_triton_runs_in_the_interpreter_without_a_gpu():
    assert not torch.cuda.is_available()
    assert fl.triton_interpreted()


@needs_cuda
@needs_triton
@pytest.mark.parametrize(("n_q", "n_k", "causal", "dtype"),
                         [(100, 100, False, torch.float32), (48, 80, True, torch.float32),
                          (257, 257, True, torch.float16)])
def test_triton_kernel_compiled_on_a_gpu_matches_sdpa(n_q, n_k, causal, dtype):
    q, k, v = (x.cuda() for x in qkv(1, 2, n_q, n_k, 32, dtype=dtype))
    o = fl.flash_attention_triton(q, k, v, causal=causal, block_m=32, block_n=32)
    ref = sdpa(q.float(), k.float(), v.float(), causal)
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    torch.testing.assert_close(o.float(), ref, rtol=0, atol=tol)


@interpreter_only
@pytest.mark.parametrize(("n_q", "n_k", "d", "causal"),
                         [(37, 37, 16, False), (37, 37, 16, True), (45, 20, 32, False), (20, 45, 32, True)])
def test_triton_kernel_matches_sdpa_in_the_interpreter(n_q, n_k, d, causal):
    q, k, v = qkv(1, 2, n_q, n_k, d, dtype=torch.float32, requires_grad=True)
    o, lse = fl.flash_attention_triton(q, k, v, causal=causal, block_m=16, block_n=16, return_lse=True)
    ref = sdpa(q, k, v, causal)
    torch.testing.assert_close(o, ref, rtol=1e-5, atol=1e-6)
    s = (q @ k.transpose(-2, -1)).detach() / math.sqrt(d)
    if causal:
        s = s.masked_fill(torch.ones(n_q, n_k, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(lse, torch.logsumexp(s, dim=-1), rtol=1e-5, atol=1e-6)
    assert lse.dtype == torch.float32
    if causal and n_q < n_k:  # gradients flow through the Triton backward kernels
        for ours, theirs in zip(grads(o, (q, k, v)), grads(ref, (q, k, v)), strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


@interpreter_only
@pytest.mark.parametrize(("n_q", "n_k", "block_m", "block_n"),
                         [(70, 70, 16, 32), (70, 70, 32, 16), (40, 70, 32, 16)])
def test_triton_causal_stages_with_unequal_blocks_match_sdpa(n_q, n_k, block_m, block_n):
    """The causal loop's mask-free stage ends at the last key block before the first query row;
    with block_m != block_n that boundary falls inside query blocks, so both stages run."""
    q, k, v = qkv(1, 1, n_q, n_k, 16, dtype=torch.float32)
    o = fl.flash_attention_triton(q, k, v, causal=True, block_m=block_m, block_n=block_n)
    torch.testing.assert_close(o, sdpa(q, k, v, True), rtol=1e-5, atol=1e-6)


COMPILE_FOR_A_GPU = """
import inspect
import os
os.environ["TRITON_INTERPRET"] = "0"  # compile mode, although this machine has no GPU
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, compile
from tutorlib import flash as fl
names = ["Q", "K", "V", "Out", "LSE", "n_q", "n_k", "scale",
         "HEAD_DIM", "BLOCK_M", "BLOCK_N", "CAUSAL", "DOT_PRECISION"]
for dtype, causal, precision in (("fp16", True, "tf32"), ("fp32", False, "ieee")):
    signature = dict(zip(names, [f"*{dtype}"] * 4 + ["*fp32", "i32", "i32", "fp32"] + ["constexpr"] * 5))
    constants = dict(zip([(i,) for i in range(8, 13)], [64, 64, 32, causal, precision]))
    source = ASTSource(fn=fl._jitted_kernel(False), signature=signature, constexprs=constants)
    binary = compile(source, target=GPUTarget("cuda", 80, 32), options={"num_warps": 4})
    print(dtype, len(binary.asm["cubin"]) > 0)
# the backward kernels: float16 causal (the GPU's usual case) and float32 (the chapter on Colab)
for dtype, causal, precision in (("fp16", True, "tf32"), ("fp32", False, "ieee")):
    for kernel, n_grads in ((fl.flash_backward_dkdv_kernel, 2), (fl.flash_backward_dq_kernel, 1)):
        args = list(inspect.signature(kernel).parameters)
        types = [f"*{dtype}"] * 4 + ["*fp32"] * 2 + [f"*{dtype}"] * n_grads + ["i32", "i32", "fp32"]
        signature = dict(zip(args, types + ["constexpr"] * 5))
        constants = {(len(types) + i,): c for i, c in enumerate([64, 64, 32, causal, precision])}
        source = ASTSource(fn=fl._jitted(kernel, False), signature=signature, constexprs=constants)
        binary = compile(source, target=GPUTarget("cuda", 80, 32), options={"num_warps": 4})
        print(kernel.__name__, dtype, len(binary.asm["cubin"]) > 0)
signature = {"Out": "*fp16", "DO": "*fp16", "Delta": "*fp32", "n_q": "i32", "HEAD_DIM": "constexpr",
             "BLOCK_M": "constexpr"}
source = ASTSource(fn=fl._jitted(fl.flash_backward_preprocess_kernel, False), signature=signature,
                   constexprs={(4,): 64, (5,): 64})
binary = compile(source, target=GPUTarget("cuda", 80, 32), options={"num_warps": 4})
print("flash_backward_preprocess_kernel", len(binary.asm["cubin"]) > 0)
"""


@needs_triton
def test_triton_kernel_compiles_to_a_cubin_for_an_a100_without_a_gpu():
    env = {**os.environ, "TRITON_DEFAULT_FP_FUSION": "1"}
    result = subprocess.run([sys.executable, "-c", COMPILE_FOR_A_GPU], capture_output=True, text=True,
                            timeout=300, check=False, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    backward = [word for dtype in ("fp16", "fp32") for name in ("dkdv", "dq")
                for word in (f"flash_backward_{name}_kernel", dtype, "True")]
    assert result.stdout.split() == ["fp16", "True", "fp32", "True", *backward,
                                     "flash_backward_preprocess_kernel", "True"]


@interpreter_only
def test_triton_kernel_in_half_precision():
    q, k, v = qkv(1, 1, 33, 33, 16, dtype=torch.float16)
    o = fl.flash_attention_triton(q, k, v, block_m=16, block_n=16)
    assert o.dtype == torch.float16
    ref = sdpa(q.float(), k.float(), v.float())
    torch.testing.assert_close(o.float(), ref, rtol=0, atol=2e-3)


@interpreter_only
def test_triton_kernel_refuses_what_it_cannot_do():
    q, k, v = qkv(1, 1, 8, 8, 16, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"head dimension d=24 is not supported.*\(16, 32, 64, 128\)"):
        fl.flash_attention_triton(*qkv(1, 1, 8, 8, 24, dtype=torch.float32))
    with pytest.raises(ValueError, match="head dimension d=256"):
        fl.flash_attention_triton(*qkv(1, 1, 8, 8, 256, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"k and v must have the same shape"):
        fl.flash_attention_triton(q, k, v[:, :, :5])
    with pytest.raises(ValueError, match=r"k and v must have shape \(1, 1, N_k, 16\)"):
        fl.flash_attention_triton(q, *qkv(1, 2, 8, 8, 16, dtype=torch.float32)[1:])
    with pytest.raises(TypeError, match="supports dtypes"):
        fl.flash_attention_triton(*qkv(1, 1, 8, 8, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="block_m must be a power of two"):
        fl.flash_attention_triton(q, k, v, block_m=24)
    with pytest.raises(ValueError, match="block_n must be a power of two"):
        fl.flash_attention_triton(q, k, v, block_n=8)


# --------------------------------------------------------------------------------------------
# the Triton backward pass (FlashAttention-2's Algorithm 2), in the interpreter
# --------------------------------------------------------------------------------------------
@interpreter_only
@pytest.mark.parametrize(("n_q", "n_k", "d", "causal", "block_m", "block_n"),
                         [(37, 37, 16, False, 16, 16), (37, 37, 16, True, 16, 16),
                          (45, 20, 32, False, 16, 32), (20, 45, 32, True, 32, 16),
                          (70, 70, 16, True, 16, 32), (70, 70, 16, True, 32, 16),
                          (128, 128, 32, True, 64, 64), (50, 90, 16, True, 16, 16)])
def test_triton_backward_matches_sdpa_autograd_and_the_pytorch_tiles(n_q, n_k, d, causal, block_m, block_n):
    """dQ, dK, dV from the three kernels equal autograd through SDPA and flash_backward, float32.
    Sizes not multiples of the blocks (padding rows and columns), N_q != N_k both ways, unequal
    blocks (the causal loops start and stop inside blocks), and keys no causal query sees."""
    q, k, v = qkv(2, 2, n_q, n_k, d, dtype=torch.float32, requires_grad=True)
    scale = 0.3  # not 1/sqrt(d): the kernels must use the scale they are given
    o, lse = fl.flash_attention_triton(q, k, v, causal=causal, scale=scale, block_m=block_m,
                                       block_n=block_n, return_lse=True)
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(3))
    ours = fl.flash_attention_triton_backward(q, k, v, o.detach(), lse, do, causal, scale=scale,
                                              block_m=block_m, block_n=block_n)
    via_autograd = torch.autograd.grad(o, (q, k, v), do)  # the Function's backward: same kernels
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale)
    theirs = torch.autograd.grad(ref, (q, k, v), do)
    tiles = fl.flash_backward(q.detach(), k.detach(), v.detach(), o.detach(), lse, do, causal,
                              block_m, block_n, scale)
    for name, a, b, c, t in zip("qkv", ours, via_autograd, theirs, tiles, strict=True):
        assert a.shape == c.shape and a.dtype == torch.float32, name
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"d{n} vs SDPA: {m}")
        torch.testing.assert_close(a, t, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"d{n} vs tiles: {m}")
    if causal and n_k > n_q:  # keys after the last query get no gradient
        assert ours[1][:, :, n_q:].abs().max() == 0 and ours[2][:, :, n_q:].abs().max() == 0


@interpreter_only
def test_triton_backward_through_a_loss_in_half_precision():
    q, k, v = qkv(1, 1, 33, 33, 16, dtype=torch.float16, requires_grad=True)
    o = fl.flash_attention_triton(q, k, v, causal=True, block_m=16, block_n=16)
    (o.float() ** 2).sum().backward()
    ref_inputs = [t.detach().float().requires_grad_() for t in (q, k, v)]
    (sdpa(*ref_inputs, True) ** 2).sum().backward()
    for t, r in zip((q, k, v), ref_inputs, strict=True):
        assert t.grad.dtype == torch.float16
        torch.testing.assert_close(t.grad.float(), r.grad, rtol=0, atol=2e-2)


@interpreter_only
def test_triton_backward_refuses_bad_arguments_by_name():
    q, k, v = qkv(1, 1, 8, 8, 16, dtype=torch.float32)
    o, lse = fl.flash_attention_triton(q, k, v, return_lse=True, block_m=16, block_n=16)
    do = torch.ones_like(o)
    back = fl.flash_attention_triton_backward
    with pytest.raises(TypeError, match=r"o must be a torch\.Tensor"):
        back(q, k, v, o.numpy(), lse, do)
    with pytest.raises(ValueError, match=r"do must have shape \(1, 1, 8, 16\)"):
        back(q, k, v, o, lse, do[:, :, :4])
    with pytest.raises(ValueError, match=r"lse must have shape \(1, 1, 8\)"):
        back(q, k, v, o, lse[..., None], do)
    with pytest.raises(TypeError, match=r"do must have dtype torch\.float32"):
        back(q, k, v, o, lse, do.half())
    with pytest.raises(TypeError, match="lse must have dtype a floating dtype"):
        back(q, k, v, o, lse.long(), do)
    with pytest.raises(TypeError, match="causal must be a bool"):
        back(q, k, v, o, lse, do, 1)
    with pytest.raises(ValueError, match="do must be finite"):
        back(q, k, v, o, lse, torch.full_like(do, float("nan")))
    with pytest.raises(ValueError, match="head dimension d=24"):
        back(*qkv(1, 1, 8, 8, 24, dtype=torch.float32), o, lse, do)
    with pytest.raises(ValueError, match="block_n must be a power of two"):
        back(q, k, v, o, lse, do, block_n=24)
    with pytest.raises(ValueError, match="num_warps"):
        back(q, k, v, o, lse, do, num_warps=0)
    with pytest.raises(ValueError, match="scale"):
        back(q, k, v, o, lse, do, scale=float("nan"))


# --------------------------------------------------------------------------------------------
# argument checks shared by every entry point
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [fl.naive_attention, fl.flash_attention])
def test_bad_inputs_are_refused_by_name(fn):
    q, k, v = qkv(1, 2, 5, 6, 4)
    with pytest.raises(TypeError, match=r"q must be a torch\.Tensor"):
        fn(q.numpy(), k, v)
    with pytest.raises(ValueError, match=r"k must have 4 dimensions \(B, H, N, d\), got shape \(2, 6, 4\)"):
        fn(q, k[0], v)
    with pytest.raises(ValueError, match=r"k and v must have the same shape"):
        fn(q, k, v[:, :, :3])
    with pytest.raises(ValueError, match=r"k and v must have shape \(1, 2, N_k, 4\)"):
        fn(q, k[..., :3], v[..., :3])
    with pytest.raises(TypeError, match="share one dtype"):
        fn(q, k.float(), v)
    with pytest.raises(TypeError, match="v must be a floating-point tensor"):
        fn(q, k, v.long())
    with pytest.raises(ValueError, match="one device"):
        fn(q, k.to("meta"), v)
    with pytest.raises(ValueError, match="q must not be empty"):
        fn(q[:, :, :0], k, v)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        fn(q, k, v, scale=-1.0)


def test_bad_block_sizes_are_refused():
    q, k, v = qkv(1, 1, 5, 5, 4)
    with pytest.raises(ValueError, match="block_q must be >= 1, got 0"):
        fl.flash_attention(q, k, v, block_q=0)
    with pytest.raises(TypeError, match="block_k must be an int >= 1, got float"):
        fl.flash_attention(q, k, v, block_k=2.0)
    with pytest.raises(ValueError, match="n_q must be >= 1"):
        fl.tile_schedule(0, 4, 2, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(n,\)"):
        fl.online_softmax_steps(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="x must be finite"):
        fl.online_softmax_steps(torch.tensor([0.0, float("inf")]))
    with pytest.raises(TypeError, match="floating-point"):
        fl.online_softmax(torch.arange(3))


# --------------------------------------------------------------------------------------------
# IO complexity: the simulation against Algorithms 0 and 1 counted by hand
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("N", "d", "M"), [(1024, 64, 16384), (512, 32, 8192), (2048, 64, 65536)])
def test_flash_traffic_is_algorithm_1_counted_by_hand(N, d, M):
    b_c = math.ceil(M / (4 * d))
    b_r = min(b_c, d)
    assert N % b_c == 0 and N % b_r == 0
    t_c = N // b_c
    traffic = fl.hbm_traffic(N, d, M, "flash")
    assert traffic.blocks == (b_r, b_c)
    assert traffic.reads == {"K": N * d, "V": N * d, "Q": t_c * N * d, "O": t_c * N * d, "ℓ, m": t_c * 2 * N}
    assert traffic.writes == {"O": N * d + t_c * N * d, "ℓ, m": 2 * N + t_c * 2 * N}


@pytest.mark.parametrize(("N", "d", "M"), [(1000, 64, 16384), (300, 16, 100_000)])
def test_standard_traffic_is_algorithm_0_counted_by_hand(N, d, M):
    b = fl.standard_tile_size(M, d)
    assert 2 * b * d + b * b <= M < 2 * (b + 1) * d + (b + 1) ** 2
    n_row_blocks = math.ceil(N / b)
    traffic = fl.hbm_traffic(N, d, M, "standard")
    passes = 1 if N <= M else 2
    assert traffic.reads == {"Q": N * d, "K": n_row_blocks * N * d, "S": passes * N * N, "P": N * N,
                             "V": n_row_blocks * N * d}
    assert traffic.writes == {"S": N * N, "P": N * N, "O": N * d}
    assert fl.hbm_traffic(N, d, M, "standard", causal=True).total == traffic.total


def test_causal_flash_traffic_counts_only_visible_pairs():
    N, d, M = 300, 16, 1024  # b_r = b_c = 16, 300 is not a multiple
    b_r, b_c = fl.flash_block_sizes(M, d)
    pairs = [(q0, k0) for k0 in range(0, N, b_c) for q0 in range(0, N, b_r) if k0 <= min(q0 + b_r, N) - 1]
    q_rows = sum(min(q0 + b_r, N) - q0 for q0, _ in pairs)
    t = fl.hbm_traffic(N, d, M, "flash", causal=True)
    assert t.reads["Q"] == t.reads["O"] == q_rows * d
    assert t.total < 0.6 * fl.hbm_traffic(N, d, M, "flash").total


def test_io_exponents_follow_theorem_2():
    Ms = [2**i for i in range(12, 19)]
    flash = [fl.hbm_traffic(4096, 64, M, "flash").total for M in Ms]
    standard = [fl.hbm_traffic(4096, 64, M, "standard").total for M in Ms]
    assert all(a > b for a, b in itertools.pairwise(flash))
    assert -1.1 < fl.loglog_slope(Ms, flash) < -0.9
    assert -0.3 < fl.loglog_slope(Ms, standard) <= 0
    Ns = [1024, 2048, 4096]
    assert 1.9 < fl.loglog_slope(Ns, [fl.hbm_traffic(n, 64, 2**14, "flash").total for n in Ns]) < 2.1
    assert 1.9 < fl.loglog_slope(Ns, [fl.hbm_traffic(n, 64, 2**14, "standard").total for n in Ns]) < 2.1


@pytest.mark.parametrize(("N", "d", "M"), [(256, 16, 1024), (200, 16, 65), (300, 32, 5000), (64, 8, 4096)])
@pytest.mark.parametrize("causal", [False, True])
def test_flash2_traffic_equals_the_loads_flash_forward_makes(N, d, M, causal):
    """The simulated FA2-order count against an instrumented run of the real loop."""
    b = fl.flash2_block_size(M, d)
    q, k, v = qkv(1, 1, N, N, d, dtype=torch.float32)
    tally = fl.count_reads(lambda q, k, v: fl.flash_forward(q, k, v, causal, b, b, 0.5), q=q, k=k, v=v)
    traffic = fl.hbm_traffic(N, d, M, "flash2", causal=causal)
    assert tally == {"q": traffic.reads["Q"], "k": traffic.reads["K"], "v": traffic.reads["V"]}
    assert traffic.writes == {"O": N * d, "L": N}


@pytest.mark.parametrize(("N", "d", "M"), [(1024, 64, 16384), (512, 32, 8192), (4096, 64, 51_200)])
def test_flash2_traffic_closed_form_and_block_size(N, d, M):
    b = fl.flash2_block_size(M, d)
    assert 4 * b * d + b * b <= M < 4 * (b + 1) * d + (b + 1) ** 2  # the largest tile that fits
    T = math.ceil(N / b)  # query blocks; each reads all of K and V
    assert fl.hbm_traffic(N, d, M, "flash2").total == N * d + T * 2 * N * d + N * d + N
    causal = fl.hbm_traffic(N, d, M, "flash2", causal=True).total
    keys_seen = sum(min((i + 1) * b, N) for i in range(T))  # query block i sees key blocks 0..i
    assert causal == N * d + 2 * keys_seen * d + N * d + N


def test_proposition_3_proof_step_every_count_reads_the_inputs_at_M_equal_Nd():
    """Prop. 3's argument: at M = Nd the rate N²d²/M is Nd, and any algorithm reads Q, K, V and
    writes O (4Nd elements). The proposition is asymptotic, so no per-M inequality is tested."""
    N, d = 2048, 32
    for algorithm in ("standard", "flash", "flash2"):
        assert fl.hbm_traffic(N, d, N * d, algorithm).total >= 4 * N * d


def test_count_reads_counts_slices_and_refuses_bad_arguments():
    x = torch.zeros(10, 4)
    assert fl.count_reads(lambda x: (x[:3], x[5:, :2], x.sum()), x=x) == {"x": 12 + 10}
    with pytest.raises(TypeError, match="fn must be callable"):
        fl.count_reads(3, x=x)
    with pytest.raises(ValueError, match="at least one named tensor"):
        fl.count_reads(lambda: None)
    with pytest.raises(TypeError, match=r"y must be a torch\.Tensor"):
        fl.count_reads(lambda y: None, y=[1.0])
    with pytest.raises(ValueError, match="M must be >= 1"):
        fl.flash2_block_size(0, 4)


def test_hbm_traffic_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"M must be >= 4\*d = 256"):
        fl.hbm_traffic(128, 64, 100, "flash")
    with pytest.raises(ValueError, match="algorithm must be 'standard', 'flash' or 'flash2', got 'fast'"):
        fl.hbm_traffic(128, 16, 1024, "fast")
    with pytest.raises(TypeError, match="N must be an int"):
        fl.hbm_traffic(128.0, 16, 1024, "flash")


# --------------------------------------------------------------------------------------------
# measuring memory and exponents
# --------------------------------------------------------------------------------------------
def test_peak_memory_sees_the_largest_live_set_not_the_sum():
    def two_in_a_row():
        a = torch.ones(1000, 1000)  # 4 MB, freed before the next one
        del a
        b = torch.ones(500, 1000)  # 2 MB
        return b

    def two_at_once():
        a, b = torch.ones(1000, 1000), torch.ones(500, 1000)
        return a, b

    assert 4_000_000 <= fl.peak_memory(two_in_a_row) < 4_100_000
    assert 6_000_000 <= fl.peak_memory(two_at_once) < 6_100_000


def test_naive_attention_peak_memory_is_two_score_matrices_flash_is_small():
    q, k, v = qkv(1, 1, 512, 512, 32, dtype=torch.float32)
    naive = fl.peak_memory(fl.naive_attention, q, k, v)
    flash = fl.peak_memory(fl.flash_attention, q, k, v)
    assert naive >= 2 * 512 * 512 * 4  # S and P, float32
    assert 512 * 32 * 4 <= flash < naive / 10


def test_loglog_slope_recovers_exponents_and_refuses_bad_input():
    x = [1, 2, 4, 8, 16]
    assert fl.loglog_slope(x, [3 * xi**2 for xi in x]) == pytest.approx(2.0)
    assert fl.loglog_slope(x, [5 / xi for xi in x]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="positive"):
        fl.loglog_slope([1, 2], [0, 1])
    with pytest.raises(ValueError, match="same length"):
        fl.loglog_slope([1, 2, 3], [1, 2])


# --------------------------------------------------------------------------------------------
# the benchmark script: without a GPU it explains itself and stops
# --------------------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_benchmark_script_exits_with_a_clear_message_without_cuda():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "flash_attention.py")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "needs a CUDA GPU" in result.stderr


def test_flash_forward_and_backward_match_autograd_of_the_naive_attention():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 7, 4, generator=g, dtype=torch.float64) for _ in range(3))
    do = torch.randn(1, 2, 7, 4, generator=g, dtype=torch.float64)
    scale = 0.5
    for causal in (False, True):
        o, lse = fl.flash_forward(q, k, v, causal, 3, 2, scale)
        s = scale * q @ k.transpose(-2, -1)
        if causal:
            s = s.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
        torch.testing.assert_close(o, torch.softmax(s, -1) @ v)
        torch.testing.assert_close(lse, torch.logsumexp(s, -1))
        dq, dk, dv = fl.flash_backward(q, k, v, o, lse, do, causal, 3, 2, scale)
        qq, kk, vv = (t.clone().requires_grad_(True) for t in (q, k, v))
        s = scale * qq @ kk.transpose(-2, -1)
        if causal:
            s = s.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf"))
        (torch.softmax(s, -1) @ vv).backward(do)
        for ours, ref in ((dq, qq.grad), (dk, kk.grad), (dv, vv.grad)):
            torch.testing.assert_close(ours, ref)


def test_flash_forward_refuses_block_sizes_that_leave_the_output_uninitialised():
    q = torch.zeros(1, 1, 4, 2)
    with pytest.raises(ValueError, match="block_q must be >= 1, got -1"):
        fl.flash_forward(q, q, q, False, -1, 2, 1.0)  # used to return torch.empty's memory
    with pytest.raises(TypeError, match="block_k must be an int"):
        fl.flash_forward(q, q, q, False, 2, 2.0, 1.0)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        fl.flash_forward(q, q, q, False, 2, 2, -1.0)
    with pytest.raises(TypeError, match="causal must be a bool"):
        fl.flash_forward(q, q, q, 1, 2, 2, 1.0)
    o, lse = fl.flash_forward(q, q, q, False, 2, 2, 1.0)
    with pytest.raises(ValueError, match=r"lse must have shape \(1, 1, 4\), got \(1, 1, 3\)"):
        fl.flash_backward(q, q, q, o, lse[..., :3], o, False, 2, 2, 1.0)
    with pytest.raises(TypeError, match=r"lse must be a torch\.float32 tensor, got torch\.float64"):
        fl.flash_backward(q, q, q, o, lse.double(), o, False, 2, 2, 1.0)
    for call in (lambda: fl.tile_schedule(4, 4, 2, 2, causal="no"),
                 lambda: fl.hbm_traffic(64, 8, 256, "flash", causal="no"),
                 lambda: fl.flash_attention(q, q, q, causal="no")):
        with pytest.raises(TypeError, match="causal must be a bool"):
            call()
