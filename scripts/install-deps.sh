#!/bin/sh
# Install everything msaproxy needs to build, run its demo and run its tests,
# from Debian 12's packages.  Run as root.  Idempotent.
set -eu
export DEBIAN_FRONTEND=noninteractive
# Postfix asks how to configure the system MTA; we only need its binaries
# (the demo and tests run private instances from their own config dirs).
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections
PKGS="build-essential autoconf automake libtool pkg-config clang libclang-rt-14-dev
  libevent-dev libssl-dev libsasl2-dev libsasl2-modules libsasl2-modules-db libsasl2-modules-gssapi-mit
  sasl2-bin libkrb5-dev krb5-kdc krb5-admin-server krb5-user libconfig-dev
  libcmocka-dev libjansson-dev postfix python3 python3-pytest python3-gssapi
  swaks msmtp faketime valgrind openssl procps iproute2 ca-certificates"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get update -q
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing
fi
