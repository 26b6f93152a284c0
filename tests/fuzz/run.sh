#!/bin/sh
# run.sh - build and run every fuzz target in tests/fuzz for SECONDS each.
#
#   tests/fuzz/run.sh [SECONDS]        (default 30)
#
# Each target fuzz_<name> runs against a scratch copy of
# tests/fuzz/corpus/<name>/ (new inputs never land in the repository), with
# tests/fuzz/<name>.dict or else tests/fuzz/smtp.dict.  Crash, leak, timeout
# and OOM reproducers are saved under $FUZZ_ARTIFACTS (default: a scratch
# directory that is kept and printed when something fails).  Exits non-zero
# if any target fails to build or finds anything.
#
# Environment: FUZZ_OUT (binaries, see build.sh), FUZZ_JOBS (parallel
# workers per target, default 1), FUZZ_ARTIFACTS.
set -eu

secs=${1:-30}
case $secs in
''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
bindir=$("$here/build.sh" | tail -n 1)
work=$(mktemp -d "${TMPDIR:-/tmp}/msaproxy-fuzzrun.XXXXXX")
artifacts=${FUZZ_ARTIFACTS:-$work/artifacts}
mkdir -p "$artifacts"
jobs=${FUZZ_JOBS:-1}
failed=""

for src in "$here"/fuzz_*.c; do
	name=$(basename "$src" .c)
	name=${name#fuzz_}
	bin="$bindir/fuzz_$name"
	corpus="$work/corpus_$name"
	mkdir -p "$corpus"
	if [ -d "$here/corpus/$name" ]; then
		cp -R "$here/corpus/$name/." "$corpus/"
	fi
	dict="$here/$name.dict"
	[ -f "$dict" ] || dict="$here/smtp.dict"
	log="$work/fuzz_$name.log"
	echo "== fuzz_$name: ${secs}s, corpus $(ls "$corpus" | wc -l) files," \
	    "dict $(basename "$dict")"
	if [ "$jobs" -gt 1 ]; then
		par="-jobs=$jobs -workers=$jobs"
	else
		par=""
	fi
	set +e
	# from $work: parallel workers write fuzz-N.log into the cwd
	# third-party leaks only (libconfig's parser): tests/lsan.supp
	# shellcheck disable=SC2086
	(cd "$work" && LSAN_OPTIONS="suppressions=$here/../lsan.supp" \
	    "$bin" -max_total_time="$secs" -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 -dict="$dict" $par \
	    -artifact_prefix="$artifacts/${name}-" "$corpus") >"$log" 2>&1
	rc=$?
	set -e
	grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss)' \
	    "$log" | sed 's/^/   /' || true
	if [ $rc -ne 0 ] || ls "$artifacts/${name}-"* >/dev/null 2>&1; then
		echo "!! fuzz_$name failed (exit $rc); log $log"
		grep -E 'ERROR|SUMMARY|runtime error|deadly signal' "$log" |
		    head -n 5 | sed 's/^/   /'
		failed="$failed fuzz_$name"
	fi
done

if [ -n "$failed" ]; then
	echo "FAILED:$failed (artifacts in $artifacts, logs in $work)"
	exit 1
fi
echo "all fuzz targets ran ${secs}s without findings"
rm -rf "$work"
