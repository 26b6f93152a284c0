#!/bin/sh
# Install everything msaproxy needs to build, run its demo and run its tests,
# from Debian 12's packages.  Run as root.  Idempotent.
#
# IMAP servers for the BURL tests (tests/integration/imap_servers.py):
#   Dovecot IMAP   dovecot-imapd + dovecot-gssapi, run as private instances.
#   Cyrus IMAP     only cyrus-common (cyrmaster, tools, the cyrus user) is
#                  installed as a package.  The imapd binary comes from
#                  `apt-get download cyrus-imapd`, unpacked with dpkg-deb -x
#                  under $CYRUS_DIR (default /opt/msaproxy-test/cyrus):
#                  NEVER `apt-get install cyrus-imapd`, it Conflicts with
#                  imap-server and would REMOVE dovecot-imapd.
# LDAP for the mailHost directory (trust/mailhost.c, tests/integration/
#   ldap_server.py): libldap-dev to build; slapd + ldap-utils for the tests,
#   which run a private slapd from a generated slapd.conf in a temp dir.
#   slapd is preseeded with slapd/no_configuration so its postinst creates no
#   system directory (no /etc/ldap/slapd.d, no /var/lib/ldap database), and
#   its service is disabled below: the system instance is never used.
# Redis for limits shared by a fleet (proxy/limits_redis.c, tests/integration/
#   test_limits.py): libhiredis-dev to build (configure finds it and builds
#   rate_limits.redis in); redis-server for the tests, which run private
#   instances on free ports with no persistence.  The packaged service is
#   disabled below, like slapd's.
# No packaged daemon is started by this script (a temporary policy-rc.d
# denies it), and the cyrus-imapd init script / unit shipped by cyrus-common
# is disabled so that no system cyrmaster takes port 143 at the next boot.
set -eu
export DEBIAN_FRONTEND=noninteractive
CYRUS_DIR=${MSAPROXY_CYRUS_DIR:-/opt/msaproxy-test/cyrus}

# Postfix asks how to configure the system MTA; we only need its binaries
# (the demo and tests run private instances from their own config dirs).
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections
# slapd: binaries only, no system directory (see above).
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
PKGS="build-essential autoconf automake libtool pkg-config clang libclang-rt-14-dev
  libevent-dev libssl-dev libsasl2-dev libsasl2-modules libsasl2-modules-db libsasl2-modules-gssapi-mit
  sasl2-bin libkrb5-dev krb5-kdc krb5-admin-server krb5-user libconfig-dev
  libcmocka-dev libjansson-dev postfix python3 python3-pytest python3-gssapi
  swaks msmtp faketime valgrind openssl procps iproute2 ca-certificates
  passwd mount util-linux coreutils
  dovecot-core dovecot-imapd dovecot-gssapi cyrus-common
  libldap-dev slapd ldap-utils
  libhiredis-dev redis-server"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done

own_policy=""
cleanup() {
  if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ -n "${tmp:-}" ]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [ -n "$missing" ]; then
  apt-get update -q
  # invoke-rc.d and deb-systemd-invoke ask policy-rc.d: 101 = "action
  # forbidden", so the postinsts of dovecot-core and cyrus-common do not
  # start system daemons on 143/993.  An existing policy-rc.d is respected.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from msaproxy scripts/install-deps.sh\nexit 101\n' \
      >/usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    own_policy=yes
  fi
  # Refuse to go on if apt would remove anything (e.g. a dependency change
  # that pulls cyrus-imapd in and dovecot-imapd out).
  # shellcheck disable=SC2086
  if apt-get install -s -q --no-install-recommends $missing | grep -q '^Remv '; then
    echo "install-deps.sh: apt-get would remove packages; refusing:" >&2
    # shellcheck disable=SC2086
    apt-get install -s -q --no-install-recommends $missing | grep '^Remv ' >&2
    exit 1
  fi
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing
fi

# cyrus-common enables its cyrus-imapd service (cyrmaster with /etc/cyrus.conf,
# listening on imap/pop3/lmtp/sieve).  Without the cyrus-imapd package it is
# useless, and at boot it would take port 143: keep it off.  The tests run
# cyrmaster with their own configuration.
if ! dpkg-query -W -f='${Status}' cyrus-imapd 2>/dev/null | grep -q 'install ok installed'; then
  if [ -x /etc/init.d/cyrus-imapd ]; then
    update-rc.d cyrus-imapd disable >/dev/null 2>&1 || true
  fi
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper disable cyrus-imapd.service >/dev/null 2>&1 || true
  fi
fi

# The packaged slapd would serve /etc/ldap/slapd.d at boot; the tests run
# their own slapd, so keep the system one off (it has no configuration
# anyway: slapd/no_configuration above).
if [ -x /etc/init.d/slapd ]; then
  update-rc.d slapd disable >/dev/null 2>&1 || true
fi
if command -v deb-systemd-helper >/dev/null 2>&1; then
  deb-systemd-helper disable slapd.service >/dev/null 2>&1 || true
fi

# The packaged redis-server would listen on 6379 at boot; the tests run their
# own instances.
if [ -x /etc/init.d/redis-server ]; then
  update-rc.d redis-server disable >/dev/null 2>&1 || true
fi
if command -v deb-systemd-helper >/dev/null 2>&1; then
  deb-systemd-helper disable redis-server.service >/dev/null 2>&1 || true
fi

# The Cyrus imapd binary (and its siblings) without the cyrus-imapd package.
if [ ! -x "$CYRUS_DIR/usr/lib/cyrus/bin/imapd" ]; then
  ver=$(dpkg-query -W -f='${Version}' cyrus-common)
  tmp=$(mktemp -d)
  chown _apt "$tmp" 2>/dev/null || true   # apt downloads as _apt if it can
  # the package lists may be older than the installed cyrus-common when
  # nothing else was missing above (no apt-get update then): refresh once
  (cd "$tmp" && apt-get download -q "cyrus-imapd=$ver") ||
    { apt-get update -q && (cd "$tmp" && apt-get download -q "cyrus-imapd=$ver"); }
  mkdir -p "$CYRUS_DIR"
  dpkg-deb -x "$tmp"/cyrus-imapd_*.deb "$CYRUS_DIR"
  echo "install-deps.sh: unpacked cyrus-imapd $ver into $CYRUS_DIR (package not installed on purpose)"
fi

# The unprivileged account msaproxy's workers run as (it refuses to serve as
# root); the tests and the demo use it too.
if ! getent passwd msaproxy >/dev/null; then
  useradd --system --no-create-home --shell /usr/sbin/nologin msaproxy
  echo "install-deps.sh: created the system user msaproxy"
fi
