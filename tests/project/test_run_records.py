"""The README's "Measured results" and "A quick tour" quote stored run records, not
memory: each record under benchmarks/results/main/ and benchmarks/results/quick/ holds
what its README says, and every figure the README's table, evaluate.py lines and quick
tour give is read back here from the record's own files (metrics.json,
comparison.json, evaluate_*.txt, stdout.txt, machine.txt). The quick tour's record is
also held to the tour as it is now: its recipes are examples/main.py's ``--quick``
ones. (LeNet's part of the tour, d2l's full recipe, is trained in the suite by
tests/d2l/test_d2l_recipe.py, which checks the same final line.)"""

from __future__ import annotations

import json
import re

import pytest

from helpers.reliability import ROOT

RECORDS = ROOT / "benchmarks" / "results" / "main"
QUICK_RECORDS = ROOT / "benchmarks" / "results" / "quick"
README = (ROOT / "README.md").read_text()
FILES = ["lenet/metrics.json", "alexnet/metrics.json", "comparison.json", "machine.txt",
         "stdout.txt", "evaluate_lenet.txt", "evaluate_alexnet.txt"]


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:] if end < 0 else README[start:end]


def measured_results() -> str:
    return section("Measured results")


def quoted_record():
    """The one record folder the README's Measured results section links to."""
    names = set(re.findall(r"benchmarks/results/main/([^/`)\s]+)/", measured_results()))
    assert len(names) == 1, f"Measured results should quote one record, found {names}"
    return RECORDS / names.pop()


def table_row(label: str) -> list[str]:
    rows = [line for line in measured_results().splitlines()
            if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"one table row should start with {label!r}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_every_record_holds_what_its_readme_lists():
    folders = [p for p in RECORDS.iterdir() if p.is_dir()]
    quick = [p for p in QUICK_RECORDS.iterdir() if p.is_dir()]
    assert folders and quick, "no run record stored"
    for folder in folders + quick:
        for name in FILES if folder in folders else FILES[:5]:
            assert (folder / name).is_file(), f"{folder.name} lacks {name}"
        machine = (folder / "machine.txt").read_text()
        for needed in ("commit:", "wall time:", "peak RSS:", "Model name:", "avx512f:",
                       "OPENBLAS_", "threadpoolctl", "Maximum resident set size"):
            assert needed in machine, f"{folder.name}/machine.txt lacks {needed!r}"
        for model in ("lenet", "alexnet"):
            metrics = json.loads((folder / model / "metrics.json").read_text())
            assert metrics["status"] == "complete"
            assert metrics["recipe"]["model"] == model


@pytest.mark.parametrize("model, label", [("lenet", "LeNet, d2l's full recipe"),
                                          ("alexnet", "AlexNet, CPU subset")])
def test_table_rows_are_the_records_last_epoch(model, label):
    record = quoted_record()
    metrics = json.loads((record / model / "metrics.json").read_text())
    summary = json.loads((record / "comparison.json").read_text())["results"][model]
    last = metrics["epochs"][-1]
    row = table_row(label)
    recipe = metrics["recipe"]
    assert row[1].startswith(f"batch {recipe['batch_size']}, lr {recipe['lr']}, "
                             f"{recipe['epochs']} epochs, {recipe['resize']}x")
    assert len(metrics["epochs"]) == recipe["epochs"]
    assert [row[3], row[4], row[5].strip("*")] == [
        f"{last['loss']:.3f}", f"{last['train_acc']:.3f}", f"{last['test_acc']:.3f}"]
    quoted_rate = float(row[6].split()[0].replace(",", ""))
    assert quoted_rate == round(summary["examples_per_sec"], 1 if quoted_rate < 1000 else 0)
    assert float(row[7].split()[0]) == round(summary["train_seconds_per_epoch"],
                                             1 if model == "lenet" else 0)


def test_evaluate_and_wall_time_figures_come_from_the_record():
    record = quoted_record()
    text = measured_results()
    for model in ("lenet", "alexnet"):
        out = (record / f"evaluate_{model}.txt").read_text()
        acc = re.search(r"^test acc (0\.\d{4})$", out, re.M).group(1)
        assert acc in text, f"evaluate.py's {model} accuracy {acc} not quoted"
    alexnet_epochs = json.loads((record / "alexnet" / "metrics.json").read_text())["epochs"]
    by_epoch = ", ".join(f"{e['test_acc']:.3f}" for e in alexnet_epochs)
    assert f"accuracy by epoch: {by_epoch}." in " ".join(text.split())
    machine = (record / "machine.txt").read_text()
    h_m_s = re.search(r"^wall time:\s+(\d+):(\d+)\.\d+", machine, re.M)
    minutes = int(h_m_s.group(1)) + int(h_m_s.group(2)) / 60
    assert f"Total wall time {minutes:.1f} minutes" in " ".join(text.split())
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", machine).group(1))
    assert f"peak resident memory {rss_kb / 1e6:.2f} GB" in " ".join(text.split())
    commit = re.search(r"^commit:\s+([0-9a-f]{40})", machine, re.M).group(1)
    assert f"commit {commit[:7]}" in " ".join(text.split())


# ------------------------------------------------------------------------ the quick tour

def quick_record():
    """The one quick-tour record the README's "A quick tour" links to."""
    names = set(re.findall(r"benchmarks/results/quick/([^/`)\s]+)/", section("A quick tour")))
    assert len(names) == 1, f"A quick tour should quote one record, found {names}"
    return QUICK_RECORDS / names.pop()


def test_the_quick_tour_record_is_of_the_tour_as_it_is_now():
    """The record was made with the recipes ``main.py --quick`` trains today: a change
    of the preset needs a new record (and new figures in the README)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("main_script", ROOT / "examples" / "main.py")
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    from tinyalex.recipes import D2L_RECIPES
    record = quick_record()
    assert "command:    python3 examples/main.py --quick" in (record / "machine.txt").read_text()
    for model in ("lenet", "alexnet"):
        metrics = json.loads((record / model / "metrics.json").read_text())
        assert metrics["recipe"] == dict(D2L_RECIPES[model], **main.QUICK[model]), model
        assert metrics["status"] == "complete" and metrics["backend"] == "numpy"


def test_the_quick_tours_figures_come_from_its_record():
    record = quick_record()
    tour = " ".join(section("A quick tour").split())
    printed = (record / "stdout.txt").read_text().splitlines()
    block = re.search(r"```\n(epoch .*?)```", section("A quick tour"), re.S).group(1)
    for line in block.splitlines():            # each shown line begins a printed one
        shown = line.split(", ...")[0]
        assert any(p.startswith(shown + ",") for p in printed), shown
    wall = re.search(r"^wall time:\s+(\d+:\d\d)\.\d+", (record / "machine.txt").read_text(),
                     re.M).group(1)
    assert f"it took {wall} and printed" in tour
    alexnet = json.loads((record / "alexnet" / "metrics.json").read_text())["epochs"]
    lenet = json.loads((record / "lenet" / "metrics.json").read_text())["epochs"]
    # what "visibly learns" means here: well above chance (0.1) for both networks
    assert lenet[-1]["test_acc"] > 0.8 and alexnet[-1]["test_acc"] > 0.5
    assert alexnet[-1]["test_acc"] > alexnet[0]["test_acc"]
    row = table_row("AlexNet, quick tour")
    summary = json.loads((record / "comparison.json").read_text())["results"]["alexnet"]
    last = alexnet[-1]
    assert [row[3], row[4], row[5].strip("*")] == [
        f"{last['loss']:.3f}", f"{last['train_acc']:.3f}", f"{last['test_acc']:.3f}"]
    assert float(row[6]) == round(summary["examples_per_sec"], 1)
    assert float(row[7]) == round(summary["train_seconds_per_epoch"])
    commit = re.search(r"^commit:\s+([0-9a-f]{40})", (record / "machine.txt").read_text(),
                       re.M).group(1)
    assert f"commit {commit[:7]}" in " ".join(measured_results().split())
