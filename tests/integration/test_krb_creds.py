"""trust/krb_creds.c against a real MIT KDC (kdc.py) and a real GSSAPI
acceptor (python3-gssapi, in this process).

The C side is tests/unit/krb_creds_driver (built by `make check`): it calls
krb_creds_new() for submit@LAB.TEST from its client keytab and runs
gssapi_client exchanges on command, printing the tokens as base64 lines;
the acceptor here holds the imap/localhost keytab.  Also runs the cmocka
unit test tests/unit/test_krb_creds with the KDC variables set, so its
in-process acceptor tests run instead of being skipped.

What must hold:
  - the acceptor sees initiator submit@LAB.TEST, the chosen layer "none"
    with max size 0, and the authzid (RFC 4752 3.1);
  - once ready, an exchange with a pre-fetched service needs no KDC (the
    KDC is stopped first), while a service that was not pre-fetched does
    (it fails with the KDC down: the documented synchronous fallback);
  - KDC down at start: not ready, no exchange, the failure logged with the
    GSS text; KDC up: ready within the first backoff (5 s);
  - short tickets (principal maxlife) are refreshed at half life, before
    they expire, and stay usable throughout; with the KDC gone they stop
    being ready before they expire, and come back when it returns.

Run with /usr/bin/python3 (python3-gssapi).  Binaries: the tree's build, or
the one next to $MSAPROXY_BIN (build-asan/ for the sanitizer run), or
$MSAPROXY_BUILD_DIR.
"""

import base64
import os
import queue
import re
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import kdc as kdc_mod
import sasl_client
from fixtures_auth import *  # noqa: F401,F403

gssapi = pytest.importorskip("gssapi", reason="python3-gssapi: run with /usr/bin/python3")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
REALM = kdc_mod.DEFAULT_REALM
SUBMIT = f"submit@{REALM}"


def _build_dir():
    if os.environ.get("MSAPROXY_BUILD_DIR"):
        return Path(os.environ["MSAPROXY_BUILD_DIR"])
    if os.environ.get("MSAPROXY_BIN"):
        return Path(os.environ["MSAPROXY_BIN"]).resolve().parent
    return REPO


BUILD = _build_dir()
DRIVER = BUILD / "tests" / "unit" / "krb_creds_driver"
UNIT = BUILD / "tests" / "unit" / "test_krb_creds"


def _need(path):
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not built (make check)")


def _env(kdc, extra=None):
    e = dict(os.environ)
    for k in sasl_client.KRB5_VARS:
        e.pop(k, None)
    e.update(kdc.env())
    e.update(extra or {})
    e["LC_ALL"] = "C"
    return e


@pytest.fixture(scope="module")
def imap_keytab(kdc_session):
    try:
        kdc_session.add_principal("imap/localhost")
    except kdc_mod.KrbError as e:
        if "already exists" not in str(e):
            raise
    return kdc_session.keytab(["imap/localhost"], kdc_session.keytab_dir / "imap.keytab")


@pytest.fixture(scope="module")
def short_principal(kdc_session):
    """A client principal whose tickets live 40 s, and its keytab."""
    name = "submitshort"
    try:
        kdc_session.add_principal(name, options=("-maxlife", '"40 seconds"'))
    except kdc_mod.KrbError as e:
        if "already exists" not in str(e):
            raise
    return kdc_session.principal(name), kdc_session.keytab([name])


@pytest.fixture
def acceptor_creds(krb5_env, imap_keytab):
    return gssapi.Credentials(usage="accept", store={"keytab": imap_keytab})


class Driver:
    """krb_creds_driver as a child: commands on stdin, answers on stdout,
    log (stderr) in a file."""

    def __init__(self, kdc, keytab, principal=SUBMIT, services=("imap@localhost",)):
        _need(DRIVER)
        self.logfile = kdc.dir / f"driver-{os.urandom(4).hex()}.log"
        self._log = open(self.logfile, "wb")
        argv = [str(DRIVER), "-k", str(keytab), "-p", principal]
        for s in services:
            argv += ["-s", s]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, env=_env(kdc), text=True, bufsize=1)
        self.lines = queue.Queue()
        self.sent = []                       # every base64 token seen, both ways
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def recv(self, timeout=30):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"driver silent for {timeout} s\n{self.log()}")
        assert line is not None, f"driver exited ({self.proc.poll()})\n{self.log()}"
        return line

    def cmd(self, line, timeout=30):
        self.send(line)
        return self.recv(timeout)

    def ready(self):
        return self.cmd("READY?") == "READY 1"

    def wait_ready(self, secs):
        return self.cmd(f"WAIT {secs}", timeout=secs + 30) == "READY"

    def auth(self, creds, service="imap", host="localhost", authzid="",
             offer=b"\x01\x00\x10\x00", timeout=30):
        """One exchange against a python-gssapi acceptor.  Returns
        ("DONE", initiator, plaintext) or ("FAIL", error, None)."""
        ctx = gssapi.SecurityContext(creds=creds, usage="accept")
        self.send(f"AUTH {service} {host} {authzid}".rstrip())
        while True:
            line = self.recv(timeout)
            kind, _, arg = line.partition(" ")
            if kind == "F":
                return "FAIL", arg, None
            tok = base64.b64decode(arg)
            if arg:
                self.sent.append(arg)
            if kind == "D":
                msg = ctx.unwrap(tok)
                assert msg.encrypted is False        # integrity only, no layer
                return "DONE", str(ctx.initiator_name), msg.message
            assert kind == "C", line
            if not ctx.complete:
                out = ctx.step(tok) or b""
            else:
                # context done: the client's empty response, then our offer
                assert tok == b"", tok
                out = ctx.wrap(offer, False).message
            b = base64.b64encode(out).decode()
            self.sent.append(b)
            self.send(f"S {b}")

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout, count=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.log())) >= count:
                return True
            time.sleep(0.1)
        return False

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("QUIT")
                assert self.recv(15) == "BYE"
                assert self.proc.wait(15) == 0, self.log()
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
        self._log.close()


@pytest.fixture
def driver_factory(kdc):
    made = []

    def make(**kw):
        d = Driver(kdc, kw.pop("keytab", kdc.keytabs["submit"]), **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def _acquired(log):
    """[(log time, valid-until time)] of every successful acquisition."""
    out = []
    for m in re.finditer(r"^(\S+)Z .*kerberos: credentials of \S+ acquired: "
                         r"valid until (\S+)Z", log, re.M):
        t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
        u = datetime.strptime(m.group(2), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        out.append((t, u))
    return out


# ------------------------------------------------------------------ tests ---

def test_unit_test_with_kdc(kdc, imap_keytab):
    """The cmocka tests of the exchange (in-process acceptor) really run."""
    _need(UNIT)
    r = subprocess.run([str(UNIT)], capture_output=True, text=True, timeout=300,
                       env=_env(kdc, {"MSA_TEST_KRB_KEYTAB": kdc.keytabs["submit"],
                                      "MSA_TEST_KRB_PRINCIPAL": SUBMIT,
                                      "MSA_TEST_KRB_ACCEPTOR_KEYTAB": imap_keytab,
                                      "MSA_TEST_KRB_SERVICE": "imap",
                                      "MSA_TEST_KRB_HOST": "localhost"}))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "[  PASSED  ] 16 test(s)." in out, out
    assert "SKIPPED" not in out, out


def test_exchange_with_real_acceptor(driver_factory, acceptor_creds):
    d = driver_factory()
    assert d.wait_ready(20), d.log()
    kind, who, msg = d.auth(acceptor_creds, authzid="alice")
    assert kind == "DONE", who
    assert who == SUBMIT
    assert msg == b"\x01\x00\x00\x00alice"
    kind, who, msg = d.auth(acceptor_creds)               # no authzid
    assert (kind, who, msg) == ("DONE", SUBMIT, b"\x01\x00\x00\x00")
    # a server that insists on a security layer is refused
    kind, err, _ = d.auth(acceptor_creds, offer=b"\x04\x00\x10\x00")
    assert kind == "FAIL" and "requires a security layer (offers 0x04)" in err
    log = d.log()
    assert re.search(rf"kerberos: credentials of {SUBMIT} acquired: valid until "
                     r"\S+Z \(\d+ s\), 1 of 1 service tickets", log), log
    assert re.search(r"kerberos: next refresh of \S+ in \d+ s", log), log
    # no token (and so no ticket) ever reaches the log
    assert d.sent and not any(t in log for t in d.sent if len(t) > 16)


def test_prefetched_ticket_needs_no_kdc(kdc, driver_factory, acceptor_creds):
    d = driver_factory()
    assert d.wait_ready(20), d.log()
    kdc.stop()
    kind, who, msg = d.auth(acceptor_creds, authzid="bob")
    assert (kind, who, msg) == ("DONE", SUBMIT, b"\x01\x00\x00\x00bob"), who
    # smtp/localhost exists but was not pre-fetched: the exchange would have
    # to ask the KDC (synchronously) and fails while it is down.
    kind, err, _ = d.auth(acceptor_creds, service="smtp")
    assert kind == "FAIL"
    assert "gss_init_sec_context" in err and "Cannot contact any KDC" in err, err
    # with the KDC back, the same exchange fetches the ticket on the spot
    kdc.start()
    smtp_creds = gssapi.Credentials(usage="accept", store={"keytab": kdc.keytabs["smtp"]})
    kind, who, _ = d.auth(smtp_creds, service="smtp")
    assert (kind, who) == ("DONE", SUBMIT)
    assert d.ready()


def test_kdc_down_at_start(kdc, driver_factory, acceptor_creds):
    kdc.stop()
    d = driver_factory()
    assert d.wait_log(rf"kerberos: cannot acquire credentials of {SUBMIT} from keytab "
                      r"\S+: gss_acquire_cred_from: .*Cannot contact any KDC for realm "
                      rf"'{REALM}'; none usable, retrying in 5 s", 20), d.log()
    assert not d.ready()
    kind, err, _ = d.auth(acceptor_creds)
    assert (kind, err) == ("FAIL", "GSSAPI: no Kerberos credentials ready (KDC down?)")
    t0 = time.monotonic()
    kdc.start()
    assert d.wait_ready(15), d.log()
    assert time.monotonic() - t0 < 7                       # the first backoff is 5 s
    kind, who, _ = d.auth(acceptor_creds)
    assert (kind, who) == ("DONE", SUBMIT)


@pytest.mark.slow
def test_refresh_before_expiry(kdc, short_principal, driver_factory, acceptor_creds):
    princ, keytab = short_principal
    d = driver_factory(keytab=keytab, principal=princ)
    assert d.wait_ready(20), d.log()
    [(t1, until1)] = _acquired(d.log())
    life = (until1 - t1).total_seconds()
    assert 30 <= life <= 41, d.log()                        # maxlife 40 s
    assert re.search(rf"next refresh of {princ} in (1[5-9]|2\d) s", d.log()), d.log()
    # usable all along, refreshed at about half life, long before expiry
    deadline = time.monotonic() + 35
    while len(_acquired(d.log())) < 2 and time.monotonic() < deadline:
        assert d.ready(), d.log()
        time.sleep(1)
    acq = _acquired(d.log())
    assert len(acq) >= 2, d.log()
    t2, until2 = acq[1]
    assert 15 <= (t2 - t1).total_seconds() <= 25, d.log()
    assert t2 < until1 and until2 > until1
    # the new tickets are complete: no KDC needed for the exchange
    kdc.stop()
    kind, who, _ = d.auth(acceptor_creds, authzid="carol")
    assert (kind, who) == ("DONE", princ)


@pytest.mark.slow
def test_expiry_without_kdc_then_recovery(kdc, short_principal, driver_factory,
                                          acceptor_creds):
    princ, keytab = short_principal
    d = driver_factory(keytab=keytab, principal=princ)
    assert d.wait_ready(20), d.log()
    [(t1, until1)] = _acquired(d.log())
    kdc.stop()
    # the refresh at half life fails; the old tickets are kept while valid
    assert d.wait_log(r"cannot acquire credentials .*keeping the current ones, "
                      r"retrying in 5 s", 30), d.log()
    assert d.ready()
    # no longer ready KRB_CREDS_MIN_VALID (10 s) before they expire
    deadline = time.monotonic() + 40
    while d.ready() and time.monotonic() < deadline:
        time.sleep(0.5)
    now = datetime.now(timezone.utc)
    assert not d.ready()
    assert (until1 - now).total_seconds() <= 11, (until1, now)
    kind, err, _ = d.auth(acceptor_creds)
    assert kind == "FAIL" and "no Kerberos credentials ready" in err
    kdc.start()
    assert d.wait_ready(30), d.log()       # the next retry (backoff <= 20 s here)
    kind, who, _ = d.auth(acceptor_creds)
    assert (kind, who) == ("DONE", princ)
