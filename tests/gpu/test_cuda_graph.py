"""``tinyalex/cuda_graph.py``'s TrainStep: which calls warm up, capture, replay or run
eagerly, the static input and output buffers, a graph per shape and settings, giving
up on a failed capture, and the switch.

On the CPU the GPU path is emulated (``emulated_cupy``: the GPU algorithms on NumPy
arrays) and CuPy's graph API is a stand-in (``FakeGraphs``) whose capture runs the
step's Python once, as the real capture does, but also its work (there is no device to
record it), and whose launches run the step again, except the launch right after the
capture (that capture's run stands for it). So a replay here reads the static input
buffers the way the recorded kernels would, and a step that skipped a copy into them
or read its outputs from elsewhere would differ from eager steps; what the stand-in
cannot show is that the GPU really records and replays (the last two tests, on a GPU).
"""

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

import tinyalex
from tinyalex import backend as B, cuda_graph, nn
from tinyalex.optim import SGD
from helpers.checks import on_gpu
from helpers.gpu_emulation import CAPTURE, CaptureError


class FakeGraph:
    def __init__(self, body):
        self.body, self.ran_at_capture = body, True


class FakeGraphs:
    """CupyGraphs' methods, recorded (see the module docstring)."""

    def __init__(self, fail=None):
        self.events, self.pools, self.fail = [], [], fail

    def after_caller(self):
        self.events.append("wait")

    def on_stream(self):
        return contextlib.nullcontext()

    def new_pool(self):
        self.pools.append(object())
        return self.pools[-1]

    def capture(self, pool, body):
        assert pool is self.pools[-1]
        self.events.append("capture")
        if self.fail:
            raise self.fail
        with CAPTURE.recording():     # copies to or from the host, CuPy's cuBLAS: refused
            return FakeGraph(body), body()

    def launch(self, graph):
        self.events.append("launch")
        if graph.ran_at_capture:
            graph.ran_at_capture = False
        else:
            graph.body()

    def synchronize(self):
        self.events.append("sync")

    def release_cached(self):
        pass

    def pool_bytes(self, pool):
        return 123


def net_and_optimizer(momentum=0.9, dropout=0.0):
    tinyalex.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.ReLU(),
                        nn.Dropout(dropout), nn.Linear(8, 3)).double()
    flat = nn.FlatParameters(net.parameters())
    return net, SGD(net.parameters(), lr=0.1, momentum=momentum, weight_decay=1e-4, flat=flat)


def batches(sizes, seed=3):
    rng = np.random.default_rng(seed)
    return [(tinyalex.Tensor(rng.standard_normal((n, 1, 8, 8))),
             tinyalex.Tensor(rng.integers(0, 3, n).astype(np.int64))) for n in sizes]


def run(step, data):
    return [step(X, y) for X, y in data]


SIZES = [4, 4, 4, 3, 4, 4]          # a partial batch in the middle, as an epoch's end


def test_the_calls_warm_up_capture_replay_and_run_partial_batches_eagerly(emulated_cupy):
    net, opt = net_and_optimizer()
    graphs = FakeGraphs()
    step = cuda_graph.TrainStep(net, opt, graphs=graphs)
    data = batches(SIZES)
    assert step.mode_for(*data[0]) == "warm-up"
    results = run(step, data)
    assert [r.mode for r in results] == ["warm-up", "capture", "replay", "eager", "replay",
                                         "replay"]
    assert step.counts == {"eager": 1, "warm-up": 1, "capture": 1, "replay": 3}
    assert len(graphs.pools) == 1 and graphs.events.count("capture") == 1
    assert graphs.events.count("launch") == 4          # the capture's own step, 3 replays
    assert graphs.events.count("wait") == 6            # every call after the caller's work
    c = step.captured
    assert c.x.shape == (4, 1, 8, 8) and c.y.shape == (4,) and c.y.dtype == np.int64
    assert c.stats.shape == (4,) and (c.N, c.K) == (4, 3)
    assert step.graph_memory_bytes() == 123
    # a replayed or captured step's result is the static output: the next replay
    # rewrites it (read a result before the next call)
    assert results[1].read() == results[-1].read()


def test_im2col_mode_runs_every_step_eagerly(emulated_cupy):
    """Under TINYALEX_CONV=im2col the convolution is the reference (ops/im2col.py on
    CuPy and cupy.matmul, whose cuBLAS call capture refuses): no step is captured."""
    import tinyalex.kernels as kernels
    net, opt = net_and_optimizer()
    graphs = FakeGraphs()
    step = cuda_graph.TrainStep(net, opt, graphs=graphs)
    with kernels.use_conv("im2col"):
        assert [r.mode for r in run(step, batches(SIZES))] == ["eager"] * len(SIZES)
    assert "capture" not in graphs.events
    assert step.mode_for(*batches([4])[0]) == "warm-up"       # auto mode captures again


def test_graph_steps_equal_eager_steps(emulated_cupy):
    """The same six steps with a (stand-in) graph and without: the same losses, counts
    and weights, bit for bit (float64): replays read their batch from the static inputs
    and leave their results in the static output."""
    outcomes = []
    for graphs in (FakeGraphs(), False):
        net, opt = net_and_optimizer()
        step = cuda_graph.TrainStep(net, opt, graphs=graphs)
        reads = [step(X, y).read() for X, y in batches(SIZES)]    # each before the next
        outcomes.append((reads, [p.numpy() for p in net.parameters()]))
    (graph_reads, graph_params), (eager_reads, eager_params) = outcomes
    assert graph_reads == eager_reads
    for a, b in zip(graph_params, eager_params):
        np.testing.assert_array_equal(a, b)


def test_replayed_steps_draw_fresh_dropout_masks(emulated_cupy):
    """The device step counter advances in every step (a kernel at the step's start),
    so replays of the same batch give different losses; with graphs or without, the
    same ones."""
    losses = []
    for graphs in (FakeGraphs(), False):
        net, opt = net_and_optimizer(dropout=0.5)
        opt.lr = 1e-300                          # the same weights: only the masks differ
        step = cuda_graph.TrainStep(net, opt, graphs=graphs)
        X, y = batches([4])[0]
        losses.append([step(X, y).read()[0] for _ in range(4)])
    assert losses[0] == losses[1] and len(set(losses[0])) == 4


def test_a_new_host_generator_before_the_capture_or_a_replay_is_seeded_outside_it(
        emulated_cupy):
    """manual_seed between the warm-up and the capture, and again between replays:
    the new seed is uploaded before the capture (never inside it, where real capture
    fails on the copy) and before a replay into the same device memory, so the graph
    captures and its replays draw the masks eager steps draw."""
    outcomes = []
    for graphs in (FakeGraphs(), False):
        net, opt = net_and_optimizer(dropout=0.5)
        step = cuda_graph.TrainStep(net, opt, graphs=graphs)
        data = batches([4] * 5)
        reads = [step(*data[0]).read()]
        tinyalex.manual_seed(11)                 # a new generator: a new device seed
        reads += [step(*d).read() for d in data[1:3]]
        tinyalex.manual_seed(12)
        reads += [step(*d).read() for d in data[3:]]
        outcomes.append((step.counts, reads, [p.numpy() for p in net.parameters()]))
    (graph_counts, graph_reads, graph_params), (_, eager_reads, eager_params) = outcomes
    assert graph_counts == {"warm-up": 1, "capture": 1, "replay": 3, "eager": 0}
    assert graph_reads == eager_reads
    for a, b in zip(graph_params, eager_params):
        np.testing.assert_array_equal(a, b)


def test_the_capture_stand_in_refuses_what_real_capture_refuses(emulated_cupy):
    """Copies between host and device and CuPy's own cuBLAS calls raise in capture
    (tests/helpers/gpu_emulation.py); outside it they run."""
    xp, x = emulated_cupy.xp, tinyalex.Tensor(np.ones((2, 2)))
    refused = {"upload": lambda: xp.asarray(np.zeros(2)),
               "to_backend": lambda: B.to_backend(np.zeros(2), "cupy"),
               "read back": lambda: B.to_numpy(x.array), "item": lambda: x.sum().item(),
               "numpy": x.numpy, "float": lambda: float(x.sum()),
               "cupy.matmul": lambda: xp.matmul(x.array, x.array),
               "cupy.dot": lambda: xp.dot(x.array, x.array)}
    for name, call in refused.items():
        call()                                   # eager: fine
        with CAPTURE.recording(), pytest.raises(CaptureError, match="captures a CUDA graph"):
            call()
        assert not CAPTURE.active, name


def test_a_change_of_learning_rate_captures_again(emulated_cupy):
    net, opt = net_and_optimizer()
    graphs = FakeGraphs()
    step = cuda_graph.TrainStep(net, opt, graphs=graphs)
    data = batches([4] * 6)
    modes = [step(*data[i]).mode for i in range(3)]
    opt.lr = 0.05                                # baked into the graph's SGD kernel
    modes += [step(*data[i]).mode for i in range(3, 6)]
    assert modes == ["warm-up", "capture", "replay", "warm-up", "capture", "replay"]
    assert len(graphs.pools) == 2                # a pool of its own for the new graph


def test_a_failed_capture_warns_and_runs_eagerly_from_then_on(emulated_cupy):
    net, opt = net_and_optimizer()
    step = cuda_graph.TrainStep(net, opt, graphs=FakeGraphs(fail=RuntimeError("no capture")))
    data = batches([4, 4, 4])
    first = step(*data[0])
    with pytest.warns(RuntimeWarning, match="could not be captured.*no capture"):
        second = step(*data[1])
    third = step(*data[2])
    assert [r.mode for r in (first, second, third)] == ["warm-up", "eager", "eager"]
    assert step.graphs is None and "no capture" in step.why_eager
    assert all(np.isfinite(r.read()[0]) for r in (first, second, third))


def test_on_the_cpu_every_step_is_eager_with_train_ch6s_numbers():
    """The numpy backend: no graph, and the numbers of d2l's loop written out."""
    net, opt = net_and_optimizer()
    step = cuda_graph.TrainStep(net, opt)
    assert step.graphs is None and "numpy backend" in step.why_eager
    data = batches(SIZES)
    reads = [step(X, y).read() for X, y in data]
    net2, opt2 = net_and_optimizer()
    want = []
    for X, y in data:
        opt2.zero_grad()
        logits = net2(X)
        loss = nn.CrossEntropyLoss()(logits, y)
        loss.backward()
        opt2.step()
        want.append((float(loss.item()), int((logits.array.argmax(axis=1) == y.array).sum())))
    assert reads == want and step.counts["eager"] == len(SIZES)


def test_the_switch_is_read_at_import_and_refuses_other_values():
    code = "import tinyalex.cuda_graph as g; print(g.GRAPHS_BY_DEFAULT)"
    env = {k: v for k, v in os.environ.items() if k != "TINYALEX_CUDA_GRAPH"}
    for value, want in ((None, "True"), ("0", "False")):
        e = dict(env) if value is None else dict(env, TINYALEX_CUDA_GRAPH=value)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=e, check=True)
        assert out.stdout.strip() == want
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(env, TINYALEX_CUDA_GRAPH="sometimes"))
    assert bad.returncode != 0 and "TINYALEX_CUDA_GRAPH='sometimes'" in bad.stderr


# -- on a GPU ---------------------------------------------------------------------------------

def gpu_step(graphs, steps, model="lenet", batch=64, seed=0):
    """``steps`` d2l steps of a real network on the GPU; (reads, weights, TrainStep)."""
    tinyalex.manual_seed(seed)
    net = (tinyalex.models.lenet() if model == "lenet" else tinyalex.models.alexnet())
    net.apply(tinyalex.models.init_weights_xavier)
    net.to("cupy")
    flat = nn.FlatParameters(net.parameters())
    opt = SGD(net.parameters(), lr=0.1, momentum=0.9, flat=flat)
    step = cuda_graph.TrainStep(net, opt, graphs=graphs)
    side = 28 if model == "lenet" else 224
    rng = np.random.default_rng(seed + 1)
    reads = []
    for i in range(steps):
        n = batch if i != steps - 2 else batch // 2          # a partial batch near the end
        X = tinyalex.tensor(rng.random((n, 1, side, side), np.float32), backend="cupy")
        y = tinyalex.tensor(rng.integers(0, 10, n).astype(np.int64), backend="cupy")
        reads.append(step(X, y).read())
    return reads, [p.numpy() for p in net.parameters()], step


@on_gpu
def test_on_a_gpu_the_step_is_captured_and_replayed():
    reads, _, step = gpu_step(None, 6)
    assert step.graphs is not None, step.why_eager
    assert step.counts == {"warm-up": 1, "capture": 1, "replay": 3, "eager": 1}
    assert step.graph_memory_bytes() > 0
    assert all(np.isfinite(loss) for loss, _ in reads)


@on_gpu
def test_on_a_gpu_graph_and_eager_steps_give_equal_results():
    """LeNet and AlexNet (dropout's device masks included): graph replays and eager
    steps run the same kernels and GEMMs on the same data, so their losses, counts and
    weights agree (to TF32's rounding at most, cuBLAS choosing its algorithms alike)."""
    for model, batch in (("lenet", 64), ("alexnet", 8)):
        graph_reads, graph_params, step = gpu_step(None, 6, model, batch)
        assert step.counts["replay"] == 3, step.why_eager
        eager_reads, eager_params, _ = gpu_step(False, 6, model, batch)
        np.testing.assert_allclose([r[0] for r in graph_reads], [r[0] for r in eager_reads],
                                   rtol=1e-5)
        assert [r[1] for r in graph_reads] == [r[1] for r in eager_reads]
        for a, b in zip(graph_params, eager_params):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
