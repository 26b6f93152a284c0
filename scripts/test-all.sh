#!/bin/sh
# Install what is needed, build, and run every test: unit tests (cmocka),
# the same unit tests under AddressSanitizer+UBSan (clang), and the
# integration suite (pytest) against real Postfix / smtp-sink instances
# started on 127.0.0.1 with throwaway state.  Run as root on Debian 12.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)

scripts/install-deps.sh
scripts/build.sh

echo "== unit tests (gcc)"
make -s check || { cat tests/unit/*.log; exit 1; }
grep -h '^\[  PASSED  \]\|^\[  FAILED  \]' tests/unit/*.log || true

echo "== unit tests under ASan+UBSan (clang)"
scripts/build-sanitizers.sh check

echo "== integration tests"
# Debian's python3 has pytest and python3-gssapi; a pyenv python3 on the
# PATH may not.
cd "$top"
MSAPROXY_BIN="$top/msaproxy" /usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider "$@"
