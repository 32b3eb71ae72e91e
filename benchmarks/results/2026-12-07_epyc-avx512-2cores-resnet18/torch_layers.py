"""PyTorch's own per-layer times inside its ResNet-18 training step (the same network and batch as
bench_train.py resnet18:32), one thread, process CPU time, summed over 3 steps / 3:
forward and backward hooks on every Conv2d and BatchNorm2d (the stem's backward, which
computes no input gradient, reads 0: the hook does not fire in its place).

    python3 benchmarks/results/<this record>/torch_layers.py
"""
import sys, time, collections
import os
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import common, torch
torch.set_num_threads(1)
now = time.process_time
s = common.TorchStep("resnet18", 32)
acc = collections.defaultdict(float)
t = {}
def key(m, x): 
    if isinstance(m, torch.nn.Conv2d): return ("conv", tuple(x.shape[1:]), m.out_channels, m.kernel_size[0], m.stride[0])
    return ("bn", tuple(x.shape[1:]))
for m in s.net.modules():
    if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d)):
        m.register_forward_pre_hook(lambda m, i: t.__setitem__(("f", id(m)), now()))
        m.register_forward_hook(lambda m, i, o: acc.__setitem__(key(m, i[0]) + ("fwd",), acc[key(m, i[0]) + ("fwd",)] + now() - t[("f", id(m))]) or setattr(m, "_k", key(m, i[0])))
        m.register_full_backward_pre_hook(lambda m, go: t.__setitem__(("b", id(m)), now()))
        m.register_full_backward_hook(lambda m, gi, go: acc.__setitem__(m._k + ("bwd",), acc[m._k + ("bwd",)] + now() - t[("b", id(m))]))
s(); s(); acc.clear()
t0 = now()
for _ in range(3): s()
print("step", (now() - t0) / 3 * 1e3)
for k, v in sorted(acc.items(), key=lambda kv: -kv[1]): print(f"{v/3*1e3:7.1f} {k}")
print("sum", sum(acc.values())/3*1e3)
