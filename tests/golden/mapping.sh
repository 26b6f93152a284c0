#!/bin/sh
# mapping.sh - golden tests of the mapping tables (trust/mapping.c) through
# msaproxy-maptest: for each tests/golden/mapping/NAME.in, run its cases
# against NAME.map and compare the transcript with NAME.ref.
#
#   tests/golden/mapping.sh            (from the build directory; make check)
#   tests/golden/mapping.sh --update   rewrite the .ref files (then review
#                                      the diff by hand before committing)
#
# An .in line is "OPTIONS<TAB>PROBE"; lines starting with '#' and empty
# lines are copied to the transcript.  MAPTEST names the binary (default
# $top_builddir/msaproxy-maptest).
set -u

src=${top_srcdir:-$(dirname "$0")/../..}
dir=$(cd "$src/tests/golden/mapping" && pwd)
bin=${MAPTEST:-${top_builddir:-.}/msaproxy-maptest}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
update=0
[ "${1:-}" = "--update" ] && update=1
tab=$(printf '\t')
status=0

if [ ! -x "$bin" ]; then
	echo "mapping.sh: $bin not built" >&2
	exit 99
fi
for in in "$dir"/*.in; do
	name=$(basename "$in" .in)
	out=$(mktemp "${TMPDIR:-/tmp}/mapping-golden.XXXXXX")
	(
		cd "$dir" || exit 99
		while IFS="$tab" read -r opts probe; do
			case $opts in
			''|'#'*)
				printf '%s\n' "$opts"
				continue ;;
			esac
			printf '$ msaproxy-maptest -f %s.map %s %s\n' "$name" \
			    "$opts" "'$probe'"
			# shellcheck disable=SC2086
			"$bin" -f "$name.map" $opts "$probe" 2>&1
			echo "exit $?"
		done <"$in"
	) >"$out"
	if [ $update -eq 1 ]; then
		cp "$out" "$dir/$name.ref"
		echo "updated $name.ref"
	elif ! diff -u "$dir/$name.ref" "$out"; then
		echo "FAIL: $name (transcript differs from $name.ref)"
		status=1
	else
		echo "ok: $name"
	fi
	rm -f "$out"
done
exit $status
