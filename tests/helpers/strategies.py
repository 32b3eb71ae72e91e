"""Hypothesis strategies the test files share: the geometry of a sliding window.

Every convolution or pooling test draws its shapes here, each file with the bounds
that suit its cost (a float64 finite-difference check wants small images, a CUDA
simulator run tiny ones).
"""

from hypothesis import strategies as st


@st.composite
def window_geometry(draw, pool=False, kernel=4, pad=2, stride=3, extra=5):
    """(H, W, KH, KW, SH, SW, PH, PW) with at least one window in the padded input.

    Kernel sides 1..kernel, strides 1..stride, padding 0..pad (for pooling at most half
    the kernel, PyTorch's rule), and input sides from the smallest that holds one
    window up to ``extra`` more."""
    KH, KW = draw(st.integers(1, kernel)), draw(st.integers(1, kernel))
    if pool:
        PH, PW = draw(st.integers(0, min(pad, KH // 2))), draw(st.integers(0, min(pad, KW // 2)))
    else:
        PH, PW = draw(st.integers(0, pad)), draw(st.integers(0, pad))
    SH, SW = draw(st.integers(1, stride)), draw(st.integers(1, stride))
    H = draw(st.integers(max(1, KH - 2 * PH), max(1, KH - 2 * PH) + extra))
    W = draw(st.integers(max(1, KW - 2 * PW), max(1, KW - 2 * PW) + extra))
    return H, W, KH, KW, SH, SW, PH, PW


@st.composite
def batch_geometry(draw, pool=False, batch=3, channels=4, **window):
    """(N, C, H, W, KH, KW, SH, SW, PH, PW): ``window_geometry`` with a batch of
    1..batch images of 1..channels channels."""
    H, W, KH, KW, SH, SW, PH, PW = draw(window_geometry(pool=pool, **window))
    N, C = draw(st.integers(1, batch)), draw(st.integers(1, channels))
    return N, C, H, W, KH, KW, SH, SW, PH, PW
