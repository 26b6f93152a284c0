#!/bin/bash
# run_bench.sh - msaproxy throughput, latency and idle memory, measured
# against the smtp-sink ceiling in one run.
#
# usage: bench/run_bench.sh [-r ROUNDS] [-w WORKERS[,WORKERS...]] [-o OUTDIR]
#                           [-P PROFILES] [--tls] [--peers]
#                           [-a MSGS] [-b MSGS] [--at MSGS] [--bt MSGS]
#                           [--dovecot-msgs MSGS] [-d SECS] [-i IDLE]
#                           [--ceiling-only] [--proxy PATH] [--load PATH]
#                           [--peer-matrix]
#
#   -r ROUNDS   rounds (3).  Each round runs, per profile, a ceiling run
#               (msaload -> smtp-sink) immediately followed by a proxy run
#               (msaload -> msaproxy -> smtp-sink) for each WORKERS value,
#               then the profile's other targets (resumed TLS, peers); in
#               that order in odd rounds, reversed in even ones.
#   -w LIST     msaproxy "workers" settings, e.g. 1 or 1,2 (default 1: on
#               the 2-vCPU test machine 2 workers were not faster and cost
#               more CPU per message, see docs/PERFORMANCE.md); one
#               msaproxy per value, each on its own port
#   -o OUTDIR   where results.tsv, idle.tsv, summary.md and logs go
#               (default: a new /tmp/mpbench.XXXXXX)
#   -P LIST     profiles, comma-separated, from A, B, A-TLS, B-TLS
#               (default A,B; see below)
#   --tls       shorthand for -P A,B,A-TLS,B-TLS
#   --peers     A-TLS is also run against nginx's mail proxy and Dovecot's
#               submission service, started with the team's run_peers.sh
#               (PEER_BENCH, default TOP/../shared/bench; needs nginx with
#               its mail module and dovecot-submissiond installed).  Each
#               round then runs ceiling, msaproxy, nginx, dovecot (peers
#               and proxies reversed in even rounds), and the summary gives
#               msaproxy/nginx and msaproxy/Dovecot ratios of msgs/s.
#               Optional: skipped with a note where the directory or the
#               daemons are missing.
#   -a / -b     messages per run for profile A (100000) / B (40000); also
#               the ceiling runs paired with A-TLS / B-TLS
#   --at / --bt messages per run for A-TLS (50000) / B-TLS (10000)
#   --dovecot-msgs   messages per Dovecot A-TLS run (15000; it is slow)
#   -d SECS     cap per run (60); msgs/s stays valid when it is hit
#   -i IDLE     idle sessions for the memory test (2000; 0 = skip)
#   --ceiling-only   no proxy at all: ceiling runs only (tests the setup)
#   --proxy / --load paths of msaproxy (TOP/msaproxy) and msaload
#               (TOP/bench/msaload if up to date, else compiled into OUTDIR);
#               the team's smtpload takes the same options and prints the
#               same result lines, so --load PATH/smtpload cross-checks
#               the generator
#   --peer-matrix    afterwards, if the team's bench directory exists
#               (PEER_BENCH, default TOP/../shared/bench), also measure the
#               first msaproxy of each kind with its smtpload and
#               bench_matrix.sh as peer "ext" (plain: A and B; tls: A and B
#               with STARTTLS + AUTH); needs port 20025.  Optional: a fresh
#               clone has none.
#
# Profiles (10 KB messages, 1 recipient, DATA, no pipelining, 50 sessions):
#   A      100 messages per session      B  1 message per session
#   A-TLS  like A, with STARTTLS + AUTH PLAIN once per session
#   B-TLS  like B, with STARTTLS + AUTH PLAIN per message: each message
#          pays a full TLS handshake ("proxy") and, in a second run, a
#          resumed one ("proxy-resume": msaload --tls-resume offers the
#          first session ticket it got on every later connection)
# The ceiling (msaload -> smtp-sink) is plain A or B: the sink has no TLS.
# For the TLS profiles msaproxy runs with its own config: a "submission"
# listener with require_auth, a tls section with a throwaway self-signed
# ECDSA P-256 certificate (openssl, in OUTDIR/work/tls) and session tickets
# on, and a sasl section (PLAIN, sasldb made with saslpasswd2 -a msaproxy
# -u localhost; user bench, password benchpass, as for the team's peers).
# ratio = target msgs/s / msgs/s of the ceiling run just before it, median
# over the rounds; likewise for p99.  CPU = utime+stime of the target's
# process tree (reaped children included) per accepted message; in B and
# B-TLS a message is a session, so this is the cost of a session.
# Memory: a fresh msaproxy, 50 warm-up sessions, then IDLE sessions that
# stop after EHLO (with the TLS profiles also: after STARTTLS + AUTH);
# (Rss|Pss during - before) / IDLE, summed over the msaproxy process tree
# from /proc/PID/smaps_rollup.
#
# Everything listens on 127.0.0.1, ports 20000-20999 (SINK_PORT, default
# 20825, and PROXY_PORT, default 20850 and up, or the next free ones;
# --peers: nginx 20900-20902 and Dovecot 20910-20911, or the next free
# ones; the team's own runs use 20025-20300), runs from a temp dir and is
# stopped on exit (peers too).  msaload, smtp-sink and msaproxy each run
# in their own session (setsid), i.e. their own scheduler autogroup.  msaproxy runs from a
# private copy (OUTDIR/work/mpbench-proxy): a rebuild, or a "pkill
# msaproxy" elsewhere on the machine, must not change or stop what is
# being measured.  If it dies anyway, how it ended is recorded in
# OUTDIR/events.txt and it is restarted for the next run.
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/bench/msa_user.sh"	# MSA_USER: who the workers run as
ROUNDS=3
WORKERS=1
OUT=
A_MSGS=100000
B_MSGS=40000
DUR=60
IDLE=2000
CEILING_ONLY=0
PEER_MATRIX=0
PROFILES=A,B
PEERS=0
AT_MSGS=50000
BT_MSGS=10000
DOVECOT_MSGS=15000
AUTH_USER=bench
AUTH_PASS=benchpass
PROXY_SRC=$TOP/msaproxy
LOAD=
CONC=50
SIZE=10240

usage() {
	sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 1
}

while [ $# -gt 0 ]; do
	case $1 in
	-r) ROUNDS=${2:-}; shift ;;
	-w) WORKERS=${2:-}; shift ;;
	-o) OUT=${2:-}; shift ;;
	-a) A_MSGS=${2:-}; shift ;;
	-b) B_MSGS=${2:-}; shift ;;
	-d) DUR=${2:-}; shift ;;
	-i) IDLE=${2:-}; shift ;;
	-P) PROFILES=${2:-}; shift ;;
	--tls) PROFILES=A,B,A-TLS,B-TLS ;;
	--peers) PEERS=1 ;;
	--at) AT_MSGS=${2:-}; shift ;;
	--bt) BT_MSGS=${2:-}; shift ;;
	--dovecot-msgs) DOVECOT_MSGS=${2:-}; shift ;;
	--ceiling-only) CEILING_ONLY=1 ;;
	--peer-matrix) PEER_MATRIX=1 ;;
	--proxy) PROXY_SRC=${2:-}; shift ;;
	--load) LOAD=${2:-}; shift ;;
	*) usage ;;
	esac
	shift
done

die() {
	echo "run_bench: $*" >&2
	exit 1
}

isnum() {
	case $1 in
	''|*[!0-9]*) return 1 ;;
	esac
	return 0
}

read -r -a WLIST <<<"${WORKERS//,/ }"
for v in "$ROUNDS" "$A_MSGS" "$B_MSGS" "$AT_MSGS" "$BT_MSGS" \
    "$DOVECOT_MSGS" "$DUR" "$IDLE" "${WLIST[@]}"; do
	isnum "$v" || die "not a number: '$v'"
done
[ "$ROUNDS" -ge 1 ] || die "-r: at least 1"
[ "${#WLIST[@]}" -ge 1 ] || die "-w: no value"
read -r -a PLIST <<<"${PROFILES//,/ }"
[ "${#PLIST[@]}" -ge 1 ] || die "-P: no profile"
NEED_PLAIN=0
NEED_TLS=0
for v in "${PLIST[@]}"; do
	case $v in
	A|B) NEED_PLAIN=1 ;;
	A-TLS|B-TLS) NEED_TLS=1 ;;
	*) die "-P: unknown profile '$v' (A, B, A-TLS, B-TLS)" ;;
	esac
done

# msaproxy instances: one per workers value and kind of config ("plain":
# an smtp listener; "tls": submission + STARTTLS + AUTH), each on its port
declare -a IW IM
NP=0
if [ "$CEILING_ONLY" = 0 ]; then
	for m in plain tls; do
		[ "$m" = plain ] && [ "$NEED_PLAIN" = 0 ] && continue
		[ "$m" = tls ] && [ "$NEED_TLS" = 0 ] && continue
		for w in "${WLIST[@]}"; do
			IW[NP]=$w
			IM[NP]=$m
			NP=$((NP + 1))
		done
	done
fi

SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$SINK" ] || die "smtp-sink not found (Debian package postfix)"
command -v ss >/dev/null || die "ss not found (iproute2)"
if [ "$NEED_TLS" = 1 ] && [ "$NP" -gt 0 ]; then
	command -v openssl >/dev/null || die "openssl not found"
	SASLPASSWD=$(command -v saslpasswd2 || echo /usr/sbin/saslpasswd2)
	[ -x "$SASLPASSWD" ] ||
	    die "saslpasswd2 not found (Debian package sasl2-bin)"
fi

if [ -z "$OUT" ]; then
	OUT=$(mktemp -d /tmp/mpbench.XXXXXX) || die "mktemp failed"
	# msaproxy's workers run unprivileged (user below): they read the
	# sasldb at run time, so the directory must be traversable
	chmod 755 "$OUT"
else
	mkdir -p "$OUT" || die "cannot create $OUT"
	OUT=$(cd "$OUT" && pwd)
fi
W=$OUT/work
mkdir -p "$W" || die "cannot create $W"
RES=$OUT/results.tsv
IDLE_RES=$OUT/idle.tsv
SUM=$OUT/summary.md
EVENTS=$OUT/events.txt
: >"$EVENTS"

# The generator: the tree's build if up to date, else compiled here.
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

PROXY=$W/mpbench-proxy
PROXY_VERSION=
if [ "$NP" -gt 0 ]; then
	[ -x "$PROXY_SRC" ] || die "no msaproxy at $PROXY_SRC (scripts/build.sh)"
	cp "$PROXY_SRC" "$PROXY" || die "cannot copy $PROXY_SRC"
	PROXY_VERSION="$("$PROXY" -V 2>&1 | head -1), sha256"
	PROXY_VERSION="$PROXY_VERSION $(sha256sum "$PROXY" | cut -c1-12)"
fi

CLK_TCK=$(getconf CLK_TCK)
TIME=/usr/bin/time
[ -x "$TIME" ] || TIME=

# ---- ports --------------------------------------------------------------

port_free() {
	[ -z "$(ss -Htan "sport = :$1" 2>/dev/null)" ]
}

USED_PORTS=" "
pick_port() { # preferred [count]: the first of count free ports in a row
	local p=$1 n=${2:-1} k ok
	while [ $((p + n - 1)) -le 20999 ]; do
		ok=1
		for ((k = 0; k < n; k++)); do
			if [ "${USED_PORTS#* $((p + k)) }" != "$USED_PORTS" ] ||
			    ! port_free $((p + k)); then
				ok=0
				break
			fi
		done
		if [ "$ok" = 1 ]; then
			for ((k = 0; k < n; k++)); do
				USED_PORTS="$USED_PORTS$((p + k)) "
			done
			echo "$p"
			return 0
		fi
		p=$((p + 1))
	done
	return 1
}

in_range() {
	isnum "$1" && [ "$1" -ge 20000 ] && [ "$1" -le 20999 ] ||
	    die "port '$1' outside 20000-20999"
}

if [ -n "${SINK_PORT:-}" ]; then
	in_range "$SINK_PORT"
else
	SINK_PORT=$(pick_port 20825) || die "no free port"
fi
USED_PORTS=" $SINK_PORT "
declare -a PPORT PPID_ PSTARTS
next=${PROXY_PORT:-20850}
in_range "$next"
for ((i = 0; i < NP; i++)); do
	if [ -n "${PROXY_PORT:-}" ]; then
		PPORT[i]=$((PROXY_PORT + i))
		in_range "${PPORT[i]}"
	else
		PPORT[i]=$(pick_port "$next") || die "no free port"
		next=$((PPORT[i] + 1))
	fi
	USED_PORTS="$USED_PORTS${PPORT[i]} "
	PPID_[i]=
	PSTARTS[i]=0
done

# --peers: nginx and Dovecot from the team's bench directory, A-TLS only
PB=$(cd "${PEER_BENCH:-$TOP/../shared/bench}" 2>/dev/null && pwd)
declare -a PEER_LIST
declare -A PEER_PORT PEER_MAIN
if [ "$PEERS" = 1 ]; then
	case " ${PLIST[*]} " in
	*" A-TLS "*) ;;
	*) die "--peers needs profile A-TLS (-P ...,A-TLS or --tls)" ;;
	esac
fi
if [ "$PEERS" = 1 ] && { [ -z "$PB" ] || [ ! -x "$PB/run_peers.sh" ]; }
then
	echo "run_bench: --peers: no run_peers.sh in" \
	    "${PEER_BENCH:-$TOP/../shared/bench}, peers skipped" >&2
elif [ "$PEERS" = 1 ]; then
	for peer in nginx dovecot; do
		case $peer in
		nginx)
			if ! command -v nginx >/dev/null || [ ! -e \
			    /usr/lib/nginx/modules/ngx_mail_module.so ]; then
				echo "run_bench: --peers: nginx or its mail" \
				    "module (libnginx-mod-mail) missing," \
				    "nginx skipped" >&2
				continue
			fi
			p=$(pick_port 20900 3) || die "no free ports"
			USED_PORTS="$USED_PORTS$p $((p + 1)) $((p + 2)) " ;;
		dovecot)
			if ! command -v dovecot >/dev/null || [ ! -e \
			    /usr/lib/dovecot/submission-login ]; then
				echo "run_bench: --peers: dovecot or its" \
				    "submission service" \
				    "(dovecot-submissiond) missing, Dovecot" \
				    "skipped" >&2
				continue
			fi
			p=$(pick_port 20910 2) || die "no free ports"
			USED_PORTS="$USED_PORTS$p $((p + 1)) " ;;
		esac
		PEER_LIST+=("$peer")
		PEER_PORT[$peer]=$p
	done
fi

wait_listen() { # port seconds
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

# Like spawn, but a shell stays behind as the parent and records the exit
# status ("128+N" = killed by signal N) in $1.status; core files land in
# the working directory $W.
spawn_watched() { # pidfile logfile cmd...
	local pidf=$1 log=$2 i=0
	shift 2
	rm -f "$pidf" "$pidf.status"
	(cd "$W" && exec setsid sh -c 'ulimit -c unlimited 2>/dev/null
	    "$@" </dev/null & echo $! >"$0"; wait $!; echo $? >"$0.status"' \
	    "$pidf" "$@" >>"$log" 2>&1) &
	while [ ! -s "$pidf" ] && [ "$i" -lt 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -s "$pidf" ] && cat "$pidf"
}

tree() { # pid...: the pids and all their descendants
	local p c
	for p in "$@"; do
		[ -d "/proc/$p" ] || continue
		echo "$p"
		for c in $(pgrep -P "$p" 2>/dev/null); do
			tree "$c"
		done
	done
}

alive() { # pid: exists and is not a zombie
	local st
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st%% *}" != Z ]
}

stop_pid() { # pid [name]: TERM, then KILL after 5 s; descendants too
	local pid=$1 all i=0 p alive
	[ -n "$pid" ] && alive "$pid" || return 0
	all=$(tree "$pid")
	kill -TERM "$pid" 2>/dev/null
	while [ "$i" -lt 50 ]; do
		alive=0
		for p in $all; do
			alive "$p" && alive=1
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

# utime+stime (+ reaped children) of a process tree, in clock ticks
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
IDLE_PID=
PEERS_STARTED=
PEERS_RAN=

# The peers are daemons (they detach): stopped through run_peers.sh, by
# their PID files, then whatever is left of their process trees.
stop_peers() {
	local peer pids
	for peer in $PEERS_STARTED; do
		pids=$(tree "${PEER_MAIN[$peer]}")
		"$PB/run_peers.sh" stop "$peer" "$W/peers" >/dev/null 2>&1
		for p in $pids; do
			alive "$p" && kill -KILL "$p" 2>/dev/null
		done
	done
	PEERS_STARTED=
}

cleanup() {
	local i
	trap - EXIT INT TERM
	stop_pid "$IDLE_PID" msaload
	for ((i = 0; i < NP; i++)); do
		stop_pid "${PPID_[i]}" msaproxy
	done
	stop_peers
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

# A throwaway self-signed ECDSA P-256 certificate and a sasldb with one
# user, for the "tls" instances.
TLSD=$W/tls
make_tls_material() {
	mkdir -p "$TLSD" || die "cannot create $TLSD"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
	    -nodes -days 7 -subj "/CN=bench.test" -keyout "$TLSD/key.pem" \
	    -out "$TLSD/cert.pem" >"$TLSD/openssl.log" 2>&1 ||
	    die "openssl could not make a certificate (see $TLSD/openssl.log)"
	rm -f "$TLSD/sasldb"
	echo "$AUTH_PASS" | "$SASLPASSWD" -f "$TLSD/sasldb" -a msaproxy \
	    -u localhost -c -p "$AUTH_USER" ||
	    die "saslpasswd2 could not make $TLSD/sasldb"
	chmod 644 "$TLSD/sasldb"
}

inst_name() { # index
	echo "w${IW[$1]}-${IM[$1]}"
}

conf_file() { # index
	echo "$W/msaproxy-$(inst_name "$1").conf"
}

write_conf() { # index
	local i=$1
	if [ "${IM[i]}" = plain ]; then
		cat >"$(conf_file "$i")" <<EOF
# written by bench/run_bench.sh
server_name = "bench.test";
workers = ${IW[i]};
user = "$MSA_USER";
log = { level = "warning"; };
listeners = (
  { name = "bench"; kind = "smtp"; address = "127.0.0.1:${PPORT[i]}"; }
);
backend = { address = "127.0.0.1:$SINK_PORT"; protocol = "smtp"; };
EOF
		return
	fi
	cat >"$(conf_file "$i")" <<EOF
# written by bench/run_bench.sh
server_name = "bench.test";
workers = ${IW[i]};
user = "$MSA_USER";
log = { level = "warning"; };
listeners = (
  { name = "bench-tls"; kind = "submission";
    address = "127.0.0.1:${PPORT[i]}"; require_auth = true; }
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
}

# msaload's options for the TLS profiles (and any TLS target)
TLS_ARGS=(--starttls --auth "$AUTH_USER:$AUTH_PASS")

# Start the peers (--peers) in $W/peers, relaying to our sink.
start_peers() {
	local peer
	for peer in "${PEER_LIST[@]}"; do
		if ! NGINX_SSL_PROTOCOLS="TLSv1.2 TLSv1.3" \
		    "$PB/run_peers.sh" start "$peer" "$W/peers" \
		    "${PEER_PORT[$peer]}" "$SINK_PORT" >"$W/peer-$peer.log" 2>&1
		then
			cat "$W/peer-$peer.log" >&2
			"$PB/run_peers.sh" stop "$peer" "$W/peers" \
			    >/dev/null 2>&1
			die "$peer did not start (see above)"
		fi
		PEERS_STARTED="$PEERS_STARTED $peer"
		case $peer in
		nginx) v=$(nginx -v 2>&1 | sed 's/.*nginx\///') ;;
		dovecot) v=$(dovecot --version 2>/dev/null | cut -d' ' -f1) ;;
		esac
		PEERS_RAN="${PEERS_RAN:+$PEERS_RAN; }$peer $v on port"
		PEERS_RAN="$PEERS_RAN ${PEER_PORT[$peer]}"
		case $peer in
		nginx) PEER_MAIN[$peer]=$(cat "$W/peers/nginx/nginx.pid") ;;
		dovecot) PEER_MAIN[$peer]=$(cat \
		    "$W/peers/dovecot/run/master.pid") ;;
		esac
		PEER_MAIN[$peer]=$(echo "${PEER_MAIN[$peer]}" | tr -d ' \n')
		# smoke test with the TLS profile's options
		if ! "$LOAD" -p "${PEER_PORT[$peer]}" -c 1 -n 3 -m 3 -d 20 -q \
		    "${TLS_ARGS[@]}" >"$W/smoke.out" 2>&1; then
			cat "$W/smoke.out" >&2
			die "$peer does not relay a message with STARTTLS +" \
			    "AUTH (see above)"
		fi
		echo "run_bench: $peer on 127.0.0.1:${PEER_PORT[$peer]}" \
		    "(pid ${PEER_MAIN[$peer]})" "$(tls_info "$W/smoke.out")"
		v=$(tls_info "$W/smoke.out")
		PEERS_RAN="$PEERS_RAN${v:+ ($v)}"
	done
}

# "TLSv1.3/cipher/group" of the first full handshake in an msaload report
tls_info() {
	sed -n 's/^tls .* full=\([^ ]*\).*/\1/p' "$1"
}

start_proxy() { # index
	local i=$1 log targs=()
	log=$W/proxy-$(inst_name "$1").log
	[ "${IM[i]}" = tls ] && targs=("${TLS_ARGS[@]}")
	PSTARTS[i]=$((PSTARTS[i] + 1))
	echo "--- start ${PSTARTS[i]} $(date -u +%H:%M:%S)" >>"$log"
	PPID_[i]=$(spawn_watched "$W/proxy-$i.pid" "$log" "$PROXY" -f \
	    -c "$(conf_file "$i")")
	if [ -z "${PPID_[i]}" ] || ! wait_listen "${PPORT[i]}" 10; then
		cat "$log" >&2
		die "msaproxy did not start"
	fi
	# smoke test: three messages through the proxy
	if ! "$LOAD" -p "${PPORT[i]}" -c 1 -n 3 -m 3 -d 20 -q \
	    ${targs[@]+"${targs[@]}"} >"$W/smoke.out" 2>&1; then
		cat "$W/smoke.out" "$log" >&2
		die "msaproxy does not relay a message (see above)"
	fi
}

# After a proxy run: if msaproxy is gone, say how it ended and restart it.
check_proxy() { # index what
	local i=$1 st
	[ -n "${PPID_[i]}" ] && alive "${PPID_[i]}" && return 0
	sleep 0.5
	st=$(cat "$W/proxy-$i.pid.status" 2>/dev/null)
	case $st in
	'') st="unknown status" ;;
	1[3-9][0-9]|2[0-9][0-9]) st="killed by signal $((st - 128))" ;;
	*) st="exit status $st" ;;
	esac
	echo "$(date -u +%H:%M:%S) msaproxy $(inst_name "$i") (pid" \
	    "${PPID_[i]}) died during $2: $st; last log lines:" \
	    "$(grep -v 'refused XCLIENT' "$W/proxy-$(inst_name "$i").log" |
	    tail -3 | tr '\n' ' ')" |
	    tee -a "$EVENTS" >&2
	ls "$W"/core* >>"$EVENTS" 2>/dev/null
	PPID_[i]=
	start_proxy "$i"
}

stop_proxy() { # index
	stop_pid "${PPID_[$1]}" msaproxy
	PPID_[$1]=
}

# ---- throughput runs ----------------------------------------------------

printf 'round\tprofile\ttarget\tworkers\tmessages\tok\tfail\tmsgs_per_s\tp50_ms\tp99_ms\tsetup_p50_ms\telapsed_s\tserver_cpu_s\tsink_cpu_s\tload_cpu_s\texit\ttls_handshakes\ttls_resumed\ttls\n' >"$RES"

field() { # file key: value of "key=" on the results' last line
	tail -1 "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# One msaload run.  target: ceiling (msaload -> smtp-sink, plain), proxy
# or proxy-resume (msaproxy instance INDEX; -resume: --tls-resume), nginx
# or dovecot (--peers).  Profiles A-TLS / B-TLS use STARTTLS + AUTH except
# for the ceiling, which is plain A / B.
run_one() { # round profile target [index]
	local r=$1 prof=$2 tgt=$3 i=${4:-} port n m out rc sc0 sc1 pc0 pc1
	local lc=- pcpu=- w=- setup root='' hs=- hr=- ti=- args=()
	case $prof in
	A) n=$A_MSGS; m=100 ;;
	B) n=$B_MSGS; m=1 ;;
	A-TLS) n=$AT_MSGS; m=100 ;;
	B-TLS) n=$BT_MSGS; m=1 ;;
	esac
	case $tgt in
	ceiling)
		case $prof in
		A*) n=$A_MSGS ;;
		B*) n=$B_MSGS ;;
		esac
		port=$SINK_PORT
		out=$W/run-$r-$prof-ceiling.out ;;
	proxy|proxy-resume)
		port=${PPORT[i]}
		w=${IW[i]}
		root=${PPID_[i]}
		out=$W/run-$r-$prof-$tgt-w$w.out ;;
	*)
		port=${PEER_PORT[$tgt]}
		root=${PEER_MAIN[$tgt]}
		[ "$tgt" = dovecot ] && n=$DOVECOT_MSGS
		out=$W/run-$r-$prof-$tgt.out ;;
	esac
	case $prof-$tgt in
	*-TLS-ceiling) ;;
	*-TLS-*) args=("${TLS_ARGS[@]}") ;;
	esac
	[ "$tgt" = proxy-resume ] && args+=(--tls-resume)
	[ -n "$root" ] && pc0=$(tree_cpu "$root")
	sc0=$(tree_cpu "$SINK_PID")
	if [ -n "$TIME" ]; then
		$TIME -f '%U %S' -o "$W/time.txt" setsid -w "$LOAD" \
		    -p "$port" -c "$CONC" -n "$n" -m "$m" -s "$SIZE" \
		    -d "$DUR" -q ${args[@]+"${args[@]}"} >"$out" 2>&1
		rc=$?
		lc=$(awk '{ printf "%.2f", $1 + $2 }' "$W/time.txt")
	else
		setsid -w "$LOAD" -p "$port" -c "$CONC" -n "$n" -m "$m" \
		    -s "$SIZE" -d "$DUR" -q ${args[@]+"${args[@]}"} \
		    >"$out" 2>&1
		rc=$?
	fi
	sc1=$(tree_cpu "$SINK_PID")
	if [ -n "$root" ]; then
		if alive "$root"; then
			pc1=$(tree_cpu "$root")
			pcpu=$(awk -v a="$pc0" -v b="$pc1" -v t="$CLK_TCK" \
			    'BEGIN { printf "%.2f", (b - a) / t }')
		elif [ "$tgt" = proxy ] || [ "$tgt" = proxy-resume ]; then
			check_proxy "$i" "round $r profile $prof"
		else
			echo "$(date -u +%H:%M:%S) $tgt (pid $root) died" \
			    "during round $r profile $prof" |
			    tee -a "$EVENTS" >&2
		fi
	fi
	setup=$(sed -n 's/^setup_ms .* p50=\([^ ]*\).*/\1/p' "$out")
	if grep -q '^tls ' "$out"; then
		hs=$(sed -n 's/^tls .*handshakes=\([0-9]*\).*/\1/p' "$out")
		hr=$(sed -n 's/^tls .* resumed=\([0-9]*\).*/\1/p' "$out")
		ti=$(tls_info "$out")
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
	    "$r" "$prof" "$tgt" "$w" "$n" "$(field "$out" ok)" \
	    "$(field "$out" fail)" "$(field "$out" msgs_per_s)" \
	    "$(field "$out" p50_ms)" "$(field "$out" p99_ms)" "${setup:--}" \
	    "$(awk '/^elapsed_s/ { print $2 }' "$out")" "$pcpu" \
	    "$(awk -v a="$sc0" -v b="$sc1" -v t="$CLK_TCK" \
	    'BEGIN { printf "%.2f", (b - a) / t }')" "$lc" "$rc" \
	    "${hs:--}" "${hr:--}" "${ti:--}" >>"$RES"
	tail -1 "$RES" | awk -F'\t' '{ t = $3; if ($4 != "-") t = t "-w" $4
	    printf "round %s %-5s %-16s %9s msgs/s  p50 %s  p99 %s ms  setup %s ms  ok %s fail %s%s\n",
	    $1, $2, t, $8, $9, $10, $11, $6, $7,
	    ($17 != "-" ? "  resumed " $18 "/" $17 : "") }'
	[ "$rc" = 0 ] || echo "run_bench: msaload exit $rc, see $out" >&2
}

# The targets of a profile after its ceiling run, in round order
# (odd rounds as listed, even rounds reversed).
targets() { # round profile: "target:index" words
	local r=$1 prof=$2 t=() k
	for ((k = 0; k < NP; k++)); do
		case $prof-${IM[k]} in
		A-plain|B-plain|A-TLS-tls) t+=("proxy:$k") ;;
		B-TLS-tls) t+=("proxy:$k" "proxy-resume:$k") ;;
		esac
	done
	if [ "$prof" = A-TLS ]; then
		for k in $PEERS_STARTED; do
			t+=("$k:")
		done
	fi
	if [ $((r % 2)) = 0 ]; then
		for ((k = ${#t[@]} - 1; k >= 0; k--)); do
			echo "${t[k]}"
		done
	else
		printf '%s\n' ${t[@]+"${t[@]}"}
	fi
}

# A short unrecorded run against each target before the first round.
warm_up() {
	local k peer
	"$LOAD" -p "$SINK_PORT" -c 20 -n 2000 -m 10 -q >/dev/null 2>&1
	for ((k = 0; k < NP; k++)); do
		if [ "${IM[k]}" = tls ]; then
			"$LOAD" -p "${PPORT[k]}" -c 20 -n 1000 -m 10 -q \
			    "${TLS_ARGS[@]}" >/dev/null 2>&1
		else
			"$LOAD" -p "${PPORT[k]}" -c 20 -n 2000 -m 10 -q \
			    >/dev/null 2>&1
		fi
	done
	for peer in $PEERS_STARTED; do
		"$LOAD" -p "${PEER_PORT[$peer]}" -c 20 -n 1000 -m 10 -q \
		    "${TLS_ARGS[@]}" >/dev/null 2>&1
	done
}

if [ "$NP" -gt 0 ]; then
	echo "run_bench: output in $OUT; sink 127.0.0.1:$SINK_PORT;" \
	    "msaproxy $(for ((i = 0; i < NP; i++)); do
	    printf '%s:%s ' "$(inst_name "$i")" "${PPORT[i]}"; done)" \
	    "profiles ${PLIST[*]}; $ROUNDS rounds"
else
	echo "run_bench: output in $OUT; sink 127.0.0.1:$SINK_PORT;" \
	    "ceiling only; profiles ${PLIST[*]}; $ROUNDS rounds"
fi
start_sink
[ "$NEED_TLS" = 1 ] && [ "$NP" -gt 0 ] && make_tls_material
for ((i = 0; i < NP; i++)); do
	write_conf "$i"
	start_proxy "$i"
done
[ "$NP" -gt 0 ] && start_peers
warm_up
T0=$(date -u '+%Y-%m-%d %H:%M')
for r in $(seq 1 "$ROUNDS"); do
	for prof in "${PLIST[@]}"; do
		run_one "$r" "$prof" ceiling
		for t in $(targets "$r" "$prof"); do
			run_one "$r" "$prof" "${t%%:*}" "${t#*:}"
		done
	done
done
# The peers are done: they must not take CPU from the idle test.
stop_peers

# ---- idle memory --------------------------------------------------------

printf 'workers\tsessions\tready\tfailed\tprocs_before\tprocs_during\trss_before_kb\trss_during_kb\tpss_before_kb\tpss_during_kb\trss_kb_per_session\tpss_kb_per_session\tbackend_conns_during\tsetup_p50_ms\tmode\n' >"$IDLE_RES"

idle_test() { # index
	local i=$1 rss0 pss0 n0 rss1 pss1 n1 k=0 line ready failed setup
	local bconns targs=() mode=ehlo iout
	iout=$W/idle-$(inst_name "$i").out
	if [ "${IM[i]}" = tls ]; then
		targs=("${TLS_ARGS[@]}")
		mode=starttls+auth
	fi
	stop_proxy "$i"
	start_proxy "$i"	# fresh process, smoke-tested
	"$LOAD" -p "${PPORT[i]}" -c 50 -n 50 -m 1 -q ${targs[@]+"${targs[@]}"} \
	    >"$W/warmup.out" 2>&1
	sleep 1
	read -r rss0 pss0 n0 < <(tree_mem "${PPID_[i]}")
	IDLE_PID=$(spawn "$W/idle.pid" "$iout" "$LOAD" \
	    -p "${PPORT[i]}" -c 50 --idle "$IDLE" -d 600 -q \
	    ${targs[@]+"${targs[@]}"})
	while ! grep -q '^IDLE_READY' "$iout" 2>/dev/null
	do
		alive "$IDLE_PID" && [ "$k" -lt 1200 ] || break
		sleep 0.1
		k=$((k + 1))
	done
	line=$(grep '^IDLE_READY' "$iout")
	if [ -z "$line" ]; then
		echo "run_bench: idle sessions never became ready," \
		    "see $iout" >&2
		stop_pid "$IDLE_PID" msaload
		IDLE_PID=
		return
	fi
	sleep 3
	read -r rss1 pss1 n1 < <(tree_mem "${PPID_[i]}")
	bconns=$(ss -Htn state established "( dport = :$SINK_PORT )" | wc -l)
	stop_pid "$IDLE_PID" msaload
	IDLE_PID=
	check_proxy "$i" "the idle test"
	ready=$(echo "$line" | sed 's/.*sessions=\([0-9]*\).*/\1/')
	failed=$(echo "$line" | sed 's/.*failed=\([0-9]*\).*/\1/')
	setup=$(sed -n 's/^setup_ms .* p50=\([^ ]*\).*/\1/p' "$iout")
	awk -v w="${IW[i]}" -v s="$IDLE" -v rd="$ready" -v f="$failed" \
	    -v n0="$n0" -v n1="$n1" -v r0="$rss0" -v r1="$rss1" \
	    -v p0="$pss0" -v p1="$pss1" -v b="$bconns" -v su="${setup:--}" \
	    -v mode="$mode" \
	    'BEGIN { d = rd > 0 ? rd : 1
	    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%s\t%s\t%s\n",
	    w, s, rd, f, n0, n1, r0, r1, p0, p1, (r1 - r0) / d,
	    (p1 - p0) / d, b, su, mode }' >>"$IDLE_RES"
	tail -1 "$IDLE_RES" | awk -F'\t' '{ printf "idle workers=%s %s: %s sessions ready, Rss %.1f kB/session, Pss %.1f kB/session, %s backend connections\n", $1, $15, $3, $11, $12, $13 }'
}

if [ "$IDLE" -gt 0 ]; then
	for ((i = 0; i < NP; i++)); do
		idle_test "$i"
	done
fi
T1=$(date -u '+%H:%M')

# ---- summary ------------------------------------------------------------

{
	echo "## msaproxy benchmark, $T0-$T1 UTC"
	echo
	echo "Machine: $(nproc) vCPU ($(sed -n 's/^model name[^:]*: //p' \
	    /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {
	    printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) RAM, kernel" \
	    "$(uname -r), $(openssl version 2>/dev/null | cut -d' ' -f1-2).${PROXY_VERSION:+  $PROXY_VERSION (copy of $PROXY_SRC);}" \
	    "$ROUNDS rounds, $CONC sessions, $SIZE-byte messages, 1 rcpt, DATA," \
	    "no pipelining, generator $(basename "$LOAD"); profiles" \
	    "$(for v in "${PLIST[@]}"; do case $v in
	    A) printf '%s' "A = 100 msgs/session ($A_MSGS per run), " ;;
	    B) printf '%s' "B = 1 msg/session ($B_MSGS per run), " ;;
	    A-TLS) printf '%s' "A-TLS = A with STARTTLS + AUTH PLAIN\
 ($AT_MSGS per run${PEERS_RAN:+, Dovecot $DOVECOT_MSGS};\
 ceiling: plain A, $A_MSGS), " ;;
	    B-TLS) printf '%s' "B-TLS = B with STARTTLS + AUTH PLAIN\
 ($BT_MSGS per run; ceiling: plain B, $B_MSGS), " ;;
	    esac; done)cap ${DUR}s per run."
	if [ -n "$PEERS_RAN" ]; then
		echo
		echo "Peers (A-TLS only): $PEERS_RAN."
	fi
	echo
	awk -F'\t' -v profs="${PLIST[*]}" -v gen="$(basename "$LOAD")" \
	    -f - "$RES" <<'EOF'
function median(a, n,    i, j, t) {
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j - 1] > a[j]; j--) {
			t = a[j]; a[j] = a[j - 1]; a[j - 1] = t
		}
	if (n == 0)
		return -1
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function lo(a, n,    i, v) {
	v = a[1]
	for (i = 2; i <= n; i++)
		if (a[i] < v) v = a[i]
	return v
}
function hi(a, n,    i, v) {
	v = a[1]
	for (i = 2; i <= n; i++)
		if (a[i] > v) v = a[i]
	return v
}
function pick(key, col,    i, n) {
	split("", tmp)
	n = 0
	for (i = 1; i <= cnt[key]; i++)
		if (val[key, i, col] != "-" && val[key, i, col] != "")
			tmp[++n] = val[key, i, col]
	return n
}
# sum(col) * 1000 / sum(ok) over the runs that have col
function per_msg(key, col,    i, c, o) {
	c = 0; o = 0
	for (i = 1; i <= cnt[key]; i++)
		if (val[key, i, col] != "-" && val[key, i, col] != "") {
			c += val[key, i, col]
			o += val[key, i, 6]
		}
	return o > 0 ? sprintf("%.3f", c * 1000 / o) : "-"
}
function tname(prof, tgt, w) {
	if (tgt == "ceiling")
		return prof ~ /TLS/ ? "ceiling (plain " substr(prof, 1, 1) \
		    ", " gen " -> smtp-sink)" : "ceiling (" gen " -> smtp-sink)"
	if (tgt == "proxy")
		return "**msaproxy workers=" w "**" \
		    (prof == "B-TLS" ? ", full handshakes" : "")
	if (tgt == "proxy-resume")
		return "msaproxy workers=" w ", resumed (tickets)"
	if (tgt == "nginx")
		return "nginx mail proxy (xclient off)"
	if (tgt == "dovecot")
		return "Dovecot submission (defaults)"
	return tgt
}
# "median (min..max)" of a / b over the rounds where both exist
function rratio(prof, ta, wa, tb, wb, res,    r, n) {
	split("", rr)
	n = 0
	for (r = 1; r <= maxr; r++)
		if ((r, prof, ta, wa) in rate && (r, prof, tb, wb) in rate &&
		    rate[r, prof, tb, wb] > 0)
			rr[++n] = rate[r, prof, ta, wa] / rate[r, prof, tb, wb]
	if (n == 0)
		return -1
	res[1] = median(rr, n); res[2] = lo(rr, n); res[3] = hi(rr, n)
	res[4] = n
	return res[1]
}
NR == 1 { next }
{
	key = $2 SUBSEP $3 SUBSEP $4
	if (!(key in cnt))
		order[++nkeys] = key
	i = ++cnt[key]
	for (c = 1; c <= NF; c++)
		val[key, i, c] = $c
	if ($8 != "")
		rate[$1, $2, $3, $4] = $8
	if ($1 > maxr)
		maxr = $1
	if ($3 == "ceiling") {
		cmps[$1, $2] = $8
		cp99[$1, $2] = $10
	}
}
END {
	np = split(profs, pl, " ")
	print "| profile | target | runs | msgs/s median (min..max) | p50 ms | p99 ms | setup p50 ms | msgs/s ratio to paired ceiling, median (min..max) | p99 ratio to paired ceiling, median | server CPU ms/msg | " gen " CPU ms/msg | TLS resumed | failed msgs |"
	print "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	for (pass = 1; pass <= np; pass++)
	for (k = 1; k <= nkeys; k++) {
		key = order[k]
		split(key, kp, SUBSEP)
		if (kp[1] != pl[pass])
			continue
		n = pick(key, 8); med = median(tmp, n)
		mn = lo(tmp, n); mx = hi(tmp, n)
		n = pick(key, 9); p50 = median(tmp, n)
		n = pick(key, 10); p99 = median(tmp, n)
		n = pick(key, 11); su = median(tmp, n)
		fails = 0; hs = 0; hr = 0
		split("", rr); split("", pr); nr = 0; np99 = 0
		for (i = 1; i <= cnt[key]; i++) {
			fails += val[key, i, 7]
			if (val[key, i, 17] != "-" && val[key, i, 17] != "") {
				hs += val[key, i, 17]
				hr += val[key, i, 18]
			}
			ck = val[key, i, 1] SUBSEP kp[1]
			if (kp[2] != "ceiling" && (ck in cmps) && cmps[ck] > 0) {
				rr[++nr] = val[key, i, 8] / cmps[ck]
				if (cp99[ck] > 0)
					pr[++np99] = val[key, i, 10] / cp99[ck]
			}
		}
		ratio = "1"; pratio = "1"
		if (kp[2] != "ceiling") {
			ratio = sprintf("%.3f (%.3f..%.3f)", median(rr, nr),
			    lo(rr, nr), hi(rr, nr))
			pratio = sprintf("%.2f", median(pr, np99))
			if (kp[1] == "A" && kp[2] == "proxy") {
				tw[++ntw] = kp[3]
				ta[kp[3]] = median(rr, nr)
				tp[kp[3]] = median(pr, np99)
			}
		}
		cpum = per_msg(key, 13)
		if (kp[2] == "ceiling")
			cpum = "sink " per_msg(key, 14)
		res_s = hs > 0 ? sprintf("%d/%d (%.3f)", hr, hs, hr / hs) : "-"
		printf "| %s | %s | %d | %.1f (%.1f..%.1f) | %.2f | %.2f | %.2f | %s | %s | %s | %s | %s | %d |\n", kp[1], tname(kp[1], kp[2], kp[3]), cnt[key], med, mn, mx, p50, p99, su, ratio, pratio, cpum, per_msg(key, 15), res_s, fails
		if (kp[2] == "proxy" || kp[2] == "proxy-resume") {
			pcpu[kp[1], kp[2], kp[3]] = cpum
			psetup[kp[1], kp[2], kp[3]] = su
			pres[kp[1], kp[2], kp[3]] = res_s
		}
		if (kp[1] == "A-TLS" && kp[2] == "proxy" && !(kp[3] in seenw)) {
			seenw[kp[3]] = 1
			tlsw[++ntls] = kp[3]
		}
		if (kp[1] == "B-TLS" && kp[2] == "proxy" && !(kp[3] in seenb)) {
			seenb[kp[3]] = 1
			tlsb[++ntlsb] = kp[3]
		}
		if (kp[1] == "A-TLS" && (kp[2] == "nginx" || kp[2] == "dovecot"))
			havepeer[kp[2]] = 1
	}
	if (ntw + ntls + ntlsb > 0)
		print ""
	for (k = 1; k <= ntw; k++) {
		w = tw[k]
		printf "TARGET A (workers=%s): msgs/s >= 0.80 x ceiling: median ratio %.3f -> %s\n", w, ta[w], (ta[w] >= 0.80 ? "MET" : "NOT MET")
		printf "TARGET A (workers=%s): p99 <= 2 x ceiling p99: median ratio %.2f -> %s\n", w, tp[w], (tp[w] <= 2 ? "MET" : "NOT MET")
	}
	for (k = 1; k <= ntls; k++) {
		w = tlsw[k]
		if ("dovecot" in havepeer) {
			if (rratio("A-TLS", "proxy", w, "dovecot", "-", x) > 0)
				printf "TARGET A-TLS (workers=%s): msgs/s >= 4 x Dovecot's (same rounds): median ratio %.2f (%.2f..%.2f over %d rounds) -> %s\n", w, x[1], x[2], x[3], x[4], (x[1] >= 4 ? "MET" : "NOT MET")
		} else
			printf "TARGET A-TLS (workers=%s): msgs/s >= 4 x Dovecot's: not measured (no --peers, or Dovecot missing)\n", w
		if ("nginx" in havepeer) {
			if (rratio("A-TLS", "proxy", w, "nginx", "-", x) > 0)
				printf "TARGET A-TLS (workers=%s): msgs/s >= 0.9 x nginx's (same rounds): median ratio %.3f (%.3f..%.3f over %d rounds) -> %s\n", w, x[1], x[2], x[3], x[4], (x[1] >= 0.9 ? "MET" : "NOT MET")
		} else
			printf "TARGET A-TLS (workers=%s): msgs/s >= 0.9 x nginx's: not measured (no --peers, or nginx missing)\n", w
	}
	for (k = 1; k <= ntlsb; k++) {
		w = tlsb[k]
		printf "HANDSHAKE (workers=%s): msaproxy CPU per B-TLS session (handshake + AUTH + 1 message): full %s ms, resumed %s ms; setup p50 full %.2f ms, resumed %.2f ms; resumed handshakes %s", w, pcpu["B-TLS", "proxy", w], pcpu["B-TLS", "proxy-resume", w], psetup["B-TLS", "proxy", w], psetup["B-TLS", "proxy-resume", w], pres["B-TLS", "proxy-resume", w]
		if (("B", "proxy", w) in pcpu && pcpu["B", "proxy", w] != "-")
			printf "; a plain B session costs %s ms, so STARTTLS + AUTH add %.3f ms (full) / %.3f ms (resumed)", pcpu["B", "proxy", w], pcpu["B-TLS", "proxy", w] - pcpu["B", "proxy", w], pcpu["B-TLS", "proxy-resume", w] - pcpu["B", "proxy", w]
		printf "\n"
	}
}
EOF
	if [ -s "$EVENTS" ]; then
		echo
		echo "Events (failed runs are included in the table above):"
		echo
		sed 's/^/    /' "$EVENTS"
	fi
	if [ "$(wc -l <"$IDLE_RES")" -gt 1 ]; then
		echo
		echo "| idle sessions | workers | ready / failed | processes before -> during | Rss kB before -> during | Pss kB before -> during | Rss kB/session | Pss kB/session | backend connections during | setup p50 ms |"
		echo "|---|---|---|---|---|---|---|---|---|---|"
		awk -F'\t' 'NR > 1 { printf "| %s, %s | %s | %s / %s | %s -> %s | %s -> %s | %s -> %s | %.1f | %.1f | %s | %s |\n", $2, ($15 == "starttls+auth" ? "STARTTLS + AUTH" : "EHLO only"), $1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 }' \
		    "$IDLE_RES"
		echo
		awk -F'\t' 'NR > 1 { printf "TARGET idle (workers=%s, %s): Rss per session < 64 KB: %.1f kB (Pss %.1f kB) -> %s\n", $1, ($15 == "starttls+auth" ? "STARTTLS + AUTH" : "EHLO only"), $11, $12, (($11 < 64 && $4 == 0) ? "MET" : "NOT MET") }' \
		    "$IDLE_RES"
	fi
} >"$SUM"

# ---- optional: the team's peer harness ----------------------------------

peer_matrix() {
	local pb=${PEER_BENCH:-$TOP/../shared/bench}
	if [ ! -x "$pb/bench_matrix.sh" ]; then
		echo "run_bench: --peer-matrix: no $pb/bench_matrix.sh," \
		    "skipped" >&2
		return
	fi
	# bench_matrix.sh starts its own sink on 20025: point a fresh
	# msaproxy there and let smtpload measure it as peer "ext".
	for ((i = 0; i < NP; i++)); do
		stop_proxy "$i"
	done
	stop_pid "$SINK_PID" smtp-sink
	SINK_PID=
	if ! port_free 20025; then
		echo "run_bench: --peer-matrix: port 20025 busy, skipped" >&2
		return
	fi
	SINK_PORT=20025
	# the first instance of each kind: plain (smtp) and tls (submission)
	pi=-1
	ti=-1
	for ((i = NP - 1; i >= 0; i--)); do
		[ "${IM[i]}" = plain ] && pi=$i
		[ "${IM[i]}" = tls ] && ti=$i
	done
	make -s -C "$pb" >/dev/null 2>&1
	: >"$W/peer_plan"
	for i in $pi $ti; do
		[ "$i" -ge 0 ] || continue
		write_conf "$i"
		PPID_[i]=$(spawn_watched "$W/proxy-$i.pid" \
		    "$W/proxy-peer-$(inst_name "$i").log" "$PROXY" -f \
		    -c "$(conf_file "$i")")
		wait_listen "${PPORT[i]}" 10 || return
	done
	if [ "$pi" -ge 0 ]; then
		printf 'A ext plain %s\nB ext plain %s\n' "$A_MSGS" \
		    "$B_MSGS" >>"$W/peer_plan"
		EXT_PORT=${PPORT[pi]} EXT_PID=${PPID_[pi]} EXT_AUTH=none \
		    "$pb/bench_matrix.sh" "$OUT/peer_matrix" "$ROUNDS" \
		    "$W/peer_plan"
	fi
	if [ "$ti" -ge 0 ]; then
		# bench_matrix.sh's own TLS profile: STARTTLS + AUTH PLAIN
		printf 'A ext starttls %s\nB ext starttls %s\n' "$AT_MSGS" \
		    "$BT_MSGS" >"$W/peer_plan_tls"
		EXT_PORT=${PPORT[ti]} EXT_PID=${PPID_[ti]} \
		    EXT_AUTH="$AUTH_USER:$AUTH_PASS" \
		    "$pb/bench_matrix.sh" "$OUT/peer_matrix" "$ROUNDS" \
		    "$W/peer_plan_tls"
	fi
	if [ -x "$pb/summarize.py" ]; then
		{
			echo
			echo "### msaproxy workers=${IW[0]} measured by the" \
			    "team's smtpload/bench_matrix.sh"
			echo
			"$pb/summarize.py" "$OUT/peer_matrix/results.tsv"
		} >>"$SUM" 2>&1
	fi
}

if [ "$PEER_MATRIX" = 1 ] && [ "$NP" -gt 0 ]; then
	peer_matrix
fi

echo
cat "$SUM"
echo
echo "raw runs: $RES"
echo "idle:     $IDLE_RES"
echo "summary:  $SUM"
