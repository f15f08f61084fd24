#!/bin/sh
# Install detsim with exactly the versions of requirements.lock into the Python given as $1.
# Used by the Dockerfile and by tests/test_prod_docker.py, so the image and the test build the same thing.
#   docker/install.sh PYTHON SOURCE_DIR      (TORCH_VERSION, TORCH_INDEX_URL from the environment)
set -eu
PY=${1:-python3}
SRC=${2:-.}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$PY" -m pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "$TORCH_INDEX_URL"
else
    "$PY" -m pip install --no-cache-dir "torch==${TORCH_VERSION}"
fi
"$PY" -m pip install --no-cache-dir --no-deps -r "$SRC/requirements.lock"
"$PY" -m pip install --no-cache-dir --no-deps "$SRC"
"$PY" -m pip check
# A CPU image holds no CUDA wheels (they come only with a CUDA torch, which the lock leaves out).
case "${TORCH_INDEX_URL:-}" in
    */cpu)
        if "$PY" -m pip list --format=freeze | grep -iE '^(nvidia-|cuda-|triton|pytorch-triton)'; then
            echo "install.sh: CUDA wheels in a CPU install (above)" >&2
            exit 1
        fi ;;
esac
