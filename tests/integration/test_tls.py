"""Client-side TLS: STARTTLS (RFC 3207) and implicit TLS (RFC 8314).

Certificates come from a throwaway CA made here: an RSA and an ECDSA
certificate for mail.test side by side, and a separate certificate for the
SNI name other.test.  Real clients: Python's ssl module over raw sockets.
"""
import os
import shutil
import signal
import ssl
import subprocess
import time

import pytest

import harness


from pki import pki  # noqa: F401  (fixture)


def tls_conf(pki, **extra):
    conf = {
        "certificates": [
            {"cert": str(pki / "rsa.pem"), "key": str(pki / "rsa.key")},
            {"cert": str(pki / "ecdsa.pem"), "key": str(pki / "ecdsa.key")},
        ],
        "sni": [{"name": "other.test", "certificates": [
            {"cert": str(pki / "other.pem"), "key": str(pki / "other.key")}]}],
        "handshake_timeout": 2,
    }
    conf.update(extra)
    return conf


def client_ctx(pki, **kw):
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def starttls(c, ctx, server_hostname="mail.test"):
    """STARTTLS on a harness.SmtpClient: after the 220 nothing may be left
    unread in the clear; then the socket is wrapped."""
    r = c.cmd("STARTTLS")
    assert (r.code, r.enhanced) == (220, "2.0.0"), r
    assert bytes(c.buf) == b"", "bytes after the 220 in the clear"
    c.sock = ctx.wrap_socket(c.sock, server_hostname=server_hostname)
    return c.sock


def peer_org(sock):
    cert = sock.getpeercert()
    return dict(x[0] for x in cert["subject"])["organizationName"]


@pytest.fixture
def tls_proxy(pki, fake, proxy_factory):
    return proxy_factory(fake, {
        "tls": tls_conf(pki),
        "listeners": [{"name": "submission", "kind": "submission",
                       "require_auth": False},
                      {"name": "submissions", "kind": "submissions",
                       "require_auth": False}],
    })


def send_message(c, marker):
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    assert c.cmd("RCPT TO:<b@example.net>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(f"Subject: {marker}\r\n\r\n{marker}\r\n.\r\n")
    r = c.reply()
    assert r.code == 250, r


def test_starttls_advertised_then_not(tls_proxy, pki):
    with tls_proxy.client("submission") as c:
        assert c.reply().code == 220
        assert "STARTTLS" in c.cmd("EHLO client.example").keywords
        starttls(c, client_ctx(pki))
        r = c.cmd("EHLO client.example")
        assert r.code == 250 and "STARTTLS" not in r.keywords
        r = c.cmd("STARTTLS")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r


def test_starttls_message_received_esmtps(tls_proxy, pki, fake, marker):
    with tls_proxy.client("submission") as c:
        assert c.reply().code == 220
        c.cmd("EHLO client.example")
        s = starttls(c, client_ctx(pki))
        assert s.version() in ("TLSv1.2", "TLSv1.3")
        assert c.cmd("EHLO client.example").code == 250
        send_message(c, marker)
    [t] = fake.wait_transactions(1)
    rec = t["content"].split(b"\r\n\r\n")[0].decode()
    assert "with ESMTPS id" in rec, rec


def test_starttls_resets_state(tls_proxy, pki):
    """RFC 3207 4.2: after the handshake the client must EHLO again."""
    with tls_proxy.client("submission") as c:
        assert c.reply().code == 220
        c.cmd("EHLO client.example")
        starttls(c, client_ctx(pki))
        r = c.cmd("MAIL FROM:<a@example.org>")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r


def test_starttls_injection_discarded(tls_proxy, pki, fake):
    """Commands pipelined after STARTTLS in the same packet are thrown away,
    not executed inside the TLS session (CVE-2011-0411 class)."""
    with tls_proxy.client("submission") as c:
        assert c.reply().code == 220
        c.cmd("EHLO client.example")
        c.send(b"STARTTLS\r\nEHLO injected.example\r\nMAIL FROM:<evil@example.org>\r\n"
               b"RCPT TO:<victim@example.net>\r\n")
        r = c.reply()
        assert r.code == 220, r
        time.sleep(0.3)
        c.sock = client_ctx(pki).wrap_socket(c.sock, server_hostname="mail.test")
        # the injected MAIL never ran: MAIL needs a fresh EHLO first, and
        # the first reply inside TLS belongs to our NOOP
        r = c.cmd("NOOP")
        assert (r.code, r.enhanced) == (250, "2.0.0"), r
        r = c.cmd("MAIL FROM:<a@example.org>")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r
    assert "injected" not in tls_proxy.log()
    assert fake.transactions(complete_only=False) == []


def test_implicit_tls_greeting(tls_proxy, pki, fake, marker):
    ctx = client_ctx(pki)
    with harness.SmtpClient(tls_proxy.ports["submissions"], connect=False) as c:
        c.connect()
        c.sock = ctx.wrap_socket(c.sock, server_hostname="mail.test")
        r = c.reply()
        assert r.code == 220, r
        r = c.cmd("EHLO client.example")
        assert "STARTTLS" not in r.keywords
        send_message(c, marker)
    [t] = fake.wait_transactions(1)
    assert b"with ESMTPS id" in t["content"]


def test_plaintext_on_implicit_port_ends_cleanly(tls_proxy, pki):
    with tls_proxy.client("submissions") as c:
        c.send(b"EHLO plain.example\r\n")
        with pytest.raises((EOFError, ConnectionError)):
            c.reply(timeout=5)
    assert harness.wait_until(lambda: "TLS handshake" in tls_proxy.log(), timeout=3)
    # and the proxy still serves
    with tls_proxy.client("submission") as c:
        assert c.reply().code == 220


def test_silent_client_times_out_on_implicit_port(tls_proxy):
    t0 = time.monotonic()
    with tls_proxy.client("submissions") as c:
        with pytest.raises((EOFError, ConnectionError)):
            c.reply(timeout=8)
    assert time.monotonic() - t0 < 5     # handshake_timeout = 2
    assert "timeout in state TLS" in tls_proxy.log()


def test_sni_selects_certificate(tls_proxy, pki):
    with tls_proxy.client("submission") as c:
        assert c.reply().code == 220
        c.cmd("EHLO client.example")
        s = starttls(c, client_ctx(pki), server_hostname="other.test")
        assert peer_org(s) == "other"
    with tls_proxy.client("submission") as c:
        assert c.reply().code == 220
        c.cmd("EHLO client.example")
        s = starttls(c, client_ctx(pki), server_hostname="mail.test")
        assert peer_org(s) in ("rsa", "ecdsa")


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_rsa_and_ecdsa_side_by_side(tls_proxy, pki, kind):
    ctx = client_ctx(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256" if kind == "rsa"
                    else "ECDHE-ECDSA-AES128-GCM-SHA256")
    with tls_proxy.client("submission") as c:
        assert c.reply().code == 220
        c.cmd("EHLO client.example")
        s = starttls(c, ctx)
        assert peer_org(s) == kind


def test_tls_below_1_2_refused(tls_proxy, pki):
    ctx = client_ctx(pki)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    with tls_proxy.client("submission") as c:
        assert c.reply().code == 220
        c.cmd("EHLO client.example")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            starttls(c, ctx)


def test_sighup_reloads_certificates_without_dropping_sessions(pki, fake, proxy_factory):
    d = harness.make_tempdir("msaproxy-reload.")
    try:
        shutil.copy(pki / "ecdsa.pem", d / "cert.pem")
        shutil.copy(pki / "ecdsa.key", d / "key.pem")
        p = proxy_factory(fake, {
            "tls": {"certificates": [{"cert": str(d / "cert.pem"),
                                      "key": str(d / "key.pem")}]},
            "listeners": [{"name": "submission", "kind": "submission",
                           "require_auth": False}]})
        old = harness.SmtpClient(p.port)
        assert old.reply().code == 220
        old.cmd("EHLO client.example")
        assert peer_org(starttls(old, client_ctx(pki))) == "ecdsa"
        shutil.copy(pki / "renewed.pem", d / "cert.pem")
        shutil.copy(pki / "renewed.key", d / "key.pem")
        os.chmod(d / "key.pem", 0o600)     # root's: only the master reads it
        os.kill(p.proc.pid, signal.SIGHUP)
        assert harness.wait_until(
            lambda: "SIGHUP: generation 2: 1 new worker(s); 1 draining" in p.log(),
            timeout=5), p.log()[-2000:]
        # until the old worker handles SIGUSR2 it may still accept
        assert harness.wait_until(
            lambda: "reload: a new worker took over" in p.log(), timeout=5), \
            p.log()[-2000:]
        assert p.log().count("TLS certificates reloaded") == 1
        with p.client() as c:
            assert c.reply().code == 220
            c.cmd("EHLO client.example")
            assert peer_org(starttls(c, client_ctx(pki))) == "renewed"
        # the session opened before the reload goes on, in the old worker
        r = old.cmd("EHLO client.example")
        assert r.code == 250, r
        assert old.cmd("NOOP").code == 250
        assert "of the previous generation drained" not in p.log()
        old.close()
        # its last session gone, the old worker exits
        assert harness.wait_until(
            lambda: "worker 0 (pid" in p.log() and
            "of the previous generation drained, exited 0" in p.log(), timeout=5), \
            p.log()[-2000:]
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_sighup_with_broken_key_keeps_old_certificates(pki, fake, proxy_factory):
    d = harness.make_tempdir("msaproxy-reload.")
    try:
        shutil.copy(pki / "ecdsa.pem", d / "cert.pem")
        shutil.copy(pki / "ecdsa.key", d / "key.pem")
        p = proxy_factory(fake, {
            "tls": {"certificates": [{"cert": str(d / "cert.pem"),
                                      "key": str(d / "key.pem")}]},
            "listeners": [{"name": "submission", "kind": "submission",
                           "require_auth": False}]})
        shutil.copy(pki / "rsa.key", d / "key.pem")      # does not match
        os.kill(p.proc.pid, signal.SIGHUP)
        assert harness.wait_until(lambda: "SIGHUP: reload abandoned; the workers keep "
                                  "running" in p.log(), timeout=5), p.log()[-2000:]
        assert "TLS reload failed" in p.log()
        assert "generation 2" not in p.log()
        with p.client() as c:
            assert c.reply().code == 220
            c.cmd("EHLO client.example")
            assert peer_org(starttls(c, client_ctx(pki))) == "ecdsa"
    finally:
        shutil.rmtree(d, ignore_errors=True)
