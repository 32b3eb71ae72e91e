"""2-D convolution (letters as in the Notation of ``tinyalex/ops/im2col.py``).

The simple version first: im2col + one GEMM, the readable reference::

    cols = im2col(x)                                   # (N*OH*OW, C*KH*KW)
    y    = cols @ W.reshape(OC, C*KH*KW).T + b         # (N*OH*OW, OC)
    y    -> (N, OH, OW, OC) -> (N, OC, OH, OW)

Backward, with gy the gradient of y laid out as (N*OH*OW, OC)::

    gW    = gy.T @ cols                                # (OC, C*KH*KW)
    gb    = gy.sum(axis=0)                             # (OC,)
    gcols = gy @ W                                     # (N*OH*OW, C*KH*KW)
    gx    = col2im(gcols)                              # (N, C, H, W)

Only ``cols`` and ``W`` are kept for backward. The input gradient is skipped when no
one needs it (the first layer of a network: its input is the data). Where the whole
batch's columns would take more than ``COLUMN_BYTES``, the batch goes a few images at a
time, one GEMM each, and backward builds the columns again. Under
``TINYALEX_KERNELS=reference`` and ``TINYALEX_CONV=im2col`` every convolution runs this
code.

Then the real op: ``Conv2d`` asks ``conv2d_algorithm`` which algorithm computes this
layer and calls it; its rules are ``CONV_RULES``, a list it walks (its docstring's table
is generated from them); every algorithm offers ``ConvAlgorithm``'s interface, and
``tinyalex.summary`` prints the choice for every layer of a network.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Protocol

import tinyalex.kernels as kernels
from tinyalex.kernels import conv_direct_cpu, conv_grouped_cpu, conv_im2col_cpu, \
    conv_im2col_gpu, conv_winograd_cpu
from tinyalex.kernels.conv_taps_cpu import TAP_GEMMS
from tinyalex.kernels.conv_pointwise import POINTWISE_1X1
from tinyalex.kernels.geometry import ConvGeometry, conv_geometry
from tinyalex.kernels.layout import FLOATS

from .. import backend as B
from ..checks import check_bytes, check_floating, check_int, pair
from ..tensor import Function
from .activation import activation_algorithm
from .im2col import col2im, im2col
from .pool import AvgPool2d


# -- [simple version] im2col + one GEMM, the readable reference ---------------------------

COLUMN_BYTES = 64 << 20   # the reference's columns per GEMM, at most (a few images' worth)


@dataclass
class ReferenceSaved:
    cols: object          # (N*OH*OW, C*KH*KW) when the whole batch was one chunk, else None
    x: object             # (N, C, H, W) when it was not: backward builds the columns again
    w_mat: object         # (OC, C*KH*KW)
    g: ConvGeometry


class Im2colReference:
    """The reference convolution: ``im2col`` and ``col2im`` of ``ops/im2col.py`` and one
    GEMM, NumPy (or CuPy) array code with no compiled loop. The batch goes a few images
    at a time, one GEMM each, where the whole batch's columns would take more than
    ``chunk_bytes``."""

    name = "im2col+GEMM (reference)"

    def __init__(self, chunk_bytes: int = COLUMN_BYTES):
        self.chunk_bytes = chunk_bytes

    def chunks(self, g: ConvGeometry, itemsize: int) -> list:
        """(n0, n1) ranges of images covering the batch: one range when the columns fit."""
        nb = max(1, min(g.N, self.chunk_bytes // max(1, g.P * g.K * itemsize)))
        return [(n0, min(g.N, n0 + nb)) for n0 in range(0, g.N, nb)]

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        """y (N, OC, OH, OW) and what backward needs (None unless ``keep``)."""
        xp = B.get_array_module(x)
        N, OC, OH, OW, P = g.N, g.OC, g.OH, g.OW, g.P
        w_mat = weight.reshape(OC, g.K)                         # (OC, C*KH*KW)
        chunks = self.chunks(g, x.dtype.itemsize)
        y = xp.empty((N * P, OC), dtype=x.dtype)                # (N*OH*OW, OC)
        for n0, n1 in chunks:
            cols = im2col(x[n0:n1], g.KH, g.KW, g.SH, g.SW, g.PH, g.PW)  # (nb*OH*OW, C*KH*KW)
            # (nb*OH*OW, OC) = (nb*OH*OW, C*KH*KW) @ (C*KH*KW, OC): the one GEMM
            xp.matmul(cols, w_mat.T, out=y[n0 * P:n1 * P])
        if bias is not None:
            y += bias                                           # (N*OH*OW, OC) + (OC,)
        # (N*OH*OW, OC) -> (N, OH, OW, OC) -> (N, OC, OH, OW), C-contiguous
        y = y.reshape(N, OH, OW, OC).transpose(0, 3, 1, 2)
        y = y if y.flags.c_contiguous else y.copy()
        if not keep:
            return y, None
        whole = len(chunks) == 1
        return y, ReferenceSaved(cols if whole else None, None if whole else x, w_mat, g)

    def backward(self, gy, s: ReferenceSaved, need_x, need_w, need_b):
        """(gx, gW, gb) for gy (N, OC, OH, OW); None where not needed."""
        g = s.g
        xp = B.get_array_module(gy)
        P = g.P
        gy_mat = gy.transpose(0, 2, 3, 1).reshape(-1, g.OC)   # (N, OC, OH, OW) -> (N*OH*OW, OC)
        gx = gw = gb = None
        if need_b:
            gb = gy_mat.sum(axis=0)                           # (OC,)
        chunks = self.chunks(g, gy.dtype.itemsize) if s.cols is None else [(0, g.N)]
        if need_x and len(chunks) > 1:
            gx = xp.empty((g.N, g.C, g.H, g.W), dtype=gy.dtype)
        for n0, n1 in chunks:
            g_chunk = gy_mat[n0 * P:n1 * P]                   # (nb*OH*OW, OC)
            if need_w:
                cols = s.cols if s.cols is not None else \
                    im2col(s.x[n0:n1], g.KH, g.KW, g.SH, g.SW, g.PH, g.PW)  # built again
                # (OC, C*KH*KW) = (OC, nb*OH*OW) @ (nb*OH*OW, C*KH*KW)
                part = g_chunk.T @ cols
                if gw is None:
                    gw = part                                 # a fresh array: ours to add to
                else:
                    gw += part
            if need_x:
                gcols = g_chunk @ s.w_mat  # (nb*OH*OW, C*KH*KW) = (nb*OH*OW, OC) @ (OC, C*KH*KW)
                # col2im is the adjoint of im2col: every window's gradient added back onto its pixels
                part = col2im(gcols, (n1 - n0, g.C, g.H, g.W), g.KH, g.KW, g.SH, g.SW, g.PH,
                              g.PW)                           # (nb, C, H, W)
                if gx is None:
                    gx = part
                else:
                    gx[n0:n1] = part
        if need_w:
            gw = gw.reshape(g.OC, g.C, g.KH, g.KW)            # columns are (c, kh, kw)
        return gx, gw, gb


REFERENCE = Im2colReference()    # TINYALEX_KERNELS=reference, and TINYALEX_CONV=im2col


# -- grouped convolution: the reference once per group -----------------------------------

class GroupedReference:
    """A convolution in ``g.groups`` groups (PyTorch's ``groups=``): input channels and
    output channels are cut into that many equal parts, and group i's outputs see only
    group i's inputs. The weight is (OC, C/groups, KH, KW); its rows i*OC/groups onward
    are group i's filters. Each group is an ordinary convolution, computed by the
    reference above (one im2col + one GEMM per group)::

        for i in range(groups):
            y[:, OCg*i : OCg*(i+1)] = conv2d(x[:, Cg*i : Cg*(i+1)], W[OCg*i : OCg*(i+1)])

    Backward runs the reference's backward per group and puts the pieces back in place."""

    name = "im2col+GEMM per group (reference)"

    @staticmethod
    def one_group(g: ConvGeometry) -> ConvGeometry:
        """The geometry of each group's convolution."""
        return replace(g, C=g.C // g.groups, OC=g.OC // g.groups, groups=1)

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool):
        xp = B.get_array_module(x)
        gi, G = self.one_group(g), g.groups
        Cg, OCg = gi.C, gi.OC
        ys, saved = [], []
        for i in range(G):
            xi = xp.ascontiguousarray(x[:, Cg * i:Cg * (i + 1)])         # (N, C/G, H, W)
            wi = weight[OCg * i:OCg * (i + 1)]                           # (OC/G, C/G, KH, KW)
            bi = None if bias is None else bias[OCg * i:OCg * (i + 1)]
            yi, si = REFERENCE.forward(xi, wi, bi, gi, keep)            # (N, OC/G, OH, OW)
            ys.append(yi)
            saved.append(si)
        return xp.concatenate(ys, axis=1), (saved if keep else None)

    def backward(self, gy, saved, need_x, need_w, need_b):
        xp = B.get_array_module(gy)
        OCg = gy.shape[1] // len(saved)
        parts = [REFERENCE.backward(xp.ascontiguousarray(gy[:, OCg * i:OCg * (i + 1)]), si,
                                    need_x, need_w, need_b) for i, si in enumerate(saved)]
        gx, gw, gb = (xp.concatenate([p[k] for p in parts], axis=1 if k == 0 else 0)
                      if parts[0][k] is not None else None for k in range(3))
        return gx, gw, gb


GROUPED = GroupedReference()


# -- the one place that chooses the algorithm ---------------------------------------------

class ConvAlgorithm(Protocol):
    """What every convolution algorithm offers: the reference above and each fast one of
    ``tinyalex.kernels`` (``conv_im2col_cpu``, ``conv_winograd_cpu``, ``conv_direct_cpu``,
    ``conv_pointwise``, ``conv_grouped_cpu``, ``conv_im2col_gpu``). ``conv2d_algorithm``
    returns one; ``Conv2d`` calls it."""

    name: str

    def forward(self, x, weight, bias, g: ConvGeometry, keep: bool) -> tuple:
        """``(y, saved)``: y (N, OC, OH, OW) in any memory order, and what backward needs
        (None unless ``keep``)."""

    def backward(self, gy, saved, need_x: bool, need_w: bool, need_b: bool) -> tuple:
        """``(gx, gW, gb)`` for gy (N, OC, OH, OW); None where not needed."""


@dataclass(frozen=True)
class Rule:
    """One row of the chooser's table: when ``applies(g, dtype, backend)``, the
    algorithm ``pick()`` returns (``then`` names it in the docstring)."""
    when: str
    then: str
    applies: Callable[[ConvGeometry, object, str], bool]
    pick: Callable[[], ConvAlgorithm]


def _reference_mode(g, dtype, backend) -> bool:
    return kernels.get_mode() == "reference" or dtype not in FLOATS


def _im2col_mode(g, dtype, backend) -> bool:
    return kernels.get_conv_mode() == "im2col"


_F63, _F43 = conv_winograd_cpu.WINOGRAD_F63, conv_winograd_cpu.WINOGRAD_F43
_F45, _F35 = conv_winograd_cpu.WINOGRAD_F45, conv_winograd_cpu.WINOGRAD_F35
_DIRECT, _IM2COL_GEMM = conv_direct_cpu.DIRECT, conv_im2col_cpu.IM2COL_GEMM

F43_OUTPUTS_PER_TILE = 4    # F(4x4, 3x3) pays where a layer has this many outputs per
F43_FILTER_TILES = 96       # 4x4 tile, its filter transforms counted as this many tiles


def f43_pays(g: ConvGeometry) -> bool:
    """Whether Winograd F(4x4, 3x3) beats im2col + GEMM on a layer it takes:
    ``N*OH*OW >= 4 * (tiles + 96)``, tiles = N * ceil(OH/4) * ceil(OW/4).

    A tile costs 36 multiplications a channel pair and yields up to 16 outputs, where
    im2col pays 9 an output: Winograd wins by the outputs its tiles fill, but a 3x3
    output fills 9 of its tile's 16, and the filter's transform (and, in backward, the
    weight gradient's) costs as much as some 96 tiles whatever the batch. So ResNet-18's
    512-channel 3x3 layers (3x3 outputs) go to im2col at batch 32 and to Winograd from
    77 on; AlexNet's 12x12 layers from a batch of 4 (fitted to single-thread CPU times of
    both algorithms, fwd + bwd, on those layers at batches 1-128: the record
    benchmarks/results/2026-12-07_epyc-avx512-2cores-resnet18/)."""
    tiles = g.N * -(-g.OH // 4) * -(-g.OW // 4)
    return g.N * g.OH * g.OW >= F43_OUTPUTS_PER_TILE * (tiles + F43_FILTER_TILES)


def _grouped_fast(g, dtype, backend) -> bool:
    return _GROUPED_IM2COL.takes(g) and backend == "numpy" and dtype in FLOATS \
        and kernels.get_mode() == "fast" and kernels.get_conv_mode() == "auto"


_GROUPED_IM2COL = conv_grouped_cpu.GROUPED_IM2COL

CONV_RULES = (
    Rule(f"{_GROUPED_IM2COL.condition}, NumPy, fast kernels, TINYALEX_CONV=auto",
         _GROUPED_IM2COL.name, _grouped_fast, lambda: _GROUPED_IM2COL),
    Rule("groups > 1 (any other backend or mode)", GROUPED.name + ", above",
         lambda g, dtype, backend: g.groups > 1, lambda: GROUPED),
    Rule("TINYALEX_KERNELS=reference, or dtype not float32/64", REFERENCE.name + ", above",
         _reference_mode, lambda: REFERENCE),
    Rule("TINYALEX_CONV=im2col (NumPy or CuPy)", REFERENCE.name + ", above", _im2col_mode,
         lambda: REFERENCE),
    Rule("backend cupy", "im2col+GEMM (kh,kw,c): channels-last columns",
         lambda g, dtype, backend: backend == "cupy",
         lambda: conv_im2col_gpu.for_cupy()),
    Rule(POINTWISE_1X1.condition, POINTWISE_1X1.name,
         lambda g, dtype, backend: POINTWISE_1X1.takes(g), lambda: POINTWISE_1X1),
    Rule(TAP_GEMMS.condition, TAP_GEMMS.name, lambda g, dtype, backend: TAP_GEMMS.takes(g),
         lambda: TAP_GEMMS),
    Rule(f"{_F63.condition}, f43_pays", _F63.name,
         lambda g, dtype, backend: _F63.takes(g) and f43_pays(g), lambda: _F63),
    Rule(f"{_F43.condition}, N*OH*OW >= {F43_OUTPUTS_PER_TILE} (tiles + "
         f"{F43_FILTER_TILES}) (f43_pays)", _F43.name,
         lambda g, dtype, backend: _F43.takes(g) and f43_pays(g), lambda: _F43),
    Rule(_F45.condition, _F45.name, lambda g, dtype, backend: _F45.takes(g), lambda: _F45),
    Rule(_F35.condition, _F35.name, lambda g, dtype, backend: _F35.takes(g), lambda: _F35),
    Rule(f"{_F43.condition}, fewer outputs (f43_pays)", _IM2COL_GEMM.name,
         lambda g, dtype, backend: _F43.takes(g), lambda: _IM2COL_GEMM),
    Rule(_DIRECT.condition, _DIRECT.name, lambda g, dtype, backend: _DIRECT.takes(g),
         lambda: _DIRECT),
    Rule("anything else", _IM2COL_GEMM.name, lambda g, dtype, backend: True,
         lambda: _IM2COL_GEMM),
)


def rules_table(rules) -> str:
    """The rules as the two-column table the chooser's docstring prints."""
    width = max(len(r.when) for r in rules) + 2
    return "\n".join(f"        {r.when:{width}}{r.then}" for r in rules)


def conv2d_algorithm(g: ConvGeometry, dtype, backend: str) -> ConvAlgorithm:
    """The algorithm that computes a convolution of geometry ``g``: the first rule of
    ``CONV_RULES`` that matches (mode: ``tinyalex.kernels``' switches; this table is
    generated from those rules)::

{rules}

    Why: im2col + GEMM does C*KH*KW multiply-adds per output through one large GEMM,
    near the BLAS's peak when C and OC are large. Winograd F(4x4, 3x3) needs 36
    multiplications per 16 outputs of a 3x3 filter where im2col needs 144 (4x fewer),
    F(6x6, 3x3) 64 per 36 (5x fewer, where its larger tiles fit the map; F(4x4, 5x5)
    likewise 64 per 16 where im2col needs 400, 6.25x fewer),
    F(3x3, 5x5) 49 per 9 where im2col needs 225 (4.6x fewer; ``WINOGRAD_F25``, 36 per
    4, is kept as the simpler 5x5 version that the tests hold to the same bounds), at
    the price of transforming every tile; with few channels its 36 GEMMs are too thin to
    pay, and with few outputs per tile, or few tiles, neither does F(4,3) (``f43_pays``).
    The direct convolution makes no column matrix at all (im2col copies every pixel
    KH*KW times) and suits the few-channel layers whose GEMM would have 6 or 16 columns.
    A 1x1 layer is a GEMM as it is; a grouped one is G GEMMs, batched where the groups
    are wide enough. On small maps many of im2col's products fall on the padding (40%
    for a 3x3 map padded by 1): one GEMM per tap, over the outputs the tap reaches,
    skips them, and there it also beats Winograd, whose tiles a 3x3 map fills only in
    part (measured: benchmarks/README.md). docs/convolution.md shows AlexNet's and LeNet's choices.
    """
    for rule in CONV_RULES:
        if rule.applies(g, dtype, backend):
            return rule.pick()
    raise AssertionError("the last rule matches every convolution")


conv2d_algorithm.__doc__ = conv2d_algorithm.__doc__.format(rules=rules_table(CONV_RULES))


# -- the op -----------------------------------------------------------------------------

class Conv2d(Function):
    torch_name = "ConvolutionBackward0"  # PyTorch's name, for a repr's grad_fn

    def __init__(self, stride=1, padding=0, where: str = "conv2d", groups=1):
        self.where = where
        self.SH, self.SW = pair(stride, "stride", where, 1)
        self.PH, self.PW = pair(padding, "padding", where, 0)
        self.groups = check_int(groups, "groups", where, 1, type_error=ValueError)

    def geometry(self, x_shape, w_shape, b_shape=None) -> ConvGeometry:
        """The layer's geometry for these operand shapes, every size checked (once, by
        ``conv_geometry``; the algorithms below trust it)."""
        g = conv_geometry(x_shape, w_shape, self.SH, self.SW, self.PH, self.PW, self.where,
                          self.groups)
        if b_shape is not None and tuple(b_shape) != (g.OC,):
            raise ValueError(f"{self.where}: bias must have shape ({g.OC},), got "
                             f"{tuple(b_shape)}")
        return g

    def _prepare(self, x, weight, bias) -> ConvGeometry:
        """Check the operands, choose the algorithm; the geometry."""
        g = self.geometry(x.shape, weight.shape, None if bias is None else bias.shape)
        check_floating(x.dtype, self.where)
        check_floating(weight.dtype, self.where, "weight")
        if bias is not None:
            check_floating(bias.dtype, self.where, "bias")
        self.algorithm: ConvAlgorithm = conv2d_algorithm(g, x.dtype, B.backend_of(x))
        check_conv_memory(self.where, g, x.dtype.itemsize)
        return g

    def forward(self, x, weight, bias=None):
        g = self._prepare(x, weight, bias)
        y, self.saved = self.algorithm.forward(x, weight, bias, g,
                                               keep=any(self.needs_input_grad))
        return y

    def backward(self, gy):
        need = self.needs_input_grad
        need_b = len(need) > 2 and need[2]
        gx, gw, gb = self.algorithm.backward(gy, self.saved, need[0], need[1], need_b)
        return (gx, gw, gb) if len(need) > 2 else (gx, gw)


class Conv2dReLU(Conv2d):
    """``relu(conv2d(x, W, b))`` as one op. With the GPU's im2col + GEMM one kernel adds
    the bias and applies ReLU to the GEMM's result in place (its epilogue), and backward
    masks the gradient in one kernel (``y > 0 ? gy : 0``) before the convolution's
    backward; with any other algorithm the convolution and the ReLU algorithm run one
    after the other, with the numbers of Conv2d followed by ReLU. ``nn.Sequential``
    calls it for a Conv2d followed by a ReLU on the cupy backend."""

    name = "Conv2d+ReLU"

    def forward(self, x, weight, bias=None):
        g = self._prepare(x, weight, bias)
        self.relu = activation_algorithm("relu", x.dtype, B.backend_of(x))
        keep = any(self.needs_input_grad)
        if isinstance(self.algorithm, conv_im2col_gpu.Im2colGemmGPU):
            y, self.saved = self.algorithm.forward(x, weight, bias, g, keep, activation="relu")
        else:
            y, self.saved = self.algorithm.forward(x, weight, bias, g, keep)
            y = self.relu.forward(y)
        if keep:
            self.y = y                         # the ReLU's mask is y > 0
        return y

    def backward(self, gy):
        return super().backward(self.relu.backward(gy, self.y))


class Conv2dSigmoidAvgPool(Conv2d):
    """``avg_pool2d(sigmoid(conv2d(x, W, b)), pool)`` as one op: d2l's LeNet blocks.

    Where the direct convolution computes the layer and the pooling is 2x2 with stride
    2 (``conv_direct_cpu``'s ``takes_sigmoid_avgpool``), loops over blocks of 32
    images held in the vector lanes (``kernels/numba_lanes.py``) compute the
    convolution, the sigmoid and the pooling row by row while each row is in cache,
    and backward turns the pooled gradient into the convolution's in one pass (the
    pooling's share gy/4 times the sigmoid's s*(1-s)); the output and the input's
    gradient are those of the three ops run one after the other. Otherwise the convolution, sigmoid and
    pooling algorithms run one after the other. ``nn.Sequential`` calls it for a
    Conv2d, Sigmoid, AvgPool2d run on the CPU (``Sequential.FUSED_CPU``)."""

    name = "Conv2d+Sigmoid+AvgPool2d"

    def __init__(self, stride=1, padding=0, pool_kernel=2, pool_stride=None, pool_padding=0,
                 where: str = "conv2d+sigmoid+avg_pool2d", groups=1):
        super().__init__(stride, padding, where, groups)
        self.pool = AvgPool2d(pool_kernel, pool_stride, pool_padding, where)

    def fused(self, g: ConvGeometry, algorithm: ConvAlgorithm):
        """The pooling's geometry when one loop computes the three ops (the convolution
        by ``algorithm``), else None."""
        pg = self.pool.geometry((g.N, g.OC, g.OH, g.OW))
        return pg if algorithm is _DIRECT and _DIRECT.takes_sigmoid_avgpool(g, pg) else None

    def fused_name(self, g: ConvGeometry, dtype, backend: str):
        """The name of the one loop that computes the three ops for geometry ``g``
        (``summary``'s algorithm column), or None where they run one after the other."""
        if self.fused(g, conv2d_algorithm(g, dtype, backend)) is None:
            return None
        return _DIRECT.fused_name

    def forward(self, x, weight, bias=None):
        g = self._prepare(x, weight, bias)
        keep = any(self.needs_input_grad)
        self.pool_geometry = self.fused(g, self.algorithm)
        if self.pool_geometry is not None:
            y, self.saved = _DIRECT.forward_sigmoid_avgpool(x, weight, bias, g,
                                                            self.pool_geometry, keep)
            return y
        self.sigmoid = activation_algorithm("sigmoid", x.dtype, B.backend_of(x))
        self.pool.needs_input_grad = (keep,)
        y, self.saved = self.algorithm.forward(x, weight, bias, g, keep)
        s = self.sigmoid.forward(y)
        if keep:
            self.s = s                          # the sigmoid's backward: s * (1 - s)
        return self.pool.forward(s)

    def backward(self, gy):
        need = self.needs_input_grad
        need_b = len(need) > 2 and need[2]
        if self.pool_geometry is not None:
            gx, gw, gb = _DIRECT.backward_sigmoid_avgpool(gy, self.saved, need[0], need[1],
                                                          need_b)
            return (gx, gw, gb) if len(need) > 2 else (gx, gw)
        return super().backward(self.sigmoid.backward(self.pool.backward(gy), self.s))


def check_conv_memory(where, g: ConvGeometry, itemsize) -> None:
    """The output of a convolution and one image's im2col columns must fit in memory
    (every algorithm takes a batch a few images at a time)."""
    hint = "check kernel_size, stride and padding"
    check_bytes(where, "the output", (g.N, g.OC, g.OH, g.OW), itemsize, hint)
    check_bytes(where, "the padded input", (g.N, g.C, g.H + 2 * g.PH, g.W + 2 * g.PW),
                itemsize, hint)
    check_bytes(where, "the im2col matrix", (g.P, g.K), itemsize, hint)


def conv2d(x, weight, bias=None, stride=1, padding=0, groups=1):
    """2-D convolution (cross-correlation, as PyTorch) of x (N, C, H, W) with
    weight (OC, C/groups, KH, KW) and optional bias (OC,)."""
    fn = Conv2d(stride, padding, groups=groups)
    return fn(x, weight) if bias is None else fn(x, weight, bias)


def conv2d_sigmoid_avg_pool2d(x, weight, bias=None, stride=1, padding=0, pool_kernel=2,
                              pool_stride=None, pool_padding=0):
    """``avg_pool2d(sigmoid(conv2d(x, weight, bias, stride, padding)), pool_kernel,
    pool_stride, pool_padding)`` as one op (Conv2dSigmoidAvgPool)."""
    fn = Conv2dSigmoidAvgPool(stride, padding, pool_kernel, pool_stride, pool_padding)
    return fn(x, weight) if bias is None else fn(x, weight, bias)


def conv2d_relu(x, weight, bias=None, stride=1, padding=0, where="conv2d+relu"):
    """``relu(conv2d(x, weight, bias, stride, padding))`` as one op (Conv2dReLU)."""
    fn = Conv2dReLU(stride, padding, where)
    return fn(x, weight) if bias is None else fn(x, weight, bias)
