"""The named limits of rate_limits (proxy/rate_limits.h, docs/LIMITS.md),
end to end: each limit's exact reply and the log line that names it, with
the counters in memory and in a real redis-server shared by two msaproxy
instances.

What must hold:
  - each limit refuses with its own reply (451 4.7.1 for a rate, 421 4.7.0
    for a connection cap, then the connection closes; 554 5.7.1 for a URL
    resolved too often) and logs "limit <name> exceeded by <who>";
  - url_reuse (RFC 4468 section 8): the same URL, however it is spelled,
    resolves 5 times (the default); the 6th BURL gets 554 5.7.1; a
    transaction that did not complete (RSET, the backend's 451) counts
    nothing;
  - with Redis: a limit reached through one instance holds in the other;
    commands waiting for Redis keep their PIPELINING order; Redis down or
    hanging means each limit's on_redis_error: "open" lets the action pass,
    "closed" refuses it with 451 4.3.0 (421 4.3.0 at connect), within the
    configured timeouts;
  - Redis holds no URL and no token: only keyed hashes.
"""
import copy
import os
import re
import signal
import time

import pytest

import harness
import imap_servers as ims
import sasl_client
from test_auth import USERS, sasldb  # noqa: F401  (fixture)
from test_burl import HURL, MSG, hostile_conf, submit_pwfile  # noqa: F401

BODY = b"Subject: limits\r\n\r\nhello\r\n"


def limits_conf(sasldb, limits=None, **more):
    conf = {
        "sasl": {"sasldb_path": str(sasldb), "hostname": "localhost",
                 "mechanisms": "SCRAM-SHA-256", "sender_domains": "example.org",
                 "failure_delay_ms": 0},
        "listeners": [{"name": "submission", "kind": "submission",
                       "require_auth": True}],
        "rate_limits": dict(limits or {}),
    }
    harness.deep_merge(conf, more)
    return conf


def login(c, user="alice", pw=None, greeting=True):
    if greeting:
        assert c.reply().code == 220
    c.expect("EHLO client.example", 250)
    return sasl_client.auth_scram_sha256(c, user, pw if pw is not None else USERS[user])


def send(c, rcpts=("bob@example.net",), sender="alice@example.org", body=BODY):
    c.expect(f"MAIL FROM:<{sender}>", 250)
    for r in rcpts:
        c.expect(f"RCPT TO:<{r}>", 250)
    c.expect("DATA", 354)
    c.send(harness.dot_stuff(body[:-2]) + b"\r\n.\r\n")
    return c.reply()


def wait_log(p, pattern, timeout=5):
    rx = re.compile(pattern)
    got = harness.wait_until(lambda: rx.search(p.log()), timeout)
    assert got, f"no log line matching {pattern!r}\n--- log ---\n{p.log()[-3000:]}"
    return got


# ------------------------------------------------------------ in memory


def test_messages_per_identity(sasldb, fake_chunking, proxy_factory, expect):
    p = proxy_factory(fake_chunking, limits_conf(sasldb, {
        "messages_per_identity": {"max": 2, "window": 3600}}))
    with p.client() as c:
        assert login(c).code == 235
        assert send(c).code == 250
        assert send(c).code == 250
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 451, "4.7.1",
               "R_LIMIT_MESSAGES")
        # pipelined behind it: the replies keep their order
        c.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\n"
               "DATA\r\nNOOP\r\n")
        r = c.replies(4)
        assert [x.code for x in r] == [451, 503, 503, 250], r
    wait_log(p, r"limit messages_per_identity exceeded by alice: 2 of 2 per 3600 s")
    # another identity has its own count
    with p.client() as c:
        assert login(c, "bob").code == 235
        assert send(c, sender="bob@example.org").code == 250
    assert len(fake_chunking.transactions()) == 3


def test_recipients_per_identity(sasldb, fake_chunking, proxy_factory, expect):
    p = proxy_factory(fake_chunking, limits_conf(sasldb, {
        "recipients_per_identity": {"max": 3}}))
    with p.client() as c:
        assert login(c).code == 235
        assert send(c, rcpts=("a@example.net", "b@example.net")).code == 250
        c.expect("MAIL FROM:<alice@example.org>", 250)
        c.expect("RCPT TO:<c@example.net>", 250)
        expect(c.cmd("RCPT TO:<d@example.net>"), 451, "4.7.1", "R_LIMIT_RECIPIENTS")
        # pipelined RCPTs behind an accepted one: refused in order
        c.send("RCPT TO:<e@example.net>\r\nRCPT TO:<f@example.net>\r\nNOOP\r\n")
        assert [x.code for x in c.replies(3)] == [451, 451, 250]
        c.expect("DATA", 354)
        c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        assert c.reply().code == 250
        # three recipients delivered: no room for another message
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 451, "4.7.1",
               "R_LIMIT_RECIPIENTS")
    wait_log(p, r"limit recipients_per_identity exceeded by alice: 3 of 3 per 3600 s")


def test_bytes_per_identity(sasldb, fake_chunking, proxy_factory, expect):
    p = proxy_factory(fake_chunking, limits_conf(sasldb, {
        "bytes_per_identity": {"max": "2K", "window": 600}}))
    with p.client() as c:
        assert login(c).code == 235
        # SIZE= that would pass the limit is refused at MAIL
        expect(c.cmd("MAIL FROM:<alice@example.org> SIZE=5000"), 451, "4.7.1",
               "R_LIMIT_BYTES")
        # a message that crosses the limit is delivered ...
        big = b"Subject: big\r\n\r\n" + b"x" * 70 + (b"\r\n" + b"y" * 70) * 40 + b"\r\n"
        assert send(c, body=big).code == 250
        # ... and the next one is refused
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 451, "4.7.1",
               "R_LIMIT_BYTES")
    wait_log(p, r"limit bytes_per_identity exceeded by alice: \d+ of 2048 per 600 s")


def test_sessions_per_identity(sasldb, fake_chunking, proxy_factory, expect):
    p = proxy_factory(fake_chunking, limits_conf(sasldb, {
        "sessions_per_identity": {"max": 1}}))
    c1 = p.client()
    assert login(c1).code == 235
    with p.client() as c2:
        r = login(c2)
        expect(r, 421, "4.7.0", "R_LIMIT_SESSIONS")
        assert c2.closed()
    wait_log(p, r"limit sessions_per_identity exceeded by alice: 1 of 1 at once")
    # another identity may
    with p.client() as c3:
        assert login(c3, "bob").code == 235
    # the first session ends: its place is free again
    c1.expect("QUIT", 221)
    c1.close()
    with p.client() as c4:
        r = harness.wait_until(lambda: login(c4).code == 235 or None, 1)
        assert r
        assert send(c4).code == 250


def test_auth_failures_per_identity(sasldb, fake_chunking, proxy_factory, expect):
    p = proxy_factory(fake_chunking, limits_conf(sasldb, {
        "auth_failures_per_identity": {"max": 2, "window": 600}}))
    with p.client() as c:
        assert login(c, pw="wrong").code == 535
        assert sasl_client.auth_scram_sha256(c, "alice", "wrong").code == 535
        # the right password now: the identity is locked
        r = sasl_client.auth_scram_sha256(c, "alice", "alicepw")
        expect(r, 451, "4.7.1", "R_LIMIT_AUTH_IDENTITY")
        # not authenticated: MAIL needs AUTH
        c.expect("MAIL FROM:<alice@example.org>", 530, "5.7.0")
        # another identity from the same address is not locked
        assert sasl_client.auth_scram_sha256(c, "bob", "bobpw").code == 235
    wait_log(p, r"limit auth_failures_per_identity exceeded by alice: 2 of 2 per 600 s")
    with p.client() as c:
        r = login(c)
        expect(r, 451, "4.7.1", "R_LIMIT_AUTH_IDENTITY")


def test_auth_failures_per_address(sasldb, fake_chunking, proxy_factory, expect):
    p = proxy_factory(fake_chunking, limits_conf(sasldb, {
        "auth_failures_per_address": {"max": 2, "window": 600}}))
    with p.client() as c:
        assert login(c, pw="wrong").code == 535
        assert sasl_client.auth_scram_sha256(c, "bob", "wrong").code == 535
        # refused before any SASL exchange, whoever it is
        expect(c.cmd("AUTH SCRAM-SHA-256"), 451, "4.7.1", "R_LIMIT_AUTH_ADDRESS")
    with p.client() as c:
        r = login(c)
        expect(r, 451, "4.7.1", "R_LIMIT_AUTH_ADDRESS")
    wait_log(p, r"limit auth_failures_per_address exceeded by 127\.0\.0\.1: "
                r"2 of 2 per 600 s")


def test_connections_per_address(sasldb, fake_chunking, proxy_factory, expect):
    p = proxy_factory(fake_chunking, limits_conf(sasldb, {
        "connections_per_address": {"max": 2}}))
    c1, c2 = p.client(), p.client()
    assert c1.reply().code == 220
    assert c2.reply().code == 220
    with p.client() as c3:
        expect(c3.reply(), 421, "4.7.0", "R_LIMIT_CONNECTIONS")
        assert c3.closed()
    wait_log(p, r"limit connections_per_address exceeded by 127\.0\.0\.1: "
                r"2 of 2 at once")
    c1.expect("QUIT", 221)
    c1.close()
    time.sleep(0.3)
    with p.client() as c4:
        assert c4.reply().code == 220
    c2.close()


def test_connection_rate_per_address_slides(sasldb, fake_chunking, proxy_factory,
                                            expect):
    p = proxy_factory(fake_chunking, limits_conf(sasldb, {
        "connection_rate_per_address": {"max": 2, "window": 2}}))
    time.sleep(2.2)     # the harness's own probes of the port are forgotten
    for _ in range(2):
        with p.client() as c:
            assert c.reply().code == 220
    with p.client() as c:
        expect(c.reply(), 421, "4.7.0", "R_LIMIT_CONNECTION_RATE")
        assert c.closed()
    wait_log(p, r"limit connection_rate_per_address exceeded by 127\.0\.0\.1: "
                r"3 of 2 per 2 s")
    # refused attempts count too; once the window has passed, welcome again
    time.sleep(2.2)
    with p.client() as c:
        assert c.reply().code == 220


# ------------------------------------------------------------ shared by the workers
#
# In memory the counters are one region the master maps before it forks
# (proxy/limits_store.h): a limit holds once per instance, not once per
# worker.  The kernel spreads connections over the workers (SO_REUSEPORT);
# each test sees from the log which worker serves which connection and
# makes both of them take part.


def worker_of(p, c, timeout=5):
    """(worker index, pid) of the worker serving client c."""
    port = c.sock.getsockname()[1]
    rx = re.compile(r"\[(\d+)\] worker (\d+): \w+: \S+: connect from "
                    r"127\.0\.0\.1:%d " % port)
    m = harness.wait_until(lambda: rx.search(p.log()), timeout)
    assert m, f"no connect line for port {port}\n{p.log()[-3000:]}"
    return int(m.group(2)), int(m.group(1))


def client_on(p, worker, tries=100):
    """A client served by worker `worker`, its greeting (220) read; others
    are closed (QUIT) on the way."""
    for _ in range(tries):
        c = p.client()
        r = c.reply()
        if worker_of(p, c)[0] == worker and r.code == 220:
            return c
        if r.code == 220:
            c.expect("QUIT", 221)
        c.close()
    pytest.fail(f"no connection reached worker {worker} in {tries} tries")


def greeted(p, timeout=3):
    """A client that got its 220 (connections refused meanwhile: retried)."""
    def attempt():
        c = p.client()
        if c.reply().code == 220:
            return c
        c.close()
        return None
    c = harness.wait_until(attempt, timeout)
    assert c, "no 220 greeting"
    return c


def two_workers_conf(sasldb, limits):
    return limits_conf(sasldb, limits, workers=2)


def test_workers_share_messages_per_identity(sasldb, fake_chunking, proxy_factory,
                                             expect):
    """5 messages a minute for alice, through two workers: exactly 5 are
    taken, whichever worker serves, and the 6th is refused by both."""
    p = proxy_factory(fake_chunking, two_workers_conf(sasldb, {
        "messages_per_identity": {"max": 5, "window": 60}}))
    for i in range(5):
        with client_on(p, i % 2) as c:
            assert login(c, greeting=False).code == 235
            assert send(c).code == 250, i
            c.expect("QUIT", 221)
    for w in (1, 0):
        with client_on(p, w) as c:
            assert login(c, greeting=False).code == 235
            expect(c.cmd("MAIL FROM:<alice@example.org>"), 451, "4.7.1",
                   "R_LIMIT_MESSAGES")
    assert len(fake_chunking.transactions()) == 5
    log = p.log()
    # both workers refused, having delivered 2 and 3 themselves
    for w in (0, 1):
        assert re.search(r"worker %d: \w+: \S+: limit messages_per_identity "
                         r"exceeded by alice: 5 of 5 per 60 s" % w, log), log[-3000:]
    assert "rate_limits: counters in shared memory: 1 limit(s)" in log


def test_workers_share_connections_per_address(sasldb, fake_chunking,
                                               proxy_factory, expect):
    """3 connections at once from 127.0.0.1, held through both workers: a
    4th is refused by either worker, though neither holds 3 itself."""
    p = proxy_factory(fake_chunking, two_workers_conf(sasldb, {
        "connections_per_address": {"max": 3}}))
    held = [client_on(p, 0), client_on(p, 1)]
    held.append(greeted(p))
    # refused: by each worker, every time
    refused_by = set()
    for _ in range(60):
        with p.client() as c:
            expect(c.reply(), 421, "4.7.0", "R_LIMIT_CONNECTIONS")
            assert c.closed()
            refused_by.add(worker_of(p, c)[0])
        if refused_by == {0, 1}:
            break
    assert refused_by == {0, 1}
    wait_log(p, r"limit connections_per_address exceeded by 127\.0\.0\.1: "
                r"3 of 3 at once")
    # one goes: one more may come, through either worker
    held.pop(0).expect("QUIT", 221)
    held.append(greeted(p))
    with p.client() as c:
        expect(c.reply(), 421, "4.7.0", "R_LIMIT_CONNECTIONS")
    for c in held:
        c.close()


def test_workers_share_sessions_per_identity(sasldb, fake_chunking, proxy_factory,
                                            expect):
    """One session at once for alice: held through worker 0, a second one
    through worker 1 is refused; once the first ends, worker 1 admits."""
    p = proxy_factory(fake_chunking, two_workers_conf(sasldb, {
        "sessions_per_identity": {"max": 1}}))
    c0 = client_on(p, 0)
    assert login(c0, greeting=False).code == 235
    with client_on(p, 1) as c1:
        expect(login(c1, greeting=False), 421, "4.7.0", "R_LIMIT_SESSIONS")
        assert c1.closed()
    wait_log(p, r"worker 1: \w+: \S+: limit sessions_per_identity exceeded by "
                r"alice: 1 of 1 at once")
    c0.expect("QUIT", 221)
    c0.close()
    def admitted():
        with client_on(p, 1) as c:
            return login(c, greeting=False).code == 235 or None
    assert harness.wait_until(admitted, 3)


def test_reload_generations_share_the_counters(sasldb, fake_chunking,
                                              proxy_factory, expect):
    """A SIGHUP forks a new generation of workers into the other bank of
    slots; it counts in the same region: what the old generation counted
    still counts, and the sessions it still serves (draining) hold their
    places in the cap until they end."""
    p = proxy_factory(fake_chunking, two_workers_conf(sasldb, {
        "messages_per_identity": {"max": 3, "window": 60},
        "connections_per_address": {"max": 3}}))
    for _ in range(2):
        with greeted(p) as c:
            assert login(c, greeting=False).code == 235
            assert send(c).code == 250
            c.expect("QUIT", 221)
    old = [greeted(p), greeted(p)]
    old_pids = {worker_of(p, c)[1] for c in old}
    p.signal(signal.SIGHUP)
    wait_log(p, r"SIGHUP: generation 2: 2 new worker\(s\); 2 draining")
    time.sleep(0.5)     # the old generation has stopped accepting
    new = greeted(p)
    assert worker_of(p, new)[1] not in old_pids
    assert login(new, greeting=False).code == 235
    assert send(new).code == 250
    expect(new.cmd("MAIL FROM:<alice@example.org>"), 451, "4.7.1",
           "R_LIMIT_MESSAGES")
    with p.client() as c:
        expect(c.reply(), 421, "4.7.0", "R_LIMIT_CONNECTIONS")
        assert worker_of(p, c)[1] not in old_pids
    # the old sessions end, the old generation exits: two places free
    for c in old:
        c.expect("QUIT", 221)
        c.close()
    # both gone (a worker still exiting when the test ends would get the
    # shutdown's SIGTERM: slow under valgrind)
    assert harness.wait_until(lambda: len(re.findall(
        r"of the previous generation drained, exited 0", p.log())) == 2 or None,
        10 * (harness.VALGRIND_SLOWDOWN if harness.VALGRIND else 1)), p.log()[-3000:]
    more = [greeted(p), greeted(p)]
    with p.client() as c:
        expect(c.reply(), 421, "4.7.0", "R_LIMIT_CONNECTIONS")
    for c in more + [new]:
        c.close()


def test_worker_killed_gives_back_its_connections(sasldb, fake_chunking,
                                                  proxy_factory, expect):
    """A worker killed with sessions counted (kill -9: no cleanup of its
    own) does not leave them counted: the master gives them back when it
    reaps it, and the cap admits up to its maximum again."""
    p = proxy_factory(fake_chunking, two_workers_conf(sasldb, {
        "connections_per_address": {"max": 4}}))
    doomed = [client_on(p, 0), client_on(p, 0), client_on(p, 0)]
    survivor = client_on(p, 1)
    with p.client() as c:
        expect(c.reply(), 421, "4.7.0", "R_LIMIT_CONNECTIONS")
    _, pid = worker_of(p, doomed[0])
    os.kill(pid, signal.SIGKILL)
    for c in doomed:
        assert c.closed(), "the killed worker's sessions end"
    wait_log(p, r"master: \w+: worker 0 \(pid %d\) killed by signal 9, "
                r"restarting" % pid)
    wait_log(p, r"rate_limits: worker slot 0: 3 concurrency entries of its "
                r"sessions given back")
    # the survivor's session still counts: 3 more, not 4
    fresh = []
    for _ in range(3):
        c = p.client()
        assert c.reply().code == 220
        fresh.append(c)
    with p.client() as c:
        expect(c.reply(), 421, "4.7.0", "R_LIMIT_CONNECTIONS")
    survivor.expect("NOOP", 250)
    for c in fresh:
        c.expect("QUIT", 221)
        c.close()
    # the new worker 0 serves, and counts as the old one did
    with client_on(p, 0) as c:
        assert worker_of(p, c)[1] != pid
        c.expect("QUIT", 221)
    survivor.close()


# ------------------------------------------------------------ BURL


@pytest.fixture
def hostile():
    srv = ims.HostileImap("ok", body=MSG).start()
    yield srv
    srv.stop()


def burl_limits_conf(sasldb, pwfile, srv, limits=None, **more):
    conf = hostile_conf(sasldb, pwfile, srv)
    conf["rate_limits"] = dict(limits or {})
    conf["sasl"]["failure_delay_ms"] = 0
    harness.deep_merge(conf, more)
    return conf


def burl_message(c, url=HURL):
    c.expect("MAIL FROM:<alice@example.org>", 250)
    c.expect("RCPT TO:<bob@example.net>", 250)
    return c.cmd(f"BURL {url} LAST")


def test_url_reuse_default(sasldb, submit_pwfile, hostile, fake_chunking,
                           proxy_factory, expect):
    """Default url_reuse: 5 within 24 hours, then 554 5.7.1; the same URL
    spelled otherwise is the same URL; another URL is not."""
    p = proxy_factory(fake_chunking, burl_limits_conf(sasldb, submit_pwfile, hostile))
    with p.client() as c:
        assert login(c).code == 235
        for i in range(5):
            r = burl_message(c)
            assert r.code == 250, (i, r)
        expect(burl_message(c), 554, "5.7.1", "R_LIMIT_URL_REUSE")
        c.expect("RSET", 250)
        # scheme and host case, INBOX case, token case: the same URL
        other_spelling = HURL.replace("imap://alice@localhost/INBOX",
                                      "IMAP://alice@LocalHost:143/inbox")
        other_spelling = other_spelling.replace("0123456789abcdef", "0123456789ABCDEF")
        expect(burl_message(c, other_spelling), 554, "5.7.1", "R_LIMIT_URL_REUSE")
        c.expect("RSET", 250)
        # another message (UID 2) is another URL
        assert burl_message(c, HURL.replace(";UID=1;", ";UID=2;")).code == 250
    assert len(fake_chunking.wait_transactions(6)) == 6
    wait_log(p, r"BURL imap://alice@localhost/INBOX/;UID=1;URLAUTH=submit\+alice:"
                r"internal:<redacted> by alice refused: limit url_reuse exceeded: "
                r"5 of 5 per 86400 s")
    assert "0123456789abcdef0123" not in p.log()


def test_url_reuse_incomplete_transactions_do_not_count(
        sasldb, submit_pwfile, hostile, fake_chunking, proxy_factory, expect):
    p = proxy_factory(fake_chunking, burl_limits_conf(
        sasldb, submit_pwfile, hostile, {"url_reuse": {"max": 2}}))
    with p.client() as c:
        assert login(c).code == 235
        # resolved, but the client gives up before the end: RSET
        c.expect("MAIL FROM:<alice@example.org>", 250)
        c.expect("RCPT TO:<bob@example.net>", 250)
        c.expect(f"BURL {HURL}", 250, "2.5.0")
        c.expect("RSET", 250)
        # resolved, but the backend refuses the message (4xx)
        fake_chunking.data_reply = "451 4.3.0 try again later"
        assert burl_message(c).code == 451
        c.expect("RSET", 250)
        fake_chunking.data_reply = "250 2.0.0 Ok: queued as FAKE1"
        # the same URL twice in one message: both count, within the limit
        c.expect("MAIL FROM:<alice@example.org>", 250)
        c.expect("RCPT TO:<bob@example.net>", 250)
        c.expect(f"BURL {HURL}", 250, "2.5.0")
        c.expect(f"BURL {HURL}", 250, "2.5.0")
        # a third use in the same message would pass the limit
        expect(c.cmd(f"BURL {HURL} LAST"), 554, "5.7.1", "R_LIMIT_URL_REUSE")
        c.expect("RSET", 250)
        # two delivered messages: the limit is reached
        assert burl_message(c).code == 250
        assert burl_message(c).code == 250
        expect(burl_message(c), 554, "5.7.1", "R_LIMIT_URL_REUSE")
    # the backend saw the one it refused and the two it took
    assert len(fake_chunking.wait_transactions(3)) == 3
    # the IMAP server was asked for every allowed BURL, never for a refused one
    assert len(hostile.urls()) == 6


def test_burl_fetches_and_bytes_per_identity(sasldb, submit_pwfile, hostile,
                                             fake_chunking, proxy_factory, expect):
    p = proxy_factory(fake_chunking, burl_limits_conf(
        sasldb, submit_pwfile, hostile, {"burl_fetches_per_identity": {"max": 2}}))
    with p.client() as c:
        assert login(c).code == 235
        assert burl_message(c, HURL.replace(";UID=1;", ";UID=11;")).code == 250
        # a fetch counts even when the message does not complete
        c.expect("MAIL FROM:<alice@example.org>", 250)
        c.expect("RCPT TO:<bob@example.net>", 250)
        c.expect(f"BURL {HURL}", 250, "2.5.0")
        c.expect("RSET", 250)
        expect(burl_message(c), 451, "4.7.1", "R_LIMIT_BURL_FETCHES")
    wait_log(p, r"by alice refused: limit burl_fetches_per_identity exceeded: "
                r"2 of 2 per 3600 s")

    p2 = proxy_factory(fake_chunking, burl_limits_conf(
        sasldb, submit_pwfile, hostile, {"burl_bytes_per_identity": {"max": 100}}))
    assert len(MSG) > 100
    with p2.client() as c:
        assert login(c).code == 235
        assert burl_message(c).code == 250
        expect(burl_message(c), 451, "4.7.1", "R_LIMIT_BURL_BYTES")
    wait_log(p2, r"limit burl_bytes_per_identity exceeded: %d of 100" % len(MSG))


# ------------------------------------------------------------ Redis


@pytest.fixture
def redis():
    try:
        r = harness.RedisServer().start()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    yield r
    r.cleanup()


@pytest.fixture
def url_key(tmp_path):
    f = tmp_path / "url.key"
    f.write_text("a3f1c9e07b2d4c6e8f00112233445566778899aabbccddeeff\n")
    f.chmod(0o600)
    return f


def redis_limits(redis, limits, **redis_opts):
    out = dict(limits)
    out["redis"] = {"address": redis.address, "command_timeout_ms": 300,
                    "connect_timeout_ms": 300, "retry_interval_ms": 200}
    out["redis"].update(redis_opts)
    return out


def test_redis_shared_by_two_instances(redis, sasldb, fake_chunking, proxy_factory,
                                       expect):
    limits = redis_limits(redis, {"messages_per_identity": {"max": 3}})
    p1 = proxy_factory(fake_chunking, limits_conf(sasldb, limits))
    p2 = proxy_factory(fake_chunking, limits_conf(sasldb, limits))
    with p1.client() as c:
        assert login(c).code == 235
        assert send(c).code == 250
        assert send(c).code == 250
    with p2.client() as c:
        assert login(c).code == 235
        assert send(c).code == 250
        # the limit was reached through both: it holds here ...
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 451, "4.7.1",
               "R_LIMIT_MESSAGES")
    # ... and there
    with p1.client() as c:
        assert login(c).code == 235
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 451, "4.7.1",
               "R_LIMIT_MESSAGES")
    wait_log(p1, r"limit messages_per_identity exceeded by alice: 3 of 3 per 3600 s")
    wait_log(p2, r"limit messages_per_identity exceeded by alice: 3 of 3 per 3600 s")
    # the documented key schema: <prefix>w:<limit>:<window>:<subject>,
    # one hash field per slot (3600 s in 16 slots of 225 s)
    key = "msaproxy:w:messages_per_identity:3600:alice"
    assert redis.keys("msaproxy:*") == [key]
    fields = redis.command("HGETALL", key)
    assert sum(int(v) for v in fields[1::2]) == 3
    now = int(redis.command("TIME")[0])
    assert all(int(f) <= now // 225 for f in fields[0::2])
    assert 0 < redis.command("TTL", key) <= 17 * 225


def test_redis_pipelining_order(redis, sasldb, fake_chunking, proxy_factory):
    p = proxy_factory(fake_chunking, limits_conf(sasldb, redis_limits(
        redis, {"messages_per_identity": {"max": 1},
                "recipients_per_identity": {"max": 10}})))
    with p.client() as c:
        assert login(c).code == 235
        # MAIL waits for Redis; what is pipelined behind it waits too
        c.send("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\n"
               "DATA\r\n")
        assert [x.code for x in c.replies(3)] == [250, 250, 354]
        c.send(b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<alice@example.org>\r\n"
               b"RCPT TO:<bob@example.net>\r\nDATA\r\nNOOP\r\n")
        assert [x.code for x in c.replies(5)] == [250, 451, 503, 503, 250]


def test_redis_url_reuse_across_instances(redis, url_key, sasldb, submit_pwfile,
                                          hostile, fake_chunking, proxy_factory,
                                          expect):
    limits = redis_limits(redis, {"url_reuse": {"max": 2}})
    limits["url_key_file"] = str(url_key)
    conf = burl_limits_conf(sasldb, submit_pwfile, hostile, limits)
    p1 = proxy_factory(fake_chunking, copy.deepcopy(conf))
    p2 = proxy_factory(fake_chunking, copy.deepcopy(conf))
    for p in (p1, p2):
        with p.client() as c:
            assert login(c).code == 235
            assert burl_message(c).code == 250
    for p in (p1, p2):
        with p.client() as c:
            assert login(c).code == 235
            expect(burl_message(c), 554, "5.7.1", "R_LIMIT_URL_REUSE")
    # Redis holds a keyed hash, never the URL or its token
    keys = redis.keys("msaproxy:*")
    assert len(keys) == 1 and re.fullmatch(
        r"msaproxy:w:url_reuse:86400:[0-9a-f]{64}", keys[0]), keys
    dump = repr(keys) + repr(redis.command("HGETALL", keys[0]))
    assert "0123456789abcdef" not in dump and "alice" not in dump


def test_redis_sessions_across_instances(redis, sasldb, fake_chunking, proxy_factory,
                                         expect):
    limits = redis_limits(redis, {"sessions_per_identity": {"max": 1},
                                  "connections_per_address": {"max": 5}})
    p1 = proxy_factory(fake_chunking, limits_conf(sasldb, limits))
    p2 = proxy_factory(fake_chunking, limits_conf(sasldb, limits))
    c1 = p1.client()
    assert login(c1).code == 235
    # the documented schema: a sorted set of sessions per identity
    members = redis.command("ZRANGE", "msaproxy:c:sessions_per_identity:alice", 0, -1)
    assert len(members) == 1 and members[0].startswith(b"proxy.test:"), members
    assert redis.command("ZCARD", "msaproxy:c:connections_per_address:127.0.0.1") == 1
    with p2.client() as c2:
        expect(login(c2), 421, "4.7.0", "R_LIMIT_SESSIONS")
        assert c2.closed()
    c1.expect("QUIT", 221)
    c1.close()
    assert harness.wait_until(lambda: redis.command(
        "ZCARD", "msaproxy:c:sessions_per_identity:alice") == 0, 3)
    with p2.client() as c3:
        assert login(c3).code == 235
    assert harness.wait_until(lambda: redis.command(
        "ZCARD", "msaproxy:c:connections_per_address:127.0.0.1") == 0, 3)


def test_redis_connection_limits_across_instances(redis, sasldb, fake_chunking,
                                                  proxy_factory, expect):
    limits = redis_limits(redis, {"connection_rate_per_address": {"max": 2,
                                                                  "window": 2}})
    p1 = proxy_factory(fake_chunking, limits_conf(sasldb, limits))
    p2 = proxy_factory(fake_chunking, limits_conf(sasldb, limits))
    time.sleep(2.2)     # the harness's own probes of the ports are forgotten
    for p in (p1, p2):
        with p.client() as c:
            assert c.reply().code == 220
    for p in (p1, p2):
        with p.client() as c:
            expect(c.reply(), 421, "4.7.0", "R_LIMIT_CONNECTION_RATE")


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_redis_down(policy, sasldb, fake_chunking, proxy_factory, expect):
    """Nothing listens where Redis should be."""
    dead = harness.free_port()
    limits = {"messages_per_identity": {"max": 1, "on_redis_error": policy},
              "redis": {"address": f"127.0.0.1:{dead}", "connect_timeout_ms": 300,
                        "command_timeout_ms": 300}}
    p = proxy_factory(fake_chunking, limits_conf(sasldb, limits))
    with p.client() as c:
        assert login(c).code == 235
        for _ in range(3):
            t0 = time.monotonic()
            if policy == "open":
                assert send(c).code == 250
            else:
                expect(c.cmd("MAIL FROM:<alice@example.org>"), 451, "4.3.0",
                       "R_LIMIT_UNAVAIL")
            assert time.monotonic() - t0 < 2
    wait_log(p, r"redis 127\.0\.0\.1:%d: unavailable" % dead)
    if policy == "closed":
        wait_log(p, r"limit messages_per_identity for alice: counters unavailable "
                    r"\(Redis\), on_redis_error is closed: refused")


@pytest.mark.parametrize("policy", ["open", "closed"])
def test_redis_hangs_then_recovers(policy, redis, sasldb, fake_chunking,
                                   proxy_factory, expect):
    limits = redis_limits(redis, {
        "messages_per_identity": {"max": 2, "on_redis_error": policy},
        "connections_per_address": {"max": 10, "on_redis_error": policy}})
    p = proxy_factory(fake_chunking, limits_conf(sasldb, limits))
    with p.client() as c:
        assert login(c).code == 235
        assert send(c).code == 250
        redis.pause()
        try:
            t0 = time.monotonic()
            if policy == "open":
                assert send(c).code == 250
                assert send(c).code == 250      # uncounted, not enforced
            else:
                expect(c.cmd("MAIL FROM:<alice@example.org>"), 451, "4.3.0",
                       "R_LIMIT_UNAVAIL")
            assert time.monotonic() - t0 < 3
            # at connect too
            with p.client() as c2:
                if policy == "open":
                    assert c2.reply().code == 220
                else:
                    expect(c2.reply(), 421, "4.3.0", "R_LIMIT_UNAVAIL_421")
        finally:
            redis.resume()
        wait_log(p, r"redis 127\.0\.0\.1:%d: unavailable \((command|connect) "
                    r"timeout\)" % redis.port)
        # Redis is back (the next command after retry_interval_ms finds
        # it): counted and enforced again
        deadline = time.monotonic() + 5
        back = re.compile(r"redis 127\.0\.0\.1:%d: available again" % redis.port)
        while not back.search(p.log()) and time.monotonic() < deadline:
            time.sleep(0.3)
            c.cmd("MAIL FROM:<alice@example.org>")
            c.expect("RSET", 250)
        c.expect("MAIL FROM:<alice@example.org>", 250)
        c.expect("RCPT TO:<bob@example.net>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        assert c.reply().code == 250
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 451, "4.7.1",
               "R_LIMIT_MESSAGES")


def test_config_errors(binary, tmp_path, sasldb):
    def check(rate_limits):
        conf = harness.Msaproxy("127.0.0.1:25", limits_conf(sasldb, rate_limits),
                                workdir=tmp_path, binary=binary)
        conf.write_conf()
        return conf.check_config()

    r = check({"messages_per_identity": {"max": 1, "window": 0}})
    assert r.returncode == 1
    assert "'rate_limits.messages_per_identity.window' = 0 is out of range" in r.stderr
    r = check({"sessions_per_identity": {"max": 1, "window": 60}})
    assert r.returncode == 1
    assert "unknown key 'window' in section 'rate_limits.sessions_per_identity'" in r.stderr
    r = check({"url_reuse": {"on_redis_error": "maybe"}})
    assert r.returncode == 1
    assert "is not one of \"open\", \"closed\"" in r.stderr
    r = check({"redis": {"prefix": "x:"}})
    assert r.returncode == 1
    assert "missing key 'address' in section 'rate_limits.redis'" in r.stderr
    r = check({"bytes_per_identity": {"max": "10M"}, "redis": {"address": "127.0.0.1:6379"}})
    assert r.returncode == 0, r.stderr
