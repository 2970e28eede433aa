#!/usr/bin/env bash
# The GPU check of issue 6 in one go, on a machine with an NVIDIA GPU and no network.
#
#   bash bench/gpu_check.sh [bench/gpu_check.py options]     (from the repository root)
#
# Needs the wheelhouse that bench/gpu_prepare.sh made (.gpu-wheelhouse/part-NN/, carried to the
# machine one part per device call). It re-joins the parts (checking their sha256), replaces the
# image's CPU onnxruntime with onnxruntime-gpu (never both in one environment: PreRead refuses
# that), installs the project dependencies the image lacks (monai, pydantic) without touching
# anything else, then runs bench/gpu_check.py: the provider each engine actually uses, the
# shipped model's sliding window on a 512×512×300 phantom with TensorRT fp16, CUDA fp32 and torch
# eager (CUDA), their times and ratios, and each one's Dice against the CPU result. Exit status:
# non-zero when a requested provider is not the one used (or an engine failed).
# With $OUT set (the device machine), the log and a JSON copy of the results land there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
HOUSE=${PREREAD_WHEELHOUSE:-.gpu-wheelhouse}
WORK=${TMPDIR:-/tmp}/preread-gpu-wheels
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LOG=${OUT:+$OUT/gpu_check.log}
LOG=${LOG:-/dev/null}

{
  echo "== machine"
  nvidia-smi -L || echo "nvidia-smi: none"
  "$PY" --version
  echo "== wheelhouse: $(ls -d "$HOUSE"/part-* 2>/dev/null | wc -l) parts"
  rm -rf "$WORK" && mkdir -p "$WORK"
  cat "$HOUSE"/part-*/wheels.tar.part-* > "$WORK/wheels.tar"
  want=$(cut -d' ' -f1 "$(ls "$HOUSE"/part-*/wheels.tar.sha256 | head -1)")
  have=$(sha256sum "$WORK/wheels.tar" | cut -d' ' -f1)
  if [ "$want" != "$have" ]; then
    echo "the re-joined wheelhouse is incomplete or damaged (sha256 $have, want $want):" \
      "carry every .gpu-wheelhouse/part-NN first" >&2
    exit 2
  fi
  tar -xf "$WORK/wheels.tar" -C "$WORK" && rm "$WORK/wheels.tar"
  ls "$WORK"
  echo "== onnxruntime-gpu instead of onnxruntime"
  "$PY" -m pip uninstall -y -q onnxruntime onnxruntime-gpu 2>&1 || true
  "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
    "$WORK"/*.whl
  "$PY" -m pip list 2>/dev/null | grep -i -E '^(onnxruntime|monai|pydantic|torch) ' || true
  echo "== check"
  "$PY" bench/gpu_check.py ${OUT:+--json "$OUT/gpu_check.json"} "$@"
} 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
