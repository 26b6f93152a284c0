"""SMTP AUTH (RFC 4954) through Cyrus SASL with msaproxy's own sasldb:
PLAIN and LOGIN (only under TLS), SCRAM-SHA-256, the reply codes, the
failure tarpit and disconnect, require_auth, sender authorization, and the
identity handed to the backend (XCLIENT to a real Postfix, AUTH= to a
backend without XCLIENT).  GSSAPI with a real KDC is in test_gssapi.py.
"""
import shutil
import ssl
import subprocess
import time

import pytest

import harness
import sasl_client
from pki import pki  # noqa: F401  (fixture)

USERS = {"alice": "alicepw", "bob": "bobpw"}


@pytest.fixture(scope="module")
def sasldb():
    """A private sasldb; users live in the realm sasl.hostname (localhost),
    which is where Cyrus looks a bare user name up."""
    d = harness.make_tempdir("msaproxy-sasldb.")
    db = d / "sasldb2"
    for user, pw in USERS.items():
        subprocess.run(["saslpasswd2", "-f", str(db), "-a", "msaproxy", "-u", "localhost",
                        "-c", "-p", user], input=pw.encode(), check=True)
    db.chmod(0o644)
    yield db
    shutil.rmtree(d, ignore_errors=True)


def auth_conf(pki, sasldb, **sasl):
    conf = {
        "tls": {"certificates": [{"cert": str(pki / "ecdsa.pem"),
                                  "key": str(pki / "ecdsa.key")}]},
        "sasl": {"sasldb_path": str(sasldb), "hostname": "localhost",
                 "mechanisms": "SCRAM-SHA-256 PLAIN LOGIN",
                 "failure_delay_ms": 200, "max_failures": 3,
                 "sender_domains": "example.org"},
        "listeners": [{"name": "submission", "kind": "submission",
                       "require_auth": True}],
    }
    conf["sasl"].update(sasl)
    return conf


def hello(c, pki=None):
    assert c.reply().code == 220
    r = c.cmd("EHLO client.example")
    if pki is not None:
        r = c.cmd("STARTTLS")
        assert r.code == 220, r
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        c.sock = ctx.wrap_socket(c.sock, server_hostname="mail.test")
        r = c.cmd("EHLO client.example")
    assert r.code == 250, r
    return r


def auth_keyword(r):
    for line in r.lines:
        if line.upper().startswith("AUTH "):
            return line.split()[1:]
    return None


@pytest.fixture
def proxy(pki, sasldb, fake, proxy_factory):
    return proxy_factory(fake, auth_conf(pki, sasldb))


def test_mechanisms_depend_on_tls(proxy, pki):
    with proxy.client() as c:
        r = hello(c)
        assert auth_keyword(r) == ["SCRAM-SHA-256"], r
    with proxy.client() as c:
        r = hello(c, pki)
        assert auth_keyword(r) == ["SCRAM-SHA-256", "PLAIN", "LOGIN"], r


def test_plain_without_tls_refused(proxy):
    with proxy.client() as c:
        hello(c)
        r = sasl_client.auth_plain(c, "alice", "alicepw")
        assert (r.code, r.enhanced) == (538, "5.7.11"), r


def test_plain_over_tls_and_message(proxy, pki, fake, marker):
    with proxy.client() as c:
        hello(c, pki)
        r = sasl_client.auth_plain(c, "alice", "alicepw")
        assert (r.code, r.enhanced) == (235, "2.7.0"), r
        r = c.cmd("EHLO client.example")
        assert auth_keyword(r) is None          # no AUTH after AUTH
        assert c.cmd("MAIL FROM:<alice@example.org>").code == 250
        assert c.cmd("RCPT TO:<b@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {marker}\r\n\r\nx\r\n.\r\n")
        assert c.reply().code == 250
    [t] = fake.wait_transactions(1)
    assert b"with ESMTPSA id" in t["content"]
    assert "AUTH PLAIN as alice (identity alice)" in proxy.log()
    assert "alicepw" not in proxy.log()


def test_login_two_steps(proxy, pki):
    with proxy.client() as c:
        hello(c, pki)
        r = sasl_client.auth_login(c, "bob", "bobpw")
        assert (r.code, r.enhanced) == (235, "2.7.0"), r


def test_scram_sha256_without_tls(proxy):
    with proxy.client() as c:
        hello(c)
        r = sasl_client.auth_scram_sha256(c, "alice", "alicepw")
        assert (r.code, r.enhanced) == (235, "2.7.0"), r
        assert r.mech.server_verified


def test_wrong_password_delay_then_disconnect(proxy, pki):
    with proxy.client() as c:
        hello(c, pki)
        delays = []
        for i in range(2):
            t0 = time.monotonic()
            r = sasl_client.auth_plain(c, "alice", "wrong")
            delays.append(time.monotonic() - t0)
            assert (r.code, r.enhanced) == (535, "5.7.8"), r
        t0 = time.monotonic()
        r = sasl_client.auth_plain(c, "alice", "wrong")
        assert (r.code, r.enhanced) == (421, "4.7.0"), r
        with pytest.raises((EOFError, ConnectionError, ssl.SSLError)):
            c.reply(timeout=3)
    # failure_delay_ms = 200, doubling: >= 0.2 s, then >= 0.4 s
    assert delays[0] >= 0.18 and delays[1] >= 0.38, delays
    assert "wrong" not in proxy.log()


def test_cancel_and_twice_and_unknown(proxy, pki):
    with proxy.client() as c:
        hello(c, pki)
        c.send("AUTH LOGIN\r\n")
        r = c.reply()
        assert r.code == 334
        r = c.cmd("*")
        assert (r.code, r.enhanced) == (501, "5.0.0"), r
        r = c.cmd("AUTH X-UNKNOWN")
        assert (r.code, r.enhanced) == (504, "5.5.4"), r
        # known to Cyrus, left out by policy for its weakness
        r = c.cmd("AUTH CRAM-MD5")
        assert (r.code, r.enhanced) == (534, "5.7.9"), r
        r = c.cmd("AUTH PLAIN !!notbase64")
        assert (r.code, r.enhanced) == (501, "5.5.2"), r
        assert sasl_client.auth_plain(c, "alice", "alicepw").code == 235
        r = c.cmd("AUTH PLAIN AGFsaWNlAGFsaWNlcHc=")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r


def test_authzid_other_user_refused(proxy, pki):
    with proxy.client() as c:
        hello(c, pki)
        r = sasl_client.auth_plain(c, "alice", "alicepw", authzid="bob")
        assert (r.code, r.enhanced) == (535, "5.7.8"), r


def test_mail_requires_auth(proxy):
    with proxy.client() as c:
        hello(c)
        r = c.cmd("MAIL FROM:<alice@example.org>")
        assert (r.code, r.enhanced) == (530, "5.7.0"), r


def test_sender_authorization(proxy):
    with proxy.client() as c:
        hello(c)
        assert sasl_client.auth_scram_sha256(c, "alice", "alicepw").code == 235
        r = c.cmd("MAIL FROM:<bob@example.org>")
        assert (r.code, r.enhanced) == (553, "5.7.1"), r
        r = c.cmd("MAIL FROM:<alice@other.example>")
        assert (r.code, r.enhanced) == (553, "5.7.1"), r
        assert c.cmd("MAIL FROM:<Alice@EXAMPLE.org>").code == 250


def test_sender_map(pki, sasldb, fake, proxy_factory):
    d = harness.make_tempdir("msaproxy-smap.")
    try:
        (d / "senders").write_text("# identity  addresses\n"
                                   "alice  team@example.net, @alice.example, %u+*@example.com\n")
        p = proxy_factory(fake, auth_conf(pki, sasldb, sender_map=str(d / "senders")))
        for addr, code in [("team@example.net", 250), ("x@alice.example", 250),
                           ("alice+lists@example.com", 250), ("alice@example.org", 250),
                           ("bob+x@example.com", 553), ("team@example.org", 553)]:
            with p.client() as c:
                hello(c)
                assert sasl_client.auth_scram_sha256(c, "alice", "alicepw").code == 235
                r = c.cmd(f"MAIL FROM:<{addr}>")
                assert r.code == code, (addr, r)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_identity_to_postfix_by_xclient(pki, sasldb, postfix, proxy_factory, marker):
    p = proxy_factory(postfix, auth_conf(pki, sasldb))
    with p.client() as c:
        hello(c, pki)
        assert sasl_client.auth_plain(c, "alice", "alicepw").code == 235
        assert c.cmd("MAIL FROM:<alice@example.org>").code == 250
        assert c.cmd("RCPT TO:<b@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {marker}\r\n\r\nx\r\n.\r\n")
        r = c.reply()
        assert r.code == 250 and "queued as" in r.text, r
    [(_, msg)] = postfix.wait_for(marker)
    first = msg.split(b"\nReceived:", 2)[1]
    # Postfix saw the real client and the login through XCLIENT
    assert b"(Authenticated sender: alice)" in first, first
    assert b"client.example" in first and b"[127.0.0.1]" in first, first
    ours = msg.split(b"\nReceived:", 2)[2]
    assert b"by proxy.test (msaproxy) with ESMTPSA" in ours, ours


def test_identity_as_auth_parameter(pki, sasldb, proxy_factory, marker):
    fb = harness.FakeBackend(caps=harness.DEFAULT_FAKE_CAPS + ["AUTH PLAIN"]).start()
    try:
        p = proxy_factory(fb, auth_conf(pki, sasldb))
        with p.client() as c:
            hello(c)
            assert sasl_client.auth_scram_sha256(c, "alice", "alicepw").code == 235
            assert c.cmd("MAIL FROM:<alice@example.org>").code == 250
            assert c.cmd("RCPT TO:<b@example.net>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(f"Subject: {marker}\r\n\r\nx\r\n.\r\n")
            assert c.reply().code == 250
        [t] = fb.wait_transactions(1)
        mail = t["mail"].decode() if isinstance(t["mail"], bytes) else t["mail"]
        assert mail == "MAIL FROM:<alice@example.org> AUTH=alice", mail
    finally:
        fb.stop()


def test_require_tls_for_every_mechanism(pki, sasldb, fake, proxy_factory):
    conf = auth_conf(pki, sasldb)
    conf["listeners"][0]["require_tls_for_auth"] = True
    p = proxy_factory(fake, conf)
    with p.client() as c:
        r = hello(c)
        assert auth_keyword(r) is None, r
        r = sasl_client.auth_scram_sha256(c, "alice", "alicepw")
        assert (r.code, r.enhanced) == (538, "5.7.11"), r
    with p.client() as c:
        hello(c, pki)
        assert sasl_client.auth_scram_sha256(c, "alice", "alicepw").code == 235


def test_received_comments(pki, sasldb, fake, proxy_factory, marker):
    p = proxy_factory(fake, auth_conf(pki, sasldb, received_auth_comment=True,
                                      received_tls_comment=True))
    with p.client() as c:
        hello(c, pki)
        assert sasl_client.auth_plain(c, "alice", "alicepw").code == 235
        assert c.cmd("MAIL FROM:<alice@example.org>").code == 250
        assert c.cmd("RCPT TO:<b@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {marker}\r\n\r\nx\r\n.\r\n")
        assert c.reply().code == 250
    [t] = fake.wait_transactions(1)
    rec = t["content"].split(b"\r\nSubject:")[0].decode()
    assert "\t(authenticated as alice)\r\n" in rec, rec
    assert "\t(using TLSv1." in rec and "with ESMTPSA id" in rec, rec


def test_external_with_client_certificate(pki, sasldb, fake, proxy_factory):
    conf = auth_conf(pki, sasldb, mechanisms="EXTERNAL PLAIN")
    conf["tls"].update({"verify_client": "optional", "client_ca_file": str(pki / "ca.pem")})
    p = proxy_factory(fake, conf)
    # without a client certificate: no EXTERNAL
    with p.client() as c:
        r = hello(c, pki)
        assert auth_keyword(r) == ["PLAIN"], r
    with p.client() as c:
        assert c.reply().code == 220
        c.cmd("EHLO client.example")
        assert c.cmd("STARTTLS").code == 220
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        ctx.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
        c.sock = ctx.wrap_socket(c.sock, server_hostname="mail.test")
        r = c.cmd("EHLO client.example")
        assert auth_keyword(r) == ["EXTERNAL", "PLAIN"], r
        r = c.cmd("AUTH EXTERNAL =")
        assert (r.code, r.enhanced) == (235, "2.7.0"), r
        assert c.cmd("MAIL FROM:<alice@example.org>").code == 250
    assert "AUTH EXTERNAL as alice (identity alice)" in p.log()


def test_identity_kept_when_backend_refuses_xclient(pki, sasldb, proxy_factory, marker):
    """A backend that offers XCLIENT but refuses it still learns the
    identity, as AUTH= on MAIL FROM."""
    fb = harness.FakeBackend(caps=harness.DEFAULT_FAKE_CAPS +
                             ["AUTH PLAIN", "XCLIENT NAME ADDR PORT HELO PROTO LOGIN"])
    fb.replies["XCLIENT"] = "550 5.7.0 not authorized"
    fb.start()
    try:
        p = proxy_factory(fb, auth_conf(pki, sasldb))
        with p.client() as c:
            hello(c)
            assert sasl_client.auth_scram_sha256(c, "alice", "alicepw").code == 235
            assert c.cmd("MAIL FROM:<alice@example.org>").code == 250
            assert c.cmd("RCPT TO:<b@example.net>").code == 250
            assert c.cmd("DATA").code == 354
            c.send(f"Subject: {marker}\r\n\r\nx\r\n.\r\n")
            assert c.reply().code == 250
        [t] = fb.wait_transactions(1)
        mail = t["mail"].decode() if isinstance(t["mail"], bytes) else t["mail"]
        assert mail == "MAIL FROM:<alice@example.org> AUTH=alice", mail
        assert "backend refused XCLIENT" in p.log()
    finally:
        fb.stop()


def test_auth_line_limits(proxy, pki):
    """RFC 4954 4: AUTH lines up to 12288 octets are read whole (not
    500 5.5.2), as are answers to 334; longer ones, and long lines of any
    other command, are not."""
    import base64
    with proxy.client() as c:
        hello(c, pki)
        ir = base64.b64encode(b"\0alice\0" + b"x" * 6000).decode()   # ~8 kB line
        r = c.cmd(f"AUTH PLAIN {ir}")
        assert (r.code, r.enhanced) == (535, "5.7.8"), r            # parsed, wrong password
        c.send("AUTH LOGIN\r\n")
        assert c.reply().code == 334
        r = c.cmd(base64.b64encode(b"y" * 6000).decode())            # ~8 kB answer
        # read whole and handed to SASL, which refuses a 6000-byte user
        # name (a line cut as too long would be 500 5.5.2)
        assert (r.code, r.enhanced) == (501, "5.5.2"), r
        r = c.cmd("AUTH PLAIN " + "A" * 12400)
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        r = c.cmd("NOOP " + "x" * 2000)
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
