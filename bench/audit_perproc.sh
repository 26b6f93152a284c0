#!/bin/bash
# audit_perproc.sh - CPU and context switches per process (worker, audit
# writer) of one msaproxy under load: what docs/PERFORMANCE.md's "per
# process" tables of the audit trail come from.
#
# usage: bench/audit_perproc.sh [options] TAG
#   --proxy PATH     msaproxy binary ($TOP/msaproxy)
#   --off            audit.enabled = false
#   --audit TEXT     more settings for the audit section, e.g.
#                    'pending_sync = "before_reply";'
#   --delay US       backend: bench/slowsink answering the end of data after
#                    US microseconds (default: smtp-sink -m 5000)
#   -n N             messages measured (60000), after a 5000-message warm-up
#   --prof perf|strace  perf record -g / strace -c the worker and writer
#   -o DIR           logs, audit log, profiles (/tmp/audit_perproc.TAG)
#
# One worker; msaload -c 50 -n N -m 100 -s 10k; ports 20890 (backend) and
# 20891 (msaproxy).  Prints one line: ticks (10 ms) and ms/msg of the
# worker and of the writer, their voluntary/involuntary context switches
# before -> after, msgs/s and p50.  Run it under
# flock /tmp/msaproxy-bench.lock on a shared machine.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/msa_user.sh"
PROXY=$TOP/msaproxy; ON=true; EXTRA=; DELAY=; N=60000; PROF=; D=
while [ $# -gt 1 ]; do
	case $1 in
	--proxy) PROXY=$2; shift ;;
	--off) ON=false ;;
	--audit) EXTRA=$2; shift ;;
	--delay) DELAY=$2; shift ;;
	-n) N=$2; shift ;;
	--prof) PROF=$2; shift ;;
	-o) D=$2; shift ;;
	*) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 1 ;;
	esac
	shift
done
[ $# = 1 ] || { sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 1; }
TAG=$1
D=${D:-/tmp/audit_perproc.$TAG}
rm -rf "$D"; mkdir -p "$D/audit"; chmod 755 "$D"
[ -n "$MSA_USER" ] && chown "$MSA_USER" "$D/audit"
if [ -n "$DELAY" ]; then
	setsid "$TOP/bench/slowsink" 20890 "$DELAY" >"$D/sink.log" 2>&1 </dev/null &
else
	u=; [ "$(id -u)" = 0 ] && u="-u nobody"
	# shellcheck disable=SC2086
	setsid "$(command -v smtp-sink || echo /usr/sbin/smtp-sink)" $u -m 5000 \
	    127.0.0.1:20890 4096 >"$D/sink.log" 2>&1 </dev/null &
fi
SINK=$!
cat >"$D/proxy.conf" <<EOC
server_name = "bench.test";
workers = 1;
user = "$MSA_USER";
log = { level = "warning"; };
listeners = ( { name = "bench"; kind = "smtp"; address = "127.0.0.1:20891"; } );
backend = { address = "127.0.0.1:20890"; protocol = "smtp"; };
audit = { enabled = $ON; file = "$D/audit/audit.log"; rotate_size = "1G";
  rotate_interval = 0; $EXTRA };
EOC
setsid "$PROXY" -f -c "$D/proxy.conf" >"$D/proxy.log" 2>&1 </dev/null &
MP=$!
trap 'kill -TERM $MP $SINK 2>/dev/null; sleep 1; kill -KILL $MP $SINK 2>/dev/null' EXIT
sleep 1
"$TOP/bench/msaload" -p 20891 -c 20 -n 5000 -m 10 -q >/dev/null 2>&1
W=; A=
for k in $(pgrep -P $MP); do
	# the writer runs at audit.writer_nice (10), the worker at 0
	if [ "$(awk '{ print $19 }' /proc/$k/stat)" = 0 ]; then W=$k; else A=$k; fi
done
[ -z "$A" ] && A=$W	# audit off: no writer
st() { awk '{ print $14 + $15 }' /proc/$1/stat; }
cs() { awk '/^voluntary_ctxt_switches/ { v = $2 } /^nonvoluntary_ctxt_switches/ { n = $2 } END { print v "/" n }' /proc/$1/status; }
w0=$(st $W); a0=$(st $A); wc0=$(cs $W); ac0=$(cs $A)
P=()
case $PROF in
perf)	perf record -g -o "$D/perf-worker.data" -p $W >/dev/null 2>&1 & P+=($!)
	[ "$A" != "$W" ] && { perf record -g -o "$D/perf-writer.data" -p $A >/dev/null 2>&1 & P+=($!); } ;;
strace)	strace -c -o "$D/strace-worker.txt" -p $W 2>/dev/null & P+=($!)
	[ "$A" != "$W" ] && { strace -c -o "$D/strace-writer.txt" -p $A 2>/dev/null & P+=($!); } ;;
esac
"$TOP/bench/msaload" -p 20891 -c 50 -n "$N" -m 100 -s 10k -d 120 >"$D/load.out" 2>&1
[ ${#P[@]} -gt 0 ] && { kill -INT "${P[@]}"; wait "${P[@]}" 2>/dev/null; }
w1=$(st $W); a1=$(st $A); wc1=$(cs $W); ac1=$(cs $A)
ms() { awk -v t="$1" -v n="$N" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.4f", t * 1000 / hz / n }'; }
line="$TAG worker ticks $((w1 - w0)) ($(ms $((w1 - w0))) ms/msg) cs $wc0 -> $wc1"
[ "$A" != "$W" ] && line="$line; writer ticks $((a1 - a0)) ($(ms $((a1 - a0))) ms/msg) cs $ac0 -> $ac1"
echo "$line; $(grep -o 'msgs_per_s=[^ ]*\|p50_ms=[^ ]*\|ok=[^ ]*' "$D/load.out" | tr '\n' ' ')"
