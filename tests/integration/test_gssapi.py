"""AUTH GSSAPI (RFC 4752) with a real MIT KDC (throwaway realm LAB.TEST on
127.0.0.1): python3-gssapi and msmtp as real clients, msaproxy as acceptor
for smtp/localhost from its keytab, a real Postfix behind it.

What must hold: alice's ticket authenticates her as identity "alice"; the
identity reaches the backend (XCLIENT LOGIN=) and the Received type is
ESMTPA; a ticket from another KDC (same names, other keys) is refused with
535 5.7.8; an acceptor keytab without our key is a temporary failure (454);
the acceptor never needs the KDC, so a KDC outage does not affect clients
that hold a ticket.
"""
import pytest

import harness
import kdc as kdcmod
import sasl_client


def gss_proxy(proxy_factory, backend, gssapi_conf, **sasl):
    conf = harness.deep_merge({"sasl": {"mechanisms": "GSSAPI", "realm": "LAB.TEST",
                                        "sender_domains": "example.org"},
                               "listeners": [{"name": "submission", "kind": "submission",
                                              "require_auth": True}]},
                              gssapi_conf)
    conf["sasl"].update(sasl)
    return proxy_factory(backend, conf)


def ehlo(c):
    assert c.reply().code == 220
    r = c.cmd("EHLO client.example")
    assert r.code == 250
    return r


def test_gssapi_alice_to_postfix(krb5_env, alice_ccache, gssapi_conf, postfix,
                                 proxy_factory, marker):
    p = gss_proxy(proxy_factory, postfix, gssapi_conf)
    with p.client() as c:
        r = ehlo(c)
        assert "AUTH GSSAPI" in r.lines
        r = sasl_client.auth_gssapi(c, ccache=alice_ccache, env=krb5_env)
        assert (r.code, r.enhanced) == (235, "2.7.0"), r
        # the proxy offers no security layer (max_ssf = 0): only 0x01
        assert r.mech.server_layers == 1
        assert c.cmd("MAIL FROM:<alice@example.org>").code == 250
        assert c.cmd("RCPT TO:<bob@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {marker}\r\n\r\nby kerberos\r\n.\r\n")
        r = c.reply()
        assert r.code == 250 and "queued as" in r.text, r
    assert "AUTH GSSAPI as alice" in p.log()
    [(_, msg)] = postfix.wait_for(marker)
    pf_rec, ours = msg.split(b"\nReceived:", 2)[1:3]
    assert b"(Authenticated sender: alice)" in pf_rec, pf_rec
    assert b"by proxy.test (msaproxy) with ESMTPA" in ours, ours


def test_msmtp_gssapi(kdc, krb5_env, alice_ccache, gssapi_conf, fake, proxy_factory,
                      marker):
    p = gss_proxy(proxy_factory, fake, gssapi_conf)
    res = sasl_client.run_msmtp(p.port, kdc.env(ccache=alice_ccache), auth="gssapi",
                                user="alice", mail_from="alice@example.org",
                                message=f"Subject: {marker}\n\nvia msmtp\n")
    assert res.rc == 0, res.output
    [t] = fake.wait_transactions(1)
    assert marker.encode() in t["content"]
    assert b"with ESMTPA id" in t["content"]


def test_ticket_from_another_kdc_refused(krb5_env, gssapi_conf, proxy_factory, fake):
    """Same realm and names, other keys: a forged ticket to the acceptor."""
    other = kdcmod.standard_kdc() if hasattr(kdcmod, "standard_kdc") else None
    if other is None:
        pytest.skip("kdc.standard_kdc missing")
    try:
        cc = other.kinit("alice", password="alicepw")
        p = gss_proxy(proxy_factory, fake, gssapi_conf)
        with p.client() as c:
            ehlo(c)
            r = sasl_client.auth_gssapi(c, ccache=cc, env=other.env(ccache=cc))
            assert (r.code, r.enhanced) == (535, "5.7.8"), r
        assert "AUTH GSSAPI failed" in p.log()
    finally:
        other.cleanup()


def test_keytab_without_our_key_is_temporary(kdc, krb5_env, alice_ccache, proxy_factory,
                                             fake):
    p = gss_proxy(proxy_factory, fake, {"sasl": {"service": "smtp", "hostname": "localhost",
                                                 "keytab": kdc.keytabs["alice"]}})
    with p.client() as c:
        r = ehlo(c)
        if "AUTH GSSAPI" not in r.lines:
            pytest.skip("Cyrus did not load GSSAPI with this keytab")
        r = sasl_client.auth_gssapi(c, ccache=alice_ccache, env=krb5_env)
        assert (r.code, r.enhanced) == (454, "4.7.0"), r


def test_kdc_down_acceptor_unaffected(kdc, krb5_env, alice_ccache, gssapi_conf, fake,
                                      proxy_factory):
    p = gss_proxy(proxy_factory, fake, gssapi_conf)
    # alice gets her service ticket while the KDC is up ...
    with p.client() as c:
        ehlo(c)
        assert sasl_client.auth_gssapi(c, ccache=alice_ccache, env=krb5_env).code == 235
    kdc.stop()
    # ... and it still works with the KDC down: the acceptor needs only its keytab
    with p.client() as c:
        ehlo(c)
        r = sasl_client.auth_gssapi(c, ccache=alice_ccache, env=krb5_env)
        assert (r.code, r.enhanced) == (235, "2.7.0"), r


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def test_expired_ticket_refused(krb5_env, alice_ccache, gssapi_conf, fake, proxy_factory,
                                monkeypatch):
    """alice's ticket is valid for 10 hours; msaproxy runs a day ahead
    (libfaketime), so to the acceptor the ticket has expired: 535 5.7.8."""
    import os
    if not os.path.exists(FAKETIME_LIB):
        pytest.skip("libfaketime missing (apt-get install faketime)")
    if "ASAN_OPTIONS" in os.environ:
        # libfaketime preloaded ahead of ASan's runtime: under load its
        # start-up sometimes meets ASan's first clock_gettime() and the
        # process hangs before listening (seen once in CI).  The gcc pass
        # runs this test; ASan still sees the other GSSAPI failures.
        pytest.skip("libfaketime does not start reliably under ASan")
    monkeypatch.setenv("LD_PRELOAD", FAKETIME_LIB)
    monkeypatch.setenv("FAKETIME", "+1d")
    monkeypatch.setenv("DONT_FAKE_MONOTONIC", "1")
    p = gss_proxy(proxy_factory, fake, gssapi_conf)
    monkeypatch.delenv("LD_PRELOAD")        # not for the client side
    with p.client() as c:
        ehlo(c)
        r = sasl_client.auth_gssapi(c, ccache=alice_ccache, env=krb5_env)
        assert (r.code, r.enhanced) == (535, "5.7.8"), r
    assert "AUTH GSSAPI failed" in p.log()
    assert "Ticket expired" in p.log()
