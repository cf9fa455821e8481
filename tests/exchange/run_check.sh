#!/usr/bin/env bash
# ctest's exchange.python_tools: runs check_exchange.py with the virtual environment that
# tools/setup-exchange-venv.sh makes (.venv-exchange/, or $DESCENT_EXCHANGE_PYTHON), and is
# skipped (status 77) where there is none: CI makes it, a developer may not have it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${DESCENT_EXCHANGE_PYTHON:-$here/../../.venv-exchange/bin/python}
if ! [ -x "$py" ] || ! "$py" -c "import numpy, safetensors, onnx, onnxruntime" 2>/dev/null; then
  echo "skipped: no Python with numpy, safetensors, onnx and onnxruntime at $py" \
       "(make one with tools/setup-exchange-venv.sh)"
  exit 77
fi
exec "$py" "$here/check_exchange.py" "$@"
