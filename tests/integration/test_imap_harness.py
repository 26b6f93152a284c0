"""Self-tests of imap_servers.py: real Cyrus and Dovecot IMAP servers for the
BURL tests, and HostileImap.  No msaproxy needed.

Run with /usr/bin/python3 (python3-gssapi for the GSSAPI cases), as root.
About 10 s.
"""

import base64
import imaplib
import os
import re
import socket
import time

import pytest

import harness
import imap_servers as im
import kdc as kdc_mod

REALM = kdc_mod.DEFAULT_REALM


def _message(marker, body="hello"):
    return (f"From: <alice@example.org>\r\nTo: <bob@example.net>\r\n"
            f"Subject: {marker}\r\nMessage-ID: <{marker}@example.org>\r\n\r\n"
            f"{body} {marker}\r\n.leading dot\r\n").encode()


def _cyrus_url(srv, marker, user="alice", section=None):
    msg = _message(marker)
    uv, uid = im.imap_append(srv.port, user, srv.users[user], msg)
    rump = im.imap_url(srv.url_authority, user, "INBOX", uv, uid, section=section)
    return msg, rump, im.imap_genurlauth(srv.port, user, srv.users[user], rump)


def _procs_mentioning(text):
    return [pid for pid, (_, cmd) in im._proc_table().items()
            if text.encode() in cmd and pid != os.getpid()]


# ------------------------------------------------------------------ Cyrus ---

def test_cyrus_append_genurlauth_urlfetch_as_submit(cyrus_imap, marker):
    srv = cyrus_imap
    assert srv.url_authority == "localhost"
    assert srv.users == {"alice": "alicepw", "bob": "bobpw", "submit": "submitpw"}
    msg, rump, url = _cyrus_url(srv, marker)
    assert rump.startswith("imap://alice@localhost/INBOX;UIDVALIDITY=")
    assert re.fullmatch(re.escape(rump) + r";URLAUTH=submit\+alice:internal:[0-9a-f]{42}", url), url
    assert im.imap_urlfetch(srv.port, "submit", "submitpw", url) == msg
    # only submitservers may fetch submit+ URLs: the owner and bob get NIL
    assert im.imap_urlfetch(srv.port, "alice", "alicepw", url) is None
    assert im.imap_urlfetch(srv.port, "bob", "bobpw", url) is None
    # a changed token is refused
    bad = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert im.imap_urlfetch(srv.port, "submit", "submitpw", bad) is None


def test_cyrus_urlfetch_raw_answer_and_section(cyrus_imap, marker):
    srv = cyrus_imap
    msg, _, url = _cyrus_url(srv, marker)
    m = im.imap_connect(srv.port, "submit", "submitpw", mech="PLAIN")
    try:
        typ, got = im.urlfetch(m, url)
        assert typ == "OK" and got == {url: msg}
    finally:
        m.logout()
    # ;SECTION=TEXT: the body only (a BURL client may send the message in parts)
    _, _, url_text = _cyrus_url(srv, marker + "-text", section="TEXT")
    assert im.imap_urlfetch(srv.port, "submit", "submitpw", url_text) == \
        harness.body_of(_message(marker + "-text"))


def test_cyrus_authuser_and_user_access(cyrus_imap, marker):
    srv = cyrus_imap
    msg = _message(marker)
    uv, uid = im.imap_append(srv.port, "alice", "alicepw", msg)
    rump = im.imap_url(srv.url_authority, "alice", "INBOX", uv, uid)
    # "authuser": any logged-in user
    url = im.imap_genurlauth(srv.port, "alice", "alicepw", rump, access="authuser")
    assert im.imap_urlfetch(srv.port, "bob", "bobpw", url) == msg
    # "user+submit": submit only
    url = im.imap_genurlauth(srv.port, "alice", "alicepw", rump, access="user+submit")
    assert im.imap_urlfetch(srv.port, "submit", "submitpw", url) == msg
    assert im.imap_urlfetch(srv.port, "bob", "bobpw", url) is None


def test_cyrus_url_must_name_servername_without_port(cyrus_imap, marker):
    srv = cyrus_imap
    msg = _message(marker)
    uv, uid = im.imap_append(srv.port, "alice", "alicepw", msg)
    rump = im.imap_url(f"localhost:{srv.port}", "alice", "INBOX", uv, uid)
    with pytest.raises(imaplib.IMAP4.error):
        im.imap_genurlauth(srv.port, "alice", "alicepw", rump)


def test_cyrus_urlfetch_as_submit_gssapi_from_client_keytab(cyrus_imap, submit_keytab,
                                                           krb5_env, marker):
    pytest.importorskip("gssapi", reason="python3-gssapi: run with /usr/bin/python3")
    srv = cyrus_imap
    msg, _, url = _cyrus_url(srv, marker)
    # no kinit: credentials come from the client keytab (MEMORY ccache)
    sasl = im.GssapiSasl(keytab=submit_keytab, principal=f"submit@{REALM}")
    m = imaplib.IMAP4("127.0.0.1", srv.port, timeout=10)
    try:
        assert "AUTH=GSSAPI" in m.capabilities
        typ, _ = m.authenticate("GSSAPI", sasl)
        assert typ == "OK"
        assert sasl.initiator == f"submit@{REALM}"
        typ, got = im.urlfetch(m, url)
        assert typ == "OK" and got == {url: msg}
    finally:
        m.logout()
    # the same through the helper; loginrealms made submit@REALM "submit"
    assert im.imap_urlfetch(srv.port, None, None, url, mech="GSSAPI",
                            keytab=submit_keytab) == msg
    assert url.split(";URLAUTH=")[0] in srv.telemetry("submit")


def test_cyrus_gssapi_alice_from_ccache(cyrus_imap, kinit, krb5_env, marker):
    pytest.importorskip("gssapi", reason="python3-gssapi: run with /usr/bin/python3")
    cc = kinit("alice")
    msg = _message(marker)
    uv, uid = im.imap_append(cyrus_imap.port, None, None, msg, mech="GSSAPI", ccache=cc)
    assert im.imap_uid_fetch(cyrus_imap.port, "alice", "alicepw", uid) == msg


def test_cyrus_wrong_password(cyrus_imap):
    with pytest.raises(imaplib.IMAP4.error):
        im.imap_connect(cyrus_imap.port, "submit", "wrong")


def test_cyrus_start_stop_leaves_nothing(kdc):
    if im.cyrus_missing():
        pytest.skip(im.cyrus_missing())
    srv = im.CyrusImap(kdc=kdc)
    d = str(srv.dir)
    try:
        srv.start()
        assert srv.startup_seconds < 5, srv.startup_seconds
        m = im.imap_connect(srv.port, "bob", "bobpw")      # an imapd busy with us
        assert len(_procs_mentioning(d)) >= 2
    finally:
        srv.cleanup()
    assert harness.wait_until(lambda: not _procs_mentioning(d), 5), _procs_mentioning(d)
    assert not harness.port_open(srv.port)
    assert not os.path.exists(d)
    try:
        m.shutdown()
    except OSError:
        pass


# ---------------------------------------------------------------- Dovecot ---

def test_dovecot_master_user_plain_authzid(dovecot_imap, marker):
    srv = dovecot_imap
    assert (srv.master_user, srv.master_password) == ("submit", "submitpw")
    assert srv.url_authority == f"localhost:{srv.port}"
    msg = _message(marker)
    uv, uid = im.imap_append(srv.port, "alice", "alicepw", msg)
    # AUTHENTICATE PLAIN  authzid=alice  authcid=submit  password=submitpw
    m = im.imap_connect(srv.port, "submit", "submitpw", mech="PLAIN", authzid="alice")
    try:
        got_uv, got = im.uid_fetch(m, uid)
        assert (got_uv, got) == (uv, msg)
    finally:
        m.logout()
    # (Dovecot's log process writes the line a moment later)
    assert harness.wait_until(lambda: "Master user logging in as alice" in srv.log(), 5), srv.log()
    # the same with LOGIN and the master user separator
    assert im.imap_uid_fetch(srv.port, "alice*submit", "submitpw", uid) == msg
    # submit also logs in as itself (its own, empty, INBOX)
    assert im.imap_uid_fetch(srv.port, "submit", "submitpw", uid) is None


def test_dovecot_authzid_only_for_master_users(dovecot_imap):
    srv = dovecot_imap
    with pytest.raises(imaplib.IMAP4.error):
        im.imap_connect(srv.port, "bob", "bobpw", mech="PLAIN", authzid="alice")
    with pytest.raises(imaplib.IMAP4.error):
        im.imap_connect(srv.port, "submit", "wrong", mech="PLAIN", authzid="alice")
    with pytest.raises(imaplib.IMAP4.error):
        im.imap_connect(srv.port, "submit", "submitpw", mech="PLAIN", authzid="nosuchuser")


def test_dovecot_gssapi_submit_with_authzid(dovecot_imap, submit_keytab, krb5_env, marker):
    pytest.importorskip("gssapi", reason="python3-gssapi: run with /usr/bin/python3")
    srv = dovecot_imap
    msg = _message(marker)
    uv, uid = im.imap_append(srv.port, "alice", "alicepw", msg)
    sasl = im.GssapiSasl(authzid="alice", keytab=submit_keytab, principal=f"submit@{REALM}")
    m = imaplib.IMAP4("127.0.0.1", srv.port, timeout=10)
    try:
        assert "AUTH=GSSAPI" in m.capabilities
        assert m.authenticate("GSSAPI", sasl)[0] == "OK"
        assert sasl.initiator == f"submit@{REALM}"
        assert im.uid_fetch(m, uid) == (uv, msg)
    finally:
        m.logout()
    # without authzid: submit itself
    m = im.imap_connect(srv.port, None, None, mech="GSSAPI", keytab=submit_keytab)
    try:
        assert im.uid_fetch(m, uid)[1] is None
    finally:
        m.logout()


def test_dovecot_gssapi_authzid_needs_k5principals(kdc, submit_keytab, krb5_env):
    """Why DovecotImap sets k5principals: GSSAPI authzid is checked by
    mech_gssapi_krb5_userok(), not by the master passdb."""
    pytest.importorskip("gssapi", reason="python3-gssapi: run with /usr/bin/python3")
    if im.dovecot_missing():
        pytest.skip(im.dovecot_missing())
    srv = im.DovecotImap(kdc=kdc, k5principals=False)
    try:
        srv.start()
        with pytest.raises(imaplib.IMAP4.error):
            im.imap_connect(srv.port, None, None, mech="GSSAPI", authzid="alice",
                            keytab=submit_keytab)
        assert harness.wait_until(
            lambda: "User not authorized to log in as alice" in srv.log(), 5), srv.log()
        # the master passdb still works for PLAIN
        im.imap_connect(srv.port, "submit", "submitpw", mech="PLAIN", authzid="alice").logout()
    finally:
        srv.cleanup()


def test_dovecot_genurlauth_own_mailbox(dovecot_imap, marker):
    srv = dovecot_imap
    assert srv.url_authority == f"localhost:{srv.port}"
    uv, uid = im.imap_append(srv.port, "alice", "alicepw", _message(marker))
    rump = im.imap_url(srv.url_authority, "alice", "INBOX", uv, uid)
    url = im.imap_genurlauth(srv.port, "alice", "alicepw", rump)
    assert re.fullmatch(re.escape(rump) + r";URLAUTH=submit\+alice:internal:[0-9a-f]{42}", url), url


@pytest.mark.slow
def test_dovecot_cross_user_urlfetch_known_broken(dovecot_imap, marker):
    """Dovecot 2.3.19: submit (imap_urlauth_submit_user) cannot URLFETCH
    alice's submit+alice URL: imap-urlauth-login panics (fixed in 2.4.0).
    If this starts passing, Debian fixed it and the proxy could use
    URLFETCH with Dovecot too.  ~4 s (Dovecot retries)."""
    srv = dovecot_imap
    msg = _message(marker)
    uv, uid = im.imap_append(srv.port, "alice", "alicepw", msg)
    url = im.imap_genurlauth(srv.port, "alice", "alicepw",
                             im.imap_url(srv.url_authority, "alice", "INBOX", uv, uid))
    m = im.imap_connect(srv.port, "submit", "submitpw", timeout=30)
    try:
        typ, got = im.urlfetch(m, url)
    finally:
        m.logout()
    assert typ == "NO" and not got
    assert harness.wait_until(lambda: "imap-urlauth-login: Panic: file sasl-server.c" in srv.log(),
        5), srv.log()


def test_dovecot_start_stop_leaves_nothing(kdc):
    if im.dovecot_missing():
        pytest.skip(im.dovecot_missing())
    srv = im.DovecotImap(kdc=kdc)
    try:
        srv.start()
        master = srv.pid
        assert srv.startup_seconds < 5, srv.startup_seconds
        m = im.imap_connect(srv.port, "bob", "bobpw")
        m.select("INBOX")
        kids = im._descendants(master)
        assert len(kids) >= 3                  # log, config, imap-login, auth, imap ...
    finally:
        srv.cleanup()
    assert harness.wait_until(lambda: not any(harness._pid_alive(p) for p, _ in kids), 5)
    assert not harness.port_open(srv.port)
    try:
        m.shutdown()
    except OSError:
        pass


# ------------------------------------------------------------ HostileImap ---

class Raw:
    """Tiny raw IMAP client for the hostile server's tests."""

    def __init__(self, port, timeout=5):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def fill(self, timeout=None):
        if timeout is not None:
            self.s.settimeout(timeout)
        d = self.s.recv(65536)
        self.buf += d
        return d

    def line(self):
        while b"\r\n" not in self.buf:
            if not self.fill():
                raise EOFError(self.buf)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def until_tagged(self, tag):
        lines = []
        while True:
            lines.append(self.line())
            if lines[-1].startswith(tag.encode() + b" "):
                return lines

    def send(self, b):
        self.s.sendall(b if isinstance(b, bytes) else b.encode())

    def login(self):
        assert self.line().startswith(b"* OK [CAPABILITY IMAP4rev1")
        self.send("a1 LOGIN submit submitpw\r\n")
        assert self.until_tagged("a1")[-1].startswith(b"a1 OK")

    def eof(self, timeout=3):
        try:
            while self.fill(timeout):
                pass
            return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


URL = "imap://alice@localhost/INBOX;UIDVALIDITY=1/;UID=1;URLAUTH=submit+alice:internal:00"
BODY = b"Subject: hostile\r\n\r\nbody\r\n"


def test_hostile_ok_urlfetch_and_uid_fetch(hostile_imap):
    h = hostile_imap("ok", body=BODY)
    assert im.imap_urlfetch(h.port, "submit", "submitpw", URL) == BODY
    assert im.imap_urlfetch(h.port, "submit", "submitpw", URL, mech="PLAIN") == BODY
    assert im.imap_uid_fetch(h.port, "submit", "submitpw", 1, mech="PLAIN",
                             authzid="alice") == BODY
    assert h.connection_count() == 3 and h.login_count() == 3
    assert h.urls() == [URL, URL]
    assert [l["mech"] for l in h.logins()] == ["LOGIN", "PLAIN", "PLAIN"]
    assert h.logins()[2]["authzid"] == "alice" and h.logins()[2]["authcid"] == "submit"
    assert "EXAMINE" in h.verbs() and "UID" in h.verbs()
    with pytest.raises(imaplib.IMAP4.error):
        im.imap_connect(h.port, "submit", "wrong")
    assert h.login_count() == 3 and len(h.logins(ok_only=False)) == 4


def test_hostile_records_pooling_sasl_ir_and_literals(hostile_imap):
    h = hostile_imap("ok", body=BODY)
    c = Raw(h.port)
    try:
        assert c.line() == (b"* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN URLAUTH] "
                            b"hostile IMAP ready")
        ir = base64.b64encode(b"alice\0submit\0submitpw").decode()
        c.send(f"a1 AUTHENTICATE PLAIN {ir}\r\n")                 # RFC 4959 SASL-IR
        assert c.until_tagged("a1")[-1].startswith(b"a1 OK")
        for i in (2, 3):                                        # one connection, 2 fetches
            c.send(f'a{i} URLFETCH "{URL}"\r\n')
            lines = c.until_tagged(f"a{i}")
            assert lines[0] == f'* URLFETCH "{URL}" {{{len(BODY)}}}'.encode()
            assert lines[-1] == f"a{i} OK URLFETCH completed".encode()
        c.send("a4 LOGOUT\r\n")
        assert c.until_tagged("a4")[-1].startswith(b"a4 OK")
    finally:
        c.close()
    assert h.connection_count() == 1 and h.login_count() == 1
    assert h.logins()[0] == {"mech": "PLAIN", "authcid": "submit", "authzid": "alice", "ok": True}
    # LOGIN with a synchronizing literal, AUTHENTICATE PLAIN without SASL-IR
    c = Raw(h.port)
    try:
        c.line()
        c.send("b1 LOGIN {6}\r\n")
        assert c.line() == b"+ go ahead"
        c.send('submit "submitpw"\r\n')
        assert c.until_tagged("b1")[-1].startswith(b"b1 OK")
    finally:
        c.close()
    c = Raw(h.port)
    try:
        c.line()
        c.send("c1 AUTHENTICATE PLAIN\r\n")
        assert c.line().startswith(b"+")
        c.send(base64.b64encode(b"\0bob\0bobpw") + b"\r\n")
        assert c.until_tagged("c1")[-1].startswith(b"c1 OK")
    finally:
        c.close()
    assert h.wait_connections(3)
    assert [(l["mech"], l["authcid"]) for l in h.logins()][1:] == [("LOGIN", "submit"),
                                                                 ("PLAIN", "bob")]


def test_hostile_huge_literal(hostile_imap):
    h = hostile_imap("huge_literal", drip_interval=0.01, huge_chunk=8192)
    c = Raw(h.port)
    try:
        c.login()
        c.send(f'a2 URLFETCH "{URL}"\r\n')
        assert c.line() == f'* URLFETCH "{URL}" {{4294967296}}'.encode()
        deadline = time.monotonic() + 5
        while len(c.buf) < 100000 and time.monotonic() < deadline:
            c.fill(5)
        assert len(c.buf) >= 100000 and b"a2 " not in c.buf
    finally:
        c.close()


def test_hostile_drip_fetch_and_greeting(hostile_imap):
    h = hostile_imap("drip", body=BODY, drip_interval=0.1)
    c = Raw(h.port)
    try:
        c.login()
        t0 = time.monotonic()
        c.send(f'a2 URLFETCH "{URL}"\r\n')
        got = b""
        while len(got) < 5:
            got += c.fill(5)
        assert len(got) <= 6 and got.startswith(b"* UR")
        assert time.monotonic() - t0 >= 0.3
    finally:
        c.close()
    g = hostile_imap("drip", drip_interval=0.1, phase="greeting")
    c = Raw(g.port)
    try:
        assert c.fill(5) == b"*"
        assert c.fill(5) == b" "
    finally:
        c.close()


def test_hostile_garbage(hostile_imap):
    h = hostile_imap("garbage")
    c = Raw(h.port)
    try:
        c.login()
        c.send(f'a2 URLFETCH "{URL}"\r\n')
        c.fill(5)
        assert c.buf.startswith(b"\x00\xff") and not c.eof(0.3)   # then silence, still open
    finally:
        c.close()
    g = hostile_imap("garbage", phase="greeting")
    c = Raw(g.port)
    try:
        c.fill(5)
        assert c.buf.startswith(b"\x00\xff")
    finally:
        c.close()


def test_hostile_disconnect_mid_literal(hostile_imap):
    h = hostile_imap("disconnect_mid_literal", body=BODY)
    c = Raw(h.port)
    try:
        c.login()
        c.send(f'a2 URLFETCH "{URL}"\r\n')
        assert c.line() == f'* URLFETCH "{URL}" {{{len(BODY)}}}'.encode()
        assert c.eof()
        assert c.buf == BODY[:len(BODY) // 2]
    finally:
        c.close()
    with pytest.raises(imaplib.IMAP4.abort):
        im.imap_urlfetch(h.port, "submit", "submitpw", URL)


def test_hostile_bye_after_login(hostile_imap):
    h = hostile_imap("bye", body=BODY)
    c = Raw(h.port)
    try:
        c.login()
        assert c.line().startswith(b"* BYE")
        assert c.eof()
    finally:
        c.close()
    assert h.login_count() == 1


def test_hostile_no_and_nil(hostile_imap):
    n = hostile_imap("no", body=BODY)
    assert im.imap_urlfetch(n.port, "submit", "submitpw", URL) is None
    c = Raw(n.port)
    try:
        c.login()
        c.send(f'a2 URLFETCH "{URL}"\r\n')
        assert c.until_tagged("a2") == [b"a2 NO URLFETCH failed (hostile test server)"]
    finally:
        c.close()
    z = hostile_imap("nil", body=BODY)
    assert im.imap_urlfetch(z.port, "submit", "submitpw", URL) is None
    c = Raw(z.port)
    try:
        c.login()
        c.send(f'a2 URLFETCH "{URL}"\r\n')
        assert c.until_tagged("a2") == [f'* URLFETCH "{URL}" NIL'.encode(),
                                        b"a2 OK URLFETCH completed"]
    finally:
        c.close()
    assert im.imap_uid_fetch(z.port, "submit", "submitpw", 1) is None


def test_hostile_hang(hostile_imap):
    h = hostile_imap("hang", body=BODY)
    c = Raw(h.port)
    try:
        c.login()
        c.send(f'a2 URLFETCH "{URL}"\r\n')
        with pytest.raises(socket.timeout):
            c.fill(0.5)
    finally:
        c.close()


def test_hostile_refuse_and_close(hostile_imap):
    r = hostile_imap("refuse")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", r.port), timeout=2)
    assert r.connection_count() == 0
    k = hostile_imap("close")
    c = Raw(k.port)
    try:
        assert c.eof() and c.buf == b""
    finally:
        c.close()
    assert k.wait_connections(1)


def test_imap_url_builder():
    assert im.imap_url("localhost", "alice", "INBOX", 17, 4) == \
        "imap://alice@localhost/INBOX;UIDVALIDITY=17/;UID=4"
    assert im.imap_url("localhost:1143", "a b", "Sent Items/x", 1, 2, section="1.TEXT",
                       expire="2030-01-01T00:00:00Z") == \
        ("imap://a%20b@localhost:1143/Sent%20Items/x;UIDVALIDITY=1/;UID=2/;SECTION=1.TEXT"
         ";EXPIRE=2030-01-01T00:00:00Z")
