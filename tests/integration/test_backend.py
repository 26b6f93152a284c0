"""Backend trouble and backend replies: down, dying or hanging mid-DATA,
garbage, rejected recipients relayed exactly, recipient limits, LMTP, and a
client that vanishes mid-DATA."""

import socket
import time

import pytest

import harness
from harness import check_reply as chk


def start(c):
    assert c.greeting().code == 220
    assert c.cmd("EHLO client.example").code == 250


def begin(c, rcpts=("b@example.net",)):
    chk(c.cmd("MAIL FROM:<a@example.org>"), 250)
    for r in rcpts:
        chk(c.cmd(f"RCPT TO:<{r}>"), 250)
    chk(c.cmd("DATA"), 354)


def no_reply_yet(c, wait=0.5):
    try:
        r = c.reply(timeout=wait)
    except socket.timeout:
        return True
    raise AssertionError(f"unexpected early reply {r.raw!r}")


# --------------------------------------------------------- backend down ---

def test_backend_down_mail_451(proxy_factory):
    port = harness.free_port()          # nothing listens there
    p = proxy_factory(f"127.0.0.1:{port}")
    with p.client() as c:
        start(c)
        chk(c.cmd("MAIL FROM:<a@example.org>"), 451, "4.4.1", "R_BACKEND_UNAVAIL")
        # the session stays usable
        chk(c.cmd("NOOP"), 250, "2.0.0")
        chk(c.cmd("QUIT"), 221, "2.0.0")


def test_backend_refuses_at_greeting(fake, proxy_factory):
    p = proxy_factory(fake)
    fake.replies["CONNECT"] = "421 4.3.2 fake.test busy, come back later"
    with p.client() as c:
        start(c)
        r = c.cmd("MAIL FROM:<a@example.org>")
        assert r.code in (421, 451) and r.enhanced and r.enhanced.startswith("4."), r


# ------------------------------------------------------ backend mid-DATA ---

def test_backend_dies_mid_data(fake, proxy_factory):
    fake.die_in_data_after = 20000
    p = proxy_factory(fake)
    line = b"x" * 98 + b"\r\n"
    with p.client() as c:
        start(c)
        begin(c)
        c.send(b"Subject: dying\r\n\r\n" + line * 1000)     # 100 KB
        # no reply before the client's final dot
        assert no_reply_yet(c, 1.0)
        c.send(line * 500 + b".\r\n")
        r = c.reply(timeout=15)
        chk(r, 451, "4.4.2")
        assert r.code != 250
    assert fake.transactions() == []


def test_backend_closes_right_after_data_354(fake, proxy_factory):
    fake.die_in_data_after = 1
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        begin(c)
        c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        chk(c.reply(timeout=15), 451, "4.4.2")
    assert fake.transactions() == []


def test_backend_dies_mid_bdat(fake_chunking, proxy_factory):
    fake_chunking.die_in_data_after = 10000
    p = proxy_factory(fake_chunking, {"limits": {"max_bdat_chunk": "4K"}})
    chunk = (b"y" * 98 + b"\r\n") * 300      # 30000
    with p.client() as c:
        start(c)
        c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
               + f"BDAT {len(chunk)}\r\n".encode() + chunk
               + f"BDAT {len(chunk)} LAST\r\n".encode() + chunk)
        rs = c.replies(4, timeout=15)
        assert [r.code for r in rs[:2]] == [250, 250], rs
        assert rs[-1].code // 100 == 4, rs
        assert rs[-1].enhanced == "4.4.2", rs
    assert fake_chunking.transactions() == []


def test_backend_hangs_mid_data(fake, proxy_factory):
    fake.hang_in_data_after = 5000
    p = proxy_factory(fake, {"timeouts": {"backend_data": 2, "backend_command": 2}})
    with p.client() as c:
        start(c)
        begin(c)
        c.send(b"Subject: hang\r\n\r\n" + (b"h" * 98 + b"\r\n") * 200 + b".\r\n")
        t0 = time.monotonic()
        r = c.reply(timeout=15)
        chk(r, 451, "4.4.2", "R_BACKEND_TIMEOUT")
        assert time.monotonic() - t0 < 10
    assert fake.transactions() == []


def test_backend_garbage_after_data(fake, proxy_factory):
    fake.garbage_after_data = b"\x00\xffHELLO? this is not SMTP\r\n"
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        begin(c)
        c.send(b"Subject: g\r\n\r\nbody\r\n.\r\n")
        chk(c.reply(timeout=15), 451, "4.4.2", "R_BACKEND_GARBAGE")


def test_backend_temp_failure_after_data_relayed(fake, proxy_factory):
    fake.data_reply = "452 4.3.1 Insufficient system storage"
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        begin(c)
        c.send(b"Subject: t\r\n\r\nbody\r\n.\r\n")
        r = c.reply(timeout=15)
        assert r.raw == b"452 4.3.1 Insufficient system storage\r\n", r


# ------------------------------------------------------ replies relayed ---

def test_backend_rcpt_reject_relayed(fake, proxy_factory):
    fake.rcpt_replies["nobody@example.net"] = \
        "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown"
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        chk(c.cmd("MAIL FROM:<a@example.org>"), 250)
        r = c.cmd("RCPT TO:<nobody@example.net>")
        assert r.raw == (b"550 5.1.1 <nobody@example.net>: Recipient address "
                         b"rejected: User unknown\r\n"), r
        chk(c.cmd("RCPT TO:<b@example.net>"), 250)
        chk(c.cmd("DATA"), 354)
        c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        assert c.reply().code == 250
    [t] = fake.wait_transactions(1)
    assert t["accepted"] == ["b@example.net"]


def test_backend_reply_without_enhanced_code_gets_one(fake, proxy_factory):
    fake.rcpt_replies["x@example.net"] = "550 no such user here"
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        chk(c.cmd("MAIL FROM:<a@example.org>"), 250)
        r = c.cmd("RCPT TO:<x@example.net>")
        assert r.code == 550 and r.enhanced and r.enhanced.startswith("5."), r
        assert "no such user here" in r.text


def test_backend_multiline_reply_relayed(fake, proxy_factory):
    fake.rcpt_replies["ml@example.net"] = ("550-5.7.1 first line\r\n"
                                           "550-5.7.1 second line\r\n"
                                           "550 5.7.1 third line")
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        chk(c.cmd("MAIL FROM:<a@example.org>"), 250)
        r = c.cmd("RCPT TO:<ml@example.net>")
        assert r.code == 550 and r.lines == ["5.7.1 first line", "5.7.1 second line",
                                             "5.7.1 third line"], r
        chk(c.cmd("NOOP"), 250)


def test_all_recipients_rejected_data_refused(fake, proxy_factory):
    fake.rcpt_replies["x@example.net"] = "550 5.1.1 no"
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        chk(c.cmd("MAIL FROM:<a@example.org>"), 250)
        chk(c.cmd("RCPT TO:<x@example.net>"), 550, "5.1.1")
        r = c.cmd("DATA")
        assert r.code in (503, 554) and r.enhanced == "5.5.1", r
        chk(c.cmd("RSET"), 250)
    assert fake.transactions() == []


def test_backend_mail_reject_relayed(fake, proxy_factory):
    fake.replies["MAIL"] = "553 5.7.1 <a@example.org>: Sender address rejected: not owned by you"
    p = proxy_factory(fake)
    with p.client() as c:
        start(c)
        r = c.cmd("MAIL FROM:<a@example.org>")
        assert r.raw == (b"553 5.7.1 <a@example.org>: Sender address rejected: "
                         b"not owned by you\r\n"), r
        chk(c.cmd("RCPT TO:<b@example.net>"), 503, "5.5.1")


def test_max_recipients(fake, proxy_factory):
    p = proxy_factory(fake, {"limits": {"max_recipients": 2}})
    with p.client() as c:
        start(c)
        chk(c.cmd("MAIL FROM:<a@example.org>"), 250)
        chk(c.cmd("RCPT TO:<r1@example.net>"), 250)
        chk(c.cmd("RCPT TO:<r2@example.net>"), 250)
        chk(c.cmd("RCPT TO:<r3@example.net>"), 452, "4.5.3", "R_TOO_MANY_RCPTS")
        chk(c.cmd("DATA"), 354)
        c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        assert c.reply().code == 250
    [t] = fake.wait_transactions(1)
    assert t["accepted"] == ["r1@example.net", "r2@example.net"]
    assert not any(b"r3@" in cmd for cmd in fake.all_commands())


# -------------------------------------------------------------------- LMTP ---

LMTP_LISTENERS = {"listeners": [{"name": "submission", "kind": "submission"},
                                {"name": "lmtp", "kind": "lmtp"}]}


def test_lmtp_listener_per_recipient_replies(fake, proxy_factory):
    fake.rcpt_replies["bad@example.net"] = "550 5.1.1 <bad@example.net>: User unknown"
    p = proxy_factory(fake, LMTP_LISTENERS)
    with p.client("lmtp") as c:
        assert c.greeting().code == 220
        chk(c.cmd("HELO client.example"), 500, "5.5.1", "R_HELO_IN_LMTP")
        r = c.cmd("LHLO client.example")
        assert r.code == 250 and "PIPELINING" in r.keywords, r
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<ok1@example.net>\r\n"
               "RCPT TO:<bad@example.net>\r\nRCPT TO:<ok2@example.net>\r\nDATA\r\n")
        rs = c.replies(5)
        assert [r.code for r in rs] == [250, 250, 550, 250, 354], rs
        assert rs[2].raw == b"550 5.1.1 <bad@example.net>: User unknown\r\n"
        c.send(b"Subject: lmtp\r\n\r\nbody\r\n.\r\n")
        finals = c.replies(2, timeout=15)
        assert [r.code for r in finals] == [250, 250], finals
        # exactly one reply per accepted recipient, nothing more
        chk(c.cmd("NOOP"), 250, "2.0.0")
    [t] = fake.wait_transactions(1)
    assert t["accepted"] == ["ok1@example.net", "ok2@example.net"]


def test_lmtp_listener_backend_lost(fake, proxy_factory):
    fake.die_in_data_after = 1
    p = proxy_factory(fake, LMTP_LISTENERS)
    with p.client("lmtp") as c:
        assert c.greeting().code == 220
        assert c.cmd("LHLO client.example").code == 250
        c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<ok1@example.net>\r\n"
               "RCPT TO:<ok2@example.net>\r\nDATA\r\n")
        assert [r.code for r in c.replies(4)] == [250, 250, 250, 354]
        c.send(b"Subject: lmtp\r\n\r\nbody\r\n.\r\n")
        finals = c.replies(2, timeout=15)
        assert all(r.code == 451 and r.enhanced == "4.4.2" for r in finals), finals


def test_lmtp_backend_per_recipient_status(proxy_factory):
    with harness.FakeBackend(lmtp=True) as fb:
        fb.lmtp_data_replies["full@example.net"] = "452 4.2.2 <full@example.net>: Mailbox full"
        p = proxy_factory(fb, {"backend": {"protocol": "lmtp"}, **LMTP_LISTENERS})
        with p.client("lmtp") as c:
            assert c.greeting().code == 220
            assert c.cmd("LHLO client.example").code == 250
            c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<ok@example.net>\r\n"
                   "RCPT TO:<full@example.net>\r\nDATA\r\n")
            assert [r.code for r in c.replies(4)] == [250, 250, 250, 354]
            c.send(b"Subject: lmtp\r\n\r\nbody\r\n.\r\n")
            finals = c.replies(2, timeout=15)
            assert finals[0].code == 250, finals
            assert finals[1].raw == b"452 4.2.2 <full@example.net>: Mailbox full\r\n", finals
        assert any(c.startswith(b"LHLO") for c in fb.all_commands())


# ---------------------------------------------------- client goes away ---

def test_client_disconnects_mid_data(postfix, proxy_factory, marker):
    p = proxy_factory(postfix)
    c = p.client()
    start(c)
    begin(c)
    c.send(f"Subject: {marker}\r\n\r\n".encode() + (b"q" * 98 + b"\r\n") * 300)
    time.sleep(0.3)
    c.close()
    time.sleep(3)
    assert postfix.find(marker) == []
    assert postfix.queue_contains(marker) == []
    # the proxy keeps serving
    assert p.running()
    with p.client() as c2:
        start(c2)
        begin(c2)
        c2.send(f"Subject: after {marker}\r\n\r\nafter-{marker}\r\n.\r\n".encode())
        assert c2.reply(timeout=15).code == 250
    postfix.wait_for(f"after-{marker}")
    assert [m for _, m in postfix.find(marker) if b"after-" not in m] == []


def test_client_disconnects_mid_bdat(fake_chunking, proxy_factory):
    p = proxy_factory(fake_chunking)
    c = p.client()
    start(c)
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nBDAT 100000\r\n"
           + b"w" * 5000)
    assert [r.code for r in c.replies(2)] == [250, 250]
    c.close()
    time.sleep(1)
    assert fake_chunking.transactions() == []
    assert p.running()
    with p.client() as c2:
        start(c2)
        chk(c2.cmd("NOOP"), 250)
