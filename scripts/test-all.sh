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

# Every target for 20 s, two at a time on 2 cores (tests/fuzz/run.sh runs
# one per online core); longer runs: tests/fuzz/run.sh 600.
echo "== fuzzing: every libFuzzer target for 20 s (tests/fuzz)"
tests/fuzz/run.sh 20

# Debian's python3 has pytest and python3-gssapi; a pyenv python3 on the
# PATH may not.
cd "$top"
# The integration suite runs twice, side by side (most of its time is
# waiting on sockets and timers, so two runs share the 2 cores well):
#  - against the ASan+UBSan build: a worker that leaks or trips a sanitizer
#    exits non-zero, the master then exits 1, which every test's teardown
#    checks.  The slow Kerberos ticket-expiry tests (marked "slow") drive
#    a test program, not msaproxy: they run once, in the gcc pass.
#  - against the gcc build: the binary that ships.
echo "== integration tests: the ASan+UBSan build and the gcc build, side by side"
logs=$(mktemp -d)
(
	ASAN_OPTIONS=detect_leaks=1:exitcode=23 \
	LSAN_OPTIONS=suppressions="$top/tests/lsan.supp" \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	MSAPROXY_BIN="$top/build-asan/msaproxy" \
	/usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider \
	    -m "not slow" "$@" >"$logs/asan.log" 2>&1
) &
asan_pid=$!
(
	MSAPROXY_BIN="$top/msaproxy" /usr/bin/python3 -m pytest tests/integration \
	    -q -p no:cacheprovider --durations=10 "$@" >"$logs/gcc.log" 2>&1
) &
gcc_pid=$!
asan_rc=0
gcc_rc=0
wait "$asan_pid" || asan_rc=$?
wait "$gcc_pid" || gcc_rc=$?
echo "== integration tests against the ASan+UBSan build (exit $asan_rc)"
cat "$logs/asan.log"
echo "== integration tests against the gcc build (exit $gcc_rc)"
cat "$logs/gcc.log"
rm -rf "$logs"
[ "$asan_rc" -eq 0 ] && [ "$gcc_rc" -eq 0 ] || exit 1

# One pass under valgrind (memcheck) of a small subset, against the gcc
# build: tests/integration/test_protocol.py (the SMTP dialogue, pipelining,
# relaying, workers) and test_privsep.py (the privilege drop, chroot,
# keytabs in memory, reload by generations), about 90 s on 2 cores.  Every msaproxy the tests
# start runs under valgrind (MSAPROXY_VALGRIND=1, tests/integration/
# harness.py), forked workers included; a memory error or a definite leak
# (third-party suppressions: tests/valgrind.supp) makes that process exit
# 99 and the test fail, with valgrind's report in the failure output.  The
# wider subset (also test_data.py test_backend.py test_burl.py) passes too:
#   MSAPROXY_VALGRIND=1 python3 -m pytest tests/integration/test_protocol.py \
#       tests/integration/test_data.py tests/integration/test_backend.py \
#       tests/integration/test_burl.py
echo "== integration tests under valgrind (test_protocol.py test_privsep.py)"
MSAPROXY_VALGRIND=1 MSAPROXY_BIN="$top/msaproxy" /usr/bin/python3 -m pytest \
    tests/integration/test_protocol.py tests/integration/test_privsep.py \
    -q -p no:cacheprovider "$@"
