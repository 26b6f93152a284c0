"""BURL fetches over TLS (RFC 4468 section 8: what the client sent over TLS
is fetched over TLS), and proxy authorization with Kerberos: msaproxy logs
in to a real Dovecot as its own principal submit@REALM with alice as the
SASL authorization identity (GSSAPI, RFC 4752), no password anywhere.

Dovecot here requires TLS (ssl = required) and offers STARTTLS on its IMAP
port and implicit TLS on an imaps port, with a certificate for mail.test
from the test CA.
"""
import ssl

import pytest

import harness
import imap_servers as ims
import sasl_client
from pki import pki  # noqa: F401  (fixture)
from test_auth import USERS, sasldb  # noqa: F401  (fixture)
from test_burl import MSG, burl_keyword, envelope, received_and_body, \
    submit_pwfile  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def tls_dovecot(kdc_session, pki):
    if ims.dovecot_missing():
        pytest.skip(ims.dovecot_missing())
    imaps = harness.free_port()
    extra = f"""
ssl = required
ssl_cert = <{pki / "ecdsa.pem"}
ssl_key = <{pki / "ecdsa.key"}
ssl_min_protocol = TLSv1.2
service imap-login {{
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
"""
    d = ims.DovecotImap(kdc=kdc_session, extra_conf=extra)
    try:
        d.start()
        harness.wait_port(imaps, 10, "dovecot imaps")
    except Exception:
        d.cleanup()
        raise
    d.imaps_port = imaps
    yield d
    d.cleanup()


def append_own(d, msg=MSG):
    """APPEND as alice over STARTTLS (the server refuses plaintext logins).
    Returns once Dovecot's log shows this login, so that a count of logins
    taken afterwards does not include it."""
    import imaplib
    seen = len(logins(d))
    m = imaplib.IMAP4("127.0.0.1", d.port)
    m.starttls(ssl._create_unverified_context())
    m.login("alice", USERS["alice"])
    typ, data = m.append("INBOX", None, None, msg)
    assert typ == "OK", data
    code = data[0].decode()
    uidv, uid = code.split("APPENDUID ")[1].rstrip("]").split()[:2]
    m.logout()
    new_logins(d, seen)
    return int(uidv), int(uid.rstrip("]"))


def conf(sasldb, pki, server, **burl):
    c = {
        "tls": {"certificates": [{"cert": str(pki / "ecdsa.pem"),
                                  "key": str(pki / "ecdsa.key")}]},
        "sasl": {"sasldb_path": str(sasldb), "hostname": "localhost",
                 "mechanisms": "SCRAM-SHA-256 PLAIN", "sender_domains": "example.org"},
        "listeners": [{"name": "submission", "kind": "submission", "require_auth": True}],
        "burl": {"connect_timeout": 5, "fetch_timeout": 3, "imap_servers": [server]},
    }
    c["burl"].update(burl)
    return c


def server(d, pki, pwfile, tls="starttls", port=None, name="mail.test", **kw):
    s = {"name": "dovecot", "authority": f"localhost:{d.port}",
         "address": f"127.0.0.1:{port or d.port}", "tls": tls,
         "tls_ca_file": str(pki / "ca.pem"), "tls_verify_name": name,
         "mode": "proxy-authorization"}
    if pwfile is not None:
        s.update(credentials="password", user="submit", password_file=str(pwfile))
    s.update(kw)
    return s


def session(p, pki, starttls=True):
    c = p.client()
    assert c.reply().code == 220
    assert c.cmd("EHLO client.example").code == 250
    if starttls:
        assert c.cmd("STARTTLS").code == 220
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        c.sock = ctx.wrap_socket(c.sock, server_hostname="mail.test")
        assert c.cmd("EHLO client.example").code == 250
    r = sasl_client.auth_scram_sha256(c, "alice", USERS["alice"])
    assert r.code == 235, r
    return c


def url_for(d, uidv, uid):
    return ims.imap_url(f"localhost:{d.port}", "alice", "INBOX", uidv, uid)


def logins(d):
    return [l for l in d.log().splitlines() if "imap-login: Info: Login:" in l]


def new_logins(d, before, timeout=10):
    """The logins logged after the first `before` ones.  Dovecot's log
    process writes them a moment after the login itself, so wait for one."""
    harness.wait_until(lambda: len(logins(d)) > before, timeout=timeout)
    return logins(d)[before:]


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_fetch_over_tls(mode, tls_dovecot, sasldb, pki, submit_pwfile, fake_chunking,
                        proxy_factory):
    d = tls_dovecot
    port = d.imaps_port if mode == "implicit" else None
    p = proxy_factory(fake_chunking, conf(sasldb, pki, server(
        d, pki, submit_pwfile, tls=mode, port=port)))
    uidv, uid = append_own(d)
    before = len(logins(d))
    c = session(p, pki)
    try:
        envelope(c)
        c.expect(f"BURL {url_for(d, uidv, uid)} LAST", 250, "2.0.0")
    finally:
        c.close()
    [t] = fake_chunking.wait_transactions(1)
    assert received_and_body(t["content"])[1] == MSG
    new = new_logins(d, before)
    assert new and all("TLS" in l for l in new), new
    assert any("user=<alice>" in l for l in new), new


def test_tls_client_needs_tls_fetch(tls_dovecot, sasldb, pki, submit_pwfile,
                                    fake_chunking, proxy_factory):
    """The client used TLS, the server is configured without: the fetch is
    refused (451 4.4.1) rather than done in the clear, and no password is
    sent.  With fetch_tls = "configured" the operator takes that choice."""
    d = tls_dovecot
    p = proxy_factory(fake_chunking, conf(sasldb, pki, server(
        d, pki, submit_pwfile, tls="none")))
    uidv, uid = append_own(d)
    before = len(logins(d))
    c = session(p, pki)
    try:
        envelope(c)
        c.expect(f"BURL {url_for(d, uidv, uid)} LAST", 451, "4.4.1")
    finally:
        c.close()
    assert len(logins(d)) == before
    assert not fake_chunking.transactions()


def test_wrong_certificate_name(tls_dovecot, sasldb, pki, submit_pwfile,
                                fake_chunking, proxy_factory):
    d = tls_dovecot
    p = proxy_factory(fake_chunking, conf(sasldb, pki, server(
        d, pki, submit_pwfile, name="imap.other.test")))
    uidv, uid = append_own(d)
    c = session(p, pki)
    try:
        envelope(c)
        c.expect(f"BURL {url_for(d, uidv, uid)} LAST", 451, "4.4.1")
    finally:
        c.close()
    assert not fake_chunking.transactions()


def test_kerberos_proxy_authorization(tls_dovecot, kdc, krb5_env, sasldb, pki,
                                      fake_chunking, proxy_factory):
    """GSSAPI as submit@REALM from the client keytab, authzid alice."""
    d = tls_dovecot
    s = server(d, pki, None, credentials="kerberos",
               principal=f"submit@{kdc.realm}", keytab=str(kdc.keytabs["submit"]),
               service_host="localhost")
    p = proxy_factory(fake_chunking, conf(sasldb, pki, s))
    uidv, uid = append_own(d)
    before = len(logins(d))
    c = session(p, pki)
    try:
        assert harness.wait_until(
            lambda: burl_keyword(c.cmd("EHLO client.example")) is not None, timeout=10)
        envelope(c)
        c.expect(f"BURL {url_for(d, uidv, uid)} LAST", 250, "2.0.0")
        # bob's plain URL is not alice's to send
        envelope(c)
        bobs = ims.imap_url(f"localhost:{d.port}", "bob", "INBOX", uidv, uid)
        c.expect(f"BURL {bobs} LAST", 554, "5.7.1")
    finally:
        c.close()
    [t] = fake_chunking.wait_transactions(1)
    assert received_and_body(t["content"])[1] == MSG
    new = new_logins(d, before)
    assert any("method=GSSAPI" in l and "alice" in l for l in new), new
