#!/usr/bin/env bash
# The device kit's rehearsal on the CPU: a fresh virtual environment holding only what the GPU
# machine's image holds (Python 3.12; torch 2.11.0 and torchvision 0.26.0, its CUDA 13.0 build,
# which runs on a CPU; numpy 2.5.2; the other packages the image lists, at the newest version
# the package index has where the image's is not known), then the kit's script end to end at
# CPU size (`run --cpu-size`: small networks, batch 16, the CUDA `fast` recipe on the CPU), with
# no network: in a network namespace of its own (unshare -n), pip offline (--no-index).
#
#   python benchmarks/gpu/kit.py prepare --reference <zju-vipa/CMI>   # once, fills .kit/
#   bash benchmarks/gpu/rehearse.sh [OUT]                           # default .rehearsal/out
#
# Slow (about 15-25 minutes on 2 cores, most of it torch.compile's C++ builds), so not part of
# the test command; its output is committed as benchmarks/results/kit_rehearsal_cpu.md.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
venv=${REHEARSAL_VENV:-$root/.rehearsal/venv}
out=${1:-$root/.rehearsal/out}
uv=${UV:-$(command -v uv || echo "$root/.venv/bin/uv")}

python=${REHEARSAL_PYTHON:-}
if [[ -z $python ]]; then
    for candidate in python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
        if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            python=$candidate
            break
        fi
    done
fi
[[ -n $python ]] || { echo "error: no Python 3.12 found; set REHEARSAL_PYTHON" >&2; exit 2; }
[[ -d .kit/wheels ]] || { echo "error: no .kit/: run benchmarks/gpu/kit.py prepare" >&2; exit 2; }

# The image's packages (KINDS.md of the device notes): the versions it reports where the index
# has them, else the index's newest.
if [[ ! -x $venv/bin/python ]]; then
    "$uv" venv -q --seed -p "$python" "$venv"
    "$uv" pip install -q -p "$venv/bin/python" torch==2.11.0 torchvision==0.26.0 numpy==2.5.2 \
        pandas scipy jinja2 matplotlib tqdm scikit-learn pyyaml pillow pytest einops
fi
"$venv/bin/python" -m pip list --format=freeze > "$root/.rehearsal/packages.txt"

rm -rf "$out" /tmp/kit-rehearsal
mkdir -p "$out"
began=$(date +%s)
# No network from here on: a namespace with only a loopback interface, down.
unshare -n env -u PYTHONPATH PYTHONUNBUFFERED=1 "$venv/bin/python" benchmarks/gpu/kit.py run \
    --cpu-size --deadline "${DEADLINE:-3000}" --out "$out" --scratch /tmp/kit-rehearsal
echo "rehearsal: $(( $(date +%s) - began )) s; results in $out"
