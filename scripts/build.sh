#!/bin/sh
# Build msaproxy in the source tree (autotools).  Extra arguments go to configure.
set -eu
cd "$(dirname "$0")/.."
[ -x configure ] && [ configure -nt configure.ac ] && [ configure -nt Makefile.am ] || autoreconf -fi >/dev/null
if [ ! -f Makefile ] || [ "$#" -gt 0 ] || [ configure -nt Makefile ]; then
  ./configure -q "$@"
fi
make -s -j"$(nproc)"
