"""Going back up: the code behind the chapter ``book/upsampling.md``.

A segmentation or generator network has to turn a small feature map into a large one. Four
ways, all written from scratch and checked against ``torch.nn.functional``:

1. **Interpolation** (no parameters): nearest neighbour and bilinear. Bilinear upsampling is
   separable, :math:`Y = M_H X M_W^\\top`, with a fixed interpolation matrix per axis.
2. **Transposed convolution**: every input pixel *scatters* a copy of the kernel, scaled by its
   value, into the output at stride :math:`s`. As a linear map it is the adjoint of the
   strided convolution :math:`A` with the same kernel: :math:`\\langle Ax, y\\rangle =
   \\langle x, A^\\top y\\rangle` (Dumoulin & Visin 2016).
3. **Sub-pixel convolution** (Shi et al. 2016): an ordinary convolution with :math:`C r^2`
   output channels followed by a *pixel shuffle* that moves channels into an :math:`r\\times r`
   block of pixels. A stride-:math:`r` transposed convolution is exactly such a convolution with
   rearranged weights (:func:`subpixel_weight`).
4. **Resize-convolution** (Odena et al. 2016): nearest upsampling, then a stride-1 convolution.
   It avoids the checkerboard pattern of transposed convolution, whose kernel taps overlap
   unevenly when the kernel size :math:`k` is not a multiple of the stride (:func:`overlap_count`).

Deformable convolution, which moves the sampling points of a kernel, is in
:mod:`tutorlib.deformable`.

Legend (code name -> symbol): ``stride`` -> :math:`s`, ``kernel`` -> :math:`k`,
``padding`` -> :math:`p`, ``scale``/``r`` -> the upsampling factor :math:`r`.

Shapes: images are ``(B, C, H, W)``. Transposed-convolution weights follow PyTorch,
``(C_in, C_out, k_h, k_w)``; convolution weights ``(C_out, C_in, k_h, k_w)``.

References:
    Long, Shelhamer & Darrell (2015), "Fully convolutional networks for semantic segmentation".
    Dumoulin & Visin (2016), "A guide to convolution arithmetic for deep learning".
    Shi et al. (2016), "Real-time single image and video super-resolution using an efficient
    sub-pixel convolutional neural network".
    Odena, Dumoulin & Olah (2016), "Deconvolution and checkerboard artifacts", Distill.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tutorlib.validation import all_finite, check_int

__all__ = [
    "conv2d_matrix",
    "conv2d_taps",
    "conv_transpose2d_scatter",
    "conv_transpose2d_subpixel",
    "interpolation_matrix",
    "overlap_count",
    "pixel_shuffle",
    "pixel_unshuffle",
    "resize_conv2d",
    "ripple",
    "subpixel_weight",
    "transposed_output_size",
    "upsample_bilinear",
    "upsample_nearest",
]


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def _check_image(name: str, x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4 or min(x.shape) == 0:
        raise ValueError(f"{name} must have shape (B, C, H, W) with no empty axis, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if not all_finite(x):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


def _check_weight(name: str, weight: object, in_channels: int, layout: str) -> torch.Tensor:
    """``layout`` is "conv" for (C_out, C_in, kh, kw) or "transposed" for (C_in, C_out, kh, kw)."""
    w = _check_image(name, weight)
    axis = 1 if layout == "conv" else 0
    if w.shape[axis] != in_channels:
        expected = "(C_out, C_in, kh, kw)" if layout == "conv" else "(C_in, C_out, kh, kw)"
        raise ValueError(
            f"{name} must have shape {expected} with C_in={in_channels} to match the input, "
            f"got {tuple(w.shape)}"
        )
    return w


def _check_same_dtype(x: torch.Tensor, weight: torch.Tensor) -> None:
    if x.dtype != weight.dtype:
        raise TypeError(f"x and weight must have the same dtype, got {x.dtype} and {weight.dtype}")


# --------------------------------------------------------------------------------------------
# 1. interpolation
# --------------------------------------------------------------------------------------------
def upsample_nearest(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer factor: :math:`y[i, j] = x[\\lfloor i/r \\rfloor,
    \\lfloor j/r \\rfloor]`.

    Equals ``F.interpolate(x, scale_factor=r, mode="nearest")``.

    Args:
        x: images, shape ``(B, C, H, W)``.
        scale: the factor :math:`r \\ge 1`.

    Returns:
        ``(B, C, rH, rW)``.
    """
    x = _check_image("x", x)
    r = check_int("scale", scale)
    return x.repeat_interleave(r, dim=2).repeat_interleave(r, dim=3)


def interpolation_matrix(n_in: int, n_out: int, align_corners: bool = False,
                         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 1-D linear-interpolation matrix :math:`M \\in \\mathbb{R}^{n_{out} \\times n_{in}}`.

    Output pixel :math:`i` reads the source coordinate

    .. math::
        u_i = \\begin{cases} i \\, \\frac{n_{in} - 1}{n_{out} - 1} & \\text{align\\_corners=True
        (corner pixel centres coincide)} \\\\
        \\max\\!\\big(0, (i + \\tfrac12)\\frac{n_{in}}{n_{out}} - \\tfrac12\\big) &
        \\text{align\\_corners=False (pixels are squares; PyTorch's default)} \\end{cases}

    and mixes its two neighbours: :math:`M_{i, \\lfloor u_i\\rfloor} = 1 - \\lambda_i`,
    :math:`M_{i, \\lfloor u_i\\rfloor + 1} = \\lambda_i` with :math:`\\lambda_i = u_i -
    \\lfloor u_i \\rfloor` (indices clamped to the image). Each row sums to 1.

    Returns:
        ``(n_out, n_in)`` tensor of the given dtype.
    """
    n_in, n_out = check_int("n_in", n_in), check_int("n_out", n_out)
    if not isinstance(align_corners, bool):
        raise TypeError(f"align_corners must be a bool, got {type(align_corners).__name__}")
    i = torch.arange(n_out, dtype=torch.float64)
    if align_corners:
        u = i * ((n_in - 1) / (n_out - 1)) if n_out > 1 else torch.zeros_like(i)
    else:
        u = ((i + 0.5) * (n_in / n_out) - 0.5).clamp(min=0.0)
    lo = u.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    lam = u - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, lo), 1 - lam, accumulate=True)
    m.index_put_((rows, hi), lam, accumulate=True)
    return m.to(dtype)


def upsample_bilinear(x: torch.Tensor, scale: int, align_corners: bool = False) -> torch.Tensor:
    """Bilinear upsampling by an integer factor, as two matrix products: :math:`Y = M_H X M_W^\\top`.

    Bilinear interpolation is linear interpolation along rows, then along columns
    (:func:`interpolation_matrix`). Equals ``F.interpolate(x, scale_factor=r, mode="bilinear",
    align_corners=align_corners)``.

    Args:
        x: images, shape ``(B, C, H, W)``.
        scale: the factor :math:`r \\ge 1`.
        align_corners: which coordinate convention (see :func:`interpolation_matrix`).

    Returns:
        ``(B, C, rH, rW)``.
    """
    x = _check_image("x", x)
    r = check_int("scale", scale)
    _, _, h, w = x.shape
    m_h = interpolation_matrix(h, r * h, align_corners, x.dtype)  # (rH, H)
    m_w = interpolation_matrix(w, r * w, align_corners, x.dtype)  # (rW, W)
    return m_h @ x @ m_w.T  # (B, C, rH, rW)


# --------------------------------------------------------------------------------------------
# 2. convolution (gather) and transposed convolution (scatter)
# --------------------------------------------------------------------------------------------
def conv2d_taps(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """Strided convolution (cross-correlation, as in PyTorch) written as a sum over kernel taps.

    .. math:: y[b, o, i, j] = \\sum_{c, u, v} w[o, c, u, v]\\; x_{pad}[b, c, s i + u, s j + v]

    Each output pixel *gathers* a :math:`k \\times k` window. The loop runs over the
    :math:`k^2` taps; each tap reads a strided slice of the padded input.

    Args:
        x: ``(B, C_in, H, W)``.
        weight: ``(C_out, C_in, k_h, k_w)``.
        stride, padding: :math:`s \\ge 1`, :math:`p \\ge 0` (zeros).

    Returns:
        ``(B, C_out, (H + 2p - k_h) // s + 1, (W + 2p - k_w) // s + 1)``.
    """
    x = _check_image("x", x)
    weight = _check_weight("weight", weight, x.shape[1], "conv")
    _check_same_dtype(x, weight)
    s, p = check_int("stride", stride), check_int("padding", padding, minimum=0)
    b, _, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    if h + 2 * p < kh or w + 2 * p < kw:
        raise ValueError(f"the kernel {kh}x{kw} is larger than the padded input {h + 2 * p}x{w + 2 * p}")
    xp = F.pad(x, (p, p, p, p))
    ho, wo = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    y = x.new_zeros(b, c_out, ho, wo)
    for u in range(kh):
        for v in range(kw):
            window = xp[:, :, u : u + s * (ho - 1) + 1 : s, v : v + s * (wo - 1) + 1 : s]  # (B, C_in, Ho, Wo)
            y = y + torch.einsum("oc,bchw->bohw", weight[:, :, u, v], window)
    return y


def transposed_output_size(n_in: int, kernel: int, stride: int, padding: int = 0,
                           output_padding: int = 0) -> int:
    """Output length of a transposed convolution: :math:`(n - 1)s - 2p + k + p_{out}`."""
    n_in, kernel, stride = check_int("n_in", n_in), check_int("kernel", kernel), check_int("stride", stride)
    padding = check_int("padding", padding, minimum=0)
    output_padding = check_int("output_padding", output_padding, minimum=0)
    if output_padding >= stride:
        raise ValueError(f"output_padding must be < stride={stride}, got {output_padding}")
    n_out = (n_in - 1) * stride - 2 * padding + kernel + output_padding
    if n_out < 1:
        raise ValueError(f"padding={padding} crops everything: output length would be {n_out}")
    return n_out


def conv_transpose2d_scatter(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0,
                             output_padding: int = 0) -> torch.Tensor:
    """Transposed convolution as scatter-add: every input pixel stamps a scaled kernel.

    .. math:: y_{full}[b, o, s i + u, s j + v] \\mathrel{+}= x[b, c, i, j]\\; w[c, o, u, v]

    for all :math:`i, j, u, v, c`, then :math:`p` rows/columns are cropped from each border
    (:math:`p_{out}` extra ones are kept at the bottom/right). It is the adjoint of
    :func:`conv2d_taps` with the same weight, stride and padding (:math:`A^\\top` where
    :math:`A` is the convolution). Equals ``F.conv_transpose2d`` (no groups, no dilation).

    Args:
        x: ``(B, C_in, H, W)``.
        weight: ``(C_in, C_out, k_h, k_w)``, PyTorch's layout for transposed convolutions.
        stride, padding, output_padding: :math:`s \\ge 1`, :math:`p \\ge 0`,
            :math:`0 \\le p_{out} < s`.

    Returns:
        ``(B, C_out, (H-1)s - 2p + k_h + p_out, (W-1)s - 2p + k_w + p_out)``.
    """
    x = _check_image("x", x)
    weight = _check_weight("weight", weight, x.shape[1], "transposed")
    _check_same_dtype(x, weight)
    s = check_int("stride", stride)
    b, _, h, w = x.shape
    _, c_out, kh, kw = weight.shape
    ho = transposed_output_size(h, kh, s, padding, output_padding)
    wo = transposed_output_size(w, kw, s, padding, output_padding)
    full_h, full_w = (h - 1) * s + kh + output_padding, (w - 1) * s + kw + output_padding
    y = x.new_zeros(b, c_out, full_h, full_w)
    for u in range(kh):
        for v in range(kw):
            stamp = torch.einsum("bchw,co->bohw", x, weight[:, :, u, v])  # (B, C_out, H, W)
            y[:, :, u : u + s * (h - 1) + 1 : s, v : v + s * (w - 1) + 1 : s] += stamp  # scatter
    return y[:, :, padding : padding + ho, padding : padding + wo]


def conv2d_matrix(weight: torch.Tensor, height: int, width: int, stride: int = 1,
                  padding: int = 0) -> torch.Tensor:
    """The convolution :func:`conv2d_taps` as an explicit matrix :math:`A`, built tap by tap.

    Row :math:`(o, i, j)` holds :math:`w[o, c, u, v]` in column :math:`(c, s i + u - p,
    s j + v - p)` (taps that land in the zero padding are dropped). Small sizes only: the
    matrix has :math:`C_{out} H_o W_o \\times C_{in} H W` entries.

    Args:
        weight: ``(C_out, C_in, k_h, k_w)``.
        height, width: input size :math:`H, W`.
        stride, padding: as in :func:`conv2d_taps`.

    Returns:
        ``(C_out * Ho * Wo, C_in * H * W)``, so that ``A @ x.flatten() == conv(x).flatten()``
        for one image.
    """
    weight = _check_image("weight", weight)  # (C_out, C_in, kh, kw): 4-D, float, finite
    h, w = check_int("height", height), check_int("width", width)
    s, p = check_int("stride", stride), check_int("padding", padding, minimum=0)
    c_out, c_in, kh, kw = weight.shape
    if h + 2 * p < kh or w + 2 * p < kw:
        raise ValueError(f"the kernel {kh}x{kw} is larger than the padded input {h + 2 * p}x{w + 2 * p}")
    if c_out * c_in * h * w * kh * kw > 5_000_000:
        raise ValueError("conv2d_matrix is for small examples: reduce height, width or channels")
    ho, wo = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    a = weight.new_zeros(c_out, ho, wo, c_in, h, w)
    for i in range(ho):
        for j in range(wo):
            for u in range(kh):
                for v in range(kw):
                    r, c = s * i + u - p, s * j + v - p
                    if 0 <= r < h and 0 <= c < w:
                        a[:, i, j, :, r, c] = weight[:, :, u, v]
    return a.reshape(c_out * ho * wo, c_in * h * w)


# --------------------------------------------------------------------------------------------
# 3. pixel shuffle and sub-pixel convolution
# --------------------------------------------------------------------------------------------
def pixel_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """Move channels into space: :math:`y[b, c, r h + i, r w + j] = x[b, c r^2 + i r + j, h, w]`.

    Equals ``nn.PixelShuffle(r)``. Shapes: ``(B, C r^2, H, W) -> (B, C, rH, rW)``.
    """
    x = _check_image("x", x)
    r = check_int("r", r)
    b, cr2, h, w = x.shape
    if cr2 % (r * r):
        raise ValueError(f"x must have a multiple of r^2={r * r} channels, got {cr2}")
    c = cr2 // (r * r)
    x = x.reshape(b, c, r, r, h, w)  # (B, C, i, j, H, W)
    x = x.permute(0, 1, 4, 2, 5, 3)  # (B, C, H, i, W, j)
    return x.reshape(b, c, h * r, w * r)


def pixel_unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """The inverse of :func:`pixel_shuffle`: ``(B, C, rH, rW) -> (B, C r^2, H, W)``."""
    x = _check_image("x", x)
    r = check_int("r", r)
    b, c, hr, wr = x.shape
    if hr % r or wr % r:
        raise ValueError(f"x must have height and width divisible by r={r}, got {hr}x{wr}")
    x = x.reshape(b, c, hr // r, r, wr // r, r).permute(0, 1, 3, 5, 2, 4)  # (B, C, i, j, H, W)
    return x.reshape(b, c * r * r, hr // r, wr // r)


def subpixel_weight(weight: torch.Tensor, stride: int) -> torch.Tensor:
    """Rearrange a transposed-convolution kernel into the kernel of an equivalent sub-pixel conv.

    Write an output index of the transposed convolution as :math:`o = s q + \\phi` with phase
    :math:`\\phi \\in \\{0, \\dots, s-1\\}`. Only taps :math:`u = s a + \\phi` reach it, from
    input :math:`q - a`:

    .. math:: y[s q + \\phi] = \\sum_{a=0}^{m-1} x[q - a]\\, w[s a + \\phi], \\qquad
              m = \\lceil k / s \\rceil.

    So each phase is an ordinary :math:`m \\times m` convolution of the input (kernel flipped,
    zero where :math:`s a + \\phi \\ge k`), and the :math:`s^2` phases become :math:`s^2`
    output channels that :func:`pixel_shuffle` interleaves (Shi et al. 2016).

    Args:
        weight: ``(C_in, C_out, k_h, k_w)``, the transposed convolution's kernel.
        stride: :math:`s`.

    Returns:
        ``(C_out * s^2, C_in, m_h, m_w)``, a stride-1 convolution kernel whose output channel
        ``o * s^2 + phi_h * s + phi_w`` computes phase ``(phi_h, phi_w)`` of output channel ``o``.
    """
    weight = _check_image("weight", weight)
    s = check_int("stride", stride)
    c_in, c_out, kh, kw = weight.shape
    mh, mw = math.ceil(kh / s), math.ceil(kw / s)
    padded = F.pad(weight, (0, mw * s - kw, 0, mh * s - kh))  # (C_in, C_out, mh s, mw s)
    # w6[c, o, a, phi_h, b, phi_w] = w[c, o, s a + phi_h, s b + phi_w]
    w6 = padded.reshape(c_in, c_out, mh, s, mw, s)
    w6 = w6.flip(2, 4)  # correlation instead of convolution: a -> m - 1 - a
    w6 = w6.permute(1, 3, 5, 0, 2, 4)  # (C_out, phi_h, phi_w, C_in, mh, mw)
    return w6.reshape(c_out * s * s, c_in, mh, mw)


def conv_transpose2d_subpixel(x: torch.Tensor, weight: torch.Tensor, stride: int,
                              padding: int = 0) -> torch.Tensor:
    """A transposed convolution computed as conv + pixel shuffle (:func:`subpixel_weight`).

    Pad the input by :math:`m - 1`, convolve at stride 1 with :math:`C_{out} s^2` channels,
    shuffle, and crop to the transposed convolution's size. Equals
    ``F.conv_transpose2d(x, weight, stride=stride, padding=padding)``.

    Args:
        x: ``(B, C_in, H, W)``.
        weight: ``(C_in, C_out, k_h, k_w)``.
        stride, padding: :math:`s \\ge 1`, :math:`p \\ge 0`.

    Returns:
        ``(B, C_out, (H-1)s - 2p + k_h, (W-1)s - 2p + k_w)``.
    """
    x = _check_image("x", x)
    weight = _check_weight("weight", weight, x.shape[1], "transposed")
    _check_same_dtype(x, weight)
    s = check_int("stride", stride)
    _, _, h, w = x.shape
    kh, kw = weight.shape[-2:]
    ho, wo = transposed_output_size(h, kh, s, padding), transposed_output_size(w, kw, s, padding)
    ws = subpixel_weight(weight, s)  # (C_out s^2, C_in, mh, mw)
    mh, mw = ws.shape[-2:]
    y = F.conv2d(F.pad(x, (mw - 1, mw - 1, mh - 1, mh - 1)), ws)  # (B, C_out s^2, H+mh-1, W+mw-1)
    y = pixel_shuffle(y, s)  # (B, C_out, s(H+mh-1), s(W+mw-1)), covers the full output
    return y[:, :, padding : padding + ho, padding : padding + wo]


# --------------------------------------------------------------------------------------------
# 4. checkerboard artifacts and resize-convolution
# --------------------------------------------------------------------------------------------
def overlap_count(n_in: int, kernel: int, stride: int) -> torch.Tensor:
    """How many kernel taps land on each output pixel of a 1-D transposed convolution.

    :math:`N[o] = \\#\\{(i, u) : s i + u = o,\\ 0 \\le i < n,\\ 0 \\le u < k\\}`, counted by brute
    force. Away from the borders it is periodic with period :math:`s` and takes the values
    :math:`\\lfloor k/s \\rfloor` and :math:`\\lceil k/s \\rceil`: it is constant iff :math:`s`
    divides :math:`k` (Odena et al. 2016). In 2-D the count is the outer product of the two
    1-D counts.

    Returns:
        ``(transposed_output_size(n_in, kernel, stride),)`` integer tensor.
    """
    n_out = transposed_output_size(n_in, kernel, stride)
    count = torch.zeros(n_out, dtype=torch.long)
    for i in range(n_in):
        for u in range(kernel):
            count[stride * i + u] += 1
    return count


def ripple(y: torch.Tensor, period: int, border: int = 0) -> float:
    """The share of an image's interior that repeats with period ``period``: 0 for no pattern.

    Crop ``border`` pixels on every side, average ``y`` over the pixels of the same phase
    :math:`\\phi = (h \\bmod P, w \\bmod P)` to get :math:`M[b, c, \\phi]`, and return

    .. math:: \\frac{\\lVert M - \\bar M \\rVert}{\\lVert M \\rVert}, \\qquad
              \\bar M[b, c] = \\text{mean}_\\phi\\, M[b, c, \\phi],

    the norm of the periodic part over the norm of the whole. A constant image gives 0, a
    zero-mean checkerboard 1, and a checkerboard of :math:`\\pm 10\\%` around its mean 0.1.

    Args:
        y: ``(B, C, H, W)``.
        period: :math:`P \\ge 1`; the crop must leave at least one full period.
        border: pixels dropped on each side (borders are uneven for every upsampler).
    """
    y = _check_image("y", y).detach()
    period = check_int("period", period)
    border = check_int("border", border, minimum=0)
    inner = y[:, :, border : y.shape[2] - border, border : y.shape[3] - border]
    h, w = inner.shape[-2:]
    h, w = h - h % period, w - w % period
    if h < period or w < period:
        raise ValueError(f"border={border} leaves less than one period {period} of y {tuple(y.shape)}")
    inner = inner[:, :, :h, :w].reshape(*inner.shape[:2], h // period, period, w // period, period)
    phase_means = inner.mean(dim=(2, 4))  # (B, C, P, P)
    periodic = phase_means - phase_means.mean(dim=(2, 3), keepdim=True)
    total = phase_means.norm()
    if total == 0:
        raise ValueError("y is zero in the interior: the ripple is undefined")
    return float(periodic.norm() / total)


def resize_conv2d(x: torch.Tensor, weight: torch.Tensor, scale: int) -> torch.Tensor:
    """Resize-convolution (Odena et al. 2016): nearest upsampling by ``scale``, then a
    stride-1 convolution with 'same' zero padding.

    Every output pixel sees the same number of kernel taps, so a constant input gives a
    constant output away from the borders, whatever the weights.

    Args:
        x: ``(B, C_in, H, W)``.
        weight: ``(C_out, C_in, k, k)`` with odd :math:`k`.
        scale: the factor :math:`r \\ge 1`.

    Returns:
        ``(B, C_out, rH, rW)``.
    """
    x = _check_image("x", x)
    weight = _check_weight("weight", weight, x.shape[1], "conv")
    _check_same_dtype(x, weight)
    kh, kw = weight.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"weight must have an odd kernel size for 'same' padding, got {kh}x{kw}")
    return F.conv2d(upsample_nearest(x, scale), weight, padding=(kh // 2, kw // 2))
