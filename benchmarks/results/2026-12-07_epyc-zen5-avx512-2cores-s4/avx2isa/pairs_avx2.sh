#!/bin/bash
# Before/after pairs on the idle machine. Usage: final_bench.sh OUTDIR ROUNDS CASES [STEPS]
out=$1; rounds=$2; cases=$3; steps=${4:-}
mkdir -p $out
for r in $(seq 1 $rounds); do
  if [ $((r % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
  for which in $order; do
    if [ $which = before ]; then root=/work/wts4base; else root=/work/main; fi
    t=$(date -u +%H%M)
    echo "round $r $which $t load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a $out/log.txt
    (cd $root && env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE=Haswell NUMBA_CPU_NAME=haswell ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2 PYTHONPATH=$root python3 benchmarks/bench_train.py --cases $cases --no-memory ${steps:+--steps $steps} --json $out/bench_train_${t}_avx2isa_${which}_${r}.json) 2>&1 | grep -E "x |ratio|img/s" | tee -a $out/log.txt
  done
done
