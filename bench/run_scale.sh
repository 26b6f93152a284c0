#!/bin/bash
# run_scale.sh - 10,000 concurrent idle sessions and 1,000 concurrent
# active sessions through one msaproxy, with the resident memory per idle
# session.
#
# usage: bench/run_scale.sh [-i IDLE] [-a ACTIVE] [-n MSGS] [-m PER_SESSION]
#                           [-w WORKERS] [--tls] [-o OUTDIR]
#                           [--proxy PATH] [--load PATH]
#
#   -i IDLE     idle sessions held (10000)
#   -a ACTIVE   concurrent active sessions, run while the idle ones are
#               held (1000)
#   -n MSGS     messages sent by the active sessions (50000)
#   -m N        messages per active session (50)
#   -w WORKERS  msaproxy "workers" (1); limits.max_connections is set to
#               IDLE + ACTIVE + 100, per worker, so one worker can hold all
#   --tls       a "submission" listener with STARTTLS, require_auth and
#               AUTH PLAIN (sasldb): idle sessions stop after STARTTLS +
#               AUTH, active ones authenticate once per session.  Default:
#               a plain "smtp" listener, idle sessions stop after EHLO.
#   -o OUTDIR   results (scale.tsv), logs (default: a new /tmp/mpscale.XXXXXX)
#   --proxy / --load  msaproxy (TOP/msaproxy) and msaload (TOP/bench/msaload)
#
# Steps: smtp-sink on 127.0.0.1 (SINK_PORT, default 20725, or the next
# free one), msaproxy (PROXY_PORT, default 20750, or the next free one)
# relaying to it, a smoke test (3 messages) and 50 warm-up sessions; Rss
# and Pss of msaproxy's process tree (/proc/PID/smaps_rollup, master and
# workers); msaload --idle IDLE (at most 200 handshakes in flight); 3 s
# after IDLE_READY, Rss and Pss again: (during - before) / IDLE is the
# memory per idle session.  Then, with the idle sessions still held,
# msaload -c ACTIVE sends MSGS messages (10 KB, DATA) through the proxy to
# smtp-sink; the run must end with errors=0 and no failed session, and
# the idle msaload must still hold all its sessions afterwards (dropped=0).
# The peak number of established client connections to msaproxy during
# the active run is sampled with ss once a second.
#
# File descriptors: each idle session costs msaproxy one descriptor (no
# backend connection is opened before MAIL FROM), each active one two.
# msaproxy does not raise its own RLIMIT_NOFILE, so this script raises the
# soft limit (ulimit -n) to min(65536, hard limit) for everything it
# starts and refuses to run if that is below IDLE + 2*ACTIVE + 256.  A
# service needs the same: LimitNOFILE= in the systemd unit, or ulimit -n
# in the init script (see msaproxy(8)).
#
# Everything runs from OUTDIR and is stopped on exit, by PID.
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/msa_user.sh"	# MSA_USER: who the workers run as
IDLE=10000
ACTIVE=1000
MSGS=50000
PER=50
WORKERS=1
TLS=0
OUT=
PROXY_SRC=$TOP/msaproxy
LOAD=$TOP/bench/msaload
AUTH_USER=bench
AUTH_PASS=benchpass

usage() {
	sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 1
}

while [ $# -gt 0 ]; do
	case $1 in
	-i) IDLE=${2:-}; shift ;;
	-a) ACTIVE=${2:-}; shift ;;
	-n) MSGS=${2:-}; shift ;;
	-m) PER=${2:-}; shift ;;
	-w) WORKERS=${2:-}; shift ;;
	-o) OUT=${2:-}; shift ;;
	--tls) TLS=1 ;;
	--proxy) PROXY_SRC=${2:-}; shift ;;
	--load) LOAD=${2:-}; shift ;;
	*) usage ;;
	esac
	shift
done

die() {
	echo "run_scale: $*" >&2
	exit 1
}

for v in "$IDLE" "$ACTIVE" "$MSGS" "$PER" "$WORKERS"; do
	case $v in ''|*[!0-9]*) die "not a number: '$v'" ;; esac
done
[ -x "$PROXY_SRC" ] || die "no msaproxy at $PROXY_SRC (make)"
[ -x "$LOAD" ] || die "no msaload at $LOAD (make)"
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || die "smtp-sink not found (Debian package postfix)"

# ---- descriptors ----------------------------------------------------------
HARD=$(ulimit -Hn)
WANT=65536
if [ "$HARD" != unlimited ] && [ "$HARD" -lt "$WANT" ]; then
	echo "run_scale: hard RLIMIT_NOFILE is $HARD, using it (not $WANT)" >&2
	WANT=$HARD
fi
ulimit -n "$WANT" || die "cannot raise the descriptor limit to $WANT"
NEED=$((IDLE + 2 * ACTIVE + 256))
[ "$(ulimit -n)" -ge "$NEED" ] ||
    die "descriptor limit $(ulimit -n) < $NEED needed"

if [ -z "$OUT" ]; then
	OUT=$(mktemp -d /tmp/mpscale.XXXXXX) || die "mktemp"
	chmod 755 "$OUT"	# the unprivileged workers read the sasldb
else
	mkdir -p "$OUT" || die "cannot create $OUT"
	OUT=$(cd "$OUT" && pwd)
fi
W=$OUT/work
mkdir -p "$W" || die "cannot create $W"
PROXY=$W/msaproxy-scale
cp "$PROXY_SRC" "$PROXY" || die "cannot copy $PROXY_SRC"

port_free() {
	[ -z "$(ss -Htan "sport = :$1" 2>/dev/null)" ]
}
pick_port() {
	local p=$1
	while [ "$p" -le 20999 ]; do
		port_free "$p" && { echo "$p"; return 0; }
		p=$((p + 1))
	done
	return 1
}
SINK_PORT=${SINK_PORT:-$(pick_port 20725)} || die "no free port"
PROXY_PORT=${PROXY_PORT:-$(pick_port 20750)} || die "no free port"

wait_listen() { # port seconds
	local i=0
	while [ "$i" -lt $(($2 * 10)) ]; do
		[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

spawn() { # pidfile logfile cmd...: own session; PID (after exec) in $1
	local pidf=$1 log=$2 i=0
	shift 2
	rm -f "$pidf"
	setsid sh -c 'echo $$ >"$0"; exec "$@"' "$pidf" "$@" >"$log" 2>&1 &
	while [ ! -s "$pidf" ] && [ "$i" -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -s "$pidf" ] && cat "$pidf"
}

tree() {
	local p c
	for p in "$@"; do
		[ -d "/proc/$p" ] || continue
		echo "$p"
		for c in $(pgrep -P "$p" 2>/dev/null); do
			tree "$c"
		done
	done
}

alive() {
	local st
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st%% *}" != Z ]
}

stop_pid() { # pid: TERM, KILL after 5 s, descendants too
	local pid=$1 all i=0 p a
	[ -n "$pid" ] && alive "$pid" || return 0
	all=$(tree "$pid")
	kill -TERM "$pid" 2>/dev/null
	while [ "$i" -lt 50 ]; do
		a=0
		for p in $all; do alive "$p" && a=1; done
		[ "$a" = 0 ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	for p in $all; do kill -KILL "$p" 2>/dev/null; done
}

tree_mem() { # pid: "rss_kb pss_kb nprocs"
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

SINK_PID='' PROXY_PID='' IDLE_PID='' SAMPLER=''
cleanup() {
	trap - EXIT INT TERM
	[ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null
	stop_pid "$IDLE_PID"
	stop_pid "$PROXY_PID"
	stop_pid "$SINK_PID"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- smtp-sink, msaproxy ----------------------------------------------------
u=
[ "$(id -u)" = 0 ] && u="-u nobody"
# -m: up to 5000 simultaneous sessions (its default is 256)
# shellcheck disable=SC2086
SINK_PID=$(spawn "$W/sink.pid" "$W/sink.log" "$SINK" $u -m 5000 \
    "127.0.0.1:$SINK_PORT" 4096)
[ -n "$SINK_PID" ] && wait_listen "$SINK_PORT" 10 ||
    die "smtp-sink did not start (see $W/sink.log)"

MAXC=$((IDLE + ACTIVE + 100))
LARGS=()
MODE=ehlo
if [ "$TLS" = 1 ]; then
	MODE=starttls+auth
	LARGS=(--starttls --auth "$AUTH_USER:$AUTH_PASS")
	TLSD=$W/tls
	mkdir -p "$TLSD"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
	    -nodes -days 7 -subj "/CN=bench.test" -keyout "$TLSD/key.pem" \
	    -out "$TLSD/cert.pem" >"$TLSD/openssl.log" 2>&1 ||
	    die "openssl could not make a certificate"
	SASLPASSWD=$(command -v saslpasswd2 || echo /usr/sbin/saslpasswd2)
	echo "$AUTH_PASS" | "$SASLPASSWD" -f "$TLSD/sasldb" -a msaproxy \
	    -u localhost -c -p "$AUTH_USER" || die "saslpasswd2 failed"
	chmod 644 "$TLSD/sasldb"
	cat >"$W/msaproxy.conf" <<EOF
# written by bench/run_scale.sh
server_name = "bench.test";
workers = $WORKERS;
user = "$MSA_USER";
log = { level = "warning"; };
limits = { max_connections = $MAXC; };
listeners = (
  { name = "scale-tls"; kind = "submission";
    address = "127.0.0.1:$PROXY_PORT"; require_auth = true; }
);
backend = { address = "127.0.0.1:$SINK_PORT"; protocol = "smtp"; };
tls = {
  certificates = ( { cert = "$TLSD/cert.pem"; key = "$TLSD/key.pem"; } );
  session_tickets = true;
};
sasl = {
  hostname = "localhost";
  mechanisms = "PLAIN";
  sasldb_path = "$TLSD/sasldb";
};
EOF
else
	cat >"$W/msaproxy.conf" <<EOF
# written by bench/run_scale.sh
server_name = "bench.test";
workers = $WORKERS;
user = "$MSA_USER";
log = { level = "warning"; };
limits = { max_connections = $MAXC; };
listeners = (
  { name = "scale"; kind = "smtp"; address = "127.0.0.1:$PROXY_PORT"; }
);
backend = { address = "127.0.0.1:$SINK_PORT"; protocol = "smtp"; };
EOF
fi

PROXY_PID=$(spawn "$W/proxy.pid" "$W/proxy.log" "$PROXY" -f \
    -c "$W/msaproxy.conf")
[ -n "$PROXY_PID" ] && wait_listen "$PROXY_PORT" 10 ||
    { cat "$W/proxy.log" >&2; die "msaproxy did not start"; }
NOFILE=$(awk '/^Max open files/ { print $4 }' "/proc/$PROXY_PID/limits")
"$LOAD" -p "$PROXY_PORT" -c 1 -n 3 -m 3 -d 20 -q ${LARGS[@]+"${LARGS[@]}"} \
    >"$W/smoke.out" 2>&1 ||
    { cat "$W/smoke.out" "$W/proxy.log" >&2; die "smoke test failed"; }
"$LOAD" -p "$PROXY_PORT" -c 50 -n 50 -m 1 -q ${LARGS[@]+"${LARGS[@]}"} \
    >"$W/warmup.out" 2>&1
sleep 1

echo "run_scale: $("$PROXY" -V 2>&1 | head -1), workers=$WORKERS," \
    "mode=$MODE, RLIMIT_NOFILE of msaproxy $NOFILE," \
    "max_connections=$MAXC per worker"

# ---- idle -----------------------------------------------------------------
read -r rss0 pss0 n0 < <(tree_mem "$PROXY_PID")
T0=$(date +%s.%N)
IDLE_PID=$(spawn "$W/idle.pid" "$W/idle.out" "$LOAD" -p "$PROXY_PORT" \
    -c 200 --idle "$IDLE" -d 3600 --timeout 120 -q \
    ${LARGS[@]+"${LARGS[@]}"})
k=0
while ! grep -q '^IDLE_READY' "$W/idle.out" 2>/dev/null; do
	alive "$IDLE_PID" && [ "$k" -lt 3000 ] || break
	sleep 0.1
	k=$((k + 1))
done
line=$(grep '^IDLE_READY' "$W/idle.out")
[ -n "$line" ] || { cat "$W/idle.out" >&2; die "idle sessions never ready"; }
T1=$(date +%s.%N)
sleep 3
read -r rss1 pss1 n1 < <(tree_mem "$PROXY_PID")
clients=$(ss -Htn state established "( sport = :$PROXY_PORT )" | wc -l)
bconns=$(ss -Htn state established "( dport = :$SINK_PORT )" | wc -l)
ready=$(echo "$line" | sed 's/.*sessions=\([0-9]*\).*/\1/')
failed=$(echo "$line" | sed 's/.*failed=\([0-9]*\).*/\1/')
echo "$line (in $(echo "$T1 - $T0" | bc) s); established client" \
    "connections at msaproxy: $clients; backend connections: $bconns"
awk -v s="$IDLE" -v rd="$ready" -v r0="$rss0" -v r1="$rss1" -v p0="$pss0" \
    -v p1="$pss1" -v n0="$n0" -v n1="$n1" 'BEGIN { d = rd > 0 ? rd : 1
    printf "memory: Rss %d -> %d kB, Pss %d -> %d kB (%d -> %d processes): Rss %.2f kB, Pss %.2f kB per idle session\n",
    r0, r1, p0, p1, n0, n1, (r1 - r0) / d, (p1 - p0) / d }'

# ---- active, with the idle sessions held ----------------------------------
(
	max=0
	while :; do
		c=$(ss -Htn state established "( sport = :$PROXY_PORT )" |
		    wc -l)
		[ "$c" -gt "$max" ] && max=$c && echo "$max" >"$W/peak"
		sleep 1
	done
) &
SAMPLER=$!
"$LOAD" -p "$PROXY_PORT" -c "$ACTIVE" -n "$MSGS" -m "$PER" -d 300 \
    --timeout 60 -q ${LARGS[@]+"${LARGS[@]}"} >"$W/active.out" 2>&1
arc=$?
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null
SAMPLER=
peak=$(cat "$W/peak" 2>/dev/null || echo 0)
grep -E '^(params|elapsed_s|sessions|messages|throughput|latency)' \
    "$W/active.out"
echo "active run: msaload exit $arc; peak established client connections" \
    "at msaproxy (idle + active): $peak"
aerr=$(awk '/^messages/ { for (i = 2; i <= NF; i++) if ($i ~ /^errors=/)
    { sub("errors=", "", $i); print $i } }' "$W/active.out")
aacc=$(awk '/^messages/ { for (i = 2; i <= NF; i++) if ($i ~ /^accepted=/)
    { sub("accepted=", "", $i); print $i } }' "$W/active.out")
afail=$(awk '/^sessions/ { for (i = 2; i <= NF; i++) if ($i ~ /^failed=/)
    { sub("failed=", "", $i); print $i } }' "$W/active.out")

# ---- the idle sessions must all still be there ----------------------------
still=$(ss -Htn state established "( sport = :$PROXY_PORT )" | wc -l)
stop_pid "$IDLE_PID"
IDLE_PID=
sleep 0.5
iend=$(grep -E '^idle' "$W/idle.out" | tail -1)
echo "idle sessions after the active run: $still established; msaload: $iend"
alive "$PROXY_PID" || die "msaproxy died (see $W/proxy.log)"

printf 'date\tmode\tworkers\tnofile\tidle\tready\tfailed\trss0_kb\trss1_kb\tpss0_kb\tpss1_kb\trss_kb_per_idle\tpss_kb_per_idle\tbackend_conns_idle\tactive\tmsgs\taccepted\terrors\tfailed_sessions\tpeak_conns\tidle_after\n' \
    >"$OUT/scale.tsv"
awk -v dt="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -v m="$MODE" -v w="$WORKERS" \
    -v nf="$NOFILE" -v s="$IDLE" -v rd="$ready" -v f="$failed" \
    -v r0="$rss0" -v r1="$rss1" -v p0="$pss0" -v p1="$pss1" -v b="$bconns" \
    -v a="$ACTIVE" -v n="$MSGS" -v ac="${aacc:-0}" -v e="${aerr:-?}" \
    -v af="${afail:-?}" -v pk="$peak" -v st="$still" \
    'BEGIN { d = rd > 0 ? rd : 1
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
    dt, m, w, nf, s, rd, f, r0, r1, p0, p1, (r1 - r0) / d, (p1 - p0) / d, b,
    a, n, ac, e, af, pk, st }' >>"$OUT/scale.tsv"
echo "results: $OUT/scale.tsv"

ok=1
[ "$ready" = "$IDLE" ] && [ "$failed" = 0 ] || ok=0
[ "$arc" = 0 ] && [ "${aerr:-1}" = 0 ] && [ "${afail:-1}" = 0 ] &&
    [ "${aacc:-0}" = "$MSGS" ] || ok=0
[ "$still" -ge "$IDLE" ] || ok=0
if [ "$ok" = 1 ]; then
	echo "SCALE OK: $IDLE idle + $ACTIVE active sessions, 0 errors"
else
	echo "SCALE FAILED (see $W)"
	exit 1
fi
