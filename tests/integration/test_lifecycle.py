"""Configuration check (-t) and process lifecycle (SIGTERM, SIGKILL)."""

import os
import re
import signal
import socket
import time

import pytest

import harness


def test_config_check_good(binary, tmp_path):
    p = harness.Msaproxy("127.0.0.1:2525", workdir=tmp_path, binary=binary)
    p.write_conf()
    r = p.check_config()
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_example_config_is_valid(binary):
    r = harness.run_check(binary, harness.REPO / "conf" / "msaproxy.conf.example")
    assert r.returncode == 0, (r.stdout, r.stderr)


@pytest.mark.parametrize("bad, what", [
    ('bogus_key = 1;', "unknown key"),
    ('bare_newline = "sometimes";', "bad enum value"),
    ('limits = { max_recipients = "many"; };', "wrong type"),
    ('backend = { address = "not an address"; };', "bad address"),
    ('listeners = ( { name = "x"; kind = "smtp"; address = "127.0.0.1:1"; '
     'proxy_protocol_from = [ "10.0.0.0/99" ]; } );', "bad CIDR"),
    ('limits = {\n  max_line_length = 100;\n};', "below minimum"),
])
def test_config_check_bad(binary, tmp_path, bad, what):
    f = tmp_path / "bad.conf"
    good = '# test config\nserver_name = "proxy.test";\n'
    f.write_text(good + bad + "\n")
    bad_lines = range(3, 3 + bad.count("\n") + 1)
    r = harness.run_check(binary, f)
    assert r.returncode == 1, (what, r.returncode, r.stderr)
    m = re.search(rf"^{re.escape(str(f))}:(\d+): \S.*$", r.stderr, re.M)
    assert m, f"{what}: no 'FILE:LINE: problem' line on stderr: {r.stderr!r}"
    assert int(m.group(1)) in bad_lines, (what, r.stderr)


def test_config_check_syntax_error(binary, tmp_path):
    f = tmp_path / "bad.conf"
    f.write_text('server_name = "proxy.test";\nworkers = ;\n')
    r = harness.run_check(binary, f)
    assert r.returncode == 1
    assert re.search(rf"^{re.escape(str(f))}:2: \S", r.stderr, re.M), r.stderr


def test_config_check_missing_file(binary, tmp_path):
    r = harness.run_check(binary, tmp_path / "nonexistent.conf")
    assert r.returncode != 0
    assert r.stderr.strip()


def test_sigterm_idle_exits_fast(fake, proxy_factory):
    p = proxy_factory(fake)
    t0 = time.monotonic()
    assert p.stop(check=True) == 0
    assert time.monotonic() - t0 < 2.0


def test_sigterm_with_idle_session(fake, proxy_factory):
    p = proxy_factory(fake, {"timeouts": {"shutdown": 2, "command": 60}})
    c = p.client()
    assert c.greeting().code == 220
    assert c.cmd("EHLO client.example").code == 250
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    p.proc.wait(p.shutdown_timeout + 2)
    elapsed = time.monotonic() - t0
    assert p.proc.returncode == 0, p.log()[-2000:]
    assert elapsed <= p.shutdown_timeout + 1.5, elapsed
    # the session was told (421 4.3.2) or at least closed
    try:
        r = c.reply(timeout=2)
        assert r.code == 421 and r.enhanced == "4.3.2", r
    except (EOFError, ConnectionResetError):
        pass
    c.close()
    p.stop(check=True)


def test_sigterm_mid_transaction_finishes_message(fake, proxy_factory):
    """A message whose data is complete before the grace period ends still
    gets its backend reply."""
    p = proxy_factory(fake, {"timeouts": {"shutdown": 3}})
    c = p.client()
    assert c.greeting().code == 220
    assert c.cmd("EHLO client.example").code == 250
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    assert [r.code for r in c.replies(3)] == [250, 250, 354]
    p.signal(signal.SIGTERM)
    time.sleep(0.3)
    c.send(b"Subject: t\r\n\r\nbody\r\n.\r\n")
    r = c.reply(timeout=5)
    assert r.code == 250, r
    c.close()
    p.stop(check=True)
    assert len(fake.transactions()) == 1


def test_sigkill_then_restart_same_port(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        assert c.greeting().code == 220
    p.kill()
    # the workers die with the process group; their sockets close once the
    # kernel has reaped them
    assert harness.wait_until(lambda: not harness.port_open(p.port), timeout=5)
    p2 = proxy_factory(fake, {"listeners": [{"name": "submission", "kind": "submission",
                                             "address": f"127.0.0.1:{p.port}"}]})
    with p2.client() as c:
        assert c.greeting().code == 220


def test_max_connections(fake, proxy_factory):
    p = proxy_factory(fake, {"limits": {"max_connections": 2}})
    a, b = p.client(), p.client()
    assert a.greeting().code == 220 and b.greeting().code == 220
    c = p.client()
    r = c.reply(timeout=5)
    harness.check_reply(r, 421, "4.7.0", "R_TOO_MANY_CONN")
    assert c.closed(3)
    for x in (a, b, c):
        x.close()
