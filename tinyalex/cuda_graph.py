"""d2l's training step (zero_grad, forward, cross-entropy, backward, SGD step) as one
call, captured once as a CUDA graph on the GPU and replayed, so that a step of fixed
shape costs one graph launch on the host instead of a hundred-odd kernel launches::

    step = TrainStep(net, optimizer)              # any backend
    for X, y in batches:                          # Tensors on the net's backend
        result = step(X, y)
        loss, correct = result.read()             # the step's one read back

What one call does (``step.mode_for(X, y)`` says it without running anything):

=========  ================================================================================
eager      the step as plain calls: on the CPU, with ``TINYALEX_CUDA_GRAPH=0`` (or
           ``graphs=False``), with the reference kernels (their label check reads back),
           under ``TINYALEX_CONV=im2col`` (the reference convolution's GEMM is
           ``cupy.matmul``, whose cuBLAS call capture refuses),
           where the GEMMs cannot be captured (``gemm_gpu.CupyGemm``), for a batch of
           another shape than the graph's (the last, partial batch of an epoch), and
           after a capture failed (a warning says why)
warm-up    the first call of a shape: eager, so that every kernel is compiled and loaded,
           cuBLAS's handle, the momentum buffer and dropout's device state exist before
           anything is captured
capture    the second call of that shape: the step is recorded on a non-blocking stream
           (``cupy.cuda.Stream(non_blocking=True)``, ``begin_capture``/``end_capture``)
           with every buffer it allocates taken from a memory pool of its own (never
           handed to anything else, so the graph's memory stays its own), then launched
           once: that launch is this call's step
replay     every later call of that shape: X and y copied into the graph's static input
           buffers, ``graph.launch()``
=========  ================================================================================

A graph is keyed by the batch's shapes and dtypes and by what its kernels baked in
(the learning rate, momentum and weight decay, training mode, TF32, kernel modes): a
change of any of them warms up and captures again. Nothing a step changes lives on
the host: dropout's seed and step counter are in device memory (``DeviceRNG``, advanced
by a kernel at the start of each step), the loss's label check is a device flag, and
the loss, the correct count and the flag are copied into a static output buffer at
the end of the step, which ``read()`` copies back once (after waiting for the stream;
read a result before the next call: a replay rewrites it). Every step, eager or
replayed, runs on the one stream, after the caller's stream has finished what it
queued (the batch's upload and resize); ``synchronize()`` before using the net on
another stream (evaluation does, through ``read()``'s wait).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import tinyalex.kernels as kernels
from tinyalex.kernels import elementwise_gpu, gemm_gpu

from . import backend as B
from .ops.loss import DeviceLossStats, cross_entropy, read_loss
from .tensor import Tensor

MODES = ("eager", "warm-up", "capture", "replay")


def _from_env() -> bool:
    value = os.environ.get("TINYALEX_CUDA_GRAPH", "1").strip().lower()
    if value not in ("", "1", "0", "on", "off", "true", "false", "yes", "no"):
        raise ValueError(f"TINYALEX_CUDA_GRAPH={value!r}: expected 1 (capture the training "
                         "step as a CUDA graph where it works, the default) or 0 (never)")
    return value not in ("0", "off", "false", "no")


GRAPHS_BY_DEFAULT = _from_env()


class CupyGraphs:
    """What a TrainStep needs from CuPy: one non-blocking stream, a memory pool per
    graph, stream capture, launches, copies and waits on that stream."""

    def __init__(self, cupy):
        self.cp = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)

    def after_caller(self) -> None:
        """This stream waits for what the caller's stream has queued."""
        self.stream.wait_event(self.cp.cuda.get_current_stream().record())

    def on_stream(self):
        return self.stream

    def new_pool(self):
        return self.cp.cuda.MemoryPool()

    def capture(self, pool, body):
        """Record ``body()`` as a graph (not run); ``(graph, what body returned)``."""
        with self.stream, self.cp.cuda.using_allocator(pool.malloc):
            self.stream.begin_capture()
            try:
                out = body()
            finally:
                graph = self.stream.end_capture()
        return graph, out

    def launch(self, graph) -> None:
        graph.launch(self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def release_cached(self) -> None:
        """Give the default pool's free blocks back (the graph's pool holds its own)."""
        self.cp.get_default_memory_pool().free_all_blocks()

    def pool_bytes(self, pool) -> int:
        return int(pool.total_bytes())


@dataclass
class CapturedStep:
    key: tuple
    graph: object
    pool: object
    x: object               # static inputs: the batch is copied here before a launch
    y: object
    stats: object           # static output: (4,) loss sum, correct rows, 0, label flag
    N: int
    K: int


class StepResult:
    """One call's outcome; ``read()`` -> (loss, correct rows), one read back."""

    def __init__(self, step, mode, loss=None, logits=None, y=None, stats=None, N=0, K=0):
        self.step, self.mode = step, mode
        self._loss, self._logits, self._y = loss, logits, y
        self._stats, self._N, self._K = stats, N, K

    def read(self) -> tuple[float, int]:
        self.step.synchronize()
        if self._stats is not None:
            return DeviceLossStats(self._stats, self._N, self._K).read()
        value, correct = read_loss(self._loss)
        if correct is None:      # a host loss: d2l's accuracy from the logits
            correct = int((self._logits.array.argmax(axis=1) == self._y.array).sum())
        return value, correct


class TrainStep:
    """d2l's training step on ``net`` with ``optimizer`` (tinyalex.optim.SGD), captured
    as a CUDA graph where it can be (the module docstring's table). ``graphs``: None
    (TINYALEX_CUDA_GRAPH decides, on the cupy backend), False (never), or an object
    with CupyGraphs' methods (the tests' stand-in)."""

    def __init__(self, net, optimizer, graphs=None, loss_fn=cross_entropy):
        self.net, self.optimizer, self.loss_fn = net, optimizer, loss_fn
        params = list(net.parameters())
        self.backend = B.backend_of(params[0].array) if params else "numpy"
        self.graphs, self.why_eager = self._graphs(graphs)
        self.captured: CapturedStep | None = None
        self._warmed = set()
        self.counts = dict.fromkeys(MODES, 0)

    def _graphs(self, graphs):
        if graphs is False:
            return None, "graphs=False"
        if graphs is not None:
            return graphs, ""
        if self.backend != "cupy":
            return None, f"the {self.backend} backend has no CUDA graphs"
        if not GRAPHS_BY_DEFAULT:
            return None, "TINYALEX_CUDA_GRAPH=0"
        if not gemm_gpu.for_cupy().capturable:
            return None, ("the GEMMs go through cupy.matmul, whose cuBLAS calls CuPy refuses "
                          "while a stream captures")
        return CupyGraphs(B.cupy_module()), ""

    # -- what a call does ------------------------------------------------------------
    def key(self, X, y) -> tuple:
        opt = self.optimizer
        return (tuple(X.shape), str(X.dtype), tuple(y.shape), str(y.dtype),
                (opt.lr, opt.momentum, opt.weight_decay), self.net.training,
                kernels.tf32_enabled(), kernels.get_mode(), kernels.get_conv_mode())

    def mode_for(self, X, y) -> str:
        if self.graphs is None:
            return "eager"
        if kernels.get_mode() == "reference":
            return "eager"                # the reference loss reads its labels back
        if kernels.get_conv_mode() == "im2col":
            return "eager"                # the reference convolution's GEMM is cupy.matmul
        key = self.key(X, y)
        if self.captured is not None:
            if key == self.captured.key:
                return "replay"
            if key[:4] != self.captured.key[:4]:
                return "eager"            # another shape: the partial batch
        if key in self._warmed:
            return "capture"
        return "warm-up"

    # -- running ---------------------------------------------------------------------
    def _body(self, X, y, stats_out=None):
        """The step itself, as d2l's train_ch6 writes it; with ``stats_out`` the GPU
        loss's statistics are copied there at the end (the static output)."""
        if self.backend == "cupy":
            elementwise_gpu.device_rng().next_step()    # dropout: fresh masks this step
        self.optimizer.zero_grad()
        logits = self.net(X)
        loss = self.loss_fn(logits, y)
        loss.backward()
        self.optimizer.step()
        if stats_out is not None:
            device = loss.__dict__.get("_device_stats")
            if device is None:
                raise RuntimeError("the loss has no device statistics (not the GPU "
                                   "cross-entropy), so the step cannot be replayed")
            stats_out[...] = device.stats
        return loss, logits

    def _stats_buffer(self, X):
        xp = B.get_array_module(X.array)
        return xp.zeros(4, dtype=next(iter(self.net.parameters())).dtype)

    def _stream(self):
        return self.graphs.on_stream() if self.graphs is not None else contextlib.nullcontext()

    def __call__(self, X: Tensor, y: Tensor) -> StepResult:
        mode = self.mode_for(X, y)
        self.counts[mode] += 1
        if self.graphs is not None:
            self.graphs.after_caller()
        if mode in ("capture", "replay") and self.backend == "cupy":
            # dropout's seed from a new host generator (manual_seed) is uploaded here,
            # into the memory the graph reads: never inside the capture, which fails
            # on a host-to-device copy
            with self._stream():
                elementwise_gpu.device_rng().seeded()
        if mode in ("eager", "warm-up"):
            if mode == "warm-up":
                self._drop_graph_of_shape(self.key(X, y))
                self._warmed.add(self.key(X, y))
            with self._stream():      # a warm-up also runs the static output's copy
                loss, logits = self._body(X, y, self._stats_buffer(X) if mode == "warm-up"
                                          and self.graphs is not None else None)
            if self.captured is not None:
                self.graphs.release_cached()
            return StepResult(self, mode, loss, logits, y)
        if mode == "capture":
            try:
                self._capture(X, y)
            except Exception as exc:      # noqa: BLE001 - any failure: run eagerly from now
                return self._give_up(exc, X, y)
        else:
            c = self.captured
            with self._stream():          # the batch into the graph's static inputs
                c.x[...] = X.array
                c.y[...] = y.array
        c = self.captured
        self.graphs.launch(c.graph)
        return StepResult(self, mode, stats=c.stats, N=c.N, K=c.K)

    def _give_up(self, exc, X, y) -> StepResult:
        """A capture failed: warn, and run this step and every later one eagerly."""
        self.graphs.synchronize()
        self.captured, self.graphs = None, None
        self.why_eager = f"capturing failed ({type(exc).__name__}: {exc})"
        warnings.warn(f"tinyalex: the training step could not be captured as a CUDA graph "
                      f"({type(exc).__name__}: {exc}); it runs eagerly from now on",
                      RuntimeWarning, stacklevel=3)
        self.counts["capture"] -= 1
        self.counts["eager"] += 1
        loss, logits = self._body(X, y)
        return StepResult(self, "eager", loss, logits, y)

    def _drop_graph_of_shape(self, key) -> None:
        if self.captured is not None and key[:4] == self.captured.key[:4]:
            self.captured = None          # its settings changed: captured again

    def _capture(self, X, y) -> None:
        """Static inputs holding this batch, then the step recorded (not run) into a
        graph whose buffers come from a pool of its own; the caller launches it."""
        key = self.key(X, y)
        xp = B.get_array_module(X.array)
        with self._stream():
            x_static, y_static = xp.empty_like(X.array), xp.empty_like(y.array)
            x_static[...] = X.array
            y_static[...] = y.array
            stats = self._stats_buffer(X)
        tx, ty = Tensor(x_static), Tensor(y_static)
        pool = self.graphs.new_pool()
        shape = {}

        def body():
            loss, logits = self._body(tx, ty, stats)
            shape["N"], shape["K"] = logits.shape
            return loss

        graph, _ = self.graphs.capture(pool, body)
        self.captured = CapturedStep(key, graph, pool, x_static, y_static, stats,
                                     shape["N"], shape["K"])
        self.graphs.release_cached()

    # -- the rest ----------------------------------------------------------------------
    def synchronize(self) -> None:
        """Wait for every step queued so far."""
        if self.graphs is not None:
            self.graphs.synchronize()
        else:
            B.synchronize(self.backend)

    def graph_memory_bytes(self) -> int:
        """Device memory held by the captured graph's own pool (0 without a graph)."""
        if self.captured is None or self.graphs is None:
            return 0
        return self.graphs.pool_bytes(self.captured.pool)

