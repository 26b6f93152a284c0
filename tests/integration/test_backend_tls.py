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


# ------------------------------------------- the proxy's own AUTH ----------

@pytest.fixture(scope="module")
def sasl_postfix():
    """A Postfix that wants SMTP AUTH from us (Cyrus SASL, its own sasldb)
    and does not offer XCLIENT to us."""
    d = harness.make_tempdir("msaproxy-pfsasl.")
    db = d / "sasldb2"
    subprocess.run(["saslpasswd2", "-f", str(db), "-a", "smtpd", "-u", "backend.test",
                    "-c", "-p", "relay"], input=b"relaypw", check=True)
    shutil.chown(db, "postfix")
    db.chmod(0o600)
    pf = harness.PostfixBackend(extra_main_cf={
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_type": "cyrus",
        "smtpd_sasl_path": "smtpd",
        "smtpd_sasl_local_domain": "backend.test",
        "smtpd_tls_auth_only": "no",
        "smtpd_authorized_xclient_hosts": "",
        # relaying only for authenticated clients
        "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
    })
    # Debian's Postfix reads <config_directory>/sasl/<smtpd_sasl_path>.conf
    (pf.etc / "sasl").mkdir(parents=True, exist_ok=True)
    (pf.etc / "sasl" / "smtpd.conf").write_text(
        f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
        f"sasldb_path: {db}\nmech_list: PLAIN LOGIN\n")
    try:
        pf.start()
    except Exception:
        pf.cleanup()
        shutil.rmtree(d, ignore_errors=True)
        raise
    yield pf
    pf.cleanup()
    shutil.rmtree(d, ignore_errors=True)


def _pwfile(secret):
    d = harness.make_tempdir("msaproxy-pw.")
    f = d / "pw"
    f.write_text(secret + "\n")
    f.chmod(0o600)
    return d, f


def test_own_auth_to_backend(sasl_postfix, proxy_factory, marker):
    d, f = _pwfile("relaypw")
    try:
        p = proxy_factory(sasl_postfix, {"backend": {"auth_user": "relay",
                                                     "auth_password_file": str(f)}})
        r = _send(p, marker)
        assert r.code == 250 and "queued as" in r.text, r
        [(_, msg)] = sasl_postfix.wait_for(marker)
        assert b"with ESMTPA" in postfix_received(msg), msg
        assert "relaypw" not in p.log()
        # postlogd writes the line a moment later
        assert harness.wait_until(lambda: "sasl_username=relay" in sasl_postfix.log(),
                                  timeout=5)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_own_auth_wrong_password(sasl_postfix, proxy_factory, marker):
    d, f = _pwfile("wrong")
    try:
        p = proxy_factory(sasl_postfix, {"backend": {"auth_user": "relay",
                                                     "auth_password_file": str(f)}})
        r = _send(p, marker)
        assert (r.code, r.enhanced) == (451, "4.3.5"), r
        assert "backend refused our AUTH as relay" in p.log()
        assert sasl_postfix.find(marker) == []
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_password_file_readable_by_others_refused(sasl_postfix, binary, tmp_path):
    d, f = _pwfile("relaypw")
    try:
        f.chmod(0o644)
        p = harness.Msaproxy(sasl_postfix.address, {"backend": {
            "auth_user": "relay", "auth_password_file": str(f)}}, binary=binary)
        p.write_conf()
        r = subprocess.run([binary, "-f", "-c", str(p.conffile)], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode == 1
        assert "readable by others" in r.stderr, r.stderr
        p.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)
