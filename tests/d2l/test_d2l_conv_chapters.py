"""The four sections that teach convolution (conv-layer, padding-and-strides, channels,
pooling) run as the book writes them, and print what PyTorch prints.

Each script of examples/d2l/ (the book's PyTorch listings, imports changed) runs twice:

* on tinyalex, as a user runs it: ``python examples/d2l/<name>.py`` in a subprocess;
* on real PyTorch: the same file with its imports changed back (``import torch``,
  ``from torch import nn``) and ``import d2l_torch_standin as d2l`` for the few d2l names
  the sections call (tests/helpers/d2l_torch_standin.py), all in one subprocess, which saves
  PyTorch's import time per script.

Then every line the tinyalex run prints must be the line PyTorch prints, in order, with
these allowed differences and no others:

* numbers printed with decimals (``0.9687``, ``4.082``) may differ by one unit in their
  last printed digit (float32 rounding of sums taken in another order can carry a value
  across a rounding edge); integers and integral floats (``8``, ``25.``) must be equal;
  the text around the numbers, spacing included, must be the same. Shapes print as
  ``torch.Size([8, 8])`` in both (tinyalex.Size prints PyTorch's name, as the book
  shows it).

The one random cell, learning the kernel [1, -1] in conv-layer, starts from a random
kernel, so its five loss lines and the learned kernel differ from run to run. It is
checked twice: unchanged, by its structure and by what the book says it shows (the loss
falls every two epochs and the kernel comes out near [1, -1], bounds that hold for any
start the default initialisation can draw); and from one fixed start, set by a line the
test inserts in a copy of the script in both runs, line for line against PyTorch.
channels' last cell is random too but prints nothing: its assert runs in both.

The last tests run the opening of docs/convolution.md (corr2d, im2col + GEMM and each
convolution algorithm on the book's 3x3 example) as doctests: its outputs are quoted
from the code, not typed.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from helpers.checks import require_torch
from helpers.torch_side import TORCH_DRIVER
from helpers.reliability import ROOT, child_env

require_torch()

EXAMPLES = ROOT / "examples" / "d2l"
SCRIPTS = ["conv_layer_ch6", "conv_layer_v1", "padding_strides_ch6", "padding_strides_v1",
           "channels", "pooling"]
TO_TORCH = {"import tinyalex as torch": "import torch",
            "from tinyalex import nn": "from torch import nn",
            "from tinyalex import d2l": "import d2l_torch_standin as d2l"}
# A fixed start for the learning cell: materialise the (lazy) layer, then set its kernel.
START = "Y = Y.reshape((1, 1, 6, 7))\n"
FIXED_START = START + "conv2d(X)\nconv2d.weight.data[:] = d2l.tensor([[[[0.25, 0.5]]]])\n"
LEARNING = [r"epoch (2|4|6|8|10), loss (\d+\.\d{3})"] * 5 + [
    r"tensor\(\[\[ ?(-?\d\.\d{4}), ?(-?\d\.\d{4})\]\]\)"]



def variants(folder):
    """{name: script path}: the six scripts, and the two conv-layer scripts with the
    fixed start inserted (named ``<script>_fixed``), copied into ``folder``."""
    paths = {}
    for name in SCRIPTS:
        paths[name] = EXAMPLES / f"{name}.py"
        if name.startswith("conv_layer"):
            source = paths[name].read_text()
            assert source.count(START) == 1, f"{name}.py should hold {START!r} once"
            paths[f"{name}_fixed"] = folder / f"{name}_fixed.py"
            paths[f"{name}_fixed"].write_text(source.replace(START, FIXED_START))
    return paths


def torch_copy(path, folder):
    """The script with the three imports changed back to PyTorch and d2l's stand-in."""
    source = path.read_text()
    for ours, theirs in TO_TORCH.items():
        source = re.sub(rf"^{re.escape(ours)}$", theirs, source, flags=re.M)
    assert not re.search(r"^(import|from) .*tinyalex", source, flags=re.M), path
    copy = folder / f"torch_{path.name}"
    copy.write_text(source)
    return copy


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{name: (tinyalex's run, PyTorch's lines)} for every script and variant; a run is
    its lines, or the error it stopped with (checked by the test that reads it)."""
    folder = tmp_path_factory.mktemp("conv_chapters")
    paths = variants(folder)
    ours = {}
    for name, path in paths.items():
        out = subprocess.run([sys.executable, str(path)], cwd=folder, env=child_env(),
                             capture_output=True, text=True, timeout=120)
        ours[name] = (out.stdout.splitlines() if out.returncode == 0 else
                      RuntimeError(f"{name}.py stopped on tinyalex after printing "
                                   f"{out.stdout!r}:\n{out.stderr[-3000:]}"))
    copies = {name: torch_copy(path, folder) for name, path in paths.items()}
    env = dict(child_env(), PYTHONPATH=os.pathsep.join(
        [str(ROOT / "tests" / "helpers")] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    out = subprocess.run([sys.executable, "-c", TORCH_DRIVER, *map(str, copies.values())],
                         cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"PyTorch side:\n{out.stderr[-3000:]}"
    printed = json.loads(out.stdout)
    return {name: (ours[name], printed[str(copies[name])].splitlines()) for name in paths}


def both(runs, name):
    """The lines tinyalex and PyTorch printed; a tinyalex run that stopped fails here."""
    ours, theirs = runs[name]
    if isinstance(ours, Exception):
        pytest.fail(str(ours), pytrace=False)
    return ours, theirs


NUMBER = re.compile(r"-?\d+\.\d*(?:e[+-]\d+)?|-?\d+")


def decimals(number):
    return len(number.split("e")[0].split(".")[1]) if "." in number else 0


def same_line(ours, theirs):
    """Whether tinyalex's line says what PyTorch's says: the same text around the
    numbers, each number within one unit of its last printed digit."""
    if ours == theirs:
        return True
    if NUMBER.split(ours) != NUMBER.split(theirs):
        return False
    for a, b in zip(NUMBER.findall(ours), NUMBER.findall(theirs)):
        places = max(decimals(a), decimals(b))
        if a != b and (places == 0 or abs(float(a) - float(b)) > 1.0001 * 10.0 ** -places):
            return False
    return True


def assert_same_lines(ours, theirs, name):
    assert len(ours) == len(theirs), (
        f"{name}: tinyalex printed {len(ours)} lines, PyTorch {len(theirs)}:\n"
        + "\n".join(ours) + "\n---\n" + "\n".join(theirs))
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert same_line(a, b), f"{name}, line {k + 1}:\n  tinyalex: {a!r}\n  PyTorch:  {b!r}"


def test_line_comparison_is_strict():
    """The comparison the tests below rely on lets through what it says and no more."""
    assert same_line("tensor([[ 0.9687, -1.0157]])", "tensor([[ 0.9687, -1.0158]])")
    assert same_line("epoch 2, loss 4.082", "epoch 2, loss 4.083")
    assert not same_line("epoch 2, loss 4.082", "epoch 2, loss 4.084")
    assert not same_line("tensor([[19., 25.]])", "tensor([[19., 26.]])")
    assert not same_line("tensor([[19., 25.]])", "tensor([[19.,  25.]])")
    assert not same_line("array([[19., 25.]])", "tensor([[19., 25.]])")
    assert not same_line("(8, 8)", "torch.Size([8, 8])")
    assert not same_line("tinyalex.Size([8, 8])", "torch.Size([8, 8])")
    assert not same_line("tensor([[19., 25.]], requires_grad=True)", "tensor([[19., 25.]])")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_deterministic_cell_prints_what_pytorch_prints(runs, name):
    ours, theirs = both(runs, name)
    if name.startswith("conv_layer"):          # the learning cell: the tests below
        ours, theirs = ours[:-6], theirs[:-6]
    assert_same_lines(ours, theirs, name)


def worst_start():
    """The largest loss after 10 steps and the largest distance of the learned kernel
    from [1, -1], over every start U(-1/sqrt(2), 1/sqrt(2))^2 can draw (PyTorch's
    default initialisation of a 1x2 kernel, and tinyalex's). Y is X cross-correlated
    with [1, -1] exactly, so the loss is e^T A e in the error e = w - [1, -1], with A
    the Gram matrix of the image's left and right window pixels; one step of lr is
    e <- (I - 2 lr A) e. Both are convex in the start, so the worst is at a corner of
    the box; and the step's eigenvalues lie in (-1, 1) (they are -0.8 and 0.64), so
    every step shrinks each eigen-component of e and every printed loss is at most
    the one before."""
    X = np.ones((6, 8))
    X[:, 2:6] = 0
    left, right = X[:, :-1].ravel(), X[:, 1:].ravel()          # the taps of the (1, 2) kernel
    A = np.array([[left @ left, left @ right], [right @ left, right @ right]])
    step = np.eye(2) - 2 * 3e-2 * A
    assert np.abs(np.linalg.eigvalsh(step)).max() < 1
    worst_loss = worst_w = 0.0
    for corner in itertools.product((-1 / np.sqrt(2), 1 / np.sqrt(2)), repeat=2):
        e = np.array(corner) - [1.0, -1.0]
        for _ in range(9):
            e = step @ e
        worst_loss = max(worst_loss, e @ A @ e)             # the loss printed at epoch 10
        worst_w = max(worst_w, np.abs(step @ e).max())      # the kernel after the update
    return worst_loss, worst_w


@pytest.mark.parametrize("name", ["conv_layer_ch6", "conv_layer_v1"])
def test_learning_the_edge_kernel_converges_as_in_the_book(runs, name):
    """From the script's own random start: the loss falls every two epochs and ends no
    higher, the kernel no farther from [1, -1], than the worst start allows."""
    worst_loss, worst_w = worst_start()
    assert worst_loss < 0.55 and worst_w < 0.09         # what the bounds below rest on
    for side, lines in zip(("tinyalex", "PyTorch"), both(runs, name)):
        found = [re.fullmatch(p, line) for p, line in zip(LEARNING, lines[-6:])]
        assert all(found), f"{side}: {lines[-6:]}"
        assert [int(m[1]) for m in found[:5]] == [2, 4, 6, 8, 10], side
        losses = [float(m[2]) for m in found[:5]]
        assert losses == sorted(losses, reverse=True) and losses[0] > losses[-1], (side, losses)
        assert losses[-1] <= 0.55, (side, losses)
        w = [float(found[5][1]), float(found[5][2])]
        assert abs(w[0] - 1) <= 0.09 and abs(w[1] + 1) <= 0.09, (side, w)


@pytest.mark.parametrize("name", ["conv_layer_ch6", "conv_layer_v1"])
def test_learning_the_edge_kernel_from_one_start_matches_pytorch(runs, name):
    ours, theirs = both(runs, f"{name}_fixed")
    assert_same_lines(ours, theirs, f"{name}_fixed")


# -- docs/convolution.md's opening: corr2d, im2col + GEMM, the algorithms -----------------

DOC = ROOT / "docs" / "convolution.md"


def doc_opening():
    """The page up to the training-step tour: the part that starts where the book does."""
    text = DOC.read_text()
    return text[:text.index("## The loop")]


def test_doc_quotes_the_loops_that_run():
    """The loops the page shows are d2l.corr2d's own lines (tinyalex/d2l/convolution.py)."""
    from tinyalex import d2l
    quoted = re.search(r"```python\n(    Y = zeros.*?)```", doc_opening(), re.S)
    assert quoted, "the page should quote corr2d's loops"
    source = (ROOT / "tinyalex" / "d2l" / "convolution.py").read_text()
    assert quoted[1] in source
    assert d2l.corr2d.__module__ == "tinyalex.d2l.convolution"


def test_doc_examples_print_what_the_page_says():
    """Every ``>>>`` example of the opening runs, in order, and prints exactly the
    output the page shows under it (doctest, no option that loosens the match)."""
    import doctest
    blocks = [b for b in re.findall(r"```python\n(.*?)```", doc_opening(), re.S) if ">>>" in b]
    test = doctest.DocTestParser().get_doctest("\n".join(blocks), {}, "docs/convolution.md",
                                               str(DOC), 0)
    assert len(test.examples) >= 20
    report = []
    runner = doctest.DocTestRunner(optionflags=0)
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


# -- d2l.corr2d itself ---------------------------------------------------------------------

def test_corr2d_values_and_gradients_match_pytorch():
    """d2l.corr2d on a random 5x6 image and 2x3 kernel: the values of PyTorch's conv2d
    and, through the loops' item assignments, the gradients PyTorch's corr2d gives X and
    K (the conv-layer section's Conv2D layer trains its weight this way)."""
    import tinyalex
    from tinyalex import d2l
    from helpers import d2l_torch_standin as torch_d2l
    torch = require_torch()
    rng = np.random.default_rng(0)
    X, K, gY = (rng.standard_normal(s).astype(np.float32) for s in ((5, 6), (2, 3), (4, 4)))
    ours_X, ours_K = (tinyalex.tensor(a, requires_grad=True) for a in (X, K))
    ours = d2l.corr2d(ours_X, ours_K)
    (ours * tinyalex.tensor(gY)).sum().backward()
    ref_X, ref_K = (torch.tensor(a, requires_grad=True) for a in (X, K))
    ref = torch_d2l.corr2d(ref_X, ref_K)
    (ref * torch.tensor(gY)).sum().backward()
    conv = torch.nn.functional.conv2d(ref_X[None, None], ref_K[None, None])[0, 0]
    np.testing.assert_allclose(ours.detach().numpy(), conv.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(ours_X.grad.numpy(), ref_X.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours_K.grad.numpy(), ref_K.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert ours.dtype == np.float32 and ours.shape == (4, 4)


@pytest.mark.parametrize("X_shape, K_shape, message", [
    ((2, 3, 3), (2, 2), r"X must be a 2-D tensor .* got shape \(2, 3, 3\)"),
    ((3, 3), (1, 2, 2), r"K must be a 2-D tensor .* got shape \(1, 2, 2\)"),
    ((3, 3), (4, 2), r"kernel K \(4, 2\) is larger than the image X \(3, 3\)")])
def test_corr2d_says_what_is_wrong(X_shape, K_shape, message):
    import tinyalex
    from tinyalex import d2l
    with pytest.raises(ValueError, match=message):
        d2l.corr2d(tinyalex.ones(X_shape), tinyalex.ones(K_shape))
    with pytest.raises(ValueError, match=r"X must be a 2-D tensor .* got list"):
        d2l.corr2d([[1.0]], tinyalex.ones((1, 1)))


def test_the_d2l_names_the_sections_call_are_pytorchs():
    """Each d2l alias the scripts call gives what d2l's own alias gives on PyTorch: the
    same values, shape and dtype (normal: shape and dtype, its numbers are random)."""
    import tinyalex
    from tinyalex import d2l
    from helpers import d2l_torch_standin as torch_d2l
    torch = require_torch()
    A = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    B = np.arange(8, dtype=np.float32).reshape(4, 2)
    calls = {"zeros": lambda m, t: m.zeros((2, 3)), "ones": lambda m, t: m.ones((2, 3)),
             "tensor": lambda m, t: m.tensor([[0.0, 1.0], [2.0, 3.0]]),
             "arange": lambda m, t: m.arange(16, dtype=m.float32),
             "reshape": lambda m, t: m.reshape(t(A), (2, 6)),
             "transpose": lambda m, t: m.transpose(t(A)),
             "reduce_sum": lambda m, t: m.reduce_sum(t(A)),
             "abs": lambda m, t: m.abs(t(A)),
             "matmul": lambda m, t: m.matmul(t(A), t(B)),
             "stack": lambda m, t: m.stack((t(A), t(A) + 1, t(A) + 2), 0),
             "concat": lambda m, t: m.concat((t(A), t(A) + 1), 1),
             "normal": lambda m, t: m.normal(0, 1, (3, 3, 3))}
    for name, call in calls.items():
        ours = call(d2l, tinyalex.tensor)
        ref = call(torch_d2l, torch.tensor)
        assert (tuple(ours.shape), str(ours.dtype)) == (tuple(ref.shape),
                                                        str(ref.dtype).split(".")[1]), name
        if name != "normal":
            np.testing.assert_array_equal(ours.numpy(), ref.numpy(), err_msg=name)


def test_every_alias_of_d2ls_lists_is_there():
    """The names the three editions' d2l/torch.py bind to PyTorch at their end (1.0's
    list holds 0.17's and d2l-zh's)."""
    from tinyalex import d2l
    names = ("ones_like ones zeros_like zeros tensor arange meshgrid sin sinh cos cosh tanh "
             "linspace exp log normal rand randn matmul int32 int64 float32 concat stack abs "
             "eye sigmoid batch_matmul numpy size reshape to reduce_sum argmax astype "
             "transpose reduce_mean expand_dims swapaxes repeat").split()
    assert [n for n in names if not hasattr(d2l, n)] == []
