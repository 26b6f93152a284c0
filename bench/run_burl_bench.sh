#!/bin/bash
# run_burl_bench.sh - BURL (RFC 4468): msaproxy fetching from the URLAUTH
# server the tests use (Cyrus IMAP 3.6) against Dovecot's own submission
# service doing BURL of its own user's URLs (read in-process), same load,
# interleaved rounds.
#
# usage: bench/run_burl_bench.sh [-r ROUNDS] [-n MSGS] [-c CONC]
#                                [-m PER_SESSION] [-k URLS] [-s SIZE]
#                                [--creds kerberos|password] [--pipelining]
#                                [-d SECS] [-o OUTDIR] [-w WORKERS]
#                                [--log-level LEVEL] [--proxy PATH]
#                                [--load PATH] [--dovecot-only]
#                                [--pool-idle N] [--pool-max N] [-u USERS]
#
#   -r ROUNDS   rounds (3); odd rounds run msaproxy then Dovecot, even
#               rounds Dovecot then msaproxy
#   -n MSGS     messages per run, for both (5000)
#   -c CONC     concurrent SMTP sessions (50)
#   -m N        messages per session (100; 1 = a session per message)
#   -k URLS     messages appended (and URLs generated) per IMAP server
#               (100); msaload uses them round robin (--burl-file), so each
#               URL is used MSGS/URLS times per run.  -k MSGS avoids reusing
#               a URL within a run (a URL reuse limit may come, issue 7)
#   -s SIZE     message size in octets, CRLF included (102400 = 100 KB)
#   -u USERS    spread the URLs over USERS users (1: alice only, as the
#               issue asks): alice, u02 .. uNN; msaload's sessions take
#               the users in turn (its --burl-file "USER:PASS URL" lines),
#               each session sending its own user's URLs
#   --creds     msaproxy's credentials at Cyrus: kerberos (default: SASL
#               GSSAPI as submit@LAB.TEST from a client keytab) or password
#               (AUTHENTICATE PLAIN submit / submitpw)
#   --pipelining  MAIL, RCPT and BURL in one write (both servers offer
#               PIPELINING)
#   -d SECS     cap per run (60)
#   -o OUTDIR   results.tsv, summary.md, work/ (logs) (default: a new
#               /tmp/mpburl.XXXXXX)
#   -w WORKERS  msaproxy workers (1)
#   --log-level msaproxy's log level during the runs (info)
#   --proxy / --load  msaproxy (TOP/msaproxy) and msaload (TOP/bench/msaload
#               if up to date, else compiled into OUTDIR/work)
#   --dovecot-only  Dovecot only (when msaproxy's BURL does not work yet)
#   --pool-idle N / --pool-max N  max_idle_connections / max_connections
#               of the Cyrus entry in msaproxy's burl section (default:
#               msaproxy's defaults, 64 / 64)
#   --cyrus-preload SO  diagnostics only, not for reference figures:
#               LD_PRELOAD for Cyrus imapd (e.g. a shim setting
#               TCP_NODELAY on its sockets, see docs/PERFORMANCE.md)
#   --cyrus-run tmpfs|disk  Cyrus's proc_path, mboxname_lockpath and
#               sockets on a tmpfs (default, as Debian's /run/cyrus) or on
#               disk beside its other state (the layout before 2026-11-23
#               19:30 UTC; docs/PERFORMANCE.md "BURL")
#   --cyrus-conf KEY=VALUE  an extra imapd.conf option (repeatable);
#               burl_lab.py sets unix_group_enable=0 unless this names it
#
# What runs (bench/burl_lab.py, with tests/integration's kdc.py and
# imap_servers.py; all on 127.0.0.1, free ports, temp dirs, stopped at the
# end): an MIT KDC, Cyrus IMAP (URLAUTH, submitservers: submit), smtp-sink
# (the backend of both), Dovecot 2.3 IMAP + submission (BURL via
# imap_urlauth_host/port, submission_relay_* = the sink).  K messages of
# SIZE octets are APPENDed as alice to each IMAP server with a
# submit+alice URLAUTH URL each; both paths are checked end to end first
# (the dumping check sink must receive exactly the appended bytes).
#
# Each run: msaload -c CONC -n MSGS -m N --starttls --auth alice:alicepw
# --burl-file URLS (EHLO, STARTTLS, EHLO, AUTH PLAIN, [EHLO if BURL was not
# yet advertised], then MAIL, RCPT, "BURL <url> LAST" per message).
# msaproxy is started afresh for each run (private copy of the binary,
# config OUTDIR/work/lab/msaproxy.conf), smoke-tested with one BURL message
# (retried while its Kerberos ticket is being fetched), measured, stopped.
# Dovecot runs throughout with its defaults (a process per login and per
# session).  Recorded per run: msgs/s, p50/p99 latency, CPU of the server's
# process tree (msaproxy; Dovecot's whole instance, its IMAP side
# included), of Cyrus (msaproxy runs), of smtp-sink and of msaload; the
# load average; for msaproxy the IMAP connections it opened, from its log
# and, as a cross-check, the distinct client ports to Cyrus seen by `ss`
# every 0.2 s (a lower bound: a connection shorter than that can be
# missed).  bench/proc_split.py samples the server's process tree
# every 0.25 s (both targets, same overhead) to split Dovecot's CPU into
# its submission side (submission, submission-login) and its IMAP side
# (imap*, including imap-urlauth*).
set -u

TOP=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3
MSGS=5000
CONC=50
PER=100
URLS=100
SIZE=102400
CREDS=kerberos
PIPE=0
DUR=60
OUT=
WORKERS=1
LOGLEVEL=info
PROXY_SRC=$TOP/msaproxy
LOAD=
DOVECOT_ONLY=0
POOL_IDLE=
USERS=1
POOL_MAX=
CYRUS_PRELOAD=
CYRUS_RUN=tmpfs
CYRUS_CONF=()
# msaproxy's log lines (level info) for a new, authenticated IMAP
# connection ("imap cyrus#3: connected to 127.0.0.1:port (...),
# authenticated with GSSAPI as submit@LAB.TEST") and for a fetch, the
# session's line ("<sid>: tx=<id> BURL <redacted URL> [by alice allowed
# (...)] via cyrus: fetched: complete, ... octets, ... ms"; the IMAP
# client's own "imap cyrus#3: fetch ..." line is at debug level since
# 2026-11-23 burlperf2; this pattern matches older binaries too)
IMAP_CONN_RE=${IMAP_CONN_RE:-'imap [^ ]*#[0-9]+: connected to'}
IMAP_FETCH_RE=${IMAP_FETCH_RE:-': tx=[^ ]+ BURL .* via [^ ]+: (fetched|failed)'}

usage() {
	sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 1
}

while [ $# -gt 0 ]; do
	case $1 in
	-r) ROUNDS=${2:-}; shift ;;
	-n) MSGS=${2:-}; shift ;;
	-c) CONC=${2:-}; shift ;;
	-m) PER=${2:-}; shift ;;
	-k) URLS=${2:-}; shift ;;
	-s) SIZE=${2:-}; shift ;;
	-u) USERS=${2:-}; shift ;;
	-d) DUR=${2:-}; shift ;;
	-o) OUT=${2:-}; shift ;;
	-w) WORKERS=${2:-}; shift ;;
	--creds) CREDS=${2:-}; shift ;;
	--pipelining) PIPE=1 ;;
	--log-level) LOGLEVEL=${2:-}; shift ;;
	--proxy) PROXY_SRC=${2:-}; shift ;;
	--load) LOAD=${2:-}; shift ;;
	--dovecot-only) DOVECOT_ONLY=1 ;;
	--pool-idle) POOL_IDLE=${2:-}; shift ;;
	--pool-max) POOL_MAX=${2:-}; shift ;;
	--cyrus-preload) CYRUS_PRELOAD=${2:-}; shift ;;
	--cyrus-run) CYRUS_RUN=${2:-}; shift ;;
	--cyrus-conf) CYRUS_CONF+=(--cyrus-conf "${2:-}"); shift ;;
	*) usage ;;
	esac
	shift
done

die() {
	echo "run_burl_bench: $*" >&2
	exit 1
}

isnum() {
	case $1 in
	''|*[!0-9]*) return 1 ;;
	esac
	return 0
}

for v in "$ROUNDS" "$MSGS" "$CONC" "$PER" "$URLS" "$SIZE" "$DUR" "$WORKERS" \
    "$USERS"
do
	isnum "$v" || die "not a number: '$v'"
done
[ "$ROUNDS" -ge 1 ] && [ "$MSGS" -ge 1 ] && [ "$CONC" -ge 1 ] &&
    [ "$URLS" -ge 1 ] || die "-r, -n, -c, -k: at least 1"
case $CREDS in kerberos|password) ;; *) die "--creds kerberos|password" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root (Cyrus, Dovecot, smtp-sink)"
PY=/usr/bin/python3
[ -x "$PY" ] || die "$PY missing (Debian's python3 with python3-gssapi)"
[ -x /usr/lib/dovecot/submission ] ||
	die "Dovecot's submission service is missing: apt-get install dovecot-submissiond (not installed by scripts/install-deps.sh: only this benchmark needs it)"
command -v smtp-sink >/dev/null || die "smtp-sink not found (postfix)"
command -v ss >/dev/null || die "ss not found (iproute2)"

if [ -z "$OUT" ]; then
	OUT=$(mktemp -d /tmp/mpburl.XXXXXX) || die "mktemp failed"
else
	mkdir -p "$OUT" || die "cannot create $OUT"
	OUT=$(cd "$OUT" && pwd)
fi
chmod 755 "$OUT"
W=$OUT/work
mkdir -p "$W" && chmod 755 "$W" || die "cannot create $W"
RES=$OUT/results.tsv
SUM=$OUT/summary.md
EVENTS=$OUT/events.txt
: >"$EVENTS"

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
"$LOAD" -h 2>&1 | grep -q -- --burl-file ||
    die "$LOAD has no --burl-file (rebuild bench/msaload)"

PROXY=$W/mpburl-proxy
PROXY_VERSION=-
if [ "$DOVECOT_ONLY" = 0 ]; then
	[ -x "$PROXY_SRC" ] || die "no msaproxy at $PROXY_SRC (--dovecot-only?)"
	cp "$PROXY_SRC" "$PROXY" || die "cannot copy $PROXY_SRC"
	PROXY_VERSION="$("$PROXY" -V 2>&1 | head -1), sha256"
	PROXY_VERSION="$PROXY_VERSION $(sha256sum "$PROXY" | cut -c1-12)"
fi
TIME=/usr/bin/time
[ -x "$TIME" ] || TIME=

# ---- processes (as bench/run_bench.sh) ----------------------------------

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

alive() {
	local st
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st%% *}" != Z ]
}

stop_pid() { # pid [name]: TERM, then KILL after 5 s; descendants too
	local pid=$1 all i=0 p a
	[ -n "$pid" ] && alive "$pid" || return 0
	all=$(tree "$pid")
	kill -TERM "$pid" 2>/dev/null
	while [ "$i" -lt 50 ]; do
		a=0
		for p in $all; do
			alive "$p" && a=1
		done
		[ "$a" = 0 ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	for p in $all; do
		kill -KILL "$p" 2>/dev/null
	done
	echo "run_burl_bench: ${2:-$pid} did not stop on SIGTERM, killed" >&2
}

tree_cpu() { # utime+stime (+ reaped children) of a tree, in clock ticks
	local p t=0 v
	for p in $(tree "$1"); do
		v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null |
		    awk '{ print $12 + $13 + $14 + $15 }')
		t=$((t + ${v:-0}))
	done
	echo "$t"
}
CLK_TCK=$(getconf CLK_TCK)

wait_listen() { # port seconds
	local i=0
	while [ "$i" -lt $(($2 * 10)) ]; do
		[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ] && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

LAB_PID=
PROXY_PID=
SAMPLER_PID=
cleanup() {
	trap - EXIT INT TERM
	[ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
	[ -n "${SPLIT_PID:-}" ] && kill "$SPLIT_PID" 2>/dev/null
	stop_pid "$PROXY_PID" msaproxy
	if [ -n "$LAB_PID" ] && alive "$LAB_PID"; then
		kill -TERM "$LAB_PID" 2>/dev/null
		for _ in $(seq 100); do
			alive "$LAB_PID" || break
			sleep 0.1
		done
		stop_pid "$LAB_PID" burl_lab.py
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the servers --------------------------------------------------------

LAB=$W/lab
rm -rf "$LAB"
check=()
[ "$DOVECOT_ONLY" = 1 ] && check=(--no-msaproxy-check)
[ -n "$POOL_IDLE" ] && check+=(--pool-idle "$POOL_IDLE")
[ -n "$POOL_MAX" ] && check+=(--pool-max "$POOL_MAX")
[ -n "$CYRUS_PRELOAD" ] && check+=(--cyrus-preload "$CYRUS_PRELOAD")
check+=(--cyrus-run "$CYRUS_RUN" ${CYRUS_CONF[@]+"${CYRUS_CONF[@]}"})
setsid "$PY" "$TOP/bench/burl_lab.py" up "$LAB" --urls "$URLS" \
    --size "$SIZE" --creds "$CREDS" --msaproxy "$PROXY" \
    --log-level "$LOGLEVEL" --workers "$WORKERS" --users "$USERS" \
    ${check[@]+"${check[@]}"} \
    >"$W/lab.out" 2>&1 &
LAB_PID=$!
for _ in $(seq 600); do
	[ -e "$LAB/ready" ] || [ -e "$LAB/failed" ] || ! alive "$LAB_PID" &&
	    break
	sleep 0.2
done
if [ ! -e "$LAB/ready" ]; then
	cat "$W/lab.out" >&2
	die "the servers did not come up (see above and $W/lab.out)"
fi
# shellcheck disable=SC1091
. "$LAB/lab.env"
sed 's/^/  /' "$LAB/verify.txt"
RUN_PROXY=1
[ "$DOVECOT_ONLY" = 1 ] && RUN_PROXY=0
if [ "$RUN_PROXY" = 1 ] && [ "$LAB_MSAPROXY_CHECK" != ok ]; then
	{
		echo "msaproxy's BURL check failed, so msaproxy is not measured:"
		sed -n 's/^msaproxy //p' "$LAB/verify.txt"
		echo "msaproxy's log of that check: $LAB/verify-msaproxy.log"
	} | tee -a "$EVENTS" >&2
	RUN_PROXY=0
fi

AUTH=(--starttls --auth "$LAB_USER:$LAB_PASSWORD")
PIPEARG=()
[ "$PIPE" = 1 ] && PIPEARG=(--pipelining)

PLOG=$W/msaproxy.log
MENV=()
while IFS= read -r l; do
	[ -n "$l" ] && MENV+=("$l")
done <"$LAB_MSAPROXY_ENV"

# Start a fresh msaproxy and wait until it resolves a BURL (its Kerberos
# ticket comes from a background thread).
start_proxy() { # tag
	local i=0
	echo "--- start $1 $(date -u +%H:%M:%S)" >>"$PLOG"
	PLOG_OFF=$(stat -c %s "$PLOG")
	PROXY_PID=$(spawn_watched "$W/proxy.pid" "$PLOG" env "${MENV[@]}" \
	    "$PROXY" -f -c "$LAB_MSAPROXY_CONF")
	if [ -z "$PROXY_PID" ] || ! wait_listen "$LAB_MSAPROXY_PORT" 10; then
		tail -30 "$PLOG" >&2
		die "msaproxy did not start"
	fi
	while ! "$LOAD" -p "$LAB_MSAPROXY_PORT" -c 1 -n 1 -m 1 -d 20 -q \
	    "${AUTH[@]}" --burl-file "$LAB_CYRUS_URLS" >"$W/smoke.out" 2>&1
	do
		i=$((i + 1))
		if [ "$i" -ge 40 ]; then
			cat "$W/smoke.out" >&2
			tail -30 "$PLOG" >&2
			die "msaproxy does not relay a BURL message (see above)"
		fi
		sleep 0.5
	done
	SMOKE_TRIES=$((i + 1))
}

# IMAP connections msaproxy opened since start_proxy (its log); fetches
count_conns() {
	tail -c +"$((PLOG_OFF + 1))" "$PLOG" | grep -Ec "$IMAP_CONN_RE"
}
count_fetches() {
	tail -c +"$((PLOG_OFF + 1))" "$PLOG" | grep -Ec "$IMAP_FETCH_RE"
}

# distinct local ports of established connections to Cyrus, every 0.2 s
start_sampler() { # file
	: >"$1"
	(
		while :; do
			ss -Htn state established "( dport = :$LAB_CYRUS_PORT )" \
			    2>/dev/null | awk '{ print $3 }'
			sleep 0.2
		done >>"$1"
	) &
	SAMPLER_PID=$!
}

SPLIT_PID=
start_split() { # root file
	setsid "$PY" "$TOP/bench/proc_split.py" "$1" "$2" 0.25 &
	SPLIT_PID=$!
}

stop_split() {
	[ -n "$SPLIT_PID" ] && kill -TERM "$SPLIT_PID" 2>/dev/null
	wait "$SPLIT_PID" 2>/dev/null
	SPLIT_PID=
}

stop_sampler() {
	[ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null
	wait "$SAMPLER_PID" 2>/dev/null
	SAMPLER_PID=
}

# "busy idle" jiffies of the whole machine (all CPUs), from /proc/stat
sys_cpu() {
	awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat
}

field() { # file key: value of "key=" on the results' last line
	tail -1 "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

printf 'round\ttarget\tmessages\tok\tfail\tmsgs_per_s\tp50_ms\tp99_ms\tsetup_p50_ms\telapsed_s\tserver_cpu_s\timap_cpu_s\tsink_cpu_s\tload_cpu_s\timap_conns_log\timap_conns_ss\timap_fetches_log\tmsgs_incl_smoke\tsmoke_tries\tehlo_after_auth\texit\tloadavg\tstart_utc\tdovecot_subm_cpu_s\tdovecot_imap_cpu_s\tdovecot_other_cpu_s\tmachine_idle_pct\n' >"$RES"

run_one() { # round target
	local r=$1 tgt=$2 port urls root out rc lc=- sc0 sc1 pc0 pc1 ic0 ic1
	local icpu=- cl=- cs=- cf=- incl=- tries=- la t0 setup rehlo
	local split=$W/split-$r-$2.tsv dsub=- dimap=- doth=- b0 i0 b1 i1 idle
	out=$W/run-$r-$tgt.out
	if [ "$tgt" = msaproxy ]; then
		start_proxy "r$r"
		port=$LAB_MSAPROXY_PORT
		urls=$LAB_CYRUS_URLS
		root=$PROXY_PID
		tries=$SMOKE_TRIES
		start_sampler "$W/ss-$r.txt"
	else
		port=$LAB_DOVECOT_SUBMISSION_PORT
		urls=$LAB_DOVECOT_URLS
		root=$LAB_DOVECOT_PID
	fi
	la=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/')
	t0=$(date -u +%H:%M:%S)
	if [ "$tgt" = msaproxy ]; then
		start_split "$LAB_CYRUS_PID" "$split"
	else
		start_split "$LAB_DOVECOT_PID" "$split"
	fi
	read -r b0 i0 < <(sys_cpu)
	pc0=$(tree_cpu "$root")
	sc0=$(tree_cpu "$LAB_SINK_PID")
	ic0=$(tree_cpu "$LAB_CYRUS_PID")
	if [ -n "$TIME" ]; then
		$TIME -f '%U %S' -o "$W/time.txt" setsid -w "$LOAD" -p "$port" \
		    -c "$CONC" -n "$MSGS" -m "$PER" -s "$SIZE" -d "$DUR" -q \
		    "${AUTH[@]}" --burl-file "$urls" \
		    ${PIPEARG[@]+"${PIPEARG[@]}"} >"$out" 2>&1
		rc=$?
		lc=$(awk '{ printf "%.2f", $1 + $2 }' "$W/time.txt")
	else
		setsid -w "$LOAD" -p "$port" -c "$CONC" -n "$MSGS" -m "$PER" \
		    -s "$SIZE" -d "$DUR" -q "${AUTH[@]}" --burl-file "$urls" \
		    ${PIPEARG[@]+"${PIPEARG[@]}"} >"$out" 2>&1
		rc=$?
	fi
	read -r b1 i1 < <(sys_cpu)
	pc1=$(tree_cpu "$root")
	sc1=$(tree_cpu "$LAB_SINK_PID")
	ic1=$(tree_cpu "$LAB_CYRUS_PID")
	stop_split
	idle=$(awk -v b="$((b1 - b0))" -v i="$((i1 - i0))" \
	    'BEGIN { printf "%.1f", (b + i > 0) ? 100 * i / (b + i) : 0 }')
	if [ "$tgt" = dovecot ] && [ -s "$split" ]; then
		read -r dsub dimap doth < <(awk -F'\t' '
		    $1 ~ /^submission/ { s += $2; next }
		    $1 ~ /^imap/ { i += $2; next }
		    { o += $2 }
		    END { printf "%.2f %.2f %.2f\n", s, i, o }' "$split")
	fi
	if [ "$tgt" = msaproxy ]; then
		icpu=$(awk -v a="$ic0" -v b="$ic1" -v t="$CLK_TCK" \
		    'BEGIN { printf "%.2f", (b - a) / t }')
		stop_sampler
		if ! alive "$PROXY_PID"; then
			echo "$(date -u +%H:%M:%S) msaproxy died during round" \
			    "$r: status $(cat "$W/proxy.pid.status" 2>/dev/null)" |
			    tee -a "$EVENTS" >&2
		fi
		stop_pid "$PROXY_PID" msaproxy
		PROXY_PID=
		cl=$(count_conns)
		cf=$(count_fetches)
		cs=$(sort -u "$W/ss-$r.txt" | grep -c .)
		incl=$(field "$out" ok)
		incl=$((${incl:-0} + 1))
	fi
	setup=$(sed -n 's/^setup_ms .* p50=\([^ ]*\).*/\1/p' "$out")
	rehlo=$(sed -n 's/^burl .*ehlo_after_auth=\([0-9]*\).*/\1/p' "$out")
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
	    "$r" "$tgt" "$MSGS" "$(field "$out" ok)" "$(field "$out" fail)" \
	    "$(field "$out" msgs_per_s)" "$(field "$out" p50_ms)" \
	    "$(field "$out" p99_ms)" "${setup:--}" \
	    "$(sed -n 's/^elapsed_s *\([^ ]*\).*/\1/p' "$out")" \
	    "$(awk -v a="$pc0" -v b="$pc1" -v t="$CLK_TCK" \
	    'BEGIN { printf "%.2f", (b - a) / t }')" "$icpu" \
	    "$(awk -v a="$sc0" -v b="$sc1" -v t="$CLK_TCK" \
	    'BEGIN { printf "%.2f", (b - a) / t }')" "$lc" "$cl" "$cs" \
	    "$cf" "$incl" "$tries" "${rehlo:--}" "$rc" "$la" "$t0" \
	    "$dsub" "$dimap" "$doth" "$idle" >>"$RES"
	tail -1 "$RES" | awk -F'\t' '{ printf "round %s %-8s %5s/%s ok, %8s msgs/s, p50 %s ms, p99 %s ms, server CPU %s s, Cyrus CPU %s s, IMAP connections %s (log) / %s (ss), fetches %s, load %s, machine idle %s%%\n", $1, $2, $4, $3, $6, $7, $8, $11, $12, $15, $16, $17, $22, $27 }'
	if [ "$rc" != 0 ]; then
		grep -E '^(messages|errors|stop) ' "$out" | sed 's/^/    /'
		grep 'session error' "$out" | head -3 | sed 's/^/    /'
	fi
}

echo "run_burl_bench: output in $OUT; $ROUNDS rounds of $MSGS messages" \
    "($SIZE octets by BURL, $URLS URLs per server, $USERS user(s))," \
    "$CONC sessions," \
    "$PER per session; msaproxy $LAB_MSAPROXY_PORT, Dovecot" \
    "$LAB_DOVECOT_SUBMISSION_PORT"
T0=$(date -u '+%Y-%m-%d %H:%M')
LA0=$(cut -d' ' -f1-3 /proc/loadavg)
# warm-up (unrecorded): page cache, Dovecot's and Cyrus's first processes
"$LOAD" -p "$LAB_DOVECOT_SUBMISSION_PORT" -c 10 -n 200 -m 20 -d 30 -q \
    "${AUTH[@]}" --burl-file "$LAB_DOVECOT_URLS" >"$W/warmup-dovecot.out" 2>&1
if [ "$RUN_PROXY" = 1 ]; then
	start_proxy warmup
	"$LOAD" -p "$LAB_MSAPROXY_PORT" -c 10 -n 200 -m 20 -d 30 -q \
	    "${AUTH[@]}" --burl-file "$LAB_CYRUS_URLS" \
	    >"$W/warmup-msaproxy.out" 2>&1
	stop_pid "$PROXY_PID" msaproxy
	PROXY_PID=
fi
for r in $(seq 1 "$ROUNDS"); do
	if [ "$RUN_PROXY" = 0 ]; then
		run_one "$r" dovecot
	elif [ $((r % 2)) = 1 ]; then
		run_one "$r" msaproxy
		run_one "$r" dovecot
	else
		run_one "$r" dovecot
		run_one "$r" msaproxy
	fi
done
T1=$(date -u '+%H:%M')
LA1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- summary ------------------------------------------------------------

{
	echo "## BURL benchmark, $T0-$T1 UTC"
	echo
	echo "Machine: $(nproc) vCPU ($(sed -n 's/^model name[^:]*: //p' \
	    /proc/cpuinfo | head -1)), kernel $(uname -r); load average" \
	    "$LA0 at the start, $LA1 at the end. msaproxy: $PROXY_VERSION" \
	    "(copy of $PROXY_SRC), workers=$WORKERS, log level $LOGLEVEL," \
	    "credentials at Cyrus: $CREDS, pool" \
	    "max_idle_connections=${POOL_IDLE:-default}" \
	    "max_connections=${POOL_MAX:-default}${CYRUS_PRELOAD:+, DIAGNOSTIC: Cyrus runs with LD_PRELOAD=$CYRUS_PRELOAD}." \
	    "Dovecot $LAB_DOVECOT_VERSION" \
	    "(defaults: a process per login and per session). Cyrus IMAP" \
	    "$(dpkg-query -W -f '${Version}' cyrus-common 2>/dev/null)," \
	    "run files (proc, lock, sockets): $LAB_CYRUS_RUN; extra" \
	    "imapd.conf: $LAB_CYRUS_EXTRA."
	echo
	echo "Load: $ROUNDS rounds; each run $MSGS messages of $SIZE octets" \
	    "by \`BURL <url> LAST\`, $CONC sessions, $PER messages per" \
	    "session, STARTTLS + AUTH PLAIN once per session," \
	    "$([ "$PIPE" = 1 ] && echo "MAIL/RCPT/BURL pipelined" ||
	    echo "no pipelining"), $URLS URLs per server round robin;" \
	    "$([ "$USERS" -gt 1 ] && echo "spread over $USERS users (alice," \
	    "u02 ...), the sessions taking them in turn;" ||
	    echo "all of user alice;") cap ${DUR}s per run. Backend:" \
	    "smtp-sink."
	echo
	awk -F'\t' -v conc="$CONC" -f - "$RES" <<'EOF'
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
	v = a[1]; for (i = 2; i <= n; i++) if (a[i] < v) v = a[i]; return v
}
function hi(a, n,    i, v) {
	v = a[1]; for (i = 2; i <= n; i++) if (a[i] > v) v = a[i]; return v
}
NR == 1 { next }
{
	t = $2
	if (!(t in cnt)) order[++nt] = t
	i = ++cnt[t]
	rate[t, i] = $6; p50[t, i] = $7; p99[t, i] = $8; su[t, i] = $9
	idl[t, i] = $27
	ok[t] += $4; fail[t] += $5; sent[t] += $3
	scpu[t] += $11; if ($12 != "-") icpu[t] += $12
	sink[t] += $13; if ($14 != "-") lcpu[t] += $14
	if ($15 != "-") { cl[t] += $15; clrun[t, i] = $15 }
	if ($16 != "-") { cs[t] += $16; csrun[t, i] = $16 }
	if ($17 != "-") fetches[t] += $17
	if ($18 != "-") incl[t] += $18
	bytarget[$1, t] = $6
	if ($24 != "-" && $24 != "") { dsub += $24; dimap += $25; doth += $26 }
	if ($1 > maxr) maxr = $1
}
END {
	print "| target | runs | msgs/s median (min..max) | p50 ms | p99 ms | setup p50 ms | server CPU ms/msg | Cyrus CPU ms/msg | server + IMAP CPU ms/msg | sink CPU ms/msg | msaload CPU ms/msg | IMAP connections opened / messages (all runs) | machine idle % median | failed msgs |"
	print "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	for (k = 1; k <= nt; k++) {
		t = order[k]; n = cnt[t]
		for (i = 1; i <= n; i++) { a[i] = rate[t, i] }
		med = median(a, n); mn = lo(a, n); mx = hi(a, n)
		for (i = 1; i <= n; i++) a[i] = p50[t, i]; m50 = median(a, n)
		for (i = 1; i <= n; i++) a[i] = p99[t, i]; m99 = median(a, n)
		for (i = 1; i <= n; i++) a[i] = su[t, i]; msu = median(a, n)
		for (i = 1; i <= n; i++) a[i] = idl[t, i]; midl = median(a, n)
		o = ok[t] > 0 ? ok[t] : 1
		name = t == "msaproxy" ? "**msaproxy -> Cyrus URLFETCH**" : \
		    "Dovecot submission (its own BURL, in-process)"
		conns = "-"
		if (t == "msaproxy")
			conns = sprintf("%d (log) / %d (ss, lower bound) for %d messages (%d fetches logged)", cl[t], cs[t], incl[t], fetches[t])
		ic = (t in icpu) ? sprintf("%.3f", icpu[t] * 1000 / o) : "(in server)"
		both = sprintf("%.3f", (scpu[t] + icpu[t]) * 1000 / o)
		printf "| %s | %d | %.1f (%.1f..%.1f) | %.2f | %.2f | %.2f | %.3f | %s | %s | %.3f | %s | %s | %.1f | %d |\n", name, n, med, mn, mx, m50, m99, msu, scpu[t] * 1000 / o, ic, both, sink[t] * 1000 / o, (t in lcpu) ? sprintf("%.3f", lcpu[t] * 1000 / o) : "-", conns, midl, fail[t]
	}
	print ""
	n = 0
	for (r = 1; r <= maxr; r++)
		if ((r, "msaproxy") in bytarget && (r, "dovecot") in bytarget &&
		    bytarget[r, "dovecot"] > 0)
			rr[++n] = bytarget[r, "msaproxy"] / bytarget[r, "dovecot"]
	if (n > 0) {
		m = median(rr, n)
		printf "TARGET BURL: msaproxy msgs/s >= 2 x Dovecot's (same rounds): median ratio %.2f (%.2f..%.2f over %d rounds) -> %s\n", m, lo(rr, n), hi(rr, n), n, (m >= 2 ? "MET" : "NOT MET")
	} else
		print "TARGET BURL: msaproxy msgs/s >= 2 x Dovecot's: not measured (msaproxy did not run)"
	if ("dovecot" in cnt && ok["dovecot"] > 0) {
		o = ok["dovecot"]
		printf "SPLIT: Dovecot CPU per message, sampled by process name: submission side (submission, submission-login) %.3f ms, IMAP side (imap, imap-urlauth*) %.3f ms, the rest (master, auth, anvil, log, config, stats) %.3f ms (sampled total %.3f of %.3f measured)", dsub * 1000 / o, dimap * 1000 / o, doth * 1000 / o, (dsub + dimap + doth) * 1000 / o, scpu["dovecot"] * 1000 / o
		if ("msaproxy" in cnt && ok["msaproxy"] > 0)
			printf "; msaproxy %.3f ms, Cyrus %.3f ms", scpu["msaproxy"] * 1000 / ok["msaproxy"], icpu["msaproxy"] * 1000 / ok["msaproxy"]
		printf "\n"
	}
	if ("msaproxy" in cnt) {
		worst = 0
		for (i = 1; i <= cnt["msaproxy"]; i++) if (clrun["msaproxy", i] > worst) worst = clrun["msaproxy", i]
		printf "POOL: msaproxy opened %d IMAP connections for %d messages over %d runs (at most %d in one run, with %d concurrent sessions); ss saw %d distinct client ports -> %s\n", cl["msaproxy"], incl["msaproxy"], cnt["msaproxy"], worst, conc, cs["msaproxy"], (cl["msaproxy"] > 0 && cl["msaproxy"] * 10 <= incl["msaproxy"] ? "connections << messages" : "CHECK")
	}
}
EOF
	if [ -s "$EVENTS" ]; then
		echo
		echo "Events:"
		echo
		sed 's/^/    /' "$EVENTS"
	fi
} >"$SUM"

echo
cat "$SUM"
echo
echo "raw runs: $RES"
echo "summary:  $SUM"
