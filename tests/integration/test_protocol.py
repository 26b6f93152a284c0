"""The client side of the SMTP dialogue: greeting, EHLO, command errors,
pipelining and commands split across tiny writes.  The backend is a
FakeBackend unless the test is about capabilities learnt from a real one."""

import socket

import pytest

import harness
from harness import check_reply as chk

CORE_CAPS = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING")


def ehlo(c, name="client.example"):
    g = c.greeting()
    assert g.code == 220, g
    r = c.cmd(f"EHLO {name}")
    assert r.code == 250, r
    return r


# ------------------------------------------------------ greeting and EHLO ---

def test_greeting(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        g = c.greeting()
        assert g.raw == b"220 proxy.test ESMTP msaproxy\r\n"


def test_ehlo_capabilities_fake_with_utf8_dsn(fake, proxy_factory):
    p = proxy_factory(fake, {"limits": {"max_message_size": "100K"}})
    with p.client() as c:
        r = ehlo(c)
    assert r.lines[0].split()[0] == "proxy.test"
    for kw in CORE_CAPS:
        assert kw in r.keywords, r.raw
    assert r.cap("SIZE") == "SIZE 102400", r.raw
    assert "SMTPUTF8" in r.keywords and "DSN" in r.keywords, r.raw
    # nothing of the backend's own extensions leaks through
    for kw in ("XCLIENT", "XFORWARD", "ETRN", "VRFY", "AUTH"):
        assert kw not in r.keywords, r.raw


def test_ehlo_capabilities_backend_without_utf8_dsn(proxy_factory):
    with harness.FakeBackend(caps=["PIPELINING", "SIZE 10000000", "8BITMIME",
                                   "ENHANCEDSTATUSCODES"]) as fb:
        p = proxy_factory(fb)
        with p.client() as c:
            r = ehlo(c)
        for kw in CORE_CAPS:
            assert kw in r.keywords, r.raw
        # the proxy advertises the smaller of its own limit (default 50M) and
        # the backend's SIZE
        assert r.cap("SIZE") == "SIZE 10000000", r.raw
        assert "SMTPUTF8" not in r.keywords, r.raw
        assert "DSN" not in r.keywords, r.raw


def test_ehlo_capabilities_postfix(postfix, proxy_factory):
    p = proxy_factory(postfix, {"limits": {"max_message_size": "20M"}})
    with p.client() as c:
        r = ehlo(c)
    for kw in CORE_CAPS + ("SMTPUTF8", "DSN"):
        assert kw in r.keywords, r.raw
    assert r.cap("SIZE") == f"SIZE {20 * 1024 * 1024}", r.raw
    assert "XCLIENT" not in r.keywords and "ETRN" not in r.keywords


def test_ehlo_capabilities_smtp_sink(sink, proxy_factory):
    # smtp-sink offers DSN but neither SMTPUTF8 nor CHUNKING; the proxy still
    # offers CHUNKING to its clients (it converts BDAT to DATA)
    p = proxy_factory(sink)
    with p.client() as c:
        r = ehlo(c)
    for kw in CORE_CAPS + ("DSN",):
        assert kw in r.keywords, r.raw
    assert "SMTPUTF8" not in r.keywords, r.raw


def test_helo(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        c.greeting()
        r = c.cmd("HELO client.example")
        assert r.code == 250 and len(r.lines) == 1, r
        assert r.lines[0].split()[0] == "proxy.test"


def test_smtputf8_refused_when_backend_lacks_it(proxy_factory):
    with harness.FakeBackend(caps=["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"]) as fb:
        p = proxy_factory(fb)
        with p.client() as c:
            ehlo(c)
            r = c.cmd("MAIL FROM:<a@example.org> SMTPUTF8")
            assert r.code in (555, 501), r   # R_SMTPUTF8_UNAVAIL or unknown parameter


# ------------------------------------------------------- command replies ---

def test_simple_commands(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        ehlo(c)
        chk(c.cmd("NOOP"), 250, "2.0.0", "R_NOOP")
        chk(c.cmd("RSET"), 250, "2.0.0", "R_RSET")
        chk(c.cmd("VRFY someone"), 252, "2.5.0", "R_VRFY")
        r = c.cmd("HELP")
        assert r.code == 214, r
        chk(c.cmd("EXPN list"), 502, "5.5.1", "R_EXPN")
        chk(c.cmd("QUIT"), 221, "2.0.0", "R_BYE")
        assert c.closed(3)


def test_unknown_command(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        ehlo(c)
        chk(c.cmd("FROBNICATE now"), 500, "5.5.1", "R_UNKNOWN_CMD")
        chk(c.cmd("NOOP"), 250, "2.0.0")


def test_line_too_long(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        ehlo(c)
        # 512 octets with CRLF is the limit: 511 is fine, 513 is not
        ok = "NOOP " + "x" * (512 - 2 - 5)
        assert len(ok) + 2 == 512
        chk(c.cmd(ok), 250, "2.0.0")
        chk(c.cmd("NOOP " + "x" * 600), 500, "5.5.2", "R_LINE_TOO_LONG")
        # the session goes on, and the rest of the long line was not a command
        chk(c.cmd("NOOP"), 250, "2.0.0")
        chk(c.cmd("MAIL FROM:<" + "a" * 2000 + "@example.org>"), 500, "5.5.2", "R_LINE_TOO_LONG")
        chk(c.cmd("RSET"), 250, "2.0.0")


def test_syntax_errors(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        ehlo(c)
        r = c.cmd("MAIL FROM:foo")
        assert r.code == 501 and r.enhanced in ("5.5.4", "5.1.7"), r
        r = c.cmd("MAIL TO:<a@example.org>")
        assert r.code == 501 and r.enhanced in ("5.5.4", "5.1.7"), r
        chk(c.cmd("MAIL FROM:<a@example.org>"), 250)
        r = c.cmd("RCPT TO:bar")
        assert r.code == 501 and r.enhanced in ("5.5.4", "5.1.3"), r
        chk(c.cmd("RCPT TO:<b@example.net> FOO=bar"), 555, "5.5.4", "R_PARAM_UNKNOWN")
        chk(c.cmd("RSET"), 250)
        # replies to EHLO/HELO may omit the enhanced code (RFC 2034)
        assert c.cmd("EHLO").code == 501


def test_unknown_mail_parameter(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        ehlo(c)
        chk(c.cmd("MAIL FROM:<a@example.org> XYZZY=1"), 555, "5.5.4", "R_PARAM_UNKNOWN")


def test_sequence_errors(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        c.greeting()
        chk(c.cmd("MAIL FROM:<a@example.org>"), 503, "5.5.1", "R_SEQ_HELO")
        chk(c.cmd("EHLO client.example"), 250)
        chk(c.cmd("RCPT TO:<b@example.net>"), 503, "5.5.1", "R_SEQ_NEED_MAIL")
        chk(c.cmd("DATA"), 503, "5.5.1")
        chk(c.cmd("MAIL FROM:<a@example.org>"), 250)
        chk(c.cmd("MAIL FROM:<a@example.org>"), 503, "5.5.1", "R_SEQ_NESTED_MAIL")
        chk(c.cmd("DATA"), 503, "5.5.1", "R_SEQ_NEED_RCPT")
        chk(c.cmd("BDAT 0 LAST"), 503, "5.5.1")
        chk(c.cmd("RSET"), 250, "2.0.0")
        chk(c.cmd("NOOP"), 250, "2.0.0")
    assert fake.transactions() == []


def test_lhlo_on_smtp_listener(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        c.greeting()
        chk(c.cmd("LHLO client.example"), 500, "5.5.1", "R_LHLO_IN_SMTP")


def test_max_bad_commands(fake, proxy_factory):
    p = proxy_factory(fake, {"limits": {"max_bad_commands": 3}})
    with p.client() as c:
        ehlo(c)
        codes = []
        for i in range(6):
            try:
                r = c.cmd(f"BOGUS{i}")
            except (EOFError, ConnectionError):
                break
            codes.append(r)
            if r.code == 421:
                break
        assert codes[-1].code == 421 and codes[-1].enhanced == "4.7.0", codes
        chk(codes[-1], 421, "4.7.0", "R_TOO_MANY_ERRORS")
        # 421 on the 3rd or at the latest the 4th bad command
        assert len(codes) in (3, 4), codes
        assert all(r.code == 500 for r in codes[:-1]), codes
        assert c.closed(3)


def test_quit_closes(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        ehlo(c)
        r = c.cmd("QUIT")
        assert r.raw == b"221 2.0.0 Bye\r\n"
        assert c.closed(3)


# ------------------------------------------------------------ pipelining ---

def test_pipelined_transaction(fake, proxy_factory, marker):
    p = proxy_factory(fake)
    with p.client() as c:
        ehlo(c)
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
               "RCPT TO:<c@example.net>\r\nDATA\r\n")
        rs = c.replies(4)
        assert [r.code for r in rs] == [250, 250, 250, 354], rs
        c.send(f"Subject: pipelined\r\n\r\n{marker}\r\n.\r\n")
        assert c.reply().code == 250
        chk(c.cmd("QUIT"), 221, "2.0.0")
    [t] = fake.wait_transactions(1)
    assert t["accepted"] == ["b@example.net", "c@example.net"]
    assert marker.encode() in t["content"]


def test_pipelined_ehlo_and_everything(fake, proxy_factory, marker):
    """A client that pipelines a whole session in one write (greeting first)."""
    p = proxy_factory(fake)
    with p.client() as c:
        assert c.greeting().code == 220
        c.send("EHLO client.example\r\nMAIL FROM:<a@example.org>\r\n"
               "RCPT TO:<b@example.net>\r\nDATA\r\n")
        rs = c.replies(4)
        assert [r.code for r in rs] == [250, 250, 250, 354], rs
        c.send(f"Subject: x\r\n\r\n{marker}\r\n.\r\nQUIT\r\n")
        assert c.reply().code == 250
        chk(c.reply(), 221, "2.0.0")
    assert marker.encode() in fake.wait_transactions(1)[0]["content"]


def test_pipelined_across_transactions(fake, proxy_factory, marker):
    p = proxy_factory(fake)
    with p.client() as c:
        ehlo(c)
        c.send("RSET\r\nNOOP\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
        rs = c.replies(5)
        assert [r.code for r in rs] == [250, 250, 250, 250, 354], rs
        # end of message 1 + all of transaction 2 up to DATA in one write
        c.send(f"Subject: one\r\n\r\n{marker}-1\r\n.\r\n"
               "MAIL FROM:<a@example.org>\r\nRCPT TO:<bad syntax\r\nRCPT TO:<c@example.net>\r\n"
               "NOOP\r\nDATA\r\n")
        rs = c.replies(6)
        assert [r.code for r in rs] == [250, 250, 501, 250, 250, 354], rs
        c.send(f"Subject: two\r\n\r\n{marker}-2\r\n.\r\nRSET\r\nMAIL FROM:<d@example.org>\r\n"
               "RCPT TO:<e@example.net>\r\nDATA\r\n")
        rs = c.replies(5)
        assert [r.code for r in rs] == [250, 250, 250, 250, 354], rs
        c.send(f"Subject: three\r\n\r\n{marker}-3\r\n.\r\nQUIT\r\n")
        assert c.reply().code == 250
        assert c.reply().code == 221
    ts = fake.wait_transactions(3)
    assert [t["accepted"] for t in ts] == [["b@example.net"], ["c@example.net"], ["e@example.net"]]
    for i, t in enumerate(ts, 1):
        assert f"{marker}-{i}\r\n".encode() in t["content"]


def test_pipelined_reply_order_with_local_errors(fake, proxy_factory):
    """Replies made locally (syntax errors) must not overtake replies still
    waiting for the backend (RFC 2920 3.1: replies in command order)."""
    p = proxy_factory(fake)
    with p.client() as c:
        ehlo(c)
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:bad\r\n"
               "RCPT TO:<c@example.net>\r\nFOO\r\nNOOP\r\nRSET\r\n")
        rs = c.replies(7)
        assert [r.code for r in rs] == [250, 250, 501, 250, 500, 250, 250], rs


def test_long_pipeline_beyond_max_pipelined(fake, proxy_factory):
    p = proxy_factory(fake, {"limits": {"max_pipelined": 8}})
    with p.client() as c:
        ehlo(c)
        n = 300
        c.send("".join("NOOP\r\n" if i % 2 else "RSET\r\n" for i in range(n)))
        rs = c.replies(n, timeout=15)
        assert all(r.code == 250 for r in rs)
        assert [r.raw for r in rs[:2]] == [b"250 2.0.0 Reset state\r\n", b"250 2.0.0 OK\r\n"] \
            or all(r.enhanced == "2.0.0" for r in rs)
        chk(c.cmd("NOOP"), 250, "2.0.0")


def test_one_byte_writes(fake, proxy_factory, marker):
    p = proxy_factory(fake)
    with p.client() as c:
        assert c.greeting().code == 220
        for line, code in (("EHLO client.example", 250), ("MAIL FROM:<a@example.org>", 250),
                           ("RCPT TO:<b@example.net>", 250), ("DATA", 354)):
            c.send_slowly(line + "\r\n")
            r = c.reply()
            assert r.code == code, (line, r)
        content = f"Subject: tiny\r\n\r\n..dot line\r\n{marker}\r\n".encode()
        c.send_slowly(content + b".\r\n")
        assert c.reply().code == 250
        c.send_slowly("QUIT\r\n")
        assert c.reply().code == 221
    [t] = fake.wait_transactions(1)
    assert t["content"].endswith(f"Subject: tiny\r\n\r\n.dot line\r\n{marker}\r\n".encode())


def test_one_byte_writes_bdat(fake, proxy_factory, marker):
    p = proxy_factory(fake)
    with p.client() as c:
        ehlo(c)
        body = f"Subject: tiny bdat\r\n\r\n{marker}\r\n".encode()
        c.send_slowly(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
                      + f"BDAT {len(body)} LAST\r\n".encode() + body)
        rs = c.replies(3)
        assert [r.code for r in rs] == [250, 250, 250], rs
    [t] = fake.wait_transactions(1)
    assert t["content"].endswith(body)


def test_many_sessions_sequentially(fake, proxy_factory):
    p = proxy_factory(fake)
    for _ in range(30):
        with p.client() as c:
            ehlo(c)
            chk(c.cmd("QUIT"), 221)
    assert p.running()


def test_idle_command_timeout(fake, proxy_factory):
    p = proxy_factory(fake, {"timeouts": {"command": 2}})
    with p.client() as c:
        ehlo(c)
        r = c.reply(timeout=6)
        chk(r, 421, "4.4.2", "R_TIMEOUT")
        assert c.closed(3)
