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

echo "== fuzzing: every libFuzzer target for 20 s (tests/fuzz)"
tests/fuzz/run.sh 20

# Debian's python3 has pytest and python3-gssapi; a pyenv python3 on the
# PATH may not.
cd "$top"
echo "== integration tests against the ASan+UBSan build"
# A worker that leaks or trips a sanitizer exits non-zero; the master then
# exits 1, which every test's teardown checks.
ASAN_OPTIONS=detect_leaks=1:exitcode=23 LSAN_OPTIONS=suppressions="$top/tests/lsan.supp" \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	MSAPROXY_BIN="$top/build-asan/msaproxy" \
	/usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider -x "$@"

echo "== integration tests (gcc build)"
MSAPROXY_BIN="$top/msaproxy" /usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider "$@"
