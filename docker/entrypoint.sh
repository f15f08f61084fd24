#!/bin/sh
# `docker run detsim train experiment=...` runs detsim-train; any other command runs as given.
set -eu
case "${1:-}" in
    simulate|convert|train|generate|evaluate) cmd="detsim-$1"; shift; exec "$cmd" "$@" ;;
    "") exec detsim-train --help ;;
    *) exec "$@" ;;
esac
