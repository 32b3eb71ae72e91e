"""One thread: 128 images of LeNet's second layer (6 x 14 x 14) into blocks of 32 images in
the lanes and back, per block, by the loop orders tried (i2l_cur: strided writes, the
loop before; i2l_swap: contiguous writes, the loop now; l2i_*: the way back)."""
import time, numpy as np
from numba import njit
V = 32
@njit(cache=False, nogil=True)
def i2l_cur(src, dst):
    n, M = src.shape
    tiles = M - M % V
    for i0 in range(0, tiles, V):
        for lane in range(n):
            s = src[lane, i0:]
            for i in range(V):
                dst[i0 + i, lane] = s[i]
    for i in range(tiles, M):
        for lane in range(n):
            dst[i, lane] = src[i, lane] if False else src[lane, i]
@njit(cache=False, nogil=True)
def i2l_swap(src, dst):
    n, M = src.shape
    for i in range(M):
        d = dst[i]
        for lane in range(n):
            d[lane] = src[lane, i]
@njit(cache=False, nogil=True)
def i2l_tile8(src, dst):
    # tiles of 8 x V: read 8 consecutive values of each lane, write 8 rows
    n, M = src.shape
    T = 8
    tiles = M - M % T
    for i0 in range(0, tiles, T):
        for lane in range(n):
            s = src[lane, i0:i0 + T]
            d0, d1, d2, d3, d4, d5, d6, d7 = s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
            dst[i0, lane] = d0; dst[i0 + 1, lane] = d1; dst[i0 + 2, lane] = d2; dst[i0 + 3, lane] = d3
            dst[i0 + 4, lane] = d4; dst[i0 + 5, lane] = d5; dst[i0 + 6, lane] = d6; dst[i0 + 7, lane] = d7
    for i in range(tiles, M):
        for lane in range(n):
            dst[i, lane] = src[lane, i]
@njit(cache=False)
def run(f, x, xb, reps):
    N, C, H, W = x.shape
    for r in range(reps):
        for block in range(xb.shape[0]):
            f(x[block * V:block * V + V].reshape(V, C * H * W), xb[block].reshape(C * H * W, V))
x = np.random.rand(128, 6, 14, 14).astype(np.float32)
xb = np.empty((4, 6, 14, 14, V), np.float32)
ref = None
for f in (i2l_cur, i2l_swap, i2l_tile8):
    run(f, x, xb, 1)
    if ref is None: ref = xb.copy()
    assert (xb == ref).all()
    reps = 200
    t = time.perf_counter(); run(f, x, xb, reps); dt = (time.perf_counter() - t) / reps
    print(f.__name__ if hasattr(f, '__name__') else f, "%.1f us" % (dt * 1e6))
@njit(cache=False, nogil=True)
def l2i_cur(src, dst):
    n, M = dst.shape
    tiles = M - M % V
    for i0 in range(0, tiles, V):
        for lane in range(n):
            d = dst[lane, i0:]
            for i in range(V):
                d[i] = src[i0 + i, lane]
    for i in range(tiles, M):
        for lane in range(n):
            dst[lane, i] = src[i, lane]
@njit(cache=False, nogil=True)
def l2i_swap(src, dst):
    n, M = dst.shape
    for i in range(M):
        s = src[i]
        for lane in range(n):
            dst[lane, i] = s[lane]
@njit(cache=False, nogil=True)
def l2i_rows(src, dst):
    n, M = dst.shape
    for lane in range(n):
        d = dst[lane]
        for i in range(M):
            d[i] = src[i, lane]
@njit(cache=False)
def run2(f, xb, x, reps):
    N, C, H, W = x.shape
    for r in range(reps):
        for block in range(xb.shape[0]):
            f(xb[block].reshape(C * H * W, V), x[block * V:block * V + V].reshape(V, C * H * W))
x2 = np.empty_like(x)
for f in (l2i_cur, l2i_swap, l2i_rows):
    run2(f, xb, x2, 1)
    assert (x2 == x).all()
    reps = 200
    t = time.perf_counter(); run2(f, xb, x2, reps); dt = (time.perf_counter() - t) / reps
    print(f.__name__, "%.1f us" % (dt * 1e6))
