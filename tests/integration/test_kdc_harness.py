"""Self-tests of kdc.py, sasl_client.py and fixtures_auth.py: no msaproxy.

Run with /usr/bin/python3 (python3-gssapi).  About 2 s.
"""

import os
import shutil
import socket
import smtplib
import subprocess
import time
from pathlib import Path

import pytest

import harness
import kdc as kdc_mod
import sasl_client as sc
# The fixtures, also when conftest.py does not load fixtures_auth (yet); a
# harmless duplicate once it does.
from fixtures_auth import *  # noqa: F401,F403

gssapi = pytest.importorskip("gssapi", reason="python3-gssapi: run with /usr/bin/python3")

REALM = kdc_mod.DEFAULT_REALM


def _client(port):
    c = harness.SmtpClient(port)
    assert c.greeting().code == 220
    c.expect("EHLO selftest.example", 250)
    return c


# ------------------------------------------------------------------ KDC ---

def test_kdc_starts_private_and_loopback_only(kdc):
    assert kdc.running()
    assert harness.port_open(kdc.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:   # UDP taken by the KDC
        with pytest.raises(OSError):
            u.bind(("127.0.0.1", kdc.port))
    if shutil.which("ss"):                                        # 127.0.0.1 only
        out = subprocess.run(["ss", "-Hlntu", f"sport = :{kdc.port}"], capture_output=True,
                             text=True, timeout=10).stdout.splitlines()
        assert len(out) == 2, out
        assert all(f"127.0.0.1:{kdc.port}" in line for line in out), out
    assert str(kdc.dir).startswith("/tmp/") and kdc.dir.stat().st_mode & 0o005 == 0o005
    assert kdc.db.parent == kdc.dir / "db" and kdc.db.exists() and kdc.stash.exists()
    assert not Path("/etc/krb5kdc/principal").exists()
    assert not Path("/etc/krb5kdc/stash").exists()
    assert kdc.rcache_dir.stat().st_mode & 0o7777 == 0o1777
    env = kdc.env()
    assert env["KRB5_CONFIG"] == str(kdc.krb5_conf)
    assert env["KRB5_KDC_PROFILE"] == str(kdc.kdc_conf)
    assert env["KRB5RCACHEDIR"] == str(kdc.rcache_dir)
    assert env["KRB5CCNAME"].startswith(f"FILE:{kdc.dir}/")
    conf = kdc.krb5_conf.read_text()
    for must in ("dns_lookup_kdc = false", "rdns = false", "dns_canonicalize_hostname = false",
                 f"kdc = 127.0.0.1:{kdc.port}"):
        assert must in conf


def test_kinit_with_password(kdc, kinit):
    cc = kinit("alice")
    out = kdc.klist(cc)
    assert f"Default principal: alice@{REALM}" in out
    assert f"krbtgt/{REALM}@{REALM}" in out
    assert kdc.ccache_principal(kinit("bob")) == f"bob@{REALM}"
    with pytest.raises(kdc_mod.KrbError) as e:
        kdc.kinit("alice", password="wrong")
    assert "incorrect" in str(e.value).lower() or "preauth" in str(e.value).lower()


def test_keytabs(kdc, kinit):
    assert kdc.keytab_principals(kdc.keytabs["smtp"]) == [f"smtp/localhost@{REALM}"]
    assert kdc.keytab_principals(kdc.keytabs["submit"]) == [f"submit@{REALM}"]
    assert os.stat(kdc.keytabs["smtp"]).st_mode & 0o777 == 0o600
    # the acceptor key matches the KDC's (kvno -k decrypts a fresh ticket)
    r = kdc.kvno("smtp/localhost", kinit("alice"), keytab=kdc.keytabs["smtp"])
    assert "keytab entry valid" in r.stdout
    # client keytab works, and -norandkey kept the password valid
    cc = kinit("submit", keytab=kdc.keytabs["submit"])
    assert kdc.ccache_principal(cc) == f"submit@{REALM}"
    assert kdc.ccache_principal(kinit("submit")) == f"submit@{REALM}"
    assert kdc.ccache_principal(kinit("alice", keytab=kdc.keytabs["alice"])) == f"alice@{REALM}"


def test_gssapi_context_in_process(kdc, alice_ccache):
    """alice (initiator, ccache) <-> smtp/localhost (acceptor, keytab), then
    the RFC 4752 security-layer messages with sasl_client.GssapiClient."""
    with sc.krb5_environ(kdc.env()):
        acc_creds = gssapi.Credentials(usage="accept",
                                       store={"keytab": kdc.keytabs["smtp"]})
        acc = gssapi.SecurityContext(creds=acc_creds, usage="accept")
        cli = sc.GssapiClient(service="smtp", host="localhost", ccache=alice_ccache,
                              authzid="alice")
        tok = cli.initial()
        assert tok
        while not (acc.complete and cli.ctx.complete):
            out = acc.step(tok)
            if cli.ctx.complete:
                assert not out
                break
            tok = cli.step(out)
        assert str(acc.initiator_name) == f"alice@{REALM}"
        assert str(cli.ctx.target_name).startswith(f"smtp/localhost@{REALM}")
        # server offers "no security layer" only (what msaproxy must do, max_ssf 0)
        offer = acc.wrap(b"\x01\x00\x00\x00", False).message
        answer = acc.unwrap(cli.step(offer)).message
        assert answer == b"\x01\x00\x00\x00alice"
        assert (cli.server_layers, cli.server_maxbuf) == (1, 0)
        # a server offering only integrity/confidentiality is refused
        cli2 = sc.GssapiClient(ccache=alice_ccache)
        acc2 = gssapi.SecurityContext(creds=acc_creds, usage="accept")
        out = acc2.step(cli2.initial())
        cli2.step(out)
        with pytest.raises(sc.SaslError):
            cli2.step(acc2.wrap(b"\x06\x00\x10\x00", False).message)


def test_kdc_stopped_kinit_fails_fast(kdc, kinit):
    kdc.stop()
    assert not kdc.running() and not harness.port_open(kdc.port)
    t = time.monotonic()
    with pytest.raises(kdc_mod.KrbError) as e:
        kdc.kinit("alice", timeout=10)
    assert time.monotonic() - t < 3
    assert "Cannot contact any KDC" in str(e.value)
    kdc.start()                                   # same port, same database
    assert kdc.ccache_principal(kinit("alice")) == f"alice@{REALM}"


def test_krb5_env_fixture(krb5_env, kdc):
    for k in ("KRB5_CONFIG", "KRB5_KDC_PROFILE", "KRB5RCACHEDIR", "KRB5CCNAME"):
        assert os.environ[k] == krb5_env[k]
    # plain `kinit` (no -c) lands in the per-test ccache, not /tmp/krb5cc_0
    subprocess.run(["kinit", "alice"], input="alicepw\n", text=True, check=True,
                   capture_output=True, timeout=10)
    assert kdc.ccache_principal(krb5_env["KRB5CCNAME"]) == f"alice@{REALM}"


def test_krb5_environ_restores():
    os.environ.pop("KRB5_TRACE", None)
    before = os.environ.get("KRB5_CONFIG")
    with sc.krb5_environ({"KRB5_CONFIG": "/nonexistent/krb5.conf", "KRB5_TRACE": "/dev/null"}):
        assert os.environ["KRB5_CONFIG"] == "/nonexistent/krb5.conf"
    assert os.environ.get("KRB5_CONFIG") == before
    assert "KRB5_TRACE" not in os.environ


# ----------------------------------------------------------------- SCRAM ---

def test_scram_sha256_rfc7677_vector():
    s = sc.ScramClient("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert s.client_first() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert s.client_final("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                          "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096") == \
        ("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
         "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert s.verify_server_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    assert not s.verify_server_final("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    assert not s.verify_server_final("e=invalid-proof") and s.server_error == "invalid-proof"


def test_scram_sha1_rfc5802_vector_and_checks():
    s = sc.ScramClient("user", "pencil", nonce="fyko+d2lbbFgONRv9qkxdawL", hashname="sha1")
    assert s.client_final("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                          "s=QSXCR+Q6sek8bf92,i=4096") == \
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
    assert s.verify_server_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
    # a server nonce that does not extend ours, and a mandatory extension
    with pytest.raises(sc.SaslError):
        sc.ScramClient("u", "p", nonce="abc").client_final("r=xyzdef,s=QSXCR+Q6sek8bf92,i=1")
    with pytest.raises(sc.SaslError):
        sc.ScramClient("u", "p", nonce="abc").client_final("m=x,r=abcdef,s=QSXCR+Q6sek8bf92,i=1")
    # names are escaped, authzid goes in the gs2 header
    s = sc.ScramClient("a,b=c", "p", authzid="x=y", nonce="N")
    assert s.client_first() == "n,a=x=3Dy,n=a=2Cb=3Dc,r=N"


# -------------------------- the helpers over SMTP, against Cyrus SASL itself ---

def test_auth_helpers_against_cyrus_sasl(cyrus_ref, kdc, alice_ccache):
    p = cyrus_ref.port
    assert sc.auth_plain(_client(p), "alice", "alicepw").code == 235
    assert sc.auth_plain(_client(p), "alice", "alicepw", initial_response=False).code == 235
    assert sc.auth_plain(_client(p), "alice", "nope").code == 535
    assert sc.auth_login(_client(p), "bob", "bobpw").code == 235
    r = sc.auth_login(_client(p), "bob", "bobpw", initial_response=True)
    assert r.code == 235 and [x.code for d, x in r.transcript if d == "S"] == [334, 235]
    r = sc.auth_scram_sha256(_client(p), "alice", "alicepw")
    assert r.code == 235 and r.mech.server_verified is True
    # exchange shape: client-first, 334 server-first, client-final,
    # 334 v=..., empty line, 235
    assert [x.code for d, x in r.transcript if d == "S"] == [334, 334, 235]
    assert [x for d, x in r.transcript if d == "C"][-1] == ""
    r = sc.auth_scram_sha256(_client(p), "alice", "alicepw", initial_response=False)
    assert r.code == 235 and r.mech.server_verified
    r = sc.auth_scram_sha256(_client(p), "alice", "wrong")
    assert r.code == 535 and r.mech.server_verified is None
    r = sc.auth_gssapi(_client(p), ccache=alice_ccache, env=kdc.env())
    assert r.code == 235
    assert str(r.mech.ctx.initiator_name) == f"alice@{REALM}"
    assert r.mech.server_layers & 1
    assert sc.auth_gssapi(_client(p), ccache=alice_ccache, env=kdc.env(),
                          initial_response=False, authzid="alice").code == 235
    # initiator straight from the client keytab, no kinit (the BURL pattern)
    assert sc.auth_gssapi(_client(p), client_keytab=kdc.keytabs["submit"],
                          principal=f"submit@{REALM}", env=kdc.env()).code == 235
    # cancel: '*' -> 501
    r = sc.sasl_exchange(_client(p), "LOGIN", lambda ch: sc.CANCEL)
    assert r.code == 501
    assert [a for a in cyrus_ref.auths if a[1]] == [
        ("PLAIN", "alice"), ("PLAIN", "alice"), ("LOGIN", "bob"), ("LOGIN", "bob"),
        ("SCRAM-SHA-256", "alice"), ("SCRAM-SHA-256", "alice"),
        ("GSSAPI", "alice"), ("GSSAPI", "alice"), ("GSSAPI", "submit")]


def test_auth_helper_over_smtplib(cyrus_ref, kdc, alice_ccache):
    with smtplib.SMTP("127.0.0.1", cyrus_ref.port, timeout=10) as s:
        s.ehlo("selftest.example")
        r = sc.auth_gssapi(s, ccache=alice_ccache, env=kdc.env())
        assert r.code == 235 and r.lines == ["2.7.0 Authentication successful"]
        code, _ = s.mail("alice@example.org")
        assert code == 250


def test_gssapi_without_tickets_fails_client_side(cyrus_ref, kdc):
    """KDC down and no service ticket cached: the client cannot even build
    its first token (the acceptor never talks to the KDC)."""
    empty = kdc.ccache_dir / "empty"
    kdc.stop()
    try:
        with pytest.raises(gssapi.exceptions.GSSError):
            sc.auth_gssapi(_client(cyrus_ref.port), ccache=empty, env=kdc.env())
    finally:
        kdc.start()


def test_msmtp_gssapi(cyrus_ref, kdc, alice_ccache, marker):
    msg = f"From: <alice@example.org>\r\nTo: <bob@example.net>\r\nSubject: {marker}\r\n\r\nhi\r\n"
    res = sc.run_msmtp(cyrus_ref.port, kdc.env(ccache=alice_ccache), user="alice", message=msg)
    assert res.rc == 0, res
    assert "AUTH GSSAPI" in " ".join(res.sent) and "235 2.7.0 Authentication successful" in res.received
    assert cyrus_ref.auths[-1] == ("GSSAPI", "alice")
    assert any(marker.encode() in m for m in cyrus_ref.messages)
    # no ticket -> msmtp gives up (nonzero), quickly
    t = time.monotonic()
    kdc.stop()
    try:
        res = sc.run_msmtp(cyrus_ref.port, kdc.env(ccache=kdc.ccache_dir / "none"), user="alice")
    finally:
        kdc.start()
    assert res.rc not in (0, None), res
    assert time.monotonic() - t < 10
