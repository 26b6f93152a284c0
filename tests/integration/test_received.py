"""The Received: header the proxy prepends (RFC 5321 4.4, RFC 3848 "with")."""

import datetime
import email.utils
import re

import harness
from harness import split_first_received

RECEIVED_RE = re.compile(
    r"^Received: from (?P<helo>\S+) \(\[(?P<ip>[^\]]+)\]\)"
    r"(?: \([^)]*\))*"
    r" by (?P<by>\S+) \(msaproxy\) with (?P<with>[A-Z0-9]+) id (?P<id>[^\s;]+)"
    r"(?: for <(?P<rcpt>[^>]*)>)?"
    r"; (?P<date>.+)$")


def parse_received(content):
    """First header of content must be the proxy's Received: check its
    folding and return the regex match of its unfolded form."""
    rec, _ = split_first_received(content)
    assert rec is not None, f"first header is not Received: {content[:200]!r}"
    raw_lines = rec.split(b"\r\n")[:-1]
    assert raw_lines, rec
    for l in raw_lines[1:]:
        assert l.startswith(b"\t"), f"continuation line does not start with TAB: {rec!r}"
    for l in raw_lines:
        assert len(l) <= 998, rec
    unfolded = " ".join(l.strip().decode() for l in raw_lines)
    m = RECEIVED_RE.match(unfolded)
    assert m, f"Received header not in the expected form: {unfolded!r}"
    d = email.utils.parsedate_to_datetime(m["date"])
    assert d.tzinfo is not None, m["date"]
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - d).total_seconds()) < 300, m["date"]
    assert re.match(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} [A-Z][a-z]{2} \d{4} "
                    r"\d\d:\d\d:\d\d [+-]\d{4}", m["date"]), m["date"]
    return m


def transact(c, hello, rcpts, body=b"Subject: r\r\n\r\nhello\r\n"):
    assert c.greeting().code == 220
    assert c.cmd(hello).code == 250
    assert c.cmd("MAIL FROM:<a@example.org>").code == 250
    for r in rcpts:
        assert c.cmd(f"RCPT TO:<{r}>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(body + b".\r\n")
    return [c.reply() for _ in range(len(rcpts) if hello.startswith("LHLO") else 1)]


def test_received_ehlo_one_recipient(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        [r] = transact(c, "EHLO client.example", ["b@example.net"])
        assert r.code == 250
    [t] = fake.wait_transactions(1)
    assert t["content"].startswith(b"Received: from client.example ([127.0.0.1])\r\n\t")
    m = parse_received(t["content"])
    assert (m["helo"], m["ip"], m["by"], m["with"], m["rcpt"]) == \
        ("client.example", "127.0.0.1", "proxy.test", "ESMTP", "b@example.net")
    assert split_first_received(t["content"])[1] == b"Subject: r\r\n\r\nhello\r\n"


def test_received_two_recipients_no_for(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        transact(c, "EHLO client.example", ["b@example.net", "c@example.net"])
    [t] = fake.wait_transactions(1)
    m = parse_received(t["content"])
    assert m["rcpt"] is None
    assert b" for <" not in split_first_received(t["content"])[0]


def test_received_helo_is_smtp(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        transact(c, "HELO old.client.example", ["b@example.net"])
    [t] = fake.wait_transactions(1)
    m = parse_received(t["content"])
    assert (m["helo"], m["with"]) == ("old.client.example", "SMTP")


def test_received_lmtp_listener(fake, proxy_factory):
    p = proxy_factory(fake, {"listeners": [
        {"name": "submission", "kind": "submission"},
        {"name": "lmtp", "kind": "lmtp"}]})
    with p.client("lmtp") as c:
        rs = transact(c, "LHLO lmtp.client.example", ["b@example.net"])
        assert [r.code for r in rs] == [250]
    [t] = fake.wait_transactions(1)
    m = parse_received(t["content"])
    assert (m["helo"], m["with"], m["rcpt"]) == ("lmtp.client.example", "LMTP", "b@example.net")


def test_received_ids_differ(fake, proxy_factory):
    p = proxy_factory(fake)
    for _ in range(2):
        with p.client() as c:
            transact(c, "EHLO client.example", ["b@example.net"])
    t1, t2 = fake.wait_transactions(2)
    assert parse_received(t1["content"])["id"] != parse_received(t2["content"])["id"]


def test_received_at_postfix(postfix, proxy_factory, marker):
    """Postfix puts its own Received on top; the proxy's comes right after."""
    p = proxy_factory(postfix)
    with p.client() as c:
        [r] = transact(c, "EHLO client.example", ["b@example.net"],
                       f"Subject: {marker}\r\n\r\nx\r\n".encode())
        assert r.code == 250, r
    [(path, msg)] = postfix.wait_for(marker)
    recs = harness.header_values(msg, "Received")
    assert len(recs) == 2, recs
    assert "(Postfix)" in recs[0]
    assert RECEIVED_RE.match(recs[1]), recs[1]
