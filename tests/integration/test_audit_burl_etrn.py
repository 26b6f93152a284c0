"""Audit records of BURL fetches and ETRN requests (issue 6 with issue 4):
every fetch leaves one "burl_fetch" record (server, mailbox/UID/section,
bytes, result; the URL redacted, the URLAUTH token nowhere in the log), a
refused BURL a "burl_denied" record with the reason, the transaction's "tx"
record says BURL was used, and every ETRN leaves one "etrn" record with the
node and the reply code.
"""
import json

import harness
from pki import pki  # noqa: F401  (fixture)
from test_audit import aconf, auditdir, records, wait_for  # noqa: F401
from test_auth import sasldb  # noqa: F401  (fixture)
from test_burl import MSG, burl_conf, cyrus_server, draft, envelope, login, \
    submit_pwfile  # noqa: F401  (fixture)
from test_etrn import etrn_conf, fake_etrn, start  # noqa: F401  (fixture)


def test_burl_records(cyrus_imap, sasldb, submit_pwfile, fake_chunking,
                      proxy_factory, auditdir):
    conf = harness.deep_merge(burl_conf(
        sasldb, [cyrus_server(cyrus_imap, password_file=submit_pwfile)]),
        aconf(auditdir))
    p = proxy_factory(fake_chunking, conf)
    url = draft(cyrus_imap)
    bobs = draft(cyrus_imap, user="bob")
    with p.client() as c:
        login(c)
        envelope(c)
        c.expect(f"BURL {url} LAST", 250, "2.0.0")
        envelope(c)
        c.expect(f"BURL {bobs} LAST", 554, "5.7.1")
    [f] = wait_for(auditdir, lambda r: r["type"] == "burl_fetch")
    assert f["identity"] == "alice"
    assert f["server"] == "cyrus"
    assert f["result"] == "ok"
    assert f["bytes"] == len(MSG)
    assert f["url"].endswith(":<redacted>") or "<redacted>" in f["url"]
    assert f["uid"] > 0 and f["mailbox"] == "INBOX"
    [d] = wait_for(auditdir, lambda r: r["type"] == "burl_denied")
    assert d["identity"] == "alice" and "bob" in d["reason"]
    assert d["reply"].startswith("554 5.7.1")
    [t] = wait_for(auditdir, lambda r: r["type"] == "tx" and r["result"] == "delivered")
    assert "BURL" in json.dumps(t)
    raw = b"".join(open(f, "rb").read() for f in
                   [auditdir / "audit.log"])
    for u in (url, bobs):
        assert u.rsplit(":", 1)[1].encode() not in raw, "token in the audit log"


def test_etrn_records(pki, sasldb, fake_etrn, proxy_factory, auditdir):
    p = proxy_factory(fake_etrn, harness.deep_merge(etrn_conf(pki, sasldb),
                                                   aconf(auditdir)))
    with p.client("mx") as c:
        start(c)
        c.expect("ETRN @nowhere.example", 459, "4.7.1")
    [e] = wait_for(auditdir, lambda r: r["type"] == "etrn")
    assert e["node"] == "@nowhere.example"
    assert e["code"] == 459
    assert e["listener"] == "mx"
