#!/usr/bin/env bash
# The GPU-machine measurements, in one call (time limits add up to 590 s, under a 10-minute call):
#   1. GMP step time / Base step time on the paper-like GPU config (benchmarks/gmp_overhead.py):
#      bf16 eager, + channels-last, + channels-last and torch.compile;
#   2. EPIC-Kitchens and HAC loader throughput (benchmarks/loader_throughput.py) with 0, 4 and 8 workers.
# Each check's log (<check>.txt) and numbers (the benchmarks' --save JSON, which Chapters 4 and 10
# render) go to $OUT (if set) or results/gpu/benchmarks/: 8 files. A check that fails or runs past
# its time limit is reported and the others still run (exit status 1 then).
#
#   bash scripts/gpu_checks.sh                    # on the GPU machine, mmdg importable
#   GPU_CHECKS_CPU=1 bash scripts/gpu_checks.sh   # the same script on a CPU (tiny shapes), as a dry run;
#                                                 # its files go to $OUT or results/smoke/gpu_checks/
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${GPU_CHECKS_CPU:-0}" = 1 ]; then   # dry run: never written where the committed numbers live
    out=${OUT:-results/smoke/gpu_checks}
    gpu_args=(--config gpu --device cpu --tiny --steps 5 --warmup 1); workers=0,2; clips=4
else
    out=${OUT:-results/gpu/benchmarks}
    gpu_args=(--config gpu --steps 30 --warmup 5); workers=0,4,8; clips=24
fi
mkdir -p "$out"
failed=0
check() {  # check NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    echo "== $name, $(date -u '+%F %T UTC'): $*" | tee "$out/$name.txt"
    timeout "$limit" "$@" 2>&1 | tee -a "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" != 0 ]; then echo "== $name FAILED (exit $rc; 124 = over ${limit} s)" | tee -a "$out/$name.txt"; failed=1; fi
}
check eager 90 "$py" benchmarks/gmp_overhead.py "${gpu_args[@]}" --save "$out"
check channels_last 90 "$py" benchmarks/gmp_overhead.py "${gpu_args[@]}" --channels-last --save "$out"
check compile 200 "$py" benchmarks/gmp_overhead.py "${gpu_args[@]}" --channels-last --compile --save "$out"
check loader 210 "$py" benchmarks/loader_throughput.py --workers "$workers" --clips "$clips" --repeats 2 --save "$out"
exit $failed
