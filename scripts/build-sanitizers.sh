#!/bin/sh
# Build a copy of the tree with clang, -Werror, AddressSanitizer and UBSan in
# build-asan/ (the source tree keeps its own gcc build), then run `make ARGS`
# there (default: check).  The binary is build-asan/msaproxy.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
dst="$top/build-asan"
mkdir -p "$dst"
# Copy the tracked sources (plus untracked new ones), not build products.
git ls-files -co --exclude-standard | grep -v '^build-asan/' | \
	tar -cf - -T - | tar -xf - -C "$dst"
cd "$dst"
[ -x configure ] && [ configure -nt configure.ac ] || autoreconf -fi >/dev/null 2>&1
[ -f Makefile ] || CC=clang ./configure -q --enable-sanitizers
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
make -s -j"$(nproc)"
if [ "${1:-check}" = check ]; then
	make -s check || { cat tests/unit/*.log; exit 1; }
	grep -h '^\[  PASSED  \]\|^\[  FAILED  \]' tests/unit/*.log || true
fi
