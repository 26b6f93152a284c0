#!/bin/bash
# audit_bench.sh - what the durable audit trail costs: msgs/s through
# msaproxy with audit.enabled = false and = true (fsync on), the same
# build and configuration otherwise, runs interleaved on one machine.
#
# usage: bench/audit_bench.sh [-r ROUNDS] [-P PROFILES] [-a MSGS] [-b MSGS]
#                             [-w WORKERS] [-o OUTDIR] [--proxy PATH]
#                             [--load PATH] [--hmac]
#
#   -r ROUNDS   rounds (5); in odd rounds "off" runs first, in even rounds
#               "on": neither always gets the warmer machine
#   -P LIST     profiles, from A and B (A,B), as in run_bench.sh:
#                 A  50 concurrent sessions (-c), 100 messages each
#                 B  50 concurrent sessions (-c), 1 message each
#               10 KB messages, 1 recipient, DATA, no pipelining
#   -a / -b     messages per run for A (100000) / B (40000)
#   -w N        msaproxy workers (1, as run_bench.sh's default)
#   -o OUTDIR   results.tsv, summary.txt, logs and the audit log
#               (default: a new /tmp/auditbench.XXXXXX).  The audit log is
#               written to OUTDIR/audit: OUTDIR must be on the disk whose
#               fsync you want to measure (not a tmpfs).
#   --hmac      the "on" instance also HMACs the chain (a throwaway key)
#   --no-fsync  the "on" instance with audit.fsync = false (to tell the
#               cost of waiting for the disk from the cost of the records)
#   --verdict-fsync  the "on" instance with audit.verdict_fsync = true (the
#               250 waits for the "tx" record too: two fsync waits)
#   -c CONC     concurrent sessions (50)
#   --pending-sync MODE  the "on" instance with audit.pending_sync = MODE
#               (before_backend or before_reply; default: the
#               configuration's default)
#   --writer-nice N  the "on" instance with audit.writer_nice = N (default:
#               the configuration's default, 10)
#
# The backend is smtp-sink (-m 5000, as in run_bench.sh) on 127.0.0.1:20880,
# the two msaproxy instances listen on 20881 (off) and 20882 (on).  Every
# process runs in its own session and is stopped on exit.
# ratio = msgs/s "on" / msgs/s "off" in the same round; the summary gives
# the median over the rounds, and checks that the audit log holds one
# "delivered" tx record per message msaload counted as accepted.
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/msa_user.sh"	# MSA_USER: who the workers run as
ROUNDS=5
PROFILES=A,B
A_MSGS=100000
B_MSGS=40000
WORKERS=1
OUT=
PROXY=$TOP/msaproxy
LOAD=$TOP/bench/msaload
HMAC=0
FSYNC=true
VFSYNC=false
WNICE=
PSYNC=
CONC=50
SINK_PORT=20880
OFF_PORT=20881
ON_PORT=20882

usage() {
	sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 1
}

while [ $# -gt 0 ]; do
	case $1 in
	-r) ROUNDS=${2:-}; shift ;;
	-P) PROFILES=${2:-}; shift ;;
	-a) A_MSGS=${2:-}; shift ;;
	-b) B_MSGS=${2:-}; shift ;;
	-w) WORKERS=${2:-}; shift ;;
	-o) OUT=${2:-}; shift ;;
	--proxy) PROXY=${2:-}; shift ;;
	--load) LOAD=${2:-}; shift ;;
	--hmac) HMAC=1 ;;
	--no-fsync) FSYNC=false ;;
	--verdict-fsync) VFSYNC=true ;;
	--writer-nice) WNICE=${2:-}; shift ;;
	--pending-sync) PSYNC=${2:-}; shift ;;
	-c) CONC=${2:-}; shift ;;
	*) usage ;;
	esac
	shift
done

die() {
	echo "audit_bench: $*" >&2
	exit 1
}

[ -x "$PROXY" ] || die "$PROXY not built (scripts/build.sh)"
[ -x "$LOAD" ] || die "$LOAD not built (make)"
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || die "smtp-sink not found (Debian package postfix)"
[ -n "$OUT" ] || OUT=$(mktemp -d /tmp/auditbench.XXXXXX)
mkdir -p "$OUT/audit" || die "cannot create $OUT"
# the audit writer runs as $MSA_USER and writes (and rotates) here
chmod 755 "$OUT"
[ -n "$MSA_USER" ] && chown "$MSA_USER" "$OUT/audit"
chmod 755 "$OUT"
RES=$OUT/results.tsv
SUM=$OUT/summary.txt
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	sleep 1
	for p in "${PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
	done
}
trap cleanup EXIT

port_free() {
	! ss -Htln "sport = :$1" | grep -q .
}

wait_listen() { # port
	local i
	for i in $(seq 1 100); do
		port_free "$1" || return 0
		sleep 0.1
	done
	return 1
}

for p in $SINK_PORT $OFF_PORT $ON_PORT; do
	port_free "$p" || die "port $p is in use"
done

# the process tree's CPU seconds (utime+stime, reaped children included)
tree_cpu() { # pid
	local p all=$1 t=0 c
	for c in $(pgrep -P "$1" 2>/dev/null); do
		all="$all $c"
	done
	for p in $all; do
		[ -r "/proc/$p/stat" ] || continue
		c=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat")
		t=$((t + c))
	done
	echo "$t"
}

u=
[ "$(id -u)" = 0 ] && u="-u nobody"
# shellcheck disable=SC2086
setsid "$SINK" $u -m 5000 "127.0.0.1:$SINK_PORT" 4096 \
    >"$OUT/sink.log" 2>&1 </dev/null &
PIDS+=($!)
wait_listen $SINK_PORT || die "smtp-sink did not start"

conf() { # port audit
	cat <<EOF
# written by bench/audit_bench.sh
server_name = "bench.test";
workers = $WORKERS;
user = "$MSA_USER";
log = { level = "warning"; };
listeners = ( { name = "bench"; kind = "smtp"; address = "127.0.0.1:$1"; } );
backend = { address = "127.0.0.1:$SINK_PORT"; protocol = "smtp"; };
EOF
	if [ "$2" = on ]; then
		echo "audit = { enabled = true; file = \"$OUT/audit/audit.log\";"
		echo "  fsync = $FSYNC; verdict_fsync = $VFSYNC;"
		[ -n "$WNICE" ] && echo "  writer_nice = $WNICE;"
		[ -n "$PSYNC" ] && echo "  pending_sync = \"$PSYNC\";"
		echo "  rotate_size = \"1G\"; rotate_interval = 0;"
		[ "$HMAC" = 1 ] && echo "  hmac_key_file = \"$OUT/hmac.key\";"
		echo "};"
	fi
}

[ "$HMAC" = 1 ] && { openssl rand -hex 32 >"$OUT/hmac.key"; chmod 600 "$OUT/hmac.key"; }
conf $OFF_PORT off >"$OUT/off.conf"
conf $ON_PORT on >"$OUT/on.conf"
setsid "$PROXY" -f -c "$OUT/off.conf" >"$OUT/proxy-off.log" 2>&1 </dev/null &
OFF_PID=$!
PIDS+=($OFF_PID)
setsid "$PROXY" -f -c "$OUT/on.conf" >"$OUT/proxy-on.log" 2>&1 </dev/null &
ON_PID=$!
PIDS+=($ON_PID)
wait_listen $OFF_PORT || die "msaproxy (off) did not start: $(cat "$OUT/proxy-off.log")"
wait_listen $ON_PORT || die "msaproxy (on) did not start: $(cat "$OUT/proxy-on.log")"

# warm-up, not recorded (but counted: the audit log holds these too)
WARM=0
for p in $OFF_PORT $ON_PORT; do
	"$LOAD" -p "$p" -c 20 -n 2000 -m 10 -q >"$OUT/warm.out" 2>&1 ||
	    die "warm-up against $p failed: $(tail -3 "$OUT/warm.out")"
done
WARM=2000

field() { # file key
	sed -n "s/.*\\<$2=\\([^ ]*\\).*/\\1/p" "$1" | tail -1
}

printf 'round\tprofile\taudit\tmsgs\tok\tfail\tmsgs_per_s\tp50_ms\tp99_ms\tproxy_cpu_ms_per_msg\n' >"$RES"
run() { # round profile off|on
	local r=$1 prof=$2 a=$3 port pid n m out c0 c1 ok
	if [ "$a" = on ]; then port=$ON_PORT; pid=$ON_PID; else port=$OFF_PORT; pid=$OFF_PID; fi
	if [ "$prof" = A ]; then n=$A_MSGS; m=100; else n=$B_MSGS; m=1; fi
	out=$OUT/run-$r-$prof-$a.out
	c0=$(tree_cpu "$pid")
	"$LOAD" -p "$port" -c "$CONC" -n "$n" -m "$m" -s 10k -d 120 >"$out" 2>&1
	c1=$(tree_cpu "$pid")
	ok=$(field "$out" ok)
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$prof" "$a" "$n" \
	    "$ok" "$(field "$out" fail)" "$(field "$out" msgs_per_s)" \
	    "$(field "$out" p50_ms)" "$(field "$out" p99_ms)" \
	    "$(awk -v a="$c0" -v b="$c1" -v n="${ok:-0}" -v t="$(getconf CLK_TCK)" \
	    'BEGIN { printf "%.3f", (n > 0) ? (b - a) * 1000 / t / n : 0 }')" >>"$RES"
	tail -1 "$RES" | awk -F'\t' '{ printf "round %s %s audit %-3s %9s msgs/s p50 %s p99 %s ms, %s ms CPU/msg, ok %s fail %s\n", $1, $2, $3, $7, $8, $9, $10, $5, $6 }'
}

IFS=, read -r -a PLIST <<<"$PROFILES"
START=$(date -u '+%Y-%m-%d %H:%M:%S')
for r in $(seq 1 "$ROUNDS"); do
	for prof in "${PLIST[@]}"; do
		if [ $((r % 2)) = 1 ]; then
			run "$r" "$prof" off
			run "$r" "$prof" on
		else
			run "$r" "$prof" on
			run "$r" "$prof" off
		fi
	done
done
END=$(date -u '+%Y-%m-%d %H:%M:%S')

# stop "on" cleanly: its writer writes the last records
kill -TERM "$ON_PID"
for i in $(seq 1 100); do
	kill -0 "$ON_PID" 2>/dev/null || break
	sleep 0.1
done
DELIVERED=$(grep -c '"type":"tx",.*"result":"delivered"' "$OUT"/audit/audit.log*)
DELIVERED=$(echo "$DELIVERED" | awk -F: '{ s += $NF } END { print s }')
OK_ON=$(awk -F'\t' 'NR > 1 && $3 == "on" { s += $5 } END { print s + 0 }' "$RES")
# the smoke of wait_listen sends nothing; warm-up: 2000 messages
EXPECT=$((OK_ON + WARM))

{
	echo "audit_bench $START .. $END UTC; $ROUNDS rounds; workers=$WORKERS;" \
	    "hmac=$HMAC; fsync=$FSYNC; verdict_fsync=$VFSYNC; writer_nice=${WNICE:-default}; pending_sync=${PSYNC:-default}; sessions=$CONC; build $(sha256sum "$PROXY" | cut -c1-12)"
	echo "audit log on $(df -T "$OUT/audit" | awk 'NR == 2 { print $2, $1 }')"
	echo
	echo "| profile | audit | runs | msgs/s median (min..max) | p50 ms median | p99 ms median | proxy CPU ms/msg median | on/off ratio, median (min..max) |"
	echo "|---|---|---|---|---|---|---|---|"
	awk -F'\t' '
	function median(a, n,   i, j, t) {
		for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	NR > 1 {
		k = $2 SUBSEP $3; n[k]++
		v[k, n[k]] = $7; p50[k, n[k]] = $8; p99[k, n[k]] = $9; cpu[k, n[k]] = $10
		by[$1, $2, $3] = $7; prof[$2] = 1; rounds[$1] = 1
	}
	END {
		for (p in prof) {
			for (ai = 0; ai < 2; ai++) {
				a = ai ? "on" : "off"; k = p SUBSEP a
				mn = 1e18; mx = 0
				for (i = 1; i <= n[k]; i++) {
					x[i] = v[k, i]; y[i] = p50[k, i]; z[i] = p99[k, i]; w[i] = cpu[k, i]
					if (x[i] < mn) mn = x[i]; if (x[i] > mx) mx = x[i]
				}
				line = sprintf("| %s | %s | %d | %.1f (%.1f..%.1f) | %.2f | %.2f | %.3f |", p, a, n[k], median(x, n[k]), mn, mx, median(y, n[k]), median(z, n[k]), median(w, n[k]))
				if (a == "on") {
					m = 0; rmn = 1e9; rmx = 0
					for (r in rounds) if ((r, p, "off") in by && by[r, p, "off"] > 0) {
						q = by[r, p, "on"] / by[r, p, "off"]; rr[++m] = q
						if (q < rmn) rmn = q; if (q > rmx) rmx = q
					}
					line = line sprintf(" **%.3f** (%.3f..%.3f) |", median(rr, m), rmn, rmx)
				} else line = line " 1 |"
				print line
			}
		}
	}' "$RES" | sort
	echo
	echo "audit log: $DELIVERED delivered tx record(s); msaload accepted" \
	    "$EXPECT message(s) through \"on\" (warm-up included):" \
	    "$([ "$DELIVERED" = "$EXPECT" ] && echo match || echo MISMATCH)"
	"$TOP/msaproxy-audit" verify "$OUT"/audit/audit.log* \
	    $([ "$HMAC" = 1 ] && echo "--key $OUT/hmac.key") | head -1
} >"$SUM"
echo
cat "$SUM"
echo "raw runs: $RES"
