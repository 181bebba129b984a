"""Time the FlashAttention Triton kernel of tutorlib.flash against PyTorch's SDPA on a CUDA GPU.

For readers with an NVIDIA GPU (the chapter "FlashAttention" runs the same kernel in the Triton
interpreter on a CPU, which checks correctness but says nothing about speed). Run from the
repository root, after ``pip install -e .`` (or with ``src`` on the path)::

    python bench/flash_attention.py                      # float16, d = 64, B = 4, H = 16
    python bench/flash_attention.py --head-dim 128 --dtype bfloat16 --seq-lens 1024 4096 16384

For each sequence length N and for causal and non-causal attention it

1. checks the kernel's output against ``torch.nn.functional.scaled_dot_product_attention``;
2. times the forward pass of the Triton kernel, of SDPA (PyTorch picks its fastest backend,
   usually its own FlashAttention-2) and of ``naive_attention`` (which materialises the
   N×N scores; skipped when they would not fit in a quarter of the free GPU memory), with
   ``triton.testing.do_bench`` (median of repeated runs, after warm-up);
3. prints milliseconds and TFLOP/s, counting 4·B·H·N²·d floating-point operations for the two
   matrix products (half of that with the causal mask).

The kernel's tile sizes are picked once per mask from a few candidates, by timing them at the
first N. Without a CUDA GPU the script says so and exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

CANDIDATE_CONFIGS = [  # (block_m, block_n, num_warps, num_stages)
    (64, 64, 4, 2), (64, 32, 4, 3), (128, 64, 4, 3), (128, 64, 8, 3), (128, 32, 4, 3), (128, 128, 8, 2),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4, help="batch size B")
    parser.add_argument("--heads", type=int, default=16, help="number of heads H")
    parser.add_argument("--head-dim", type=int, default=64, choices=[16, 32, 64, 128],
                        help="head dimension d")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--causal", choices=["both", "yes", "no"], default="both")
    return parser.parse_args(argv)


def fail(message: str) -> int:
    print(f"bench/flash_attention.py: {message}", file=sys.stderr)
    return 1


def tflops(batch: int, heads: int, n: int, d: int, causal: bool, ms: float) -> float:
    """Throughput of the forward pass: 4·B·H·N²·d flops (QKᵀ and PV), halved under the causal mask."""
    flops = 4 * batch * heads * n * n * d * (0.5 if causal else 1.0)
    return flops / (ms * 1e-3) / 1e12


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        return fail("this benchmark needs a CUDA GPU, and torch.cuda.is_available() is False here. "
                    "On a CPU, run the chapter book/flash_attention.md: it checks the same kernel in "
                    "the Triton interpreter (correctness only, not speed).")
    if os.environ.get("TRITON_INTERPRET") == "1":
        return fail("TRITON_INTERPRET=1 is set: the kernel would run in the interpreter, not on the GPU. "
                    "Unset it and run again.")
    try:
        from triton.testing import do_bench
    except ImportError:
        return fail("triton is not installed: pip install triton")
    try:
        from tutorlib import flash as fl
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from tutorlib import flash as fl

    dtype = getattr(torch, args.dtype)
    B, H, d = args.batch, args.heads, args.head_dim
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
          f"B={B}, H={H}, d={d}, {args.dtype}")
    masks = {"both": [False, True], "yes": [True], "no": [False]}[args.causal]
    header = f"{'causal':>6} {'N':>6} | {'triton ms':>9} {'TFLOP/s':>7} | {'SDPA ms':>9} {'TFLOP/s':>7} | " \
             f"{'naive ms':>9} {'TFLOP/s':>7} | max |Δ| vs SDPA"
    print(header)
    print("-" * len(header))
    for causal in masks:
        config = None
        for n in args.seq_lens:
            gen = torch.Generator(device=device).manual_seed(0)
            q, k, v = (torch.randn(B, H, n, d, device=device, dtype=dtype, generator=gen) for _ in range(3))

            def sdpa(q=q, k=k, v=v, causal=causal):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

            if config is None:
                config = pick_config(fl, q, k, v, causal, do_bench)
                print(f"  tiles for causal={causal}: block_m, block_n, num_warps, num_stages = {config}")

            def triton_fn(q=q, k=k, v=v, causal=causal, config=config):
                block_m, block_n, num_warps, num_stages = config
                return fl.flash_attention_triton(q, k, v, causal=causal, block_m=block_m, block_n=block_n,
                                                 num_warps=num_warps, num_stages=num_stages)

            error = (triton_fn().float() - sdpa().float()).abs().max().item()
            tol = 1e-4 if dtype == torch.float32 else 2e-2
            if not error < tol:
                return fail(f"the Triton kernel disagrees with SDPA at N={n}, causal={causal}: "
                            f"max |Δ| = {error:.3g} > {tol}")
            ms_triton, ms_sdpa = do_bench(triton_fn), do_bench(sdpa)
            score_bytes = 2 * B * H * n * n * q.element_size()  # S and P
            if score_bytes < torch.cuda.mem_get_info(device)[0] / 4:
                ms_naive = do_bench(lambda q=q, k=k, v=v, causal=causal: fl.naive_attention(q, k, v, causal))
                naive = f"{ms_naive:9.3f} {tflops(B, H, n, d, causal, ms_naive):7.1f}"
            else:
                naive = f"{'(S, P too big)':>17}"
            print(f"{causal!s:>6} {n:>6} | {ms_triton:9.3f} {tflops(B, H, n, d, causal, ms_triton):7.1f} | "
                  f"{ms_sdpa:9.3f} {tflops(B, H, n, d, causal, ms_sdpa):7.1f} | {naive} | {error:.1e}")
            del q, k, v
            torch.cuda.empty_cache()
    return 0


def pick_config(fl, q, k, v, causal, do_bench) -> tuple[int, int, int, int]:
    """The fastest of CANDIDATE_CONFIGS on these inputs (configs that do not fit are skipped)."""
    best, best_ms = None, float("inf")
    for block_m, block_n, num_warps, num_stages in CANDIDATE_CONFIGS:
        def run(block_m=block_m, block_n=block_n, num_warps=num_warps, num_stages=num_stages):
            return fl.flash_attention_triton(q, k, v, causal=causal, block_m=block_m, block_n=block_n,
                                             num_warps=num_warps, num_stages=num_stages)
        try:
            ms = do_bench(run, warmup=5, rep=20)
        except Exception as error:  # e.g. triton's OutOfResources: the tiles need more shared memory
            print(f"  skipping tiles {(block_m, block_n, num_warps, num_stages)}: {type(error).__name__}")
            continue
        if ms < best_ms:
            best, best_ms = (block_m, block_n, num_warps, num_stages), ms
    if best is None:
        raise RuntimeError("no tile configuration compiled on this GPU")
    return best


if __name__ == "__main__":
    sys.exit(main())
