#!/usr/bin/env bash
# Runs on a GPU machine (no Swift needed) from the repository's root, with
# .gpu/tributary.tar.gz from Deploy/gpu/pack.sh: lists the OpenCL devices, times
# training steps on the GPU through OpenCL next to PyTorch on CUDA in the same run, and
# trains under VRAM budgets of a quarter and a sixteenth of the step's unbudgeted device
# memory. Results go to $OUT (or ./gpu-results).
#   Deploy/gpu/measure.sh [--quick]     # --quick: gpt-tiny only, 3 steps (a first check)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
# The bundle from pack.sh, unpacked outside the working tree.
G=/tmp/tributary-gpu
if [ ! -x "$G/tributary" ]; then
    mkdir -p "$G" && tar -C "$G" -xzf .gpu/tributary.tar.gz || { echo "no .gpu/tributary.tar.gz: run Deploy/gpu/pack.sh first"; exit 1; }
fi
export LD_LIBRARY_PATH="$G/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
T=$G/tributary
steps=10; models=gpt-small,gpt2-small; memory_model=gpt-small
if [ "${1:-}" = --quick ]; then steps=3; models=gpt-tiny; memory_model=gpt-tiny; fi

# NVIDIA's OpenCL library ships with the driver; the ICD loader finds it through a file
# in /etc/OpenCL/vendors, which containers often lack.
if [ ! -e /etc/OpenCL/vendors/nvidia.icd ]; then
    nv=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl.so.1/ { print $NF; exit }')
    [ -z "$nv" ] && nv=$(ls /usr/local/nvidia/lib64/libnvidia-opencl.so.1 /usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1 2>/dev/null | head -1)
    if [ -n "$nv" ]; then mkdir -p /etc/OpenCL/vendors && echo "$nv" > /etc/OpenCL/vendors/nvidia.icd; fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
$T worker --list-devices 2>&1 | tee "$OUT/devices.txt"
device=opencl
if grep -q NVIDIA "$OUT/devices.txt"; then
    device="opencl:$(grep -m1 NVIDIA "$OUT/devices.txt" | sed -E 's/^opencl:([0-9]+):.*/\1/')"
fi
echo "# device: $device" | tee "$OUT/compute.txt"
$T bench compute --device "$device" --models "$models" --warmup 3 --steps "$steps" --peer-python none 2>&1 | tee -a "$OUT/compute.txt"
python3 Deploy/gpu/pytorch_gpu_peer.py --models "$models" --warmup 3 --steps "$steps" 2>&1 | tee "$OUT/pytorch.txt"
# A step whose parameters, gradients and activations are 4x (and 16x) the VRAM budget.
$T bench memory --device "$device" --model "$memory_model" --fractions 1,0.25,0.0625 --warmup 1 --steps 3 2>&1 | tee "$OUT/memory.txt"
