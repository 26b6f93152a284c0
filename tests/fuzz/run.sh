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
# Environment: FUZZ_PARALLEL (targets run at once, default: the online
# cores), FUZZ_OUT (binaries, see build.sh), FUZZ_JOBS (parallel
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

# run_target NAME: one target, its summary and verdict into $work/NAME.out
# ("FAIL" on its last line when it found something or could not run).
run_target() {
	name=$1
	bin="$bindir/fuzz_$name"
	corpus="$work/corpus_$name"
	mkdir -p "$corpus"
	if [ -d "$here/corpus/$name" ]; then
		cp -R "$here/corpus/$name/." "$corpus/"
	fi
	dict="$here/$name.dict"
	[ -f "$dict" ] || dict="$here/smtp.dict"
	log="$work/fuzz_$name.log"
	out="$work/$name.out"
	echo "== fuzz_$name: ${secs}s, corpus $(ls "$corpus" | wc -l) files," \
	    "dict $(basename "$dict")" >"$out"
	if [ "$jobs" -gt 1 ]; then
		par="-jobs=$jobs -workers=$jobs"
	else
		par=""
	fi
	mkdir -p "$work/cwd_$name"
	set +e
	# from its own directory: parallel workers write fuzz-N.log into the cwd
	# third-party leaks only (libconfig's parser): tests/lsan.supp
	# shellcheck disable=SC2086
	(cd "$work/cwd_$name" && LSAN_OPTIONS="suppressions=$here/../lsan.supp" \
	    "$bin" -max_total_time="$secs" -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 -dict="$dict" $par \
	    -artifact_prefix="$artifacts/${name}-" "$corpus") >"$log" 2>&1
	rc=$?
	set -e
	grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|stat::peak_rss)' \
	    "$log" | sed 's/^/   /' >>"$out" || true
	if [ $rc -ne 0 ] || ls "$artifacts/${name}-"* >/dev/null 2>&1; then
		echo "!! fuzz_$name failed (exit $rc); log $log" >>"$out"
		grep -E 'ERROR|SUMMARY|runtime error|deadly signal' "$log" |
		    head -n 5 | sed 's/^/   /' >>"$out"
		echo "FAIL" >>"$out"
	fi
}

# FUZZ_PARALLEL targets at a time (default: the number of online cores):
# each target is one process, so a 2-core machine runs two at once.
par_max=${FUZZ_PARALLEL:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
names=""
for src in "$here"/fuzz_*.c; do
	n=$(basename "$src" .c)
	names="$names ${n#fuzz_}"
done
running=0
pids=""
for name in $names; do
	run_target "$name" &
	pids="$pids $!"
	running=$((running + 1))
	if [ "$running" -ge "$par_max" ]; then
		# wait for the oldest; the others keep running
		first=${pids# }
		first=${first%% *}
		wait "$first" || true
		pids=${pids#* "$first"}
		running=$((running - 1))
	fi
done
wait
for name in $names; do
	cat "$work/$name.out"
	if tail -n 1 "$work/$name.out" | grep -qx FAIL; then
		failed="$failed fuzz_$name"
	fi
done

if [ -n "$failed" ]; then
	echo "FAILED:$failed (artifacts in $artifacts, logs in $work)"
	exit 1
fi
echo "all fuzz targets ran ${secs}s without findings"
rm -rf "$work"
