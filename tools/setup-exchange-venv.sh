#!/usr/bin/env bash
# Makes .venv-exchange/ (git-ignored): a Python virtual environment with the pinned tools of
# tests/exchange/requirements.txt (numpy, safetensors, onnx, onnxruntime) that
# tests/exchange/check_exchange.py proves descent's safetensors and ONNX files against; ctest's
# exchange.python_tools runs only where it exists. Does nothing when it is already complete.
# pip keeps its downloads in ./.cache/pip (git-ignored), so a second run needs no network.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv-exchange
requirements=$root/tests/exchange/requirements.txt
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$root/.cache/pip} PIP_DISABLE_PIP_VERSION_CHECK=1

# Complete when every pin is installed at its version.
incomplete() {
  ! [ -x "$venv/bin/python" ] ||
    grep -v '^#' "$requirements" | grep -vxFf <("$venv/bin/python" -m pip freeze 2>/dev/null) |
    grep -q .
}
incomplete || exit 0
# Debian's python3 needs python3-venv for `python3 -m venv` (tools/setup.sh does not install it:
# only this check needs it).
python=${PYTHON:-python3}
if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c "import ensurepip" 2>/dev/null; then
  echo "setup-exchange-venv: $python cannot make a virtual environment: apt-get install python3-venv" >&2
  exit 1
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet -r "$requirements"
echo "setup-exchange-venv: $venv ready ($("$venv/bin/python" -c 'import numpy, onnx, onnxruntime, safetensors; print("numpy", numpy.__version__, "onnx", onnx.__version__, "onnxruntime", onnxruntime.__version__, "safetensors", safetensors.__version__)'))"
