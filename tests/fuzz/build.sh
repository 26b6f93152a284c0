#!/bin/sh
# build.sh - build every libFuzzer target in tests/fuzz with clang and
# ASan + UBSan.
#
#   tests/fuzz/build.sh [OUTDIR]
#
# OUTDIR defaults to $FUZZ_OUT, else $TMPDIR/msaproxy-fuzz (outside the
# tree, so nothing needs ignoring).  CC (default clang) and EXTRA_CFLAGS may
# be set.  Each target is fuzz_<name>.c, linked against the pure modules it
# exercises (listed below) - never against the whole daemon, so a target
# needs no config, sockets or event loop.  Prints the output directory.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${1:-${FUZZ_OUT:-${TMPDIR:-/tmp}/msaproxy-fuzz}}
cc=${CC:-clang}
cflags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
-fno-sanitize-recover=undefined -D_GNU_SOURCE -I$top -I$top/proxy -I$top/conf -I$top/trust -I$top/auth \
-Wall -Wextra -Wno-unused-parameter ${EXTRA_CFLAGS:-}"

# libmsa_a_SOURCES of Makefile.am, the .c files only (fuzz_session links
# the whole session machinery).  Without config.h, limits_redis.c builds its
# stub (no hiredis).
libmsa_sources() {
	sed -n '/^libmsa_a_SOURCES/,/^$/p' "$top/Makefile.am" |
	    tr ' \t\\' '\n\n\n' | grep '\.c$'
}

# The modules each target needs, and its extra libraries.
sources() {
	case $1 in
	proxyproto)	echo "proxy/proxyproto.c" ;;
	smtp_parse)	echo "proxy/smtp_parse.c" ;;
	data_filter)	echo "proxy/data_filter.c" ;;
	conf)		echo "conf/conf.c proxy/smtp_parse.c trust/mapping.c" ;;
	imapurl)	echo "trust/imapurl.c" ;;
	imap_resp)	echo "trust/imap_resp.c" ;;
	limits_url)	echo "proxy/limits_url.c trust/imapurl.c" ;;
	mapping)	echo "" ;;	# includes trust/mapping.c itself
	audit_format)	echo "auth/audit_format.c" ;;
	header_scan)	echo "proxy/header_scan.c" ;;
	# a whole session: everything of libmsa.a (Makefile.am) but main()
	session)	libmsa_sources ;;
	mailhost)	echo "trust/mailhost.c trust/mailhost_ldap.c proxy/log.c proxy/util.c auth/tls.c conf/conf.c proxy/smtp_parse.c trust/mapping.c" ;;
	*)		echo "build.sh: no sources listed for fuzz_$1" >&2
			return 1 ;;
	esac
}
libs() {
	case $1 in
	data_filter)	pkg-config --libs libevent 2>/dev/null || echo -levent ;;
	conf)		pkg-config --libs libconfig 2>/dev/null || echo -lconfig ;;
	audit_format)	pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto ;;
	limits_url)	pkg-config --libs libcrypto 2>/dev/null || echo -lcrypto ;;
	session)	pkg-config --libs jansson libssl libcrypto libevent \
			    libevent_openssl libsasl2 krb5-gssapi krb5 libconfig \
			    ldap 2>/dev/null || echo "-ljansson -lssl -lcrypto -levent \
			    -levent_openssl -lsasl2 -lgssapi_krb5 -lkrb5 -lconfig \
			    -lldap -llber"
			echo -lpthread ;;
	mailhost)	pkg-config --libs ldap libevent libssl libcrypto libconfig 2>/dev/null ||
			echo -lldap -llber -levent -lssl -lcrypto -lconfig ;;
	*)		echo "" ;;
	esac
}

mkdir -p "$out"
status=0

# auth/audit_writer.c includes config.h (PACKAGE_VERSION) unconditionally;
# fuzz_session gets a minimal one, without HAVE_HIREDIS.
mkdir -p "$out/include"
version=$(sed -n 's/^AC_INIT(\[[^]]*\], *\[\([^]]*\)\].*/\1/p' \
    "$top/configure.ac")
printf '#define PACKAGE_VERSION "%s"\n' "${version:-fuzz}" \
    >"$out/include/config.h"
extra_cflags() {
	case $1 in
	session)	echo "-I$out/include" ;;
	esac
}
for src in "$here"/fuzz_*.c; do
	name=$(basename "$src" .c)
	name=${name#fuzz_}
	mods=$(sources "$name") || { status=1; continue; }
	set --
	for m in $mods; do
		set -- "$@" "$top/$m"
	done
	# shellcheck disable=SC2086
	if $cc $cflags $(extra_cflags "$name") "$@" "$src" $(libs "$name") \
	    -o "$out/fuzz_$name"; then
		echo "built $out/fuzz_$name" >&2
	else
		echo "build.sh: fuzz_$name failed to build" >&2
		status=1
	fi
done
echo "$out"
exit $status
