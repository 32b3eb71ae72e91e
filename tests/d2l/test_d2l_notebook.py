"""examples/d2l/alexnet.ipynb executed headless in a real Jupyter kernel (nbclient), on the
first 256 training and 128 test images and 1 epoch (the one line that says 10 epochs is
changed in memory): every cell runs, the shape table and the parameter counts are the
chapter's, and the training cell ends with d2l's lines and the Animator's figure, shown
through IPython's display as in the book."""

from __future__ import annotations

import re

import nbclient
import nbformat

from helpers.reliability import ROOT
from test_d2l_chapters import ALEXNET_SHAPES, LENET_SHAPES, shapes
from test_d2l_data import small_folder

NOTEBOOK = ROOT / "examples" / "d2l" / "alexnet.ipynb"


def text_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_alexnet_notebook_runs_headless(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(small_folder(tmp_path / "data", 256, 128)))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    epochs = [c for c in nb.cells if "lr, num_epochs = 0.01, 10" in c.source]
    assert len(epochs) == 1
    epochs[0].source = epochs[0].source.replace("0.01, 10", "0.01, 1")
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source.splitlines() == ["import tinyalex as torch", "from tinyalex import nn",
                                           "from tinyalex import d2l"]
    tables = [shapes(text_of(c).splitlines()) for c in code if "output shape:" in text_of(c)]
    assert tables == [ALEXNET_SHAPES, LENET_SHAPES]
    summary = next(text_of(c) for c in code if "torch.summary" in c.source)
    assert "46,764,746" in summary
    counts = next(text_of(c) for c in code if "parameters" in text_of(c))
    assert counts.splitlines() == ["LeNet 61706 parameters", "AlexNet 46764746 parameters"]
    train = code[-1]
    assert re.search(r"loss \d+\.\d{3}, train acc [01]\.\d{3}, test acc [01]\.\d{3}\n"
                     r"\d+\.\d examples/sec on (cpu|cuda:0)\n$", text_of(train))
    figures = [o for o in train.outputs if o.output_type == "display_data"]
    assert figures and {"image/svg+xml", "image/png"} & set(figures[-1].data)
    assert "no display in a plain script" not in text_of(train)      # no PNG file here
    assert not list(tmp_path.glob("*.png"))
