"""Fixtures for msaproxy's integration tests (see harness.py).

Run:  /usr/bin/python3 -m pytest tests/integration -q      (as root)

The binary is ./msaproxy at the top of the tree (scripts/build.sh), or
$MSAPROXY_BIN.  Tests that need it are skipped while it does not exist; the
harness self-tests (test_harness.py) run regardless.
"""

import os
import re
import shutil
import uuid
from pathlib import Path

import pytest

import harness
from fixtures_auth import *  # noqa: F401,F403  (KDC and SASL fixtures)
from imap_servers import *  # noqa: F401,F403  (cyrus_imap, dovecot_imap, submit_keytab, hostile_imap)

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    if os.geteuid() == 0:
        # msaproxy refuses to serve as root: its workers run as this account
        harness.ensure_test_user()


def _need_root():
    if os.geteuid() != 0:
        pytest.skip("integration tests run Postfix and smtp-sink: need root")


@pytest.fixture(scope="session")
def binary():
    b = harness.DEFAULT_BINARY
    if not os.access(b, os.X_OK):
        pytest.skip(f"{b} not built yet (scripts/build.sh)")
    return b


@pytest.fixture(scope="session")
def postfix():
    """One private Postfix for the whole run; tests tell their messages apart
    by a unique marker (the `marker` fixture)."""
    _need_root()
    if not shutil.which("postfix"):
        pytest.skip("postfix not installed (scripts/install-deps.sh)")
    pf = harness.PostfixBackend()
    try:
        pf.start()
    except Exception:
        pf.cleanup()
        raise
    yield pf
    pf.cleanup()


@pytest.fixture
def sink():
    _need_root()
    if not shutil.which("smtp-sink"):
        pytest.skip("smtp-sink not installed (postfix package)")
    s = harness.SmtpSink()
    try:
        s.start()
    except Exception:
        s.cleanup()
        raise
    yield s
    s.cleanup()


@pytest.fixture
def fake():
    """A FakeBackend without CHUNKING (so the proxy speaks DATA to it)."""
    f = harness.FakeBackend().start()
    yield f
    f.stop()


@pytest.fixture
def fake_chunking():
    f = harness.FakeBackend(caps=harness.DEFAULT_FAKE_CAPS + ["CHUNKING"]).start()
    yield f
    f.stop()


@pytest.fixture
def proxy_factory(binary):
    """make(backend, overrides=None, start=True) -> started Msaproxy.

    At teardown every proxy still running gets SIGTERM and must exit 0 in
    time: a crash or hang during the test shows up as a teardown error."""
    made = []

    def make(backend, overrides=None, start=True, **kw):
        addr = backend if isinstance(backend, str) else backend.address
        p = harness.Msaproxy(addr, overrides, binary=binary, **kw)
        made.append(p)
        if start:
            p.start(backend=None if isinstance(backend, str) else backend)
        return p

    yield make
    problems = []
    for p in made:
        if p.proc is None:
            p.cleanup()
            continue
        crashed = p.proc.poll()
        try:
            p.stop(check=True)
        except AssertionError as e:
            problems.append(str(e))
        if crashed not in (None, 0):
            problems.append(f"msaproxy had exited with {crashed} during the test\n"
                            f"{p.log()[-3000:]}")
        p.cleanup()
    if problems:
        pytest.fail("\n\n".join(problems))


@pytest.fixture
def marker():
    return "MARK-" + uuid.uuid4().hex


@pytest.fixture
def expect():
    return harness.check_reply
