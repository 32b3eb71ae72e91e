"""AlexNet against LeNet side by side, as d2l's AlexNet chapter contrasts them.

    python examples/train_lenet.py --out runs/lenet
    python examples/train_alexnet.py --out runs/alexnet
    python examples/compare.py runs/alexnet runs/lenet                # prints the table
    python examples/compare.py runs/alexnet runs/lenet --out runs/compare

Each argument is a training run's --out folder (or its metrics.json). For each run
the table gives the architecture, read off the network the recipe names (depth,
activations, pooling, dropout, channels, parameters, multiply-accumulates per image)
and what the run measured (time per epoch, examples/sec, accuracy).

Writes to --out (default runs/compare): comparison.md (the Markdown table) and
curves.png (loss and accuracy per epoch, and test accuracy against training time,
of every run).
"""

import argparse
import os
import sys

from tinyalex.recipes import build_model, title
from tinyalex.study.compare import (architecture, input_shape, load_run, markdown_table,
                                    run_facts)
from tinyalex.study.plots import plot_curves


def main(argv=None, print_fn=print) -> int:
    """Parse the flags and compare the runs; 0 done, 2 a bad flag, run or folder."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN", help="training run folders or "
                   "metrics.json files (AlexNet's and LeNet's)")
    p.add_argument("--out", default=os.path.join("runs", "compare"),
                   help="folder for comparison.md and curves.png (default runs/compare)")
    args = p.parse_args(argv)
    try:
        return compare(args, print_fn)
    except (ValueError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def compare(args, print_fn) -> int:
    """The table and the curves of ``args.runs``, written to ``args.out``."""
    columns, curves, paths = [], [], []
    for path in args.runs:
        run = load_run(path)
        paths.append(run["path"])
        model = run["recipe"]["model"]
        label = title(model)
        if any(h == label for h, _ in columns):             # two runs of one model
            label += f" ({os.path.basename(os.path.dirname(run['path'])) or path})"
        facts = dict(architecture(build_model(model), input_shape(run)), **run_facts(run))
        columns.append((label, facts))
        curves.append((label, run["epochs"]))

    table = markdown_table(columns)
    print_fn(table)
    os.makedirs(args.out, exist_ok=True)
    md = os.path.join(args.out, "comparison.md")
    with open(md, "w") as f:
        f.write("# " + " against ".join(h for h, _ in columns) + "\n\n" + table + "\n\n"
                "Architecture rows are read off the networks; the rest was measured by the "
                "runs: " + ", ".join(f"`{path}`" for path in paths) + ".\n")
    png = plot_curves(curves, os.path.join(args.out, "curves.png"))
    print_fn(f"wrote {md}\nwrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
