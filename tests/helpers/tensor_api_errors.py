"""The torch tensor API's bad calls, one table for two tests: each case's call, the
exception PyTorch raises for it and the message tinyalex gives
(reliability/test_bad_args.py calls tinyalex; ops/test_torch_parity.py calls torch
itself and checks the type). ``t`` is the library: tinyalex there, torch here."""


def _set(x, index, value):
    x[index] = value


TENSOR_API_ERRORS = {
    "cat sizes": (lambda t: t.cat([t.zeros(2, 3), t.zeros(2, 4)]), RuntimeError,
                  r"Expected size 3 but got size 4 for tensor number 1.*\(2, 3\) and \(2, 4\)"),
    "cat ndim": (lambda t: t.cat([t.zeros(2, 3), t.zeros(2)]), RuntimeError,
                 r"same number of dimensions: got 2 \(shape \(2, 3\).*1 \(shape \(2,\)"),
    "cat empty": (lambda t: t.cat([]), ValueError, r"non-empty list"),
    "cat dim": (lambda t: t.cat([t.zeros(2, 3), t.zeros(2, 3)], dim=2), IndexError,
                r"range of \[-2, 1\], but got 2\) for a tensor of shape \(2, 3\)"),
    "stack sizes": (lambda t: t.stack([t.zeros(2, 3), t.zeros(2, 4)]), RuntimeError,
                    r"equal size, but got \[2, 3\] at entry 0 and \[2, 4\] at entry 1"),
    "stack dim": (lambda t: t.stack([t.zeros(2, 3)], dim=3), IndexError,
                  r"range of \[-3, 2\], but got 3\)"),
    "sum dim": (lambda t: t.zeros(2, 3).sum(dim=2), IndexError, r"but got 2\) for a tensor of shape"),
    "max dim": (lambda t: t.zeros(2, 3).max(dim=-3), IndexError, r"\[-2, 1\], but got -3"),
    "argmax dim": (lambda t: t.zeros(2, 3).argmax(dim=5), IndexError, r"but got 5"),
    "softmax dim": (lambda t: t.zeros(2, 3).softmax(dim=2), IndexError, r"but got 2"),
    "std dim": (lambda t: t.zeros(2, 3).std(dim=4), IndexError, r"but got 4"),
    "prod dim": (lambda t: t.zeros(2).prod(dim=3), IndexError, r"\[-1, 0\], but got 3"),
    "dims twice": (lambda t: t.zeros(3).sum(dim=(0, 0)), RuntimeError,
                   r"dim 0 appears multiple times"),
    "max of empty": (lambda t: t.zeros(0).max(), RuntimeError, r"numel\(\) == 0 \(shape \(0,\)\)"),
    "transpose dim": (lambda t: t.zeros(2, 3).transpose(0, 2), IndexError, r"but got 2"),
    "permute length": (lambda t: t.zeros(2, 3).permute(0), RuntimeError,
                       r"2 dimensions \(shape \(2, 3\)\) but dims \(0,\) has 1"),
    "permute twice": (lambda t: t.zeros(2, 3).permute(0, 0), RuntimeError, r"duplicate dims"),
    "t of 3-D": (lambda t: t.zeros(2, 3, 4).t(), RuntimeError, r"<= 2 dimensions, but self is 3D"),
    "setitem shape": (lambda t: _set(t.zeros(2, 3), (slice(None), slice(1, None)), t.zeros(3)),
                      RuntimeError, r"value of shape \(3,\) cannot be broadcast to the "
                      r"indexing result of shape \(2, 2\) \(tensor of shape \(2, 3\)"),
    "setitem mask": (lambda t: _set(t.zeros(4), t.zeros(4) > -1, t.zeros(3)), RuntimeError,
                     r"shape \(3,\) cannot be broadcast to the indexing result of shape \(4,\)"),
    "setitem index": (lambda t: _set(t.zeros(2, 3), 5, 1.0), IndexError,
                      r"index 5 into a tensor of shape \(2, 3\)"),
    "setitem leaf": (lambda t: _set(t.zeros(2, requires_grad=True), 0, 1.0), RuntimeError,
                     r"leaf Variable that requires grad"),
    "format spec": (lambda t: format(t.zeros(2, 3), ".3f"), TypeError,
                    r"unsupported format string '.3f'.*shape \(2, 3\)"),
    "arange step": (lambda t: t.arange(0, 1, 0), RuntimeError, r"step must be nonzero"),
    "arange sign": (lambda t: t.arange(0, 5, -1), RuntimeError,
                    r"inconsistent with step sign \(start=0, end=5, step=-1\)"),
    "normal std": (lambda t: t.normal(0, -1, (2,)), RuntimeError, r"std must be >= 0"),
    "stack empty": (lambda t: t.stack([]), RuntimeError, r"non-empty list"),
}
