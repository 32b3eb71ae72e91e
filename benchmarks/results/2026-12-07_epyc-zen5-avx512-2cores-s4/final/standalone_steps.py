"""A LeNet b256 training step alone (no PyTorch in the process): median and fastest of
100 steps, minor page faults, CPU and system time a step. Run with PYTHONPATH=<checkout>
from that checkout."""
import sys, time, resource
sys.path.insert(0, "benchmarks")
import common
model = sys.argv[1] if len(sys.argv) > 1 else "lenet"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 256
step = common.TinyalexStep(model, N, "numpy")
for _ in range(5): step()
r0 = resource.getrusage(resource.RUSAGE_SELF)
ts = []
for _ in range(100):
    t = time.perf_counter(); step(); ts.append(time.perf_counter() - t)
r1 = resource.getrusage(resource.RUSAGE_SELF)
import numpy as np
print(f"median step {np.median(ts)*1e3:.3f} ms, min {min(ts)*1e3:.3f}; minflt/step {(r1.ru_minflt-r0.ru_minflt)/100:.1f}, "
      f"cpu/step {((r1.ru_utime+r1.ru_stime)-(r0.ru_utime+r0.ru_stime))/100*1e3:.3f} ms, sys/step {(r1.ru_stime-r0.ru_stime)/100*1e3:.3f}")
