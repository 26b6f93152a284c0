"""STARTTLS towards the backend (backend.tls = none | may | verify), against a
real Postfix whose certificate is signed by a throwaway CA made here.

What must hold: with "verify" the message travels over TLS to a backend whose
certificate chains to tls_ca_file and names tls_verify_name, and nowhere else
(wrong name, unknown CA, no STARTTLS offered: 451 4.4.1, nothing delivered);
with "may" it travels over TLS without checks when offered.
"""
import shutil
import subprocess

import pytest

import harness


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def pki():
    """A CA and a server certificate for backend.test, plus an unrelated CA."""
    d = harness.make_tempdir("msaproxy-pki.")
    for ca in ("ca", "otherca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN=msaproxy test {ca}", cwd=d)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=backend.test",
             cwd=d)
    (d / "ext.cnf").write_text("subjectAltName = DNS:backend.test\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2",
             "-extfile", "ext.cnf", cwd=d)
    for f in d.iterdir():
        f.chmod(0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_postfix(pki):
    pf = harness.PostfixBackend(extra_main_cf={
        "smtpd_tls_security_level": "may",
        "smtpd_tls_cert_file": str(pki / "server.pem"),
        "smtpd_tls_key_file": str(pki / "server.key"),
        "smtpd_tls_received_header": "yes",
        "smtpd_tls_session_cache_database": "",
    })
    try:
        pf.start()
    except Exception:
        pf.cleanup()
        raise
    yield pf
    pf.cleanup()


def _send(p, marker):
    with p.client() as c:
        assert c.reply().code == 220
        assert c.cmd("EHLO client.example").code == 250
        r = c.cmd("MAIL FROM:<a@example.org>")
        if r.code != 250:
            return r
        assert c.cmd("RCPT TO:<b@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {marker}\r\n\r\nbody {marker}\r\n.\r\n")
        r = c.reply()
        c.cmd("QUIT")
        return r


def postfix_received(msg):
    """Postfix's own Received header: the first one of the stored message."""
    return msg.split(b"\nReceived:", 2)[1]


def test_verify_delivers_over_tls(tls_postfix, pki, proxy_factory, marker):
    p = proxy_factory(tls_postfix, {"backend": {
        "tls": "verify", "tls_ca_file": str(pki / "ca.pem"),
        "tls_verify_name": "backend.test"}})
    r = _send(p, marker)
    assert r.code == 250 and "queued as" in r.text, r
    [(_, msg)] = tls_postfix.wait_for(marker)
    # Postfix records the TLS of the leg from the proxy in its Received header
    assert b"(using TLSv1." in postfix_received(msg), msg


def test_verify_wrong_name_refused(tls_postfix, pki, proxy_factory, marker):
    p = proxy_factory(tls_postfix, {"backend": {
        "tls": "verify", "tls_ca_file": str(pki / "ca.pem"),
        "tls_verify_name": "other.test"}})
    r = _send(p, marker)
    assert (r.code, r.enhanced) == (451, "4.4.1"), r
    assert "certificate verification failed" in p.log()
    assert tls_postfix.find(marker) == []


def test_verify_unknown_ca_refused(tls_postfix, pki, proxy_factory, marker):
    p = proxy_factory(tls_postfix, {"backend": {
        "tls": "verify", "tls_ca_file": str(pki / "otherca.pem"),
        "tls_verify_name": "backend.test"}})
    r = _send(p, marker)
    assert (r.code, r.enhanced) == (451, "4.4.1"), r
    assert tls_postfix.find(marker) == []


def test_verify_without_starttls_offered_refused(sink, pki, proxy_factory, marker):
    # smtp-sink offers no STARTTLS: "verify" must not fall back to plaintext
    p = proxy_factory(sink, {"backend": {
        "tls": "verify", "tls_ca_file": str(pki / "ca.pem"),
        "tls_verify_name": "backend.test"}})
    r = _send(p, marker)
    assert (r.code, r.enhanced) == (451, "4.4.1"), r
    assert "offers no STARTTLS" in p.log()
    assert sink.find(marker) == []


def test_may_uses_tls_unverified(tls_postfix, proxy_factory, marker):
    p = proxy_factory(tls_postfix, {"backend": {"tls": "may"}})
    r = _send(p, marker)
    assert r.code == 250, r
    [(_, msg)] = tls_postfix.wait_for(marker)
    assert b"(using TLSv1." in postfix_received(msg), msg


def test_none_stays_plaintext(tls_postfix, proxy_factory, marker):
    p = proxy_factory(tls_postfix)
    r = _send(p, marker)
    assert r.code == 250, r
    [(_, msg)] = tls_postfix.wait_for(marker)
    assert b"using TLS" not in postfix_received(msg), msg
