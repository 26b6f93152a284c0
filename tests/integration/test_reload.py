"""SIGHUP re-reads the configuration file (proxy/main.c reload(),
conf_restart_setting() in conf/conf.c, docs/msaproxy.8 SIGNALS).

The new generation of workers runs with the new file; sessions opened
before the reload finish in the old generation with the old one.  A file
that does not load, a file naming a secret that cannot be read, or a change
to a setting that needs a restart (listeners, workers, user, sasl, audit,
rate_limits, ...) leaves everything as it was, with the reason in the log.
"""
import os
import shutil
import signal

import harness
import sasl_client
from test_auth import USERS, sasldb  # noqa: F401  (fixture)

BODY = b"Subject: reload\r\n\r\nhello\r\n"


def full_conf(sasldb, auditdir):
    """Every section whose comparison matters: sasl, audit, rate_limits."""
    return {
        "sasl": {"sasldb_path": str(sasldb), "hostname": "localhost",
                 "mechanisms": "SCRAM-SHA-256", "sender_domains": "example.org",
                 "failure_delay_ms": 0},
        "listeners": [{"name": "submission", "kind": "submission",
                       "require_auth": True}],
        "rate_limits": {"messages_per_identity": {"max": 100, "window": 3600}},
        "audit": {"enabled": True, "file": str(auditdir / "audit.log")},
    }


def login(c):
    assert c.reply().code == 220
    c.expect("EHLO client.example", 250)
    r = sasl_client.auth_scram_sha256(c, "alice", USERS["alice"])
    assert (r.code, r.enhanced) == (235, "2.7.0"), r


def send(c, rcpt="bob@example.net"):
    c.expect("MAIL FROM:<alice@example.org>", 250, "2.1.0")
    c.expect(f"RCPT TO:<{rcpt}>", 250, "2.1.5")
    c.expect("DATA", 354)
    c.send(BODY + b".\r\n")
    return c.reply()


def send_new_session(p, port=None):
    """A message in a session of its own, accepted."""
    with harness.SmtpClient(port or p.port) as c:
        assert c.reply().code == 220
        r = c.send_message(BODY)
        assert (r.code, r.enhanced) == (250, "2.0.0"), r


TOOK_OVER = "reload: a new worker took over"


def hup(p, expect, generation=True):
    """SIGHUP, then wait for the log line that says how it went and, when a
    new generation starts, until the old worker has stopped accepting
    (until it handles SIGUSR2 it shares the listening socket)."""
    before, drained = p.log().count(expect), p.log().count(TOOK_OVER)
    os.kill(p.proc.pid, signal.SIGHUP)
    assert harness.wait_until(lambda: p.log().count(expect) > before, timeout=10), \
        p.log()[-3000:]
    if generation:
        assert harness.wait_until(lambda: p.log().count(TOOK_OVER) > drained,
                                  timeout=10), p.log()[-3000:]


def test_new_backend_and_limits_for_new_sessions(sasldb, fake, proxy_factory):
    auditdir = harness.make_tempdir("msaproxy-reload-audit.")
    other = harness.FakeBackend().start()
    try:
        p = proxy_factory(fake, full_conf(sasldb, auditdir))
        old = p.client()
        login(old)
        # the file again with another backend and a lower recipient limit;
        # sasl, audit and rate_limits as they were (compared, must match)
        p.conf["backend"]["address"] = other.address
        p.conf.setdefault("limits", {})["max_recipients"] = 1
        p.write_conf()
        hup(p, "SIGHUP: generation 2: 1 new worker(s); 1 draining")
        assert f"SIGHUP: configuration {p.conffile} reloaded" in p.log()
        with p.client() as c:
            login(c)
            c.expect("MAIL FROM:<alice@example.org>", 250, "2.1.0")
            c.expect("RCPT TO:<bob@example.net>", 250, "2.1.5")
            c.expect("RCPT TO:<carol@example.net>", 452, "4.5.3")
            c.expect("DATA", 354)
            c.send(BODY + b".\r\n")
            r = c.reply()
            assert (r.code, r.enhanced) == (250, "2.0.0"), r
        [t] = other.wait_transactions(1)
        assert t["content"].endswith(BODY)
        # the session from before the reload: old worker, old file
        r = send(old)
        assert (r.code, r.enhanced) == (250, "2.0.0"), r
        [t] = fake.wait_transactions(1)
        assert t["content"].endswith(BODY)
        assert len(other.transactions()) == 1
        old.close()
        assert harness.wait_until(
            lambda: "of the previous generation drained, exited 0" in p.log(), 5)
    finally:
        other.stop()
        shutil.rmtree(auditdir, ignore_errors=True)


def test_broken_file_changes_nothing(fake, proxy_factory):
    other = harness.FakeBackend().start()
    try:
        p = proxy_factory(fake)
        good = p.conffile.read_text()
        p.conffile.write_text(good.replace(fake.address, other.address) +
                              "\nno_such_setting = 1;\n")
        hup(p, "SIGHUP: configuration not reloaded: ")
        assert "unknown" in p.log().split("SIGHUP: configuration not reloaded: ")[-1]
        # certificates and keytabs were still reloaded: a new generation on
        # the running configuration, the old backend
        assert harness.wait_until(lambda: "SIGHUP: generation 2" in p.log(), 5)
        send_new_session(p)
        assert len(fake.wait_transactions(1)) == 1
        assert other.transactions() == []
        # fixed: taken
        p.conffile.write_text(good.replace(fake.address, other.address))
        hup(p, "SIGHUP: generation 3")
        send_new_session(p)
        assert len(other.wait_transactions(1)) == 1
    finally:
        other.stop()


def test_restart_setting_refused(fake, proxy_factory):
    other = harness.FakeBackend().start()
    try:
        p = proxy_factory(fake)
        port = p.port
        p.conf["backend"]["address"] = other.address
        p.conf["listeners"][0]["address"] = f"127.0.0.1:{harness.free_port()}"
        p.write_conf()
        hup(p, "SIGHUP: configuration not reloaded: ")
        assert ('SIGHUP: configuration not reloaded: listeners ("submission": '
                'name, kind or address) changed, which needs a restart') in p.log()
        send_new_session(p, port)
        assert len(fake.wait_transactions(1)) == 1
        assert other.transactions() == []
        # workers = 2 is no better
        p.conf["listeners"][0]["address"] = f"127.0.0.1:{port}"
        p.conf["workers"] = 2
        p.write_conf()
        hup(p, "SIGHUP: configuration not reloaded: workers changed")
    finally:
        other.stop()


def test_unreadable_secret_refused(fake, proxy_factory):
    other = harness.FakeBackend().start()
    d = harness.make_tempdir("msaproxy-reload-pw.")
    try:
        p = proxy_factory(fake)
        pw = d / "relay.pw"
        pw.write_text("relaypw\n")
        pw.chmod(0o644)                     # readable by others: refused
        p.conf["backend"].update(address=other.address, auth_user="relay",
                                 auth_password_file=str(pw))
        p.write_conf()
        hup(p, "SIGHUP: configuration not reloaded: ")
        assert f"backend.auth_password_file {pw}: readable by others (chmod 600)" \
            in p.log()
        send_new_session(p)
        assert len(fake.wait_transactions(1)) == 1
        assert other.transactions() == []
        assert "relaypw" not in p.log()
    finally:
        other.stop()
        shutil.rmtree(d, ignore_errors=True)
