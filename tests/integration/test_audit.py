"""The audit trail (issue 6, docs/AUDIT.md): every event leaves exactly the
expected record; a transaction's record is on disk before the backend gets
the end of data (audit.pending_sync = before_backend, the default) and, in
both modes, before the client sees 250 (the writer stopped: no 250; kill
-9 right after the 250: the record is there); a full disk or a writer
that does not answer gives 451 4.3.0 and no 250; msaproxy-audit verify passes on a clean log and names
the exact line after a byte edit, a deleted line, reordered lines; rotation
(SIGUSR1, SIGHUP, size under load) loses and duplicates nothing; the syslog
copy is RFC 5424.
"""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import harness
import sasl_client
from pki import pki  # noqa: F401  (fixture)
from test_auth import auth_conf, hello, sasldb  # noqa: F401  (fixture)

AUDIT_BIN = os.environ.get("MSAPROXY_AUDIT_BIN",
                           str(Path(harness.DEFAULT_BINARY).parent / "msaproxy-audit"))
MSALOAD = harness.REPO / "bench" / "msaload"
KEY = "0123456789abcdef0123456789abcdef0123456789abcdef"


# ------------------------------------------------------------ helpers ---

@pytest.fixture
def auditdir():
    d = harness.make_tempdir("msaproxy-audit.")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def aconf(d, **kw):
    a = {"enabled": True, "file": str(Path(d) / "audit.log")}
    a.update(kw)
    return {"audit": a}


def first_seq(p):
    with open(p, "rb") as f:
        m = re.match(rb'\{"seq":(\d+),', f.readline())
    return int(m.group(1)) if m else 1 << 62


def log_files(d):
    """The active log and the rotated ones, in chain order."""
    fs = [p for p in Path(d).iterdir() if p.name == "audit.log" or
          p.name.startswith("audit.log.")]
    return sorted(fs, key=first_seq)


def records(d):
    out = []
    for p in log_files(d):
        for line in p.read_bytes().splitlines():
            out.append(json.loads(line))
    return out


def wait_for(d, pred, count=1, timeout=10):
    r = harness.wait_until(lambda: (lambda m: m if len(m) >= count else None)(
        [x for x in records(d) if pred(x)]), timeout)
    assert r, f"no {count} matching record(s) within {timeout} s:\n" + \
        "\n".join(json.dumps(x) for x in records(d)[-10:])
    return r


def session_of(d, port, timeout=10):
    """The records of the session whose client port is `port`, once its
    session_close is written."""
    [o] = wait_for(d, lambda r: r["type"] == "session_open" and
                   r.get("client_port") == port, 1, timeout)
    sid = o["session"]
    wait_for(d, lambda r: r["type"] == "session_close" and r["session"] == sid,
             1, timeout)
    return [r for r in records(d) if r["session"] == sid]


def types(recs):
    return [r["type"] for r in recs]


def audit_tool(*args):
    return subprocess.run([AUDIT_BIN, *map(str, args)], capture_output=True,
                          text=True, timeout=60)


def verify(d, *extra):
    return audit_tool("verify", *extra, *log_files(d))


def writer_pid(d):
    return [r for r in records(d) if r["type"] == "audit_start"][-1]["pid"]


def send(c, content, mail_from="a@example.org", rcpts=("b@example.net",)):
    """A whole transaction on an open, greeted session; the final reply."""
    c.expect(f"MAIL FROM:<{mail_from}>", 250)
    for r in rcpts:
        c.expect(f"RCPT TO:<{r}>", 250)
    c.expect("DATA", 354)
    c.send(harness.dot_stuff(content) + b"\r\n.\r\n")
    return c.reply()


def message(marker, body="hello"):
    return (f"Message-ID: <{marker}@client.example>\r\nSubject: {marker}\r\n"
            f"\r\n{body}").encode()


def greet(c):
    assert c.reply().code == 220
    c.expect("EHLO client.example", 250)
    return c.sock.getsockname()[1]


@pytest.fixture
def have_tool():
    if not os.access(AUDIT_BIN, os.X_OK):
        pytest.skip(f"{AUDIT_BIN} not built")


# ------------------------------------------------------ the records ---

def test_transaction_records(fake, proxy_factory, auditdir, marker, have_tool):
    fake.rcpt_replies = {"nobody@example.net": "550 5.1.1 No such user"}
    p = proxy_factory(fake, aconf(auditdir))
    msg = message(marker)
    with p.client() as c:
        port = greet(c)
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("RCPT TO:<nobody@example.net>", 550)
        c.expect("DATA", 354)
        c.send(msg + b"\r\n.\r\n")
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    recs = session_of(auditdir, port)
    assert types(recs) == ["session_open", "tx_pending", "tx", "session_close"]
    op, pend, tx, cl = recs
    assert op["client_ip"] == "127.0.0.1" and op["listener"] == "submission"
    assert op["listener_kind"] == "submission" and op["local_port"] == p.port
    for r in recs:
        assert r["host"] == "proxy.test" and r["identity"] is None
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", r["ts"])
    for t in (pend, tx):
        assert t["tx"] == pend["tx"]
        assert t["mail_from"] == "a@example.org" and t["mail_code"] == 250
        assert [(x["to"], x["code"]) for x in t["rcpts"]] == \
            [("b@example.net", 250), ("nobody@example.net", 550)]
        assert t["rcpts"][1]["reply"] == "550 5.1.1 No such user"
        assert (t["rcpt_count"], t["rcpt_accepted"]) == (2, 1)
        assert t["size"] == len(msg) + 2
        assert t["message_id"] == f"<{marker}@client.example>"
        assert t["content"] == ["DATA"] and t["backend_mode"] == "DATA"
    assert "result" not in pend
    assert tx["result"] == "delivered"
    assert (tx["code"], tx["enhanced"], tx["queue_id"]) == (250, "2.0.0", "FAKE1")
    assert tx["reply"] == "250 2.0.0 Ok: queued as FAKE1"
    assert set(tx["timings"]) >= {"envelope_ms", "content_ms", "audit_ms",
                                  "backend_ms", "total_ms"}
    assert pend["seq"] < tx["seq"]
    assert cl["reason"] == "quit" and cl["messages"] == 1 and cl["reply"] == "221 2.0.0"
    r = verify(auditdir)
    assert r.returncode == 0 and r.stdout.startswith("OK:"), r.stdout + r.stderr


def test_bdat_records(fake_chunking, proxy_factory, auditdir, marker):
    p = proxy_factory(fake_chunking, aconf(auditdir))
    msg = message(marker) + b"\r\n"
    with p.client() as c:
        port = greet(c)
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.send(f"BDAT {len(msg)} LAST\r\n".encode() + msg)
        assert c.reply().code == 250
        c.expect("QUIT", 221)
    tx = [r for r in session_of(auditdir, port) if r["type"] == "tx"][0]
    assert tx["content"] == ["BDAT"] and tx["backend_mode"] == "BDAT"
    assert tx["message_id"] == f"<{marker}@client.example>"
    assert tx["size"] == len(msg) and tx["result"] == "delivered"


def test_refused_and_aborted(fake, proxy_factory, auditdir, marker):
    fake.data_reply = "554 5.7.1 Rejected by policy"
    p = proxy_factory(fake, aconf(auditdir))
    with p.client() as c:
        port = greet(c)
        r = send(c, message(marker))
        assert (r.code, r.enhanced) == (554, "5.7.1")
        # a transaction given up with RSET
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("RSET", 250)
        c.expect("QUIT", 221)
    recs = session_of(auditdir, port)
    assert types(recs) == ["session_open", "tx_pending", "tx", "tx", "session_close"]
    refused, aborted = recs[2], recs[3]
    assert (refused["result"], refused["code"], refused["enhanced"]) == \
        ("refused", 554, "5.7.1")
    assert (aborted["result"], aborted["detail"], aborted["content"]) == \
        ("aborted", "no content", [])
    assert recs[-1]["messages"] == 1


def test_lmtp_backend_per_recipient(proxy_factory, auditdir, marker):
    be = harness.FakeBackend(lmtp=True).start()
    try:
        be.lmtp_data_replies = {"c@example.net": "452 4.2.2 Mailbox full"}
        p = proxy_factory(be, harness.deep_merge(aconf(auditdir),
                                                 {"backend": {"protocol": "lmtp"}}))
        with p.client() as c:
            port = greet(c)
            r = send(c, message(marker), rcpts=("b@example.net", "c@example.net"))
            assert (r.code, r.enhanced) == (452, "4.2.2"), r   # one verdict
            c.expect("QUIT", 221)
        tx = [r for r in session_of(auditdir, port) if r["type"] == "tx"][0]
        assert tx["result"] == "partial" and tx["code"] == 452
        assert [x[:3] for x in tx["replies"]] == ["250", "452"]
    finally:
        be.stop()


def test_policy_and_limits(fake, proxy_factory, auditdir):
    p = proxy_factory(fake, harness.deep_merge(aconf(auditdir), {
        "limits": {"max_recipients": 1, "max_bad_commands": 3,
                   "max_message_size": "10K"}}))
    with p.client() as c:
        port = greet(c)
        c.expect("MAIL FROM:<a@example.org> SIZE=20000", 552)
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("RCPT TO:<c@example.net>", 452)
        c.expect("RSET", 250)
        c.expect("BOGUS", 500)
        c.expect("BOGUS", 500)
        r = c.cmd("BOGUS")
        assert r.code == 500
        assert c.reply().code == 421
    recs = session_of(auditdir, port)
    lim = [r for r in recs if r["type"] == "limit"]
    assert [(r["limit"], r["value"], r["reply"]) for r in lim] == [
        ("limits.max_message_size", 10240, "552 5.3.4"),
        ("limits.max_recipients", 1, "452 4.5.3"),
        ("limits.max_bad_commands", 3, "421 4.7.0")]
    assert lim[1]["mail_from"] == "a@example.org" and lim[1]["tx"]
    assert recs[-1]["reason"] == "too many errors"
    assert recs[-1]["reply"] == "421 4.7.0"


def test_max_connections(fake, proxy_factory, auditdir):
    p = proxy_factory(fake, harness.deep_merge(aconf(auditdir),
                                               {"limits": {"max_connections": 1}}))
    with p.client() as c1:
        greet(c1)
        with p.client() as c2:
            assert c2.reply().code == 421
            port = c2.sock.getsockname()[1]
    [r] = wait_for(auditdir, lambda r: r["type"] == "limit" and
                   r.get("client_port") == port)
    assert r["session"] is None and r["limit"] == "limits.max_connections"
    assert (r["value"], r["reply"], r["listener"]) == (1, "421 4.7.0", "submission")


def test_proxy_protocol_real_address(fake, proxy_factory, auditdir):
    p = proxy_factory(fake, harness.deep_merge(aconf(auditdir), {
        "listeners": [{"name": "lb", "kind": "smtp", "proxy_protocol": True,
                       "proxy_protocol_from": ["127.0.0.1/32"]}]}))
    with p.client() as c:
        port = c.sock.getsockname()[1]
        c.send(harness.proxy_v1("192.0.2.7", "192.0.2.1", 40000, 25))
        assert c.reply().code == 220
        c.expect("QUIT", 221)
    [o] = wait_for(auditdir, lambda r: r["type"] == "session_open" and
                   r.get("lb_port") == port)
    assert (o["client_ip"], o["client_port"]) == ("192.0.2.7", 40000)
    assert (o["lb_ip"], o["listener"]) == ("127.0.0.1", "lb")


def test_auth_tls_identity_records(pki, sasldb, fake, proxy_factory, auditdir,
                                   marker, have_tool):
    p = proxy_factory(fake, harness.deep_merge(auth_conf(pki, sasldb,
                                                         failure_delay_ms=0),
                                               aconf(auditdir)))
    with p.client() as c:
        hello(c, pki)
        port = c.sock.getsockname()[1]
        c.expect("MAIL FROM:<alice@example.org>", 530)
        r = sasl_client.auth_plain(c, "alice", "wrong")
        assert r.code == 535
        r = sasl_client.auth_plain(c, "alice", "alicepw")
        assert r.code == 235
        c.expect("MAIL FROM:<bob@example.org>", 553)
        r = send(c, message(marker), mail_from="alice@example.org")
        assert r.code == 250
        c.expect("QUIT", 221)
    recs = session_of(auditdir, port)
    assert types(recs) == ["session_open", "tls", "policy", "auth", "auth",
                           "policy", "tx_pending", "tx", "session_close"]
    tls = recs[1]
    assert tls["tls_version"] in ("TLSv1.2", "TLSv1.3") and tls["tls_cipher"]
    assert tls["tls_sni"] == "mail.test" and tls["tls_client_subject"] is None
    assert (recs[2]["rule"], recs[2]["reply"]) == ("auth_required", "530 5.7.0")
    bad, good = recs[3], recs[4]
    assert (bad["result"], bad["mechanism"], bad["authcid"], bad["identity"]) == \
        ("failure", "PLAIN", "alice", None)
    assert bad["reason"] and bad["failures"] == 1
    assert (good["result"], good["authcid"], good["authzid"], good["identity"]) == \
        ("success", "alice", "alice", "alice")
    assert "krb5_principal" not in good
    assert (recs[5]["rule"], recs[5]["mail_from"], recs[5]["identity"]) == \
        ("sender_denied", "bob@example.org", "alice")
    for r in recs[:4]:
        assert r["identity"] is None
    for r in recs[4:]:
        assert r["identity"] == "alice"
    assert recs[-1]["auth"] and recs[-1]["tls"] and recs[-1]["auth_failures"] == 1
    assert "alicepw" not in "".join(p.read_text() for p in log_files(auditdir))

    # the tool: query by identity and time, JSON and table; stats
    day = recs[0]["ts"][:10]
    q = audit_tool("query", "--identity", "alice", "--since", day, "--type", "tx",
                   "--json", *log_files(auditdir))
    assert q.returncode == 0, q.stderr
    [line] = q.stdout.splitlines()
    assert json.loads(line)["message_id"] == f"<{marker}@client.example>"
    q = audit_tool("query", "--identity", "alice", *log_files(auditdir))
    assert q.returncode == 0 and "delivered <alice@example.org>" in q.stdout, q.stdout
    q = audit_tool("query", "--identity", "alice", "--until", day,
                   *log_files(auditdir))
    assert q.returncode == 1             # nothing before that day
    s = audit_tool("stats", "--json", *log_files(auditdir))
    assert s.returncode == 0
    hours = [json.loads(x) for x in s.stdout.splitlines()]
    assert sum(h["delivered"] for h in hours) == 1
    assert sum(h["auth_failure"] for h in hours) == 1
    assert sum(h["identities"] for h in hours) >= 1


def test_gssapi_principal(krb5_env, alice_ccache, gssapi_conf, fake, proxy_factory,
                          auditdir):
    conf = harness.deep_merge({"sasl": {"mechanisms": "GSSAPI", "realm": "LAB.TEST"},
                               "listeners": [{"name": "submission",
                                              "kind": "submission"}]},
                              gssapi_conf)
    p = proxy_factory(fake, harness.deep_merge(conf, aconf(auditdir)))
    with p.client() as c:
        port = greet(c)
        r = sasl_client.auth_gssapi(c, ccache=alice_ccache, env=krb5_env)
        assert r.code == 235
        c.expect("QUIT", 221)
    [a] = [r for r in session_of(auditdir, port) if r["type"] == "auth"]
    assert (a["mechanism"], a["authcid"], a["identity"]) == ("GSSAPI", "alice", "alice")
    assert a["krb5_principal"] == "alice@LAB.TEST"


# --------------------------------------------------------- durability ---

PENDING_SYNC = ["before_backend", "before_reply"]


@pytest.mark.parametrize("pending_sync", PENDING_SYNC)
def test_no_250_until_on_disk(fake, proxy_factory, auditdir, marker,
                              pending_sync):
    """The writer stopped: the client gets nothing; the writer goes on: the
    250 comes.  before_backend: the end of data does not reach the backend
    meanwhile either; before_reply: it does (the backend's 250 is held)."""
    p = proxy_factory(fake, aconf(auditdir, pending_sync=pending_sync))
    wpid = writer_pid(auditdir)
    with p.client() as c:
        greet(c)
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        os.kill(wpid, signal.SIGSTOP)
        try:
            c.send(message(marker) + b"\r\n.\r\n")
            if pending_sync == "before_reply":
                # the backend has it and has answered: the 250 is held
                fake.wait_transactions(1)
            with pytest.raises(socket.timeout):
                c.reply(timeout=1.5)
            if pending_sync == "before_backend":
                assert not any(t["complete"] for t in fake.transactions(False))
        finally:
            os.kill(wpid, signal.SIGCONT)
        assert c.reply().code == 250
    [t] = fake.wait_transactions(1)
    assert marker.encode() in t["content"]
    tx = wait_for(auditdir, lambda r: r["type"] == "tx" and
                  r.get("message_id") == f"<{marker}@client.example>")[0]
    assert tx["result"] == "delivered"
    assert tx["timings"]["audit_ms"] >= 1000
    if pending_sync == "before_reply":
        # the backend's work ran alongside the wait, not after it
        assert tx["timings"]["backend_ms"] < 1000


def test_before_reply_refusal_not_held(fake, proxy_factory, auditdir, marker):
    """pending_sync = before_reply: a refusal by the backend has nothing to
    wait for, the writer stopped or not; no 250 is ever given early."""
    fake.data_reply = "554 5.7.1 Rejected for policy reasons"
    p = proxy_factory(fake, aconf(auditdir, pending_sync="before_reply"))
    wpid = writer_pid(auditdir)
    with p.client() as c:
        greet(c)
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        os.kill(wpid, signal.SIGSTOP)
        try:
            c.send(message(marker) + b"\r\n.\r\n")
            r = c.reply(timeout=3)
            assert (r.code, r.raw) == (554, b"554 5.7.1 Rejected for policy reasons\r\n")
        finally:
            os.kill(wpid, signal.SIGCONT)
    tx = wait_for(auditdir, lambda r: r["type"] == "tx" and
                  r.get("message_id") == f"<{marker}@client.example>")[0]
    assert (tx["result"], tx["code"]) == ("refused", 554)
    pend = wait_for(auditdir, lambda r: r["type"] == "tx_pending" and
                    r.get("message_id") == f"<{marker}@client.example>")[0]
    assert pend["seq"] < tx["seq"]


@pytest.mark.parametrize("pending_sync", PENDING_SYNC)
def test_writer_timeout_451(fake, proxy_factory, auditdir, marker,
                            pending_sync):
    """No answer from the writer within audit.timeout: 451 4.3.0, never a
    250, in both modes (before_reply: the backend said 250 meanwhile)."""
    p = proxy_factory(fake, aconf(auditdir, timeout=2,
                                  pending_sync=pending_sync))
    wpid = writer_pid(auditdir)
    with p.client() as c:
        greet(c)
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        os.kill(wpid, signal.SIGSTOP)
        try:
            c.send(message(marker) + b"\r\n.\r\n")
            r = c.reply(timeout=6)
            harness.check_reply(r, 451, "4.3.0", "R_AUDIT_UNAVAIL")
            # refused at MAIL while the writer has not answered
            c.expect("MAIL FROM:<a@example.org>", 451)
        finally:
            os.kill(wpid, signal.SIGCONT)
        # it answers again (its answer to the worker's PING): transactions
        # are accepted again
        deadline = time.monotonic() + 5
        while c.cmd("MAIL FROM:<a@example.org>").code != 250:
            assert time.monotonic() < deadline, "still refused"
            time.sleep(0.3)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(message(marker + "-2") + b"\r\n.\r\n")
        assert c.reply().code == 250
    first = [t for t in fake.transactions()
             if f"<{marker}@client.example>".encode() in t["content"]]
    if pending_sync == "before_backend":
        # the first message never reached the backend's end of data
        assert not first
    else:
        # it did (the client was told 451: a resend is a duplicate), and
        # the record the client waited for was written once the writer
        # went on: it was in the channel
        assert len(first) == 1
        wait_for(auditdir, lambda r: r["type"] == "tx_pending" and
                 r.get("message_id") == f"<{marker}@client.example>")
        assert "after the end of data went to the backend: no 250" in p.log()


@pytest.mark.parametrize("verdict_fsync,pending_sync", [
    (False, "before_backend"), (True, "before_backend"),
    (False, "before_reply"), (True, "before_reply")])
def test_kill9_after_250(fake, proxy_factory, auditdir, marker, have_tool,
                         verdict_fsync, pending_sync):
    """Everything killed the moment the 250 arrives: the transaction's
    record is on disk ("tx_pending" always; with verdict_fsync the "tx"
    record with the backend's verdict too), whichever pending_sync."""
    p = proxy_factory(fake, aconf(auditdir, verdict_fsync=verdict_fsync,
                                  pending_sync=pending_sync))
    with p.client() as c:
        greet(c)
        c.expect("MAIL FROM:<a@example.org>", 250)
        c.expect("RCPT TO:<b@example.net>", 250)
        c.expect("DATA", 354)
        c.send(message(marker) + b"\r\n.\r\n")
        r = c.reply()
        os.killpg(p.proc.pid, signal.SIGKILL)     # at once: no clean stop
        assert r.code == 250
    p.kill()
    mine = [r for r in records(auditdir) if r.get("message_id") ==
            f"<{marker}@client.example>"]
    [pend] = [r for r in mine if r["type"] == "tx_pending"]
    assert pend["mail_from"] == "a@example.org" and pend["size"] > 0
    if verdict_fsync:
        [tx] = [r for r in mine if r["type"] == "tx"]
        assert (tx["result"], tx["queue_id"]) == ("delivered", "FAKE1")
    assert verify(auditdir).returncode == 0


class SlowFinal(harness.FakeBackend):
    """A backend that answers the end of data only when told to."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.go = threading.Event()

    def _final(self, c, tx):
        self.go.wait(10)
        super()._final(c, tx)


def test_verdict_fsync_holds_250(proxy_factory, auditdir, marker):
    """With verdict_fsync, the 250 also waits for the "tx" record: the
    writer stopped when the backend's verdict comes, the client hears
    nothing until it goes on."""
    be = SlowFinal().start()
    try:
        p = proxy_factory(be, aconf(auditdir, verdict_fsync=True))
        wpid = writer_pid(auditdir)
        with p.client() as c:
            greet(c)
            c.expect("MAIL FROM:<a@example.org>", 250)
            c.expect("RCPT TO:<b@example.net>", 250)
            c.expect("DATA", 354)
            c.send(message(marker) + b"\r\n.\r\n")
            wait_for(auditdir, lambda r: r["type"] == "tx_pending" and
                     r.get("message_id") == f"<{marker}@client.example>")
            os.kill(wpid, signal.SIGSTOP)
            try:
                be.go.set()                 # the backend says 250 now
                with pytest.raises(socket.timeout):
                    c.reply(timeout=1.5)
            finally:
                os.kill(wpid, signal.SIGCONT)
            assert c.reply().code == 250
        tx = wait_for(auditdir, lambda r: r["type"] == "tx" and
                      r.get("message_id") == f"<{marker}@client.example>")[0]
        assert tx["result"] == "delivered"
    finally:
        be.go.set()
        be.stop()


def test_writer_restart(fake, proxy_factory, auditdir, marker, have_tool):
    p = proxy_factory(fake, aconf(auditdir))
    wpid = writer_pid(auditdir)
    os.kill(wpid, signal.SIGKILL)
    harness.wait_until(lambda: writer_pid(auditdir) != wpid, 5)
    assert writer_pid(auditdir) != wpid
    with p.client() as c:
        greet(c)
        assert send(c, message(marker)).code == 250
    wait_for(auditdir, lambda r: r["type"] == "tx" and r["result"] == "delivered")
    assert verify(auditdir).returncode == 0
    assert "audit writer" in p.log() and "restarting" in p.log()


@pytest.fixture
def small_fs():
    d = harness.make_tempdir("msaproxy-auditfs.")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755",
                        "msaproxy-audit-test", str(d)], capture_output=True)
    if r.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)])
    shutil.rmtree(d, ignore_errors=True)


def fill(d):
    """Fill the file system to the last byte."""
    for name, size in (("filler", 4096), ("filler2", 1)):
        fd = os.open(d / name, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while os.write(fd, b"\0" * size) > 0:
                pass
        except OSError:
            pass
        finally:
            os.close(fd)


@pytest.mark.parametrize("pending_sync", PENDING_SYNC)
def test_disk_full_451(fake, proxy_factory, small_fs, marker, have_tool,
                       pending_sync):
    p = proxy_factory(fake, aconf(small_fs, pending_sync=pending_sync))
    with p.client() as c:
        greet(c)
        assert send(c, message(marker + "-before")).code == 250
    fill(small_fs)
    with p.client() as c:
        greet(c)
        # refused at MAIL (the writer said so) or at the end of data
        r = c.cmd("MAIL FROM:<a@example.org>")
        if r.code == 250:
            c.expect("RCPT TO:<b@example.net>", 250)
            c.expect("DATA", 354)
            c.send(message(marker) + b"\r\n.\r\n")
            r = c.reply()
        harness.check_reply(r, 451, "4.3.0", "R_AUDIT_UNAVAIL")
        r = c.cmd("MAIL FROM:<a@example.org>")
        if r.code == 250:
            # only if the writer's retry (a second after its last attempt:
            # a slow machine) found room for its records in the slack of
            # the log's last page, and said so
            assert any(x["type"] == "audit_resume" for x in records(small_fs)), r
            c.expect("RSET", 250)
        else:
            harness.check_reply(r, 451, "4.3.0", "R_AUDIT_UNAVAIL")
    time.sleep(0.5)
    if pending_sync == "before_backend":
        # nothing reached the backend that the log does not show
        assert not any(f"<{marker}@".encode() in t["content"]
                       for t in fake.transactions(False) if t["complete"])
    assert "cannot be written" in p.log()
    # room again: the writer notices, transactions go through
    (small_fs / "filler").unlink()
    (small_fs / "filler2").unlink()
    wait_for(small_fs, lambda r: r["type"] == "audit_resume", 1, 10)
    with p.client() as c:
        greet(c)
        assert send(c, message(marker + "-after")).code == 250
    res = [r for r in records(small_fs) if r["type"] == "audit_resume"][0]
    assert res["records_refused"] >= 1 and res["error"] == "No space left on device"
    assert verify(small_fs).returncode == 0, verify(small_fs).stdout


# ------------------------------------------------------------- verify ---

def make_log(fake, proxy_factory, d, n=3, **audit):
    p = proxy_factory(fake, aconf(d, **audit))
    with p.client() as c:
        greet(c)
        for i in range(n):
            assert send(c, message(f"m{i}")).code == 250
        c.expect("QUIT", 221)
    p.stop()
    return d / "audit.log"


def rehash(line, prev_hex, key=None):
    """The line with its hash recomputed (what someone without the HMAC
    key can do)."""
    body = line[:line.rindex(b',"hash":"')]
    h = hashlib.sha256(bytes.fromhex(prev_hex) + body).hexdigest()
    return body + b',"hash":"' + h.encode() + b'"}'


def test_verify_finds_tampering(fake, proxy_factory, auditdir, have_tool):
    log = make_log(fake, proxy_factory, auditdir)
    r = audit_tool("verify", log)
    assert r.returncode == 0 and "OK:" in r.stdout, r.stdout
    good = log.read_bytes()
    lines = good.splitlines(keepends=True)
    k = next(i for i, l in enumerate(lines) if b'"type":"tx"' in l) + 1  # 1-based

    def check(data, line_no, what):
        log.write_bytes(data)
        r = audit_tool("verify", log)
        assert r.returncode == 1, r.stdout
        assert r.stdout.startswith(f"{log}:{line_no}:"), r.stdout
        assert what in r.stdout, r.stdout

    # one byte edited
    edited = lines[k - 1].replace(b"a@example.org", b"a@example.orh")
    check(b"".join(lines[:k - 1] + [edited] + lines[k:]), k, "edited")
    # a line deleted
    check(b"".join(lines[:k - 1] + lines[k:]), k, "deleted")
    # two lines swapped
    check(b"".join(lines[:k - 1] + [lines[k], lines[k - 1]] + lines[k + 1:]), k,
          "reordered")
    # edited and re-hashed: the next record's prev gives it away
    prev = json.loads(lines[k - 2])["hash"]
    fixed = rehash(edited.rstrip(b"\n"), prev) + b"\n"
    check(b"".join(lines[:k - 1] + [fixed] + lines[k:]), k + 1, "re-hashed")
    # a torn last line
    check(good[:-10], len(lines), "torn")
    log.write_bytes(good)
    assert audit_tool("verify", log).returncode == 0


def test_verify_hmac(fake, proxy_factory, auditdir, have_tool):
    keyf = auditdir / "key"
    keyf.write_text(KEY + "\n")
    keyf.chmod(0o600)
    log = make_log(fake, proxy_factory, auditdir, 2, hmac_key_file=str(keyf))
    r = audit_tool("verify", "--key", keyf, log)
    assert r.returncode == 0 and "hmac-sha256" in r.stdout, r.stdout
    # without the key: cannot be verified
    r = audit_tool("verify", log)
    assert r.returncode == 2 and "give the key" in r.stdout, r.stdout
    # another key
    other = auditdir / "other"
    other.write_text(KEY.upper() + "\n")
    r = audit_tool("verify", "--key", other, log)
    assert r.returncode == 1 and f"{log}:1:" in r.stdout and "HMAC" in r.stdout
    # edited and re-hashed without the key
    lines = log.read_bytes().splitlines(keepends=True)
    k = next(i for i, l in enumerate(lines) if b'"type":"tx"' in l)
    prev = json.loads(lines[k])["prev"]
    lines[k] = rehash(lines[k].rstrip(b"\n").replace(b"a@example.org",
                                                     b"x@example.org"), prev) + b"\n"
    log.write_bytes(b"".join(lines))
    r = audit_tool("verify", "--key", keyf, log)
    assert r.returncode == 1 and f"{log}:{k + 1}:" in r.stdout
    assert "plain SHA-256" in r.stdout, r.stdout
    # and -c CONF finds both the files and the key
    conf = auditdir / "m.conf"
    conf.write_text(harness.render_conf({
        "listeners": [{"name": "s", "address": "127.0.0.1:1"}],
        "backend": {"address": "127.0.0.1:2"},
        "audit": {"enabled": True, "file": str(log), "hmac_key_file": str(keyf)}}))
    r = audit_tool("verify", "-c", conf)
    assert r.returncode == 1 and "plain SHA-256" in r.stdout


def test_restart_refuses_a_tampered_head(fake, proxy_factory, auditdir, binary):
    log = make_log(fake, proxy_factory, auditdir, 1)
    log.write_bytes(log.read_bytes().replace(b'"audit_stop"', b'"audit_stoq"'))
    p = proxy_factory(fake, aconf(auditdir), start=False)
    p.write_conf()
    r = subprocess.run([binary, "-f", "-c", str(p.conffile)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert "refusing to continue the chain" in r.stderr + r.stdout


def test_unwritable_log_refuses_to_start(fake, proxy_factory, binary):
    p = proxy_factory(fake, aconf("/nonexistent-msaproxy-dir"), start=False)
    p.write_conf()
    r = subprocess.run([binary, "-f", "-c", str(p.conffile)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1 and "/nonexistent-msaproxy-dir" in r.stderr


# ----------------------------------------------------------- rotation ---

def test_rotation_signals(fake, proxy_factory, auditdir, have_tool):
    p = proxy_factory(fake, aconf(auditdir))
    for i, sig in enumerate((signal.SIGUSR1, signal.SIGHUP, None)):
        with p.client() as c:
            greet(c)
            assert send(c, message(f"rot{i}")).code == 250
        if sig is not None:
            n = len(log_files(auditdir))
            p.signal(sig)
            assert harness.wait_until(lambda: len(log_files(auditdir)) > n, 5)
    p.stop()
    files = log_files(auditdir)
    assert len(files) == 3 and files[-1].name == "audit.log"
    for old, new in zip(files, files[1:]):
        last = json.loads(old.read_bytes().splitlines()[-1])
        first = json.loads(new.read_bytes().splitlines()[0])
        assert last["type"] == "checkpoint" and first["type"] == "file_start"
        assert first["prev"] == last["hash"] and first["seq"] == last["seq"] + 1
        assert first["previous_file"] == old.name
        assert last["reason"] in ("SIGUSR1", "SIGHUP")
    # verify takes the files in any order
    r = audit_tool("verify", *reversed(files))
    assert r.returncode == 0 and "2 checkpoint(s)" in r.stdout, r.stdout
    # one rotated file missing from the middle: named
    r = audit_tool("verify", files[0], files[2])
    assert r.returncode == 1 and r.stdout.startswith(f"{files[2]}:1:")
    assert "deleted" in r.stdout


@pytest.mark.slow
def test_rotation_under_load(sink, proxy_factory, auditdir, have_tool):
    if not os.access(MSALOAD, os.X_OK):
        pytest.skip("bench/msaload not built")
    p = proxy_factory(sink, harness.deep_merge(aconf(auditdir, rotate_size="64K"), {
        "workers": 2, "listeners": [{"name": "smtp", "kind": "smtp"}],
        "log": {"level": "info"}}))
    load = subprocess.Popen([str(MSALOAD), "-p", str(p.port), "-c", "20", "-n", "3000",
                             "-m", "10", "-s", "2k", "-d", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for _ in range(5):              # signals on top of the size rotations
        time.sleep(0.3)
        p.signal(signal.SIGUSR1)
    out, _ = load.communicate(timeout=180)
    m = re.search(r"ok=(\d+) fail=(\d+)", out)
    assert m, out
    ok = int(m.group(1))
    assert ok == 3000, out
    p.stop()
    files = log_files(auditdir)
    assert len(files) > 5, [f.name for f in files]
    recs = records(auditdir)
    seqs = [r["seq"] for r in recs]
    assert seqs == list(range(1, len(seqs) + 1))          # no gap, no duplicate
    delivered = [r for r in recs if r["type"] == "tx" and r["result"] == "delivered"]
    assert len(delivered) == ok
    assert len({r["tx"] for r in delivered}) == ok
    pend = {r["tx"] for r in recs if r["type"] == "tx_pending"}
    assert pend == {r["tx"] for r in delivered}
    r = audit_tool("verify", *files)
    assert r.returncode == 0, r.stdout


def nice_of(pid):
    st = open(f"/proc/{pid}/stat").read()
    return int(st[st.rindex(")") + 2:].split()[16])   # field 19: nice


@pytest.mark.parametrize("writer_nice", [None, 0])
def test_group_commit_under_load(sink, proxy_factory, auditdir, have_tool,
                                 writer_nice):
    """50 sessions on one worker: records of many sessions leave in one
    loop pass and share batches, batches that no one waits for are written
    without their own fdatasync, acknowledgements come one packet per
    batch.  Every transaction still gets its 250 (so its acknowledgement),
    the sequence has no gap, each session's records are in the order they
    were made (tx_pending before its tx, session_close last), and the
    chain verifies.  The writer runs at audit.writer_nice (10 by
    default)."""
    if not os.access(MSALOAD, os.X_OK):
        pytest.skip("bench/msaload not built")
    a = {} if writer_nice is None else {"writer_nice": writer_nice}
    p = proxy_factory(sink, harness.deep_merge(aconf(auditdir, **a), {
        "workers": 1, "listeners": [{"name": "smtp", "kind": "smtp"}]}))
    wpid = writer_pid(auditdir)
    assert nice_of(wpid) == (10 if writer_nice is None else writer_nice)
    load = subprocess.Popen([str(MSALOAD), "-p", str(p.port), "-c", "50", "-n", "3000",
                             "-m", "20", "-s", "2k", "-d", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = load.communicate(timeout=180)
    m = re.search(r"ok=(\d+) fail=(\d+)", out)
    assert m and int(m.group(1)) == 3000, out
    # the last records (tx, session_close) wait for no one: written with
    # the writer's next batch, synced within 200 ms (or at the stop)
    wait_for(auditdir, lambda r: r["type"] == "tx", 3000, 10)
    p.stop()
    recs = records(auditdir)
    seqs = [r["seq"] for r in recs]
    assert seqs == list(range(1, len(seqs) + 1))
    by_session = {}
    for r in recs:
        if r.get("session"):
            by_session.setdefault(r["session"], []).append(r)
    # msaload's sessions (the harness's probes carry no transaction)
    by_session = {k: v for k, v in by_session.items()
                  if any(r["type"] == "tx" for r in v)}
    assert len(by_session) >= 150
    pending_seq = {}
    for sid, rs in by_session.items():
        assert rs[0]["type"] == "session_open" and rs[-1]["type"] == "session_close", \
            [r["type"] for r in rs]
        for r in rs:
            if r["type"] == "tx_pending":
                pending_seq[r["tx"]] = r["seq"]
            elif r["type"] == "tx":
                assert r["result"] == "delivered", r
                assert pending_seq[r["tx"]] < r["seq"]
    tx = [r for r in recs if r["type"] == "tx"]
    assert len(tx) == 3000 and len({r["tx"] for r in tx}) == 3000
    assert set(pending_seq) == {r["tx"] for r in tx}
    r = verify(auditdir)
    assert r.returncode == 0, r.stdout


# ------------------------------------------------------------- syslog ---

def test_syslog_rfc5424(fake, proxy_factory, auditdir, marker):
    path = str(auditdir / "syslog.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    os.chmod(path, 0o666)       # as /dev/log: the writer is not root
    s.settimeout(5)
    try:
        p = proxy_factory(fake, aconf(auditdir, syslog=True, syslog_address=path))
        with p.client() as c:
            greet(c)
            assert send(c, message(marker)).code == 250
        got = []
        while not any('"type":"tx",' in g for g in got):
            got.append(s.recv(65536).decode())
    finally:
        s.close()
    pat = re.compile(r'<(\d+)>1 (\S+) proxy\.test msaproxy (\d+) (\S+) '
                     r'\[msaproxy@32473 ([^\]]*)\] (\{.*\})$')
    msgs = [pat.match(g) for g in got]
    assert all(msgs), got
    tx = [m for m in msgs if m.group(4) == "tx"][0]
    rec = json.loads(tx.group(6))
    assert int(tx.group(1)) == 2 * 8 + 6           # mail.info
    assert tx.group(2) == rec["ts"]
    sd = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', tx.group(5)))
    assert sd["seq"] == str(rec["seq"]) and sd["type"] == "tx"
    assert sd["session"] == rec["session"] and sd["tx"] == rec["tx"]
    assert sd["hash"] == rec["hash"]
    # the very line of the file
    assert tx.group(6).encode() in (auditdir / "audit.log").read_bytes()


def test_chain_continues_from_rotated_file(fake, proxy_factory, auditdir, have_tool):
    """No active file (the writer stopped between a rotation's rename and
    the new file): the chain goes on from the newest rotated file."""
    p = proxy_factory(fake, aconf(auditdir))
    p.signal(signal.SIGUSR1)
    assert harness.wait_until(lambda: len(log_files(auditdir)) == 2, 5)
    p.stop()
    [rotated, active] = log_files(auditdir)
    active.rename(auditdir / "moved-away")
    p2 = proxy_factory(fake, aconf(auditdir))
    with p2.client() as c:
        greet(c)
        c.expect("QUIT", 221)
    p2.stop()
    [r1, new] = log_files(auditdir)
    assert r1 == rotated
    last = json.loads(rotated.read_bytes().splitlines()[-1])
    first = json.loads(new.read_bytes().splitlines()[0])
    assert last["type"] == "checkpoint" and first["type"] == "file_start"
    assert first["prev"] == last["hash"] and first["previous_file"] == rotated.name
    [start] = [r for r in records(auditdir) if r["type"] == "audit_start" and
               r["seq"] > last["seq"]]
    assert start["continued_from"] == rotated.name
    r = audit_tool("verify", rotated, new)
    assert r.returncode == 0, r.stdout


def test_hmac_key_readable_by_others_refused(fake, proxy_factory, auditdir, binary):
    """The HMAC key is what makes the chain tamper-evident: a key file that
    others can read is refused at start, as every other secret file is."""
    keyf = auditdir / "key"
    keyf.write_text(KEY + "\n")
    keyf.chmod(0o644)
    p = proxy_factory(fake, aconf(auditdir, hmac_key_file=str(keyf)), start=False)
    p.write_conf()
    r = subprocess.run([binary, "-f", "-c", str(p.conffile)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert "audit.hmac_key_file is readable by others (chmod 600)" in r.stderr, r.stderr
    keyf.chmod(0o600)
    p.start(backend=fake)
    with p.client() as c:
        assert c.reply().code == 220
        r = c.send_message(b"Subject: k\r\n\r\nk\r\n")
        assert (r.code, r.enhanced) == (250, "2.0.0"), r
