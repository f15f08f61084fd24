#!/bin/sh
# `docker run detsim train experiment=...` (or `apptainer run detsim.sif train ...`) runs detsim-train; any
# other command runs as given.
# The container may run as any user (docker run --user "$(id -u):$(id -g)", Apptainer as the caller): a user
# without a writable HOME gets one under /tmp, so matplotlib, MLflow and pip caches have a place.
set -eu
if [ -z "${HOME:-}" ] || [ ! -w "${HOME}" ]; then
    HOME="${TMPDIR:-/tmp}/detsim-home-$(id -u)"
    export HOME
    mkdir -p "$HOME"
fi
: "${MPLCONFIGDIR:=$HOME/.config/matplotlib}"
export MPLCONFIGDIR
if [ ! -w . ]; then
    echo "detsim: $(pwd) is not writable by uid $(id -u); run the container as yourself:" \
         "docker run --user \"\$(id -u):\$(id -g)\" -v \"\$PWD:/work\" ..." >&2
fi
case "${1:-}" in
    simulate|convert|train|generate|evaluate) cmd="detsim-$1"; shift; exec "$cmd" "$@" ;;
    "") exec detsim-train --help ;;
    *) exec "$@" ;;
esac
