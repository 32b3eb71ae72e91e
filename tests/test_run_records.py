"""The README's "Measured results" quote stored run records, not memory: each record
under benchmarks/results/main/ holds what its README says, and every figure the
README's table and evaluate.py lines give is read back here from the record's own
files (metrics.json, comparison.json, evaluate_*.txt, machine.txt)."""

from __future__ import annotations

import json
import re

import pytest

from reliability_helpers import ROOT

RECORDS = ROOT / "benchmarks" / "results" / "main"
README = (ROOT / "README.md").read_text()
FILES = ["lenet/metrics.json", "alexnet/metrics.json", "comparison.json", "machine.txt",
         "stdout.txt", "evaluate_lenet.txt", "evaluate_alexnet.txt"]


def measured_results() -> str:
    start = README.index("## Measured results")
    return README[start:README.index("\n## ", start + 1)]


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
    assert folders, "no run record stored"
    for folder in folders:
        for name in FILES:
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
    assert f"commit {commit[:7]}" in text
