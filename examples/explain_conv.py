"""How a convolution becomes one matrix product, on a tiny input, forward and backward.

    python examples/explain_conv.py                  # prints both cases, PNGs to docs/img/
    python examples/explain_conv.py --out /tmp/img   # pictures elsewhere
    python examples/explain_conv.py --seed 3         # other small integers

Input 1x2x4x4 (N, C, H, W), two 2x3x3 filters (OC, C, KH, KW); first with stride 1
and padding 1, then stride 2 (the strided case). Every step is computed by the
engine's own im2col/col2im (tinyalex/study/conv_walk.py) and checked against conv2d
and autograd; the script exits with status 1 if any check fails (2 for a bad --seed or
an --out it cannot write into).

Writes im2col.png (padded input and the im2col matrix) and col2im_overlap.png
(how many windows cover each pixel: what col2im adds up).
"""

import argparse
import os
import sys

from tinyalex.study.conv_walk import format_walk, tiny_example
from tinyalex.study.plots import plot_im2col, plot_overlap

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "img")


def main(argv=None, print_fn=print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder for the PNGs "
                        "(default: docs/img)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the small integers")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative int, got {args.seed}")

    cases = [("Case 1: stride 1, padding 1", tiny_example(1, 1, seed=args.seed)),
             ("Case 2 (strided): stride 2, padding 1", tiny_example(2, 1, seed=args.seed))]
    for title, walk in cases:
        print_fn(format_walk(walk, title))
        print_fn()

    try:
        paths = [plot_im2col(cases[0][1], os.path.join(args.out, "im2col.png")),
                 plot_im2col(cases[1][1], os.path.join(args.out, "im2col_stride2.png")),
                 plot_overlap([("Case 1", cases[0][1]), ("Case 2 (strided)", cases[1][1])],
                              os.path.join(args.out, "col2im_overlap.png"))]
    except OSError as exc:
        print(f"error: --out {args.out}: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print_fn(f"wrote {os.path.normpath(p)}")
    ok = all(walk.ok() for _, walk in cases)
    print_fn("explain_conv: every matrix reproduces tinyalex's conv2d output and autograd's "
             "gradients." if ok else "explain_conv: MISMATCH against conv2d (see above).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
