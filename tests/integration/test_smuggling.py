"""SMTP smuggling (CVE-2023-51766 class): bare LF/CR tricks inside DATA
must never end the message early at the backend.

The attack bytes are sent raw (not dot-stuffed by the test), followed by the
real end of data.  With bare_newline = "reject" the message is refused after
the real end with 550 5.6.0 and nothing is delivered; with "normalize" it is
delivered as ONE message in which the smuggled commands are plain content."""

import re
import time

import pytest

import harness
from harness import check_reply as chk

SEPARATORS = {"lf-dot-lf": b"\n.\n", "crlf-dot-lf": b"\r\n.\n", "lf-dot-crlf": b"\n.\r\n"}


def attack(marker, sep):
    smuggled = (f"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.net>\r\n"
                f"DATA\r\nSubject: smuggled-{marker}\r\n\r\nsmuggled body\r\n").encode()
    return (f"Subject: legit-{marker}\r\n\r\nlegit body".encode() + sep + smuggled
            + b".\r\n")     # + the real end: the smuggled part ended with CRLF


def run(c, payload):
    assert c.greeting().code == 220
    assert c.cmd("EHLO client.example").code == 250
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    assert [r.code for r in c.replies(3)] == [250, 250, 354]
    c.send(payload)
    r = c.reply(timeout=15)
    # nothing else may follow: the smuggled commands were content
    try:
        extra = c.reply(timeout=0.5)
    except Exception:
        extra = None
    assert extra is None, f"extra reply after the message: {extra!r}"
    return r


@pytest.mark.parametrize("sep", list(SEPARATORS.values()), ids=list(SEPARATORS))
def test_smuggling_rejected(postfix, proxy_factory, marker, sep):
    p = proxy_factory(postfix, {"bare_newline": "reject"})
    with p.client() as c:
        r = run(c, attack(marker, sep))
        chk(r, 550, "5.6.0", "R_BARE_NEWLINE")
        chk(c.cmd("NOOP"), 250)
    time.sleep(2)
    assert postfix.find(marker) == []
    assert postfix.queue_contains(marker) == []


@pytest.mark.parametrize("sep", list(SEPARATORS.values()), ids=list(SEPARATORS))
def test_smuggling_normalized(postfix, proxy_factory, marker, sep):
    p = proxy_factory(postfix, {"bare_newline": "normalize"})
    with p.client() as c:
        r = run(c, attack(marker, sep))
        assert r.code == 250, r
    [(path, msg)] = postfix.wait_for(f"legit-{marker}")
    time.sleep(1.5)
    # exactly one message carries the marker: no second (smuggled) message
    assert len(postfix.find(marker)) == 1
    assert harness.header_values(msg, "Subject") == [f"Subject: legit-{marker}"]
    body = harness.body_of(msg)
    # the smuggled commands are content of the one message
    assert body.split(b"\n", 2)[0] == b"legit body", body
    assert body.split(b"\n", 2)[2] == (
        f"MAIL FROM:<evil@example.org>\nRCPT TO:<victim@example.net>\n"
        f"DATA\nSubject: smuggled-{marker}\n\nsmuggled body\n").encode(), body
    assert b"victim@example.net" not in msg.split(b"\n\n", 1)[0]


@pytest.mark.parametrize("sep", list(SEPARATORS.values()), ids=list(SEPARATORS))
def test_normalize_keeps_the_dot_line(fake, proxy_factory, marker, sep):
    """Under normalize, a line of one '.' followed by a bare LF is content
    (it is no terminator): the '.' must survive, whichever side the bare LF
    is on, as it does for LF.LF."""
    p = proxy_factory(fake, {"bare_newline": "normalize"})
    with p.client() as c:
        r = run(c, attack(marker, sep))
        assert r.code == 250, r
    [t] = fake.wait_transactions(1)
    assert b"legit body\r\n.\r\nMAIL FROM:<evil@example.org>\r\n" in t["content"], t["content"]


def test_smuggling_normalized_wire_has_no_bare_lf(fake, proxy_factory, marker):
    p = proxy_factory(fake, {"bare_newline": "normalize"})
    with p.client() as c:
        r = run(c, attack(marker, b"\n.\n") )
        assert r.code == 250, r
    [t] = fake.wait_transactions(1)
    wire = bytes(t["wire"])
    assert re.search(rb"(?<!\r)\n", wire) is None, "bare LF sent to the backend"
    assert re.search(rb"\r(?!\n)", wire) is None, "bare CR sent to the backend"
    assert b"\r\n..\r\nMAIL FROM:<evil@example.org>\r\n" in wire
    assert len(fake.transactions()) == 1


def test_bare_cr_rejected(fake, proxy_factory, marker):
    p = proxy_factory(fake, {"bare_newline": "reject"})
    with p.client() as c:
        r = run(c, f"Subject: {marker}\r\n\r\nfoo\rbar\r\n.\r\n".encode())
        chk(r, 550, "5.6.0", "R_BARE_NEWLINE")
    assert fake.transactions() == []


def test_smuggling_in_bdat_rejected(fake, proxy_factory, marker):
    """BDAT content is raw, but a bare LF is still a bare LF."""
    p = proxy_factory(fake, {"bare_newline": "reject"})
    body = attack(marker, b"\n.\n")[:-3]
    with p.client() as c:
        assert c.greeting().code == 220
        assert c.cmd("EHLO client.example").code == 250
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
               + f"BDAT {len(body)} LAST\r\n".encode() + body)
        rs = c.replies(3, timeout=15)
        assert [r.code for r in rs[:2]] == [250, 250]
        chk(rs[2], 550, "5.6.0", "R_BARE_NEWLINE")
    assert fake.transactions() == []
