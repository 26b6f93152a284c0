#!/bin/sh
# demo.sh - build msaproxy and show it working end to end, on 127.0.0.1 only.
#
#   sudo scripts/demo.sh          install deps, build, start a private Postfix
#                                 and msaproxy, send one message through the
#                                 proxy (swaks), show where it landed, stop all
#   sudo scripts/demo.sh --keep   same, but leave both running; prints how to
#                                 stop them
#   --no-deps                     skip scripts/install-deps.sh
#
# All state lives in one /tmp/msaproxy-demo.* directory; nothing is written
# to /etc or the system Postfix.  Driven by tests/integration/demo.py, which
# reuses the integration-test harness.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "demo.sh: run as root (installs packages; the private Postfix drops privileges)" >&2
  exit 1
fi

deps=1
for a in "$@"; do
  [ "$a" = --no-deps ] && deps=0
done

if [ "$deps" = 1 ]; then
  echo "== scripts/install-deps.sh"
  scripts/install-deps.sh
fi
echo "== scripts/build.sh"
scripts/build.sh

# Debian's python3 (has pytest/gssapi); another python3 may come first in PATH
py=/usr/bin/python3
[ -x "$py" ] || py=python3

exec "$py" tests/integration/demo.py "$@"
