"""BURL_ACCESS (Messaging Server's mapping table) through real SMTP sessions,
with Cyrus IMAP (URLAUTH) behind: what EHLO advertises by AUTH and TLS
state, allow, deny with the table's own reply, $I disconnect, $D rewrite,
the trusted set still applying after a rewrite, and the bad-BURL limit.

The tables are the seed configuration's (Messaging Server's documentation),
with the channel names of msaproxy's listeners.
"""
import ssl

import pytest

import harness
import imap_servers as ims
import sasl_client
from pki import pki  # noqa: F401  (fixture)
from test_auth import USERS, sasldb  # noqa: F401  (fixture)
from test_burl import MSG, burl_keyword, cyrus_server, draft, envelope, \
    received_and_body, submit_pwfile  # noqa: F401  (fixture)

MINIMAL = """BURL_ACCESS

! Initial entry to allow advertising BURL in EHLO response
   *|tcp_*|%*|                                imap$Y
! Allow BURL commands of the user's own URLs
   *|*@*|imap://*;URLAUTH=submit+$1*:*        $:A$Y
"""

TLS_REQUIRED = """BURL_ACCESS

   *|tcp_*|%*|                                $:Timap$Y
   *|*@*|imap://*;URLAUTH=submit+$1*:*        $:A$:T$Y
"""

CUSTOM = """BURL_ACCESS

   *|tcp_*|%*|                                imap$Y
   *|*@*|imap://*;URLAUTH=submit+$1*:*        $:A$Y
   *|*@*|imap://bob@*                         $N550$ 5.7.1$ Not$ your$ draft$I
   *|*@*|imap://*                             $N554$ 5.7.1$ Only$ your$ own$ URLs
"""


def access_conf(sasldb, cyrus, pwfile, table_path, tls=None, **burl):
    conf = {
        "sasl": {"sasldb_path": str(sasldb), "hostname": "localhost",
                 "mechanisms": "SCRAM-SHA-256 PLAIN", "sender_domains": "example.org"},
        "listeners": [{"name": "tcp_submit", "kind": "submission", "require_auth": True}],
        "burl": {"fetch_tls": "configured", "connect_timeout": 5, "fetch_timeout": 3,
                 "access_file": str(table_path), "access_domain": "example.org",
                 "imap_servers": [cyrus_server(cyrus, password_file=pwfile)]},
    }
    if tls is not None:
        conf["tls"] = {"certificates": [{"cert": str(tls / "ecdsa.pem"),
                                         "key": str(tls / "ecdsa.key")}]}
    conf["burl"].update(burl)
    return conf


def login(c, user="alice", pki=None):
    assert c.reply().code == 220
    r = c.cmd("EHLO client.example")
    before = burl_keyword(r)
    if pki is not None:
        assert c.cmd("STARTTLS").code == 220
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        c.sock = ctx.wrap_socket(c.sock, server_hostname="mail.test")
        assert c.cmd("EHLO client.example").code == 250
    r = sasl_client.auth_scram_sha256(c, user, USERS[user])
    assert r.code == 235, r
    r = c.cmd("EHLO client.example")
    return before, burl_keyword(r)


@pytest.fixture
def table(tmp_path):
    def write(text):
        p = tmp_path / "mappings"
        p.write_text(text)
        return p
    return write


def test_minimal_table_advertises_after_auth_and_allows_own(
        cyrus_imap, sasldb, submit_pwfile, table, fake_chunking, proxy_factory):
    p = proxy_factory(fake_chunking, access_conf(sasldb, cyrus_imap, submit_pwfile,
                                                 table(MINIMAL)))
    url = draft(cyrus_imap)
    with p.client() as c:
        before, after = login(c)
        assert before is None          # "%*": the identity must not be empty
        assert after == "BURL imap"
        envelope(c)
        c.expect(f"BURL {url} LAST", 250, "2.0.0")
    [t] = fake_chunking.wait_transactions(1)
    assert received_and_body(t["content"])[1] == MSG
    assert "BURL_ACCESS" in p.log()


def test_minimal_table_refuses_other_users_url(
        cyrus_imap, sasldb, submit_pwfile, table, fake_chunking, proxy_factory):
    p = proxy_factory(fake_chunking, access_conf(sasldb, cyrus_imap, submit_pwfile,
                                                 table(MINIMAL)))
    url = draft(cyrus_imap, user="bob")
    with p.client() as c:
        login(c, "alice")
        envelope(c)
        c.expect(f"BURL {url} LAST", 533, "5.7.1",
                 text="Access denied to specified URL.")
    assert not fake_chunking.transactions()


def test_channel_must_match(cyrus_imap, sasldb, submit_pwfile, table, fake_chunking,
                            proxy_factory):
    conf = access_conf(sasldb, cyrus_imap, submit_pwfile, table(MINIMAL))
    conf["listeners"][0]["name"] = "submission"     # not tcp_*
    p = proxy_factory(fake_chunking, conf)
    with p.client() as c:
        _, after = login(c)
        assert after is None


def test_tls_required_table(cyrus_imap, sasldb, submit_pwfile, table, pki,
                            fake_chunking, proxy_factory):
    p = proxy_factory(fake_chunking, access_conf(sasldb, cyrus_imap, submit_pwfile,
                                                 table(TLS_REQUIRED), tls=pki))
    url = draft(cyrus_imap)
    with p.client() as c:
        # SCRAM in the clear: authenticated, but no TLS
        _, after = login(c)
        assert after is None
        envelope(c)
        c.expect(f"BURL {url} LAST", 533, "5.7.1")
    with p.client() as c:
        _, after = login(c, pki=pki)
        assert after == "BURL imap"
        envelope(c)
        c.expect(f"BURL {url} LAST", 250, "2.0.0")
    assert len(fake_chunking.wait_transactions(1)) == 1


def test_custom_reply_and_forced_disconnect(cyrus_imap, sasldb, submit_pwfile, table,
                                            fake_chunking, proxy_factory):
    p = proxy_factory(fake_chunking, access_conf(sasldb, cyrus_imap, submit_pwfile,
                                                 table(CUSTOM)))
    other = ("imap://carol@localhost/INBOX/;UID=1;URLAUTH=submit+carol:internal:"
             "0123456789abcdef0123456789abcdef01")
    bobs = draft(cyrus_imap, user="bob")
    with p.client() as c:
        login(c)
        envelope(c)
        c.expect(f"BURL {other} LAST", 554, "5.7.1", text="Only your own URLs")
        c.expect("NOOP", 250)
        c.expect(f"BURL {bobs} LAST", 550, "5.7.1", text="Not your draft")
        r = c.reply()
        assert (r.code, r.enhanced) == (421, "4.7.0"), r
        assert r.text.endswith("BURL_ACCESS forced disconnect")
        assert c.closed()
    assert "BURL_ACCESS forced disconnect" in p.log()
    assert not fake_chunking.transactions()


def test_rewrite_and_trusted_set_after_rewrite(cyrus_imap, sasldb, submit_pwfile,
                                               table, fake_chunking, proxy_factory):
    """$D: the table's output replaces the URL.  A rewrite to another of
    alice's URLs is fetched; a rewrite to an untrusted host is still refused
    with 554 5.7.14, before any connection."""
    real = draft(cyrus_imap)
    trap = ims.HostileImap("ok", body=b"X: y\r\n\r\nnot this\r\n").start()
    try:
        text = ("BURL_ACCESS\n\n"
                "   *|tcp_*|%*|                          imap$Y\n"
                f"   *|*@*|imap://alice@localhost/INBOX/;UID=999*   $:A$D{real.replace('$', '$$')}$Y\n"
                f"   *|*@*|imap://alice@localhost/INBOX/;UID=998*   "
                f"$:A$Dimap://alice@127.0.0.1:{trap.port}/INBOX/;UID=1;URLAUTH=submit+alice:internal:0123456789abcdef0123456789abcdef01$Y\n")
        p = proxy_factory(fake_chunking, access_conf(sasldb, cyrus_imap, submit_pwfile,
                                                     table(text)))
        fake_url = ("imap://alice@localhost/INBOX/;UID=999;URLAUTH=submit+alice:internal:"
                    "00000000000000000000000000000000000000000000")
        with p.client() as c:
            login(c)
            envelope(c)
            c.expect(f"BURL {fake_url} LAST", 250, "2.0.0")
            envelope(c)
            c.expect(f"BURL {fake_url.replace('UID=999', 'UID=998')} LAST", 554, "5.7.14")
        [t] = fake_chunking.wait_transactions(1)
        assert received_and_body(t["content"])[1] == MSG
        assert trap.connection_count() == 0
        log = p.log()
        assert "$D: URL rewritten" in log
        assert real.rsplit(":", 1)[1] not in log
    finally:
        trap.stop()


def test_bad_burl_limit(cyrus_imap, sasldb, submit_pwfile, table, fake_chunking,
                        proxy_factory):
    p = proxy_factory(fake_chunking, access_conf(sasldb, cyrus_imap, submit_pwfile,
                                                 table(MINIMAL), max_bad_burl=3))
    bobs = draft(cyrus_imap, user="bob")
    with p.client() as c:
        login(c)
        envelope(c)
        c.expect(f"BURL {bobs} LAST", 533, "5.7.1")
        c.expect(f"BURL {bobs} LAST", 533, "5.7.1")
        c.expect(f"BURL {bobs} LAST", 533, "5.7.1")
        r = c.reply()
        assert (r.code, r.enhanced) == (421, "4.7.0"), r
        assert c.closed()
    assert "burl.max_bad_burl" in p.log()


def test_table_errors_reported_with_lines(sasldb, cyrus_imap, submit_pwfile, table,
                                          binary, tmp_path):
    bad = table("BURL_ACCESS\n\n   *|tcp_*|%*|   imap$Y\n   $[abc   $Y\n   x   $?r?\n")
    conf = access_conf(sasldb, cyrus_imap, submit_pwfile, bad)
    conf["backend"] = {"address": "127.0.0.1:25"}
    m = harness.Msaproxy("127.0.0.1:25", conf, binary=binary)
    try:
        m.write_conf()
        r = m.check_config()
        out = r.stdout + r.stderr
        assert r.returncode != 0
        assert f"{bad}:4:" in out and f"{bad}:5:" in out, out
    finally:
        m.cleanup()


# ---------------------------------------------------------------- $M: mailHost

SEED_M = """BURL_ACCESS

   *|tcp_*|%*|                                imap$Y
   *|*@*|imap://*;URLAUTH=submit+$1*:*        $:A$M$Y
"""


def test_mailhost_from_map_file(cyrus_imap, sasldb, submit_pwfile, table, tmp_path,
                                fake_chunking, proxy_factory):
    """The seed table's $M: the fetch goes to the user's mailHost, whatever
    host the URL names.  alice's mailHost is a second trusted server (a fake
    that answers with its own content: that content arriving proves the
    routing); bob's is not trusted (554 5.7.14, no connection)."""
    decoy_body = b"From: <decoy@example.org>\r\nSubject: from the mailHost\r\n\r\nhi\r\n"
    decoy = ims.HostileImap("ok", body=decoy_body).start()
    try:
        mapf = tmp_path / "mailhosts"
        mapf.write_text("# user  mailHost\nalice  decoy.example\n"
                        "bob     untrusted.example\n")
        conf = access_conf(sasldb, cyrus_imap, submit_pwfile, table(SEED_M))
        conf["burl"]["imap_servers"].append(
            {"name": "decoy", "authority": "decoy.example",
             "address": f"127.0.0.1:{decoy.port}", "tls": "none",
             "credentials": "password", "user": "submit",
             "password_file": str(submit_pwfile)})
        conf["burl"]["mailhost"] = {"map_file": str(mapf)}
        p = proxy_factory(fake_chunking, conf)
        with p.client() as c:
            login(c, "alice")
            envelope(c)
            c.expect(f"BURL {draft(cyrus_imap)} LAST", 250, "2.0.0")
        [t] = fake_chunking.wait_transactions(1)
        assert received_and_body(t["content"])[1] == decoy_body
        assert decoy.connection_count() == 1
        with p.client() as c:
            login(c, "bob")
            envelope(c, sender="bob@example.org")
            c.expect(f"BURL {draft(cyrus_imap, user='bob')} LAST", 554, "5.7.14")
        assert "untrusted.example is not a trusted IMAP server" in p.log()
    finally:
        decoy.stop()


def test_mailhost_from_ldap(cyrus_imap, sasldb, submit_pwfile, table, fake_chunking,
                            proxy_factory):
    """mailHost from a real slapd: alice's is imap1.example.com, which the
    trust set maps to the Cyrus server (the URL still names localhost, as
    Cyrus wrote it); bob's, imap2.example.com:10143, is not trusted; with the
    directory down a BURL is a temporary failure."""
    import ldap_server
    if ldap_server.slapd_missing():
        pytest.skip(ldap_server.slapd_missing())
    s = ldap_server.Slapd()
    try:
        s.start()
        conf = access_conf(sasldb, cyrus_imap, submit_pwfile, table(SEED_M))
        conf["burl"]["imap_servers"].append(dict(
            conf["burl"]["imap_servers"][0], name="imap1",
            authority="imap1.example.com"))
        conf["burl"]["mailhost"] = {"ldap_uri": s.uri, "ldap_base": ldap_server.PEOPLE,
                                    "timeout": 2, "cache_ttl": 1, "negative_ttl": 1}
        p = proxy_factory(fake_chunking, conf)
        with p.client() as c:
            login(c, "alice")
            envelope(c)
            c.expect(f"BURL {draft(cyrus_imap)} LAST", 250, "2.0.0")
        [t] = fake_chunking.wait_transactions(1)
        assert received_and_body(t["content"])[1] == MSG
        assert "mailHost imap1.example.com is imap1" in p.log()
        with p.client() as c:
            login(c, "bob")
            envelope(c, sender="bob@example.org")
            c.expect(f"BURL {draft(cyrus_imap, user='bob')} LAST", 554, "5.7.14")
        s.stop()
        import time
        time.sleep(1.5)                 # past the cache TTL
        with p.client() as c:
            login(c, "alice")
            envelope(c)
            c.expect(f"BURL {draft(cyrus_imap)} LAST", 451, "4.4.1")
    finally:
        s.cleanup()
