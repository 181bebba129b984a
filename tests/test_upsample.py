"""tutorlib.upsample and tutorlib.deformable, checked against torch.nn.functional, brute force and
finite differences (torchvision is not installed, so deformable convolution is checked through
properties that pin it down: zero offsets, integer offsets, grid_sample, gradcheck)."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tutorlib import deformable as dc
from tutorlib import upsample as up

f64 = torch.float64


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=f64)


# --------------------------------------------------------------------------------------------
# interpolation
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_nearest_matches_interpolate(scale):
    x = _rand(2, 3, 5, 4)
    assert torch.equal(up.upsample_nearest(x, scale), F.interpolate(x, scale_factor=scale, mode="nearest"))


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("scale", [1, 2, 3, 5])
def test_bilinear_matches_interpolate(scale, align_corners):
    x = _rand(2, 3, 5, 7, seed=1)
    ref = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=align_corners)
    torch.testing.assert_close(up.upsample_bilinear(x, scale, align_corners), ref, rtol=0, atol=1e-12)


def test_bilinear_conventions_differ_and_align_corners_keeps_the_corners():
    x = _rand(1, 1, 4, 4, seed=2)
    a, b = up.upsample_bilinear(x, 2, align_corners=True), up.upsample_bilinear(x, 2, align_corners=False)
    assert (a - b).abs().max() > 0.01
    for i, j in itertools.product((0, -1), (0, -1)):
        assert a[0, 0, i, j] == x[0, 0, i, j]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 20), st.booleans())
def test_interpolation_rows_sum_to_one_and_reproduce_linear_ramps(n_in, n_out, align_corners):
    m = up.interpolation_matrix(n_in, n_out, align_corners, dtype=f64)
    torch.testing.assert_close(m.sum(1), torch.ones(n_out, dtype=f64))
    assert (m >= 0).all()
    if align_corners and n_out > 1:  # linear functions of the pixel index are reproduced exactly
        ramp = torch.arange(n_in, dtype=f64)
        torch.testing.assert_close(m @ ramp, torch.linspace(0, n_in - 1, n_out, dtype=f64))


# --------------------------------------------------------------------------------------------
# convolution, transposed convolution, adjoint
# --------------------------------------------------------------------------------------------
CASES = [(k, s, p) for k in (1, 2, 3, 4, 5) for s in (1, 2, 3) for p in (0, 1, 2) if p < k]


@pytest.mark.parametrize(("k", "s", "p"), CASES)
def test_conv_taps_and_scatter_match_torch(k, s, p):
    x = _rand(2, 3, 6, 5, seed=k * 100 + s * 10 + p)
    w = _rand(4, 3, k, k, seed=7)
    ref = F.conv2d(x, w, stride=s, padding=p)
    torch.testing.assert_close(up.conv2d_taps(x, w, s, p), ref, rtol=0, atol=1e-12)
    wt = _rand(3, 2, k, k, seed=8)
    ref = F.conv_transpose2d(x, wt, stride=s, padding=p)
    torch.testing.assert_close(up.conv_transpose2d_scatter(x, wt, s, p), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(up.conv_transpose2d_subpixel(x, wt, s, p), ref, rtol=0, atol=1e-12)
    assert ref.shape[-1] == up.transposed_output_size(5, k, s, p)


@pytest.mark.parametrize("output_padding", [0, 1, 2])
def test_scatter_output_padding_matches_torch(output_padding):
    x, wt = _rand(1, 2, 4, 3), _rand(2, 3, 3, 3, seed=1)
    ref = F.conv_transpose2d(x, wt, stride=3, padding=1, output_padding=output_padding)
    ours = up.conv_transpose2d_scatter(x, wt, 3, 1, output_padding)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 3), st.integers(0, 2), st.integers(5, 9), st.integers(0, 10**6))
def test_transposed_convolution_is_the_adjoint(k, s, p, n, seed):
    """<A x, y> = <x, A^T y>, where A is conv2d_taps and A^T the scatter with the same kernel."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(3, 2, k, k, generator=g, dtype=f64)  # conv layout (C_out=3, C_in=2)
    x = torch.randn(1, 2, n, n, generator=g, dtype=f64)
    ax = up.conv2d_taps(x, w, s, p)
    y = torch.randn(ax.shape, generator=g, dtype=f64)
    # the conv's weight (C_out, C_in, k, k) is the transposed conv's (C_in', C_out') = (3, 2)
    op = (n + 2 * p - k) % s  # rows the strided conv never reached; the adjoint gives them zeros
    aty = up.conv_transpose2d_scatter(y, w, s, p, output_padding=op)
    assert aty.shape == x.shape
    lhs, rhs = (ax * y).sum(), (x * aty).sum()
    assert abs(lhs - rhs) <= 1e-10 * (abs(lhs) + 1)


def test_conv_matrix_transposed_is_the_transposed_convolution():
    w = _rand(2, 3, 3, 3)
    a = up.conv2d_matrix(w, 6, 5, stride=2, padding=1)
    x = _rand(1, 3, 6, 5, seed=1)
    torch.testing.assert_close(a @ x.flatten(), F.conv2d(x, w, stride=2, padding=1).flatten())
    y = _rand(1, 2, 3, 3, seed=2)
    aty = F.conv_transpose2d(y, w, stride=2, padding=1, output_padding=(1, 0))
    torch.testing.assert_close(a.T @ y.flatten(), aty.flatten())


def test_scatter_is_differentiable():
    x = _rand(1, 2, 3, 3).requires_grad_()
    w = _rand(2, 1, 3, 3, seed=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: up.conv_transpose2d_scatter(a, b, 2, 1), (x, w))


# --------------------------------------------------------------------------------------------
# pixel shuffle and sub-pixel convolution
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("r", [1, 2, 3])
def test_pixel_shuffle_matches_torch_and_unshuffle_inverts_it(r):
    x = _rand(2, 2 * r * r, 3, 4)
    y = up.pixel_shuffle(x, r)
    assert torch.equal(y, nn.PixelShuffle(r)(x))
    assert torch.equal(up.pixel_unshuffle(y, r), x)
    assert torch.equal(up.pixel_unshuffle(y, r), nn.PixelUnshuffle(r)(y))


def test_subpixel_weight_of_a_divisible_kernel_keeps_every_tap_once():
    w = _rand(2, 3, 4, 4)
    ws = up.subpixel_weight(w, 2)
    assert ws.shape == (3 * 4, 2, 2, 2)
    torch.testing.assert_close(ws.abs().sum(), w.abs().sum())


# --------------------------------------------------------------------------------------------
# checkerboard artifacts
# --------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(1, 7), st.integers(1, 4))
def test_overlap_count_matches_a_transposed_convolution_of_ones(n, k, s):
    ref = F.conv_transpose1d(torch.ones(1, 1, n), torch.ones(1, 1, k), stride=s)[0, 0]
    count = up.overlap_count(n, k, s)
    assert torch.equal(count, ref.long())
    interior = count[k : len(count) - k]  # away from the borders: floor(k/s) and ceil(k/s) only
    if len(interior) >= s:
        assert set(interior.tolist()) <= {k // s, -(-k // s)}
        assert (interior.min() == interior.max()) == (k % s == 0)


def test_ripple_of_known_patterns():
    y = torch.ones(1, 1, 8, 8, dtype=f64)
    assert up.ripple(y, 2) == 0
    checker = 1 + 0.1 * (-1.0) ** (torch.arange(8)[:, None] + torch.arange(8)[None, :])
    assert up.ripple(checker[None, None].to(f64), 2) == pytest.approx(0.1 / (1 + 0.01) ** 0.5)
    assert up.ripple(checker[None, None].to(f64) - 1, 2) == pytest.approx(1.0)


def test_resize_conv_keeps_a_constant_constant_and_deconv_does_not():
    torch.manual_seed(0)
    x = torch.ones(1, 1, 6, 6)
    resize = up.resize_conv2d(x, torch.randn(4, 1, 3, 3), 2)
    assert up.ripple(resize, 2, border=2) < 1e-6
    deconv = F.conv_transpose2d(x, torch.randn(1, 4, 3, 3), stride=2)
    assert up.ripple(deconv, 2, border=3) > 0.05


# --------------------------------------------------------------------------------------------
# deformable convolution
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("k", "s", "p", "d"), [(3, 1, 1, 1), (3, 2, 0, 1), (2, 1, 0, 1), (3, 1, 2, 2), (1, 2, 0, 1)])
@pytest.mark.parametrize("sampler", ["bilinear", "grid_sample"])
def test_zero_offsets_give_conv2d(k, s, p, d, sampler):
    x, w, b = _rand(2, 3, 7, 8), _rand(4, 3, k, k, seed=1), _rand(4, seed=2)
    ref = F.conv2d(x, w, b, stride=s, padding=p, dilation=d)
    off = torch.zeros(2, 2 * k * k, *ref.shape[-2:], dtype=f64)
    ours = dc.deform_conv2d(x, off, w, b, s, p, d, sampler=sampler)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("dy", "dx"), [(2, -1), (0, 3), (-2, -2)])
def test_integer_offsets_give_a_shifted_convolution(dy, dx):
    """The same integer offset on every tap: y(p0) = conv(x)(p0 + (dy, dx))."""
    x, w = _rand(2, 3, 7, 8), _rand(4, 3, 3, 3, seed=1)
    off = torch.zeros(2, 18, 7, 8, dtype=f64)
    off[:, 0::2], off[:, 1::2] = dy, dx
    big = 4  # pad enough that the shifted window is always inside the reference output
    z = F.conv2d(x, w, padding=1 + big)
    ref = z[:, :, big + dy : big + dy + 7, big + dx : big + dx + 8]
    torch.testing.assert_close(dc.deform_conv2d(x, off, w, padding=1), ref, rtol=0, atol=1e-12)


def test_per_tap_offsets_move_single_taps():
    """Offset only the centre tap by (0, 1): the result is conv with the centre weight moved right."""
    x, w = _rand(1, 2, 6, 6), _rand(3, 2, 3, 3, seed=1)
    off = torch.zeros(1, 18, 6, 6, dtype=f64)
    off[:, 2 * 4 + 1] = 1.0  # tap 4 = (1, 1), dx
    moved = w.clone()
    moved[:, :, 1, 2] += moved[:, :, 1, 1]
    moved[:, :, 1, 1] = 0
    torch.testing.assert_close(dc.deform_conv2d(x, off, w, padding=1), F.conv2d(x, moved, padding=1))


def test_own_bilinear_kernel_matches_grid_sample_inside_and_outside():
    x = _rand(2, 3, 5, 6)
    g = torch.Generator().manual_seed(3)
    py = torch.rand(2, 40, generator=g, dtype=f64) * 9 - 2  # covers the zero border too
    px = torch.rand(2, 40, generator=g, dtype=f64) * 10 - 2
    ours, ref = dc.bilinear_sample(x, py, px), dc.grid_sample_pixels(x, py, px)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    ii, jj = torch.meshgrid(torch.arange(5.0, dtype=f64), torch.arange(6.0, dtype=f64), indexing="ij")
    assert torch.equal(dc.bilinear_sample(x, ii.expand(2, 5, 6), jj.expand(2, 5, 6)), x)


@pytest.mark.parametrize("sampler", ["bilinear", "grid_sample"])
def test_deform_conv_gradients_match_finite_differences(sampler):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 5, 5, generator=g, dtype=f64, requires_grad=True)
    # fractional offsets away from integers, where bilinear sampling is not differentiable
    off = (torch.randint(-2, 2, (1, 18, 5, 5), generator=g) + 0.2
           + 0.6 * torch.rand(1, 18, 5, 5, generator=g)).to(f64).requires_grad_()
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=f64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=f64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *a: dc.deform_conv2d(*a, padding=1, sampler=sampler), (x, off, w, b), eps=1e-6, atol=1e-6)


def test_deform_layer_starts_as_its_plain_convolution_and_learns_offsets():
    torch.manual_seed(0)
    layer = dc.DeformConv2d(2, 3, 3, 1)
    x = torch.randn(2, 2, 6, 6)
    torch.testing.assert_close(layer(x), layer.conv(x))
    layer(x).square().sum().backward()
    assert layer.offset.weight.grad.abs().sum() > 0


def test_warp_task_target_is_the_texture_read_at_the_displacement():
    g = torch.Generator().manual_seed(0)
    x, y, shift = dc.make_warp_task(4, size=12, max_shift=2.0, generator=g)
    assert x.shape == (4, 3, 12, 12) and y.shape == (4, 1, 12, 12) and shift.shape == (4, 2, 12, 12)
    assert shift.abs().max() <= 2.0 + 1e-6
    torch.testing.assert_close(x[:, 1:] * 2.0, shift)
    # where the displacement is integer-free and inside the crop, y(p) = u(p + d(p)) by bilinear reading
    ii, jj = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    inside = dc.bilinear_sample(x[:, :1], ii + shift[:, 0], jj + shift[:, 1])
    torch.testing.assert_close(y[:, :, 3:-3, 3:-3], inside[:, :, 3:-3, 3:-3], rtol=0, atol=1e-5)
    tiny = dc.make_warp_task(2, size=10, max_shift=1e-6, generator=g)
    torch.testing.assert_close(tiny[1], tiny[0][:, :1], rtol=0, atol=1e-5)


def test_deform_layer_samplers_agree():
    torch.manual_seed(0)
    a = dc.DeformConv2d(2, 3, 3, 1, sampler="bilinear")
    b = dc.DeformConv2d(2, 3, 3, 1, sampler="grid_sample")
    b.load_state_dict(a.state_dict())
    nn.init.normal_(a.offset.weight)
    b.offset.weight.data.copy_(a.offset.weight.data)
    x = torch.randn(2, 2, 7, 7)
    torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def test_bad_arguments_raise_with_the_argument_name():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(TypeError, match="x"):
        up.upsample_nearest(x.numpy(), 2)
    with pytest.raises(ValueError, match="x"):
        up.upsample_bilinear(x[0], 2)
    with pytest.raises(ValueError, match="x"):
        up.upsample_nearest(x * float("nan"), 2)
    with pytest.raises(TypeError, match="x"):
        up.upsample_nearest(x.long(), 2)
    with pytest.raises(ValueError, match="scale"):
        up.upsample_nearest(x, 0)
    with pytest.raises(TypeError, match="scale"):
        up.upsample_bilinear(x, 2.0)
    with pytest.raises(TypeError, match="align_corners"):
        up.upsample_bilinear(x, 2, align_corners="yes")
    with pytest.raises(ValueError, match="weight"):
        up.conv2d_taps(x, torch.randn(3, 5, 3, 3))
    with pytest.raises(ValueError, match="weight"):
        up.conv_transpose2d_scatter(x, torch.randn(3, 2, 3, 3))
    with pytest.raises(TypeError, match="dtype"):
        up.conv_transpose2d_scatter(x, torch.randn(2, 2, 3, 3, dtype=f64))
    with pytest.raises(ValueError, match="stride"):
        up.conv_transpose2d_scatter(x, torch.randn(2, 2, 3, 3), stride=0)
    with pytest.raises(ValueError, match="output_padding"):
        up.conv_transpose2d_scatter(x, torch.randn(2, 2, 3, 3), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding"):
        up.transposed_output_size(1, 1, 1, padding=3)
    with pytest.raises(ValueError, match="kernel"):
        up.conv2d_taps(x, torch.randn(1, 2, 7, 7))
    with pytest.raises(ValueError, match="r\\^2"):
        up.pixel_shuffle(torch.randn(1, 3, 2, 2), 2)
    with pytest.raises(ValueError, match="divisible"):
        up.pixel_unshuffle(torch.randn(1, 1, 3, 4), 2)
    with pytest.raises(ValueError, match="odd"):
        up.resize_conv2d(x, torch.randn(1, 2, 2, 2), 2)
    with pytest.raises(ValueError, match="border"):
        up.ripple(x, 2, border=2)
    with pytest.raises(ValueError, match="zero"):
        up.ripple(torch.zeros(1, 1, 4, 4), 2)
    with pytest.raises(ValueError, match="height"):
        up.conv2d_matrix(torch.randn(1, 1, 3, 3), 0, 3)
    with pytest.raises(ValueError, match="weight"):
        up.conv2d_matrix(torch.full((1, 1, 3, 3), float("nan")), 4, 4)
    with pytest.raises(TypeError, match="weight"):
        up.conv2d_matrix(torch.ones(1, 1, 3, 3, dtype=torch.long), 4, 4)


def test_deformable_bad_arguments_raise_with_the_argument_name():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="offset"):
        dc.deform_conv2d(x, torch.zeros(1, 17, 5, 5), w, padding=1)
    with pytest.raises(ValueError, match="offset"):
        dc.deform_conv2d(x, torch.zeros(1, 18, 4, 4), w, padding=1)
    with pytest.raises(ValueError, match="offset"):
        dc.deform_conv2d(x, torch.full((1, 18, 5, 5), float("inf")), w, padding=1)
    with pytest.raises(ValueError, match="sampler"):
        dc.deform_conv2d(x, torch.zeros(1, 18, 5, 5), w, padding=1, sampler="nearest")
    with pytest.raises(ValueError, match="bias"):
        dc.deform_conv2d(x, torch.zeros(1, 18, 5, 5), w, torch.zeros(2), padding=1)
    with pytest.raises(ValueError, match="weight"):
        dc.deform_conv2d(x, torch.zeros(1, 18, 5, 5), torch.randn(3, 1, 3, 3), padding=1)
    with pytest.raises(ValueError, match="dilated kernel"):
        dc.deform_conv2d(x, torch.zeros(1, 18, 1, 1), w, dilation=3)
    with pytest.raises(ValueError, match="py and px"):
        dc.bilinear_sample(x, torch.zeros(1, 3), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="py"):
        dc.bilinear_sample(x, torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="px"):
        dc.grid_sample_pixels(x, torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="padding"):
        dc.DeformConv2d(2, 3, 3, padding=0)
    with pytest.raises(ValueError, match="offset_kernel_size"):
        dc.DeformConv2d(2, 3, 3, padding=1, offset_kernel_size=2)
    with pytest.raises(TypeError, match="in_channels"):
        dc.DeformConv2d(2.0, 3)
    with pytest.raises(ValueError, match="sampler"):
        dc.DeformConv2d(2, 3, 3, 1, sampler="nearest")
    with pytest.raises(ValueError, match="bias"):
        dc.deform_conv2d(x, torch.zeros(1, 18, 5, 5), w, torch.zeros(3, dtype=torch.long), padding=1)
    with pytest.raises(ValueError, match="bias"):
        dc.deform_conv2d(x, torch.zeros(1, 18, 5, 5), w, torch.full((3,), float("nan")), padding=1)
    with pytest.raises(TypeError, match="offset"):
        dc.sampling_positions(torch.zeros(1, 18, 2, 2, dtype=torch.long), (3, 3))
    with pytest.raises(TypeError, match="x"):
        dc.DeformConv2d(2, 3, 3, 1)(x.long())
    with pytest.raises(ValueError, match="x"):
        dc.DeformConv2d(2, 3, 3, 1)(x[..., None])
    with pytest.raises(ValueError, match="channels"):
        dc.DeformConv2d(3, 3, 3, 1)(x)
    with pytest.raises(TypeError, match="kernel_size"):
        dc.sampling_positions(torch.zeros(1, 18, 2, 2), 3)
    with pytest.raises(ValueError, match="size"):
        dc.make_warp_task(2, size=4)
    with pytest.raises(ValueError, match="max_shift"):
        dc.make_warp_task(2, max_shift=-1.0)
    with pytest.raises(TypeError, match="n"):
        dc.make_warp_task(2.5)
