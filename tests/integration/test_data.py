"""Message content: dot-stuffing, BDAT (to DATA and to CHUNKING backends),
size limits and a 10 MB message through Postfix.  The content a backend
received is compared byte for byte (after the proxy's own Received header)."""

import hashlib
import os
import base64

import pytest

import harness
from harness import check_reply as chk, crlf_to_lf, split_first_received

DOT_LINES = [b"Subject: dots", b"", b".", b"..", b"...", b".leading", b"..double",
             b"x.", b". space", b"..", b"end"]
DOT_CONTENT = b"\r\n".join(DOT_LINES) + b"\r\n"


def start(c):
    assert c.greeting().code == 220
    assert c.cmd("EHLO client.example").code == 250


def send_data(c, content, rcpts=("b@example.net",)):
    """MAIL/RCPT/DATA pipelined, then the dot-stuffed content.  Returns the
    reply after the final dot."""
    cmds = "MAIL FROM:<a@example.org>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts) + "DATA\r\n"
    c.send(cmds)
    rs = c.replies(len(rcpts) + 2)
    assert [r.code for r in rs] == [250] * (len(rcpts) + 1) + [354], rs
    c.send(harness.dot_stuff(content[:-2]) + b"\r\n.\r\n")
    return c.reply(timeout=30)


def received_and_rest(content):
    rec, rest = split_first_received(content)
    assert rec is not None, f"no Received header first: {content[:300]!r}"
    return rec, rest


# ------------------------------------------------------------ dot-stuffing ---

def test_dot_stuffing_fake_backend(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        assert send_data(c, DOT_CONTENT).code == 250
    [t] = fake.wait_transactions(1)
    assert t["mode"] == "DATA"
    _, rest = received_and_rest(t["content"])
    assert rest == DOT_CONTENT
    # and what went over the wire was stuffed exactly once
    assert bytes(t["wire"]) == harness.dot_stuff(t["content"][:-2]) + b"\r\n"


def test_dot_stuffing_smtp_sink(sink, proxy_factory, marker):
    p = proxy_factory(sink)
    content = DOT_CONTENT + marker.encode() + b"\r\n"
    with p.client() as c:
        start(c)
        assert send_data(c, content).code == 250
    [(meta, msg)] = sink.wait_for(marker)
    _, rest = received_and_rest(msg)
    assert rest == crlf_to_lf(content)


def test_dot_stuffing_postfix(postfix, proxy_factory, marker):
    p = proxy_factory(postfix)
    content = DOT_CONTENT + marker.encode() + b"\r\n"
    with p.client() as c:
        start(c)
        r = send_data(c, content)
        assert r.code == 250, r
    [(path, msg)] = postfix.wait_for(marker)
    assert harness.body_of(msg) == crlf_to_lf(content.split(b"\r\n\r\n", 1)[1])
    assert b"\nSubject: dots\n" in msg


# -------------------------------------------------------------------- BDAT ---

BDAT_CHUNKS = [b"Subject: bdat\r\n\r\nline1\r\n.\r\n",
               b".\r\n..\r\nline after\r\n",
               b"\r\n.\r\nend\r\n"]


def send_bdat(c, chunks, last_empty=True, rcpt="b@example.net"):
    """MAIL, RCPT and all chunks in one write.  Returns the replies."""
    out = f"MAIL FROM:<a@example.org>\r\nRCPT TO:<{rcpt}>\r\n".encode()
    for i, ch in enumerate(chunks):
        last = (not last_empty) and i == len(chunks) - 1
        out += f"BDAT {len(ch)}{' LAST' if last else ''}\r\n".encode() + ch
    if last_empty:
        out += b"BDAT 0 LAST\r\n"
    c.send(out)
    return c.replies(2 + len(chunks) + (1 if last_empty else 0), timeout=30)


def check_bdat_replies(rs, chunks, last_empty=True):
    assert [r.code for r in rs] == [250] * len(rs), rs
    n_mid = len(chunks) if last_empty else len(chunks) - 1
    for r, ch in zip(rs[2:2 + n_mid], chunks):
        assert r.lines[-1] == f"2.0.0 {len(ch)} octets received", r


def test_bdat_to_data_backend(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        rs = send_bdat(c, BDAT_CHUNKS)
        check_bdat_replies(rs, BDAT_CHUNKS)
        chk(c.cmd("QUIT"), 221)
    [t] = fake.wait_transactions(1)
    assert t["mode"] == "DATA"          # backend has no CHUNKING
    _, rest = received_and_rest(t["content"])
    assert rest == b"".join(BDAT_CHUNKS)
    assert bytes(t["wire"]) == harness.dot_stuff(t["content"][:-2]) + b"\r\n"


def test_bdat_last_with_data(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        rs = send_bdat(c, BDAT_CHUNKS, last_empty=False)
        check_bdat_replies(rs, BDAT_CHUNKS, last_empty=False)
    [t] = fake.wait_transactions(1)
    assert received_and_rest(t["content"])[1] == b"".join(BDAT_CHUNKS)


def test_bdat_to_smtp_sink(sink, proxy_factory, marker):
    p = proxy_factory(sink)
    chunks = BDAT_CHUNKS + [marker.encode() + b"\r\n"]
    with p.client() as c:
        start(c)
        check_bdat_replies(send_bdat(c, chunks), chunks)
    [(meta, msg)] = sink.wait_for(marker)
    assert received_and_rest(msg)[1] == crlf_to_lf(b"".join(chunks))


def test_bdat_to_chunking_backend(fake_chunking, proxy_factory):
    p = proxy_factory(fake_chunking, {"limits": {"max_bdat_chunk": "1K"}})
    big = b"".join(b"line %05d .\r\n.\r\n" % i for i in range(500))   # ~8 KB
    chunks = BDAT_CHUNKS + [big]
    with p.client() as c:
        start(c)
        check_bdat_replies(send_bdat(c, chunks), chunks)
    [t] = fake_chunking.wait_transactions(1)
    assert t["mode"] == "BDAT"
    assert received_and_rest(t["content"])[1] == b"".join(chunks)
    assert t["chunks"][-1][1] is True
    assert all(size <= 1024 for size, _ in t["chunks"]), t["chunks"]


def test_data_to_chunking_backend(fake_chunking, proxy_factory):
    p = proxy_factory(fake_chunking)
    with p.client() as c:
        start(c)
        assert send_data(c, DOT_CONTENT).code == 250
    [t] = fake_chunking.wait_transactions(1)
    assert received_and_rest(t["content"])[1] == DOT_CONTENT


def test_bdat_through_postfix(postfix, proxy_factory, marker):
    p = proxy_factory(postfix, {"limits": {"max_bdat_chunk": "16K"}})
    big = b"".join(b"%06d .\r\n.\r\n..\r\n" % i for i in range(20000))   # ~300 KB
    chunks = BDAT_CHUNKS + [big, marker.encode() + b"\r\n"]
    with p.client() as c:
        start(c)
        check_bdat_replies(send_bdat(c, chunks), chunks)
    [(path, msg)] = postfix.wait_for(marker)
    assert harness.body_of(msg) == crlf_to_lf(b"".join(chunks).split(b"\r\n\r\n", 1)[1])


def test_bdat_mixed_with_data_refused(fake, proxy_factory):
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 4\r\nab\r\n")
        assert [r.code for r in c.replies(3)] == [250, 250, 250]
        chk(c.cmd("DATA"), 503, "5.5.1", "R_SEQ_DATA_BDAT")
        chk(c.cmd("RSET"), 250, "2.0.0")
    assert fake.transactions() == []


# ------------------------------------------------------------- size limits ---

def test_mail_size_over_limit(fake, proxy_factory):
    p = proxy_factory(fake, {"limits": {"max_message_size": "100K"}})
    with p.client() as c:
        start(c)
        chk(c.cmd("MAIL FROM:<a@example.org> SIZE=200000"), 552, "5.3.4", "R_SIZE_EXCEEDED")
        chk(c.cmd("MAIL FROM:<a@example.org> SIZE=1000"), 250)


def test_data_over_limit_nothing_delivered(postfix, proxy_factory, marker):
    p = proxy_factory(postfix, {"limits": {"max_message_size": "100K"}})
    content = f"Subject: {marker}\r\n\r\n".encode() + b"y" * 70 + b"\r\n"
    content = content * 2200   # ~160 KB
    with p.client() as c:
        start(c)
        r = send_data(c, content)
        chk(r, 552, "5.3.4", "R_SIZE_EXCEEDED")
        # the session is still usable: a small message goes through
        chk(c.cmd("RSET"), 250)
        small = f"Subject: small {marker}\r\n\r\nsmall-{marker}\r\n".encode()
        assert send_data(c, small).code == 250
    postfix.wait_for(f"small-{marker}")
    assert [m for _, m in postfix.find(marker) if b"small-" not in m] == []
    assert postfix.queue_contains(f"Subject: {marker}") == []


def test_bdat_over_limit_nothing_delivered(fake_chunking, proxy_factory):
    p = proxy_factory(fake_chunking, {"limits": {"max_message_size": "100K"}})
    chunk = b"z" * 78 + b"\r\n"
    chunk = chunk * 750    # 60000 octets
    with p.client() as c:
        start(c)
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
               + b"BDAT 60000\r\n" + chunk + b"BDAT 60000\r\n" + chunk
               + b"BDAT 60000 LAST\r\n" + chunk)
        rs = c.replies(5, timeout=20)
        assert [r.code for r in rs[:3]] == [250, 250, 250], rs
        assert any(r.code == 552 and r.enhanced == "5.3.4" for r in rs[3:]), rs
        assert rs[-1].code != 250, rs
        chk(c.cmd("RSET"), 250)
    assert fake_chunking.transactions() == []


@pytest.mark.slow
def test_10mb_message_through_postfix(postfix, proxy_factory, marker):
    p = proxy_factory(postfix, {"timeouts": {"data": 30, "backend_data": 30}})
    rnd = base64.b64encode(os.urandom(7_700_000))
    body = b"\r\n".join(rnd[i:i + 76] for i in range(0, len(rnd), 76)) + b"\r\n"
    body += b".\r\n..\r\n" + marker.encode() + b"\r\n"
    content = f"Subject: big {marker}\r\n\r\n".encode() + body
    assert len(content) > 10 * 1000 * 1000
    with p.client(timeout=60) as c:
        start(c)
        r = send_data(c, content)
        assert r.code == 250, r
    [(path, msg)] = postfix.wait_for(marker, timeout=30)
    got = harness.body_of(msg)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(crlf_to_lf(body)).hexdigest()


# ----------------------------------------- large content, byte-exact, fast ---

def big_content(marker, n_lines=15000):
    """~1.2 MB of CRLF lines, some starting with dots."""
    lines = [f"Subject: big {marker}", ""]
    lines += [(".%06d " if i % 7 == 0 else "%06d ") % i + "z" * 70 for i in range(n_lines)]
    return ("\r\n".join(lines) + f"\r\n{marker}\r\n").encode()


@pytest.mark.parametrize("backend_kind", ["data", "chunking"])
def test_large_data_message_intact(fake, fake_chunking, proxy_factory, marker, backend_kind):
    fb = fake if backend_kind == "data" else fake_chunking
    p = proxy_factory(fb)
    content = big_content(marker)
    with p.client(timeout=30) as c:
        start(c)
        r = send_data(c, content)
        assert r.code == 250, r
    [t] = fb.wait_transactions(1)
    got = received_and_rest(t["content"])[1]
    assert len(got) == len(content), f"backend got {len(got)} of {len(content)} octets"
    assert got == content


@pytest.mark.parametrize("backend_kind", ["data", "chunking"])
def test_large_bdat_message_intact(fake, fake_chunking, proxy_factory, marker, backend_kind):
    fb = fake if backend_kind == "data" else fake_chunking
    p = proxy_factory(fb)
    content = big_content(marker)
    with p.client(timeout=30) as c:
        start(c)
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
               + f"BDAT {len(content)} LAST\r\n".encode() + content)
        rs = c.replies(3, timeout=30)
        assert [r.code for r in rs] == [250, 250, 250], rs
    [t] = fb.wait_transactions(1)
    got = received_and_rest(t["content"])[1]
    assert len(got) == len(content), f"backend got {len(got)} of {len(content)} octets"
    assert got == content


def test_large_message_to_smtp_sink(sink, proxy_factory, marker):
    """Same as above against a real (non-CHUNKING) server."""
    p = proxy_factory(sink)
    content = big_content(marker)
    with p.client(timeout=30) as c:
        start(c)
        assert send_data(c, content).code == 250
    got = harness.wait_until(lambda: sink.messages(), 10)
    assert got, "nothing reached smtp-sink"
    [(meta, msg)] = got
    rest = received_and_rest(msg)[1]
    assert len(rest) == len(crlf_to_lf(content)), \
        f"smtp-sink got {len(rest)} of {len(crlf_to_lf(content))} octets"
    assert rest == crlf_to_lf(content)
