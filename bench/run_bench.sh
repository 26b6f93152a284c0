#!/bin/bash
# run_bench.sh - msaproxy throughput, latency and idle memory, measured
# against the smtp-sink ceiling in one run.
#
# usage: bench/run_bench.sh [-r ROUNDS] [-w WORKERS] [-o OUTDIR] [-a MSGS]
#                           [-b MSGS] [-d SECS] [-i IDLE] [--ceiling-only]
#                           [--proxy PATH] [--load PATH] [--peer-matrix]
#
#   -r ROUNDS   rounds (3); each round runs, per profile, a ceiling run
#               (msaload -> smtp-sink) immediately followed by a proxy run
#               (msaload -> msaproxy -> smtp-sink)
#   -w WORKERS  msaproxy "workers" setting (1; 2 was measured slower, see
#               docs/PERFORMANCE.md)
#   -o OUTDIR   where results.tsv, idle.tsv, summary.md and logs go
#               (default: a new /tmp/msaproxy-bench.XXXXXX)
#   -a / -b     messages per run for profile A (100000) / B (40000)
#   -d SECS     cap per run (60); msgs/s stays valid when it is hit
#   -i IDLE     idle sessions for the memory test (2000; 0 = skip)
#   --ceiling-only   no proxy at all: ceiling runs only (tests the setup)
#   --proxy / --load paths of msaproxy (TOP/msaproxy) and msaload
#               (TOP/bench/msaload, else compiled into OUTDIR)
#   --peer-matrix    afterwards, if the team's bench directory exists
#               (PEER_BENCH, default TOP/../shared/bench), also measure this
#               msaproxy with its smtpload/bench_matrix.sh ("ext" peer);
#               needs port 20025 free.  Optional: a fresh clone has none.
#
# Profiles (10 KB messages, 1 recipient, DATA, no pipelining, 50 sessions):
#   A  100 messages per session      B  1 message per session
# Memory: a fresh msaproxy, 50 warm-up sessions, then IDLE sessions that
# stop after EHLO; (Rss|Pss during - before) / IDLE, summed over the
# msaproxy process tree from /proc/PID/smaps_rollup.
#
# Everything listens on 127.0.0.1, ports 20000-20999 (SINK_PORT, default
# 20825, and PROXY_PORT, default 20850, or the next free ones; the team's
# peers use 20025-20300), runs from a temp dir and is stopped on exit.
# msaload, smtp-sink and msaproxy each run in their own session (setsid),
# i.e. their own scheduler autogroup.  msaproxy runs from a copy in OUTDIR.
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3
WORKERS=1
OUT=
A_MSGS=100000
B_MSGS=40000
DUR=60
IDLE=2000
CEILING_ONLY=0
PEER_MATRIX=0
PROXY=$TOP/msaproxy
LOAD=
CONC=50
SIZE=10240

usage() {
	sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 1
}

while [ $# -gt 0 ]; do
	case $1 in
	-r) ROUNDS=$2; shift ;;
	-w) WORKERS=$2; shift ;;
	-o) OUT=$2; shift ;;
	-a) A_MSGS=$2; shift ;;
	-b) B_MSGS=$2; shift ;;
	-d) DUR=$2; shift ;;
	-i) IDLE=$2; shift ;;
	--ceiling-only) CEILING_ONLY=1 ;;
	--peer-matrix) PEER_MATRIX=1 ;;
	--proxy) PROXY=$2; shift ;;
	--load) LOAD=$2; shift ;;
	*) usage ;;
	esac
	shift
done

die() {
	echo "run_bench: $*" >&2
	exit 1
}

for v in "$ROUNDS" "$WORKERS" "$A_MSGS" "$B_MSGS" "$DUR" "$IDLE"; do
	case $v in
	''|*[!0-9]*) die "not a number: '$v'" ;;
	esac
done
[ "$ROUNDS" -ge 1 ] || die "-r: at least 1"

SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || die "smtp-sink not found (Debian package postfix)"
command -v ss >/dev/null || die "ss not found (iproute2)"

if [ -z "$OUT" ]; then
	OUT=$(mktemp -d /tmp/msaproxy-bench.XXXXXX) || die "mktemp failed"
else
	mkdir -p "$OUT" || die "cannot create $OUT"
	OUT=$(cd "$OUT" && pwd)
fi
W=$OUT/work
mkdir -p "$W" || die "cannot create $W"
RES=$OUT/results.tsv
IDLE_RES=$OUT/idle.tsv
SUM=$OUT/summary.md

# The generator: the tree's build, else compiled here.
if [ -z "$LOAD" ]; then
	if [ -x "$TOP/bench/msaload" ] &&
	    [ "$TOP/bench/msaload" -nt "$TOP/bench/msaload.c" ]; then
		LOAD=$TOP/bench/msaload
	else
		LOAD=$W/msaload
		${CC:-cc} -O2 -Wall -Wextra -o "$LOAD" "$TOP/bench/msaload.c" \
		    -levent -levent_openssl -lssl -lcrypto ||
		    die "cannot build msaload"
	fi
fi
[ -x "$LOAD" ] || die "no msaload at $LOAD"
if [ "$CEILING_ONLY" = 0 ]; then
	[ -x "$PROXY" ] || die "no msaproxy at $PROXY (scripts/build.sh)"
	# Run a private copy: a rebuild during the run must not change
	# what is measured.
	cp "$PROXY" "$W/msaproxy" || die "cannot copy $PROXY"
	PROXY_ORIG=$PROXY
	PROXY=$W/msaproxy
	PROXY_VERSION="$("$PROXY" -V 2>&1 | head -1),"
	PROXY_VERSION="$PROXY_VERSION sha256 $(sha256sum "$PROXY" | cut -c1-12)"
fi

CLK_TCK=$(getconf CLK_TCK)
TIME=/usr/bin/time
[ -x "$TIME" ] || TIME=

# ---- ports --------------------------------------------------------------

port_free() {
	[ -z "$(ss -Htan "sport = :$1" 2>/dev/null)" ]
}

pick_port() { # preferred, avoid
	local p=$1
	while [ "$p" -le 20999 ]; do
		if [ "$p" != "$2" ] && port_free "$p"; then
			echo "$p"
			return 0
		fi
		p=$((p + 1))
	done
	return 1
}

SINK_PORT=${SINK_PORT:-$(pick_port 20825 0)} || die "no free port"
PROXY_PORT=${PROXY_PORT:-$(pick_port 20850 "$SINK_PORT")} ||
    die "no free port"
for p in "$SINK_PORT" "$PROXY_PORT"; do
	[ "$p" -ge 20000 ] && [ "$p" -le 20999 ] ||
	    die "port $p outside 20000-20999"
done

wait_listen() { # port, seconds
	local i=0
	while [ "$i" -lt $(($2 * 10)) ]; do
		[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# ---- processes ----------------------------------------------------------

# Start "$@" in its own session; its PID (after exec) lands in file $1.
spawn() { # pidfile logfile cmd...
	local pidf=$1 log=$2
	shift 2
	rm -f "$pidf"
	setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidf" "$@" >"$log" 2>&1 &
	local i=0
	while [ ! -s "$pidf" ] && [ "$i" -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -s "$pidf" ] && cat "$pidf"
}

tree() { # pid: the pid and all its descendants
	local p c
	for p in "$@"; do
		[ -d "/proc/$p" ] || continue
		echo "$p"
		for c in $(pgrep -P "$p" 2>/dev/null); do
			tree "$c"
		done
	done
}

stop_pid() { # pid [name]: TERM, then KILL after 5 s; descendants too
	local pid=$1 all i=0
	[ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
	all=$(tree "$pid")
	kill -TERM "$pid" 2>/dev/null
	while [ "$i" -lt 50 ]; do
		local alive=0 p
		for p in $all; do
			[ -d "/proc/$p" ] && alive=1
		done
		[ "$alive" = 0 ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	for p in $all; do
		kill -KILL "$p" 2>/dev/null
	done
	echo "run_bench: ${2:-$pid} did not stop on SIGTERM, killed" >&2
}

# utime+stime (+ reaped children) of a process tree, in seconds
tree_cpu() {
	local p t=0 v
	for p in $(tree "$1"); do
		v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null |
		    awk '{ print $12 + $13 + $14 + $15 }')
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# "rss_kb pss_kb nprocs" of a process tree
tree_mem() {
	local p rss=0 pss=0 n=0 r s
	for p in $(tree "$1"); do
		read -r r s < <(awk '/^Rss:/ { r = $2 } /^Pss:/ { s = $2 }
		    END { print r + 0, s + 0 }' "/proc/$p/smaps_rollup" \
		    2>/dev/null)
		rss=$((rss + ${r:-0}))
		pss=$((pss + ${s:-0}))
		n=$((n + 1))
	done
	echo "$rss $pss $n"
}

SINK_PID=
PROXY_PID=
IDLE_PID=

cleanup() {
	trap - EXIT INT TERM
	stop_pid "$IDLE_PID" msaload
	stop_pid "$PROXY_PID" msaproxy
	stop_pid "$SINK_PID" smtp-sink
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_sink() {
	local u=
	[ "$(id -u)" = 0 ] && u="-u nobody"
	# -m: no concurrency limit in practice; no -c (a write per message)
	# shellcheck disable=SC2086
	SINK_PID=$(spawn "$W/sink.pid" "$W/sink.log" "$SINK" $u -m 5000 \
	    "127.0.0.1:$SINK_PORT" 4096)
	[ -n "$SINK_PID" ] && wait_listen "$SINK_PORT" 10 ||
	    die "smtp-sink did not start (see $W/sink.log)"
}

write_conf() {
	cat >"$W/msaproxy.conf" <<EOF
# written by bench/run_bench.sh
server_name = "bench.test";
workers = $WORKERS;
log = { level = "warning"; };
listeners = (
  { name = "bench"; kind = "smtp"; address = "127.0.0.1:$PROXY_PORT"; }
);
backend = { address = "127.0.0.1:$SINK_PORT"; protocol = "smtp"; };
EOF
}

start_proxy() {
	PROXY_PID=$(spawn "$W/proxy.pid" "$W/proxy.log" "$PROXY" -f \
	    -c "$W/msaproxy.conf")
	if [ -z "$PROXY_PID" ] || ! wait_listen "$PROXY_PORT" 10; then
		cat "$W/proxy.log" >&2
		die "msaproxy did not start"
	fi
	# smoke test: three messages through the proxy
	if ! "$LOAD" -p "$PROXY_PORT" -c 1 -n 3 -m 3 -d 20 -q \
	    >"$W/smoke.out" 2>&1; then
		cat "$W/smoke.out" "$W/proxy.log" >&2
		die "msaproxy does not relay a message (see above)"
	fi
}

stop_proxy() {
	stop_pid "$PROXY_PID" msaproxy
	PROXY_PID=
}

# ---- throughput runs ----------------------------------------------------

printf 'round\tprofile\ttarget\tworkers\tmessages\tok\tfail\tmsgs_per_s\tp50_ms\tp99_ms\tsetup_p50_ms\telapsed_s\tproxy_cpu_s\tsink_cpu_s\tload_cpu_s\texit\n' >"$RES"

field() { # file key: value of key=... on the last line / a named line
	sed -n "s/.*[ ]$2=\([^ ]*\).*/\1/p; s/^$2=\([^ ]*\).*/\1/p" "$1" |
	    tail -1
}

run_one() { # round profile target
	local r=$1 prof=$2 tgt=$3 port n m out rc sc0 sc1 pc0 pc1 lc setup
	local pcpu=-
	case $prof in
	A) n=$A_MSGS; m=100 ;;
	B) n=$B_MSGS; m=1 ;;
	esac
	if [ "$tgt" = proxy ]; then
		port=$PROXY_PORT
		pc0=$(tree_cpu "$PROXY_PID")
	else
		port=$SINK_PORT
	fi
	sc0=$(tree_cpu "$SINK_PID")
	out=$W/run-$r-$prof-$tgt.out
	if [ -n "$TIME" ]; then
		$TIME -f '%U %S' -o "$W/time.txt" setsid -w "$LOAD" \
		    -p "$port" -c "$CONC" -n "$n" -m "$m" -s "$SIZE" \
		    -d "$DUR" -q >"$out" 2>&1
		rc=$?
		lc=$(awk '{ printf "%.2f", $1 + $2 }' "$W/time.txt")
	else
		setsid -w "$LOAD" -p "$port" -c "$CONC" -n "$n" -m "$m" \
		    -s "$SIZE" -d "$DUR" -q >"$out" 2>&1
		rc=$?
		lc=-
	fi
	sc1=$(tree_cpu "$SINK_PID")
	if [ "$tgt" = proxy ]; then
		pc1=$(tree_cpu "$PROXY_PID")
		pcpu=$(awk -v a="$pc0" -v b="$pc1" -v t="$CLK_TCK" \
		    'BEGIN { printf "%.2f", (b - a) / t }')
	fi
	setup=$(sed -n 's/^setup_ms .* p50=\([^ ]*\).*/\1/p' "$out")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
	    "$r" "$prof" "$tgt" "$WORKERS" "$n" "$(field "$out" ok)" \
	    "$(field "$out" fail)" "$(field "$out" msgs_per_s)" \
	    "$(field "$out" p50_ms)" "$(field "$out" p99_ms)" "${setup:--}" \
	    "$(awk '/^elapsed_s/ { print $2 }' "$out")" "$pcpu" \
	    "$(awk -v a="$sc0" -v b="$sc1" -v t="$CLK_TCK" \
	    'BEGIN { printf "%.2f", (b - a) / t }')" "$lc" "$rc" >>"$RES"
	tail -1 "$RES" | awk -F'\t' '{ printf "round %s %s %-7s %9s msgs/s  p50 %s  p99 %s ms  ok %s fail %s\n", $1, $2, $3, $8, $9, $10, $6, $7 }'
	[ "$rc" = 0 ] || echo "run_bench: msaload exit $rc, see $out" >&2
}

echo "run_bench: output in $OUT; sink 127.0.0.1:$SINK_PORT," \
    "proxy 127.0.0.1:$PROXY_PORT, workers=$WORKERS, rounds=$ROUNDS"
start_sink
if [ "$CEILING_ONLY" = 0 ]; then
	write_conf
	start_proxy
fi
T0=$(date -u '+%Y-%m-%d %H:%M')
for r in $(seq 1 "$ROUNDS"); do
	for prof in A B; do
		run_one "$r" "$prof" ceiling
		[ "$CEILING_ONLY" = 0 ] && run_one "$r" "$prof" proxy
	done
done

# ---- idle memory --------------------------------------------------------

printf 'workers\tsessions\tready\tfailed\tprocs_before\tprocs_during\trss_before_kb\trss_during_kb\tpss_before_kb\tpss_during_kb\trss_kb_per_session\tpss_kb_per_session\tbackend_conns_during\tsetup_p50_ms\n' >"$IDLE_RES"

if [ "$CEILING_ONLY" = 0 ] && [ "$IDLE" -gt 0 ]; then
	stop_proxy
	start_proxy		# fresh process, smoke-tested
	"$LOAD" -p "$PROXY_PORT" -c 50 -n 50 -m 1 -q >"$W/warmup.out" 2>&1
	sleep 1
	read -r rss0 pss0 n0 < <(tree_mem "$PROXY_PID")
	IDLE_PID=$(spawn "$W/idle.pid" "$W/idle.out" "$LOAD" \
	    -p "$PROXY_PORT" -c 50 --idle "$IDLE" -d 600 -q)
	i=0
	while ! grep -q '^IDLE_READY' "$W/idle.out" 2>/dev/null; do
		[ -d "/proc/$IDLE_PID" ] && [ "$i" -lt 1200 ] || break
		sleep 0.1
		i=$((i + 1))
	done
	ready_line=$(grep '^IDLE_READY' "$W/idle.out")
	if [ -n "$ready_line" ]; then
		sleep 3
		read -r rss1 pss1 n1 < <(tree_mem "$PROXY_PID")
		bconns=$(ss -Htn state established \
		    "( dport = :$SINK_PORT )" | wc -l)
		stop_pid "$IDLE_PID" msaload
		IDLE_PID=
		ready=$(echo "$ready_line" | sed 's/.*sessions=\([0-9]*\).*/\1/')
		failed=$(echo "$ready_line" | sed 's/.*failed=\([0-9]*\).*/\1/')
		setup=$(sed -n 's/^setup_ms .* p50=\([^ ]*\).*/\1/p' \
		    "$W/idle.out")
		awk -v w="$WORKERS" -v s="$IDLE" -v rd="$ready" -v f="$failed" \
		    -v n0="$n0" -v n1="$n1" -v r0="$rss0" -v r1="$rss1" \
		    -v p0="$pss0" -v p1="$pss1" -v b="$bconns" -v su="$setup" \
		    'BEGIN { d = rd > 0 ? rd : 1
		    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%s\t%s\n",
		    w, s, rd, f, n0, n1, r0, r1, p0, p1, (r1 - r0) / d,
		    (p1 - p0) / d, b, su }' >>"$IDLE_RES"
		tail -1 "$IDLE_RES" | awk -F'\t' '{ printf "idle: %s sessions ready, Rss %.1f kB/session, Pss %.1f kB/session, %s backend connections\n", $3, $11, $12, $13 }'
	else
		echo "run_bench: idle sessions never became ready," \
		    "see $W/idle.out" >&2
		stop_pid "$IDLE_PID" msaload
		IDLE_PID=
	fi
fi
T1=$(date -u '+%H:%M')

# ---- summary ------------------------------------------------------------

{
	echo "## msaproxy benchmark, $T0-$T1 UTC"
	echo
	echo "Machine: $(nproc) vCPU ($(sed -n 's/^model name[^:]*: //p' \
	    /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' \
	    /proc/meminfo) RAM, kernel $(uname -r).  ${PROXY_VERSION:+$PROXY_VERSION (from $PROXY_ORIG),} workers=$WORKERS," \
	    "$ROUNDS rounds, $CONC sessions, $SIZE-byte messages, DATA," \
	    "no pipelining; A = 100 msgs/session ($A_MSGS per run)," \
	    "B = 1 msg/session ($B_MSGS per run), cap ${DUR}s per run."
	echo
	awk -F'\t' -f - "$RES" <<'EOF'
function median(a, n,    i, j, t) {
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
		}
	if (n == 0)
		return -1
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function minmax(a, n, what,    i, v) {
	v = a[1]
	for (i = 2; i <= n; i++)
		if ((what == "min" && a[i] < v) || (what == "max" && a[i] > v))
			v = a[i]
	return v
}
function pick(key, col,    i, n) {
	delete tmp
	n = 0
	for (i = 1; i <= cnt[key]; i++)
		tmp[++n] = val[key, i, col]
	return n
}
NR == 1 { next }
{
	key = $2 SUBSEP $3
	i = ++cnt[key]
	for (c = 1; c <= NF; c++)
		val[key, i, c] = $c
	if ($3 == "ceiling")
		ceil[$1, $2] = NR
	row[NR] = $0
	rowr[NR] = $1; rowp[NR] = $2; rowt[NR] = $3
	rowv[NR] = $8; rowp99[NR] = $10
}
END {
	print "| profile | target | runs | msgs/s median (min..max) | p50 ms | p99 ms | setup p50 ms | msgs/s ratio to paired ceiling (median) | p99 ratio to paired ceiling (median) | proxy CPU ms/msg | failed msgs |"
	print "|---|---|---|---|---|---|---|---|---|---|---|"
	split("A B", profs, " ")
	split("ceiling proxy", tgts, " ")
	for (pi = 1; pi <= 2; pi++) for (ti = 1; ti <= 2; ti++) {
		p = profs[pi]; t = tgts[ti]; key = p SUBSEP t
		if (!(key in cnt))
			continue
		n = pick(key, 8); med = median(tmp, n)
		lo = minmax(tmp, n, "min"); hi = minmax(tmp, n, "max")
		n = pick(key, 9); p50 = median(tmp, n)
		n = pick(key, 10); p99 = median(tmp, n)
		n = pick(key, 11); su = median(tmp, n)
		fails = 0; cpu = 0; oks = 0
		for (i = 1; i <= cnt[key]; i++) {
			fails += val[key, i, 7]; oks += val[key, i, 6]
			if (val[key, i, 13] != "-") cpu += val[key, i, 13]
		}
		ratio = "1"; pratio = "1"; cpum = "-"
		if (t == "proxy") {
			nr = 0; np = 0
			delete rr; delete pr
			for (j in row) {
				if (rowp[j] != p || rowt[j] != "proxy")
					continue
				c = ceil[rowr[j], p]
				if (c == "" || rowv[c] <= 0)
					continue
				rr[++nr] = rowv[j] / rowv[c]
				if (rowp99[c] > 0)
					pr[++np] = rowp99[j] / rowp99[c]
			}
			ratio = sprintf("%.3f", median(rr, nr))
			pratio = sprintf("%.2f", median(pr, np))
			if (oks > 0)
				cpum = sprintf("%.3f", cpu * 1000 / oks)
			res[p, "ratio"] = ratio; res[p, "pratio"] = pratio
		}
		printf "| %s | %s | %d | %.1f (%.1f..%.1f) | %.2f | %.2f | %.2f | %s | %s | %s | %d |\n", p, t, cnt[key], med, lo, hi, p50, p99, su, ratio, pratio, cpum, fails
	}
	if (("A" SUBSEP "ratio") in res) {
		print ""
		printf "TARGET A throughput >= 0.80 x ceiling: median ratio %s -> %s\n", res["A", "ratio"], (res["A", "ratio"] >= 0.80 ? "MET" : "NOT MET")
		printf "TARGET A p99 <= 2 x ceiling p99: median ratio %s -> %s\n", res["A", "pratio"], (res["A", "pratio"] <= 2 ? "MET" : "NOT MET")
	}
}
EOF
	if [ "$(wc -l <"$IDLE_RES")" -gt 1 ]; then
		echo
		echo "| idle sessions (EHLO only) | ready / failed | processes before -> during | Rss kB before -> during | Pss kB before -> during | Rss kB/session | Pss kB/session | backend connections during | setup p50 ms |"
		echo "|---|---|---|---|---|---|---|---|---|"
		awk -F'\t' 'NR > 1 { printf "| %s | %s / %s | %s -> %s | %s -> %s | %s -> %s | %.1f | %.1f | %s | %s |\n", $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 }' \
		    "$IDLE_RES"
		awk -F'\t' 'NR > 1 { printf "\nTARGET idle Rss per session < 64 KB: %.1f kB (Pss %.1f kB) -> %s\n", $11, $12, (($11 < 64 && $4 == 0) ? "MET" : "NOT MET") }' \
		    "$IDLE_RES"
	fi
} >"$SUM"

# ---- optional: the team's peer harness ----------------------------------

if [ "$PEER_MATRIX" = 1 ] && [ "$CEILING_ONLY" = 0 ]; then
	PB=${PEER_BENCH:-$TOP/../shared/bench}
	if [ -x "$PB/bench_matrix.sh" ]; then
		# bench_matrix.sh starts its own sink on 20025: point a fresh
		# msaproxy there and let smtpload measure it as peer "ext".
		stop_proxy
		stop_pid "$SINK_PID" smtp-sink
		SINK_PID=
		if [ "$SINK_PORT" != 20025 ] && ! port_free 20025; then
			echo "run_bench: --peer-matrix: port 20025 busy," \
			    "skipped" >&2
		else
			SINK_PORT=20025
			write_conf
			make -s -C "$PB" >/dev/null 2>&1
			printf 'A ext plain %s\nB ext plain %s\n' "$A_MSGS" \
			    "$B_MSGS" >"$W/peer_plan"
			# the proxy's backend appears when bench_matrix starts
			# the sink; our smoke test needs it, so start first
			PROXY_PID=$(spawn "$W/proxy.pid" "$W/proxy.log" \
			    "$PROXY" -f -c "$W/msaproxy.conf")
			wait_listen "$PROXY_PORT" 10 &&
			    EXT_PORT=$PROXY_PORT EXT_PID=$PROXY_PID \
			    EXT_AUTH=none "$PB/bench_matrix.sh" \
			    "$OUT/peer_matrix" "$ROUNDS" "$W/peer_plan"
			if [ -x "$PB/summarize.py" ]; then
				{
					echo
					echo "### Same proxy measured by the team's" \
					    "smtpload/bench_matrix.sh"
					echo
					"$PB/summarize.py" \
					    "$OUT/peer_matrix/results.tsv"
				} >>"$SUM" 2>&1
			fi
		fi
	else
		echo "run_bench: --peer-matrix: no $PB/bench_matrix.sh," \
		    "skipped" >&2
	fi
fi

echo
cat "$SUM"
echo
echo "raw runs: $RES"
echo "idle:     $IDLE_RES"
echo "summary:  $SUM"
