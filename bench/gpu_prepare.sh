#!/usr/bin/env bash
# Fill the wheelhouse that bench/gpu_check.sh installs on a GPU machine with no network.
#
# Run here (a machine with access to the package registry), from anywhere:
#   bash bench/gpu_prepare.sh
# It downloads, for the device machine's Python (3.12, x86-64 manylinux; override with
# PREREAD_GPU_PYTHON), onnxruntime-gpu (the newest the registry has for that platform, or
# PREREAD_ORT_GPU_VERSION; it must be a CUDA 13 build, as the device's CUDA libraries are: the
# script prints the CUDA libraries it links) and the project dependencies the device image lacks
# (monai, pydantic and its parts), packs them into one tar and splits that into parts of
# PREREAD_PART_MIB (default 50) MiB, one part per folder:
#   .gpu-wheelhouse/part-01/wheels.tar.part-01, .gpu-wheelhouse/part-02/..., each with
#   wheels.tar.sha256 (the whole tar's checksum, checked on the device before unpacking).
# One device call carries at most 64 MiB (working tree included), so each part folder travels
# in its own call (`carry: [".gpu-wheelhouse/part-NN"]`); bench/gpu_check.sh re-joins them.
# The folder is ignored through .git/info/exclude (this script adds the line).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PREREAD_PREPARE_PY:-.venv/bin/python}
OUT=.gpu-wheelhouse
PART_MIB=${PREREAD_PART_MIB:-50}
PYVER=${PREREAD_GPU_PYTHON:-3.12}
ORT_SPEC="onnxruntime-gpu${PREREAD_ORT_GPU_VERSION:+==$PREREAD_ORT_GPU_VERSION}"
# What the device image lacks (its package list: /work/.library/device/KINDS.md), pinned to the
# versions this venv runs. typing-extensions, numpy, scipy, pyyaml, protobuf, flatbuffers,
# packaging, sympy (onnxruntime-gpu's own needs) are already there.
PINS=$("$PY" - <<'PYEOF'
import importlib.metadata as m
names = ["monai", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
         "typing-extensions"]
print(" ".join(f"{n}=={m.version(n)}" for n in names))
PYEOF
)

mkdir -p .git/info
grep -qxF "/$OUT/" .git/info/exclude 2>/dev/null || echo "/$OUT/" >> .git/info/exclude

rm -rf "$OUT" && mkdir -p "$OUT/wheels"
platforms=()
for n in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp "${platforms[@]}" -d "$OUT/wheels" "$ORT_SPEC" $PINS
echo "downloaded:" && ls -l "$OUT/wheels"
echo "onnxruntime-gpu needs (check the device has them):"
unzip -p "$OUT"/wheels/onnxruntime_gpu-*.whl '*/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' || true
echo "its CUDA provider links (want CUDA 13: libcudart.so.13, libcublas.so.13, libcudnn.so.9):"
tmp=$(mktemp -d)
unzip -q -o "$OUT"/wheels/onnxruntime_gpu-*.whl '*/libonnxruntime_providers_cuda.so' -d "$tmp"
"$PY" - "$tmp" <<'PYEOF'
import pathlib, re, sys
lib = next(pathlib.Path(sys.argv[1]).rglob("libonnxruntime_providers_cuda.so")).read_bytes()
names = sorted(set(re.findall(rb"lib(?:cudart|cublas|cublasLt|cudnn|cufft|curand|nvinfer)\.so\.\d+", lib)))
print("  " + " ".join(n.decode() for n in names))
PYEOF
rm -rf "$tmp"

tar -C "$OUT/wheels" -cf "$OUT/wheels.tar" .
sum=$(sha256sum "$OUT/wheels.tar" | cut -d' ' -f1)
split -b "${PART_MIB}m" -d -a 2 --numeric-suffixes=1 "$OUT/wheels.tar" "$OUT/wheels.tar.part-"
for part in "$OUT"/wheels.tar.part-*; do
  n=${part##*.part-}
  mkdir -p "$OUT/part-$n"
  mv "$part" "$OUT/part-$n/"
  echo "$sum  wheels.tar" > "$OUT/part-$n/wheels.tar.sha256"
done
rm -rf "$OUT/wheels" "$OUT/wheels.tar"
echo "parts (each travels in its own device call):"
du -sh "$OUT"/part-* | sed 's/^/  /'
