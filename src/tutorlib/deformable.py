"""Deformable convolution v1 (Dai et al. 2017), from scratch: the code behind ``book/upsampling.md``.

A :math:`k \\times k` convolution reads its input on a fixed grid
:math:`\\mathcal{R} = \\{p_1, \\dots, p_K\\}` (for :math:`k = 3`: :math:`(-1,-1), \\dots, (1,1)`,
times the dilation). A deformable convolution adds a learned, per-position offset to every tap:

.. math::
    y(p_0) = \\sum_{t=1}^{K} w_t \\; x(p_0 + p_t + \\Delta p_t(p_0)),

where :math:`\\Delta p_t(p_0) \\in \\mathbb{R}^2` comes from an ordinary convolution over the
same input (initialised to zero, so training starts from the plain convolution). The offsets are
fractional, so :math:`x(\\cdot)` is read by bilinear interpolation, which makes the output
differentiable with respect to the offsets almost everywhere.

Layout (the same as ``torchvision.ops.deform_conv2d``): offsets have shape
``(B, 2K, H_o, W_o)`` with channels ``[dy_1, dx_1, dy_2, dx_2, ...]`` and taps ordered row by
row, :math:`t = u k_w + v`.

Legend (code name -> symbol): ``offset`` -> :math:`\\Delta p`, ``py, px`` -> the sampling
position :math:`p = p_0 + p_t + \\Delta p_t` in pixels (row, column).

References:
    Dai et al. (2017), "Deformable convolutional networks", ICCV.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tutorlib.upsample import _check_image, _check_same_dtype, _check_weight
from tutorlib.validation import all_finite, check_int

__all__ = [
    "DeformConv2d",
    "bilinear_sample",
    "deform_conv2d",
    "grid_sample_pixels",
    "make_warp_task",
    "sampling_positions",
]


def _check_positions(py: object, px: object, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    for name, p in (("py", py), ("px", px)):
        if not isinstance(p, torch.Tensor) or not p.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(p).__name__}")
        if p.ndim < 1 or p.shape[0] != batch:
            raise ValueError(f"{name} must have shape (B={batch}, ...), got {tuple(p.shape)}")
        if not all_finite(p):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
    if py.shape != px.shape:
        raise ValueError(f"py and px must have the same shape, got {tuple(py.shape)} and {tuple(px.shape)}")
    return py, px


def bilinear_sample(x: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """Read ``x`` at fractional pixel positions by bilinear interpolation, zero outside.

    With :math:`y_0 = \\lfloor p_y \\rfloor`, :math:`x_0 = \\lfloor p_x \\rfloor`,
    :math:`a = p_y - y_0`, :math:`b = p_x - x_0`:

    .. math::
        x(p) = (1-a)(1-b)\\,x[y_0, x_0] + (1-a)\\,b\\,x[y_0, x_0{+}1]
             + a(1-b)\\,x[y_0{+}1, x_0] + a\\,b\\,x[y_0{+}1, x_0{+}1],

    where a corner outside the image counts as 0. Pixel :math:`(i, j)` sits at position
    :math:`(i, j)`; this is ``F.grid_sample(..., align_corners=True, padding_mode="zeros")``.

    Args:
        x: ``(B, C, H, W)``.
        py, px: row and column positions, the same shape ``(B, *S)``.

    Returns:
        ``(B, C, *S)``, differentiable in ``x``, ``py`` and ``px``.
    """
    x = _check_image("x", x)
    py, px = _check_positions(py, px, x.shape[0])
    b, c, h, w = x.shape
    y0, x0 = py.floor(), px.floor()
    a, bb = py - y0, px - x0  # fractional parts carry the gradient w.r.t. the positions
    flat = x.reshape(b, c, h * w)  # (B, C, HW)
    out = x.new_zeros(b, c, py[0].numel())
    for dy, dx, weight in ((0, 0, (1 - a) * (1 - bb)), (0, 1, (1 - a) * bb),
                           (1, 0, a * (1 - bb)), (1, 1, a * bb)):
        yy, xx = (y0 + dy).long(), (x0 + dx).long()
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(b, 1, -1).expand(b, c, -1)
        corner = flat.gather(2, index)  # (B, C, N)
        out = out + corner * (weight * inside).reshape(b, 1, -1)
    return out.reshape(b, c, *py.shape[1:])


def grid_sample_pixels(x: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """The same as :func:`bilinear_sample`, through ``F.grid_sample`` (PyTorch's kernel).

    ``grid_sample`` takes coordinates in :math:`[-1, 1]`; with ``align_corners=True`` the
    centres of the corner pixels sit at :math:`\\pm 1`, so pixel position :math:`p` maps to
    :math:`2p/(n-1) - 1`.
    """
    x = _check_image("x", x)
    py, px = _check_positions(py, px, x.shape[0])
    b, c, h, w = x.shape
    gy = 2 * py / max(h - 1, 1) - 1
    gx = 2 * px / max(w - 1, 1) - 1
    grid = torch.stack([gx, gy], dim=-1).reshape(b, 1, -1, 2)  # (B, 1, N, 2), x first
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(b, c, *py.shape[1:])


def sampling_positions(offset: torch.Tensor, kernel_size: tuple[int, int], stride: int = 1,
                       padding: int = 0, dilation: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Where every tap of a deformable convolution reads: :math:`p_0 + p_t + \\Delta p_t`.

    :math:`p_0 = (s i - p, s j - p)` for output pixel :math:`(i, j)` and
    :math:`p_t = (d u, d v)` for tap :math:`(u, v)`, in input pixel coordinates.

    Args:
        offset: ``(B, 2K, H_o, W_o)``, ``[dy_1, dx_1, ...]``.
        kernel_size: ``(k_h, k_w)`` with :math:`K = k_h k_w`.
        stride, padding, dilation: as in ``F.conv2d``.

    Returns:
        ``(py, px)``, each ``(B, K, H_o, W_o)``.
    """
    offset = _check_image("offset", offset)  # (B, 2K, Ho, Wo): 4-D, float, finite
    if not isinstance(kernel_size, tuple) or len(kernel_size) != 2:
        raise TypeError(f"kernel_size must be a tuple (kh, kw), got {kernel_size!r}")
    kh, kw = check_int("kernel_size[0]", kernel_size[0]), check_int("kernel_size[1]", kernel_size[1])
    s, d = check_int("stride", stride), check_int("dilation", dilation)
    p = check_int("padding", padding, minimum=0)
    b, two_k, ho, wo = offset.shape
    if two_k != 2 * kh * kw:
        raise ValueError(f"offset must have 2*kh*kw={2 * kh * kw} channels, got {two_k}")
    off = offset.reshape(b, kh * kw, 2, ho, wo)  # (B, K, [dy, dx], Ho, Wo)
    dtype, dev = offset.dtype, offset.device
    i = torch.arange(ho, dtype=dtype, device=dev).reshape(1, 1, ho, 1) * s - p
    j = torch.arange(wo, dtype=dtype, device=dev).reshape(1, 1, 1, wo) * s - p
    u = torch.arange(kh, dtype=dtype, device=dev).repeat_interleave(kw).reshape(1, -1, 1, 1) * d
    v = torch.arange(kw, dtype=dtype, device=dev).repeat(kh).reshape(1, -1, 1, 1) * d
    return i + u + off[:, :, 0], j + v + off[:, :, 1]


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None = None, stride: int = 1, padding: int = 0,
                  dilation: int = 1, sampler: str = "bilinear") -> torch.Tensor:
    """Deformable convolution: :math:`y(p_0) = \\sum_t w_t\\, x(p_0 + p_t + \\Delta p_t) + b`.

    Gather the :math:`K` deformed taps by bilinear sampling into "columns" of shape
    ``(B, C_in, K, H_o, W_o)``, then contract them with the kernel. With zero offsets this is
    ``F.conv2d(x, weight, bias, stride, padding, dilation)``.

    Args:
        x: ``(B, C_in, H, W)``.
        offset: ``(B, 2K, H_o, W_o)`` with :math:`K = k_h k_w` and the output size of
            ``F.conv2d`` for the same stride, padding and dilation.
        weight: ``(C_out, C_in, k_h, k_w)``.
        bias: ``(C_out,)`` or ``None``.
        stride, padding, dilation: as in ``F.conv2d``.
        sampler: ``"bilinear"`` (:func:`bilinear_sample`) or ``"grid_sample"``
            (:func:`grid_sample_pixels`).

    Returns:
        ``(B, C_out, H_o, W_o)``.
    """
    x = _check_image("x", x)
    weight = _check_weight("weight", weight, x.shape[1], "conv")
    _check_same_dtype(x, weight)
    offset = _check_image("offset", offset)
    s, d = check_int("stride", stride), check_int("dilation", dilation)
    p = check_int("padding", padding, minimum=0)
    samplers = {"bilinear": bilinear_sample, "grid_sample": grid_sample_pixels}
    if sampler not in samplers:
        raise ValueError(f"sampler must be one of {sorted(samplers)}, got {sampler!r}")
    b, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    ho, wo = (h + 2 * p - d * (kh - 1) - 1) // s + 1, (w + 2 * p - d * (kw - 1) - 1) // s + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"the dilated kernel does not fit the padded input {h + 2 * p}x{w + 2 * p}")
    if offset.shape != (b, 2 * kh * kw, ho, wo):
        raise ValueError(f"offset must have shape {(b, 2 * kh * kw, ho, wo)}, got {tuple(offset.shape)}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias.shape != (c_out,):
            raise ValueError(f"bias must be None or a tensor of shape ({c_out},), got {bias!r:.60}")
        if bias.dtype != x.dtype or not all_finite(bias):
            raise ValueError(f"bias must be finite with the dtype of x ({x.dtype}), got {bias.dtype}")
    py, px = sampling_positions(offset.to(x.dtype), (kh, kw), s, p, d)  # (B, K, Ho, Wo) each
    columns = samplers[sampler](x, py, px)  # (B, C_in, K, Ho, Wo)
    y = torch.einsum("bckhw,ock->bohw", columns, weight.reshape(c_out, c_in, kh * kw))
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


class DeformConv2d(nn.Module):
    """A deformable convolution layer: an offset convolution plus :func:`deform_conv2d`.

    The offset branch is an ordinary ``nn.Conv2d`` with :math:`2 k^2` outputs, initialised to
    zero as in Dai et al. (2017), so the layer starts as a plain convolution.

    Args:
        in_channels, out_channels: :math:`C_{in}, C_{out}`.
        kernel_size: :math:`k` (square kernels).
        padding: zero padding of the main convolution (stride 1, dilation 1).
        offset_kernel_size: kernel of the offset branch (odd, 'same' padding); default :math:`k`.
        sampler: ``"bilinear"`` (our kernel) or ``"grid_sample"`` (PyTorch's, the same numbers
            to round-off and about twice as fast on a CPU).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
                 offset_kernel_size: int | None = None, sampler: str = "bilinear") -> None:
        super().__init__()
        c_in, c_out = check_int("in_channels", in_channels), check_int("out_channels", out_channels)
        k = check_int("kernel_size", kernel_size)
        self.padding = check_int("padding", padding, minimum=0)
        if k - 1 != 2 * self.padding:
            raise ValueError(f"padding must be (kernel_size-1)/2={(k - 1) / 2} (same size), got {padding}")
        ok = k if offset_kernel_size is None else check_int("offset_kernel_size", offset_kernel_size)
        if ok % 2 == 0:
            raise ValueError(f"offset_kernel_size must be odd, got {ok}")
        self.offset = nn.Conv2d(c_in, 2 * k * k, ok, padding=ok // 2)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = nn.Conv2d(c_in, c_out, k, padding=padding)
        if sampler not in ("bilinear", "grid_sample"):
            raise ValueError(f"sampler must be 'bilinear' or 'grid_sample', got {sampler!r}")
        self.sampler = sampler

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H, W)``."""
        x = _check_image("x", x)
        if x.shape[1] != self.conv.in_channels:
            raise ValueError(f"x must have {self.conv.in_channels} channels, got shape {tuple(x.shape)}")
        return deform_conv2d(x, self.offset(x), self.conv.weight, self.conv.bias, padding=self.padding,
                             sampler=self.sampler)


# --------------------------------------------------------------------------------------------
# a toy task where the sampling grid has to move: follow a displacement field
# --------------------------------------------------------------------------------------------
def _gaussian_blur(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel of ``(B, C, H, W)``, zero padding."""
    r = max(1, int(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=z.dtype)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = z.shape[1]
    z = F.conv2d(z, g.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)
    return F.conv2d(z, g.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)


def make_warp_task(n: int, size: int = 20, max_shift: float = 2.5, texture_sigma: float = 1.5,
                   field_sigma: float = 6.0, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images whose target is the input texture read at a displaced position.

    A smooth random texture :math:`u` and a smooth random displacement field :math:`d(p)`
    (at most ``max_shift`` pixels) are drawn; the target is :math:`y(p) = u(p + d(p))`
    (bilinear). The network sees :math:`u` and :math:`d / d_{max}` as three input channels, so
    *where* to read is given, but the reading position changes from pixel to pixel: a fixed
    kernel cannot follow it, a deformable one can (its offsets should learn :math:`d`). This
    is the alignment step of video models that warp one frame onto another with deformable
    convolutions.

    Args:
        n: number of images.
        size: height and width :math:`\\ge 8`.
        max_shift: the largest displacement, in pixels (> 0).
        texture_sigma, field_sigma: blur (pixels) of the texture and of the field.
        generator: for reproducible draws.

    Returns:
        ``(inputs, targets, shift)`` of shapes ``(n, 3, size, size)``, ``(n, 1, size, size)``,
        ``(n, 2, size, size)`` (channels: rows, columns).
    """
    n, size = check_int("n", n), check_int("size", size, minimum=8)
    for name, value in (("max_shift", max_shift), ("texture_sigma", texture_sigma),
                        ("field_sigma", field_sigma)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    margin = int(max_shift) + 8  # the texture extends past the crop, so targets at the border exist
    big = size + 2 * margin
    u = _gaussian_blur(torch.randn(n, 1, big, big, generator=generator), texture_sigma)
    u = u / u.std(dim=(1, 2, 3), keepdim=True)
    d = _gaussian_blur(torch.randn(n, 2, big, big, generator=generator), field_sigma)
    d = d / d.abs().amax(dim=(1, 2, 3), keepdim=True) * max_shift
    ii, jj = torch.meshgrid(torch.arange(big, dtype=u.dtype), torch.arange(big, dtype=u.dtype), indexing="ij")
    target = bilinear_sample(u, ii + d[:, 0], jj + d[:, 1])  # (n, 1, big, big)
    crop = slice(margin, margin + size)
    inputs = torch.cat([u[:, :, crop, crop], d[:, :, crop, crop] / max_shift], dim=1)
    return inputs, target[:, :, crop, crop], d[:, :, crop, crop]
