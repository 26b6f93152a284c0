"""ETRN (RFC 1985) under the identity policy: where it is offered, sequence
and syntax (500/501/503), the policy by identity (AUTH PLAIN over STARTTLS
with the proxy's sasldb) and by client address (also the one from a PROXY
header), RFC 1985 section 8's "@com", the backend's replies relayed with an
enhanced code or replaced, a backend that is down, dies or hangs, and end to
end: mail deferred by a real Postfix with fast flush is delivered into an
smtp-sink when a client ETRNs its domain through the proxy.
"""

import re
import shutil
import time

import pytest

import harness
import sasl_client
from harness import check_reply as chk
from pki import pki  # noqa: F401  (fixture)
from test_auth import hello, sasldb  # noqa: F401  (helper, fixture)

ETRN_CAPS = harness.DEFAULT_FAKE_CAPS + [
    "ETRN", "XCLIENT NAME ADDR PORT HELO PROTO LOGIN"]

RULES = [
    {"identity": "alice", "allow": ["alice.example", "@alice.org", "#aliceq"]},
    {"identity": "bob", "allow": ["bob.example"]},
    {"identity": "*", "allow": ["shared.example"]},
    {"networks": ["127.0.0.0/8"], "allow": ["relay.example.net", "@lan.example"]},
    {"networks": ["192.0.2.0/24"], "allow": ["@lb.example"]},
]


def etrn_conf(pki, sasldb, rules=None, enabled=("submission", "mx", "lb"), **etrn):
    """submission (AUTH required), mx and lb (smtp, no AUTH required; lb
    takes PROXY headers from loopback) offer ETRN; plain does not."""
    return {
        "tls": {"certificates": [{"cert": str(pki / "ecdsa.pem"),
                                  "key": str(pki / "ecdsa.key")}]},
        "sasl": {"sasldb_path": str(sasldb), "hostname": "localhost",
                 "mechanisms": "SCRAM-SHA-256 PLAIN LOGIN",
                 "failure_delay_ms": 200},
        "listeners": [
            {"name": "submission", "kind": "submission", "require_auth": True},
            {"name": "mx", "kind": "smtp"},
            {"name": "plain", "kind": "smtp"},
            {"name": "lb", "kind": "smtp", "proxy_protocol": True,
             "proxy_protocol_from": ["127.0.0.0/8"]},
        ],
        "etrn": {"listeners": list(enabled), "rules": rules or RULES, **etrn},
    }


@pytest.fixture
def fake_etrn():
    f = harness.FakeBackend(caps=ETRN_CAPS)
    f.replies["ETRN"] = "250 Queuing started"
    f.start()
    yield f
    f.stop()


@pytest.fixture
def proxy(pki, sasldb, fake_etrn, proxy_factory):
    return proxy_factory(fake_etrn, etrn_conf(pki, sasldb))


def start(c):
    assert c.greeting().code == 220
    r = c.cmd("EHLO client.example")
    assert r.code == 250, r
    return r


def login(c, pki, user, pw):
    """EHLO, STARTTLS, EHLO, AUTH PLAIN (PLAIN is offered only under TLS)."""
    hello(c, pki)
    r = sasl_client.auth_plain(c, user, pw)
    assert (r.code, r.enhanced) == (235, "2.7.0"), r


def etrns_seen(fake):
    return [c.decode() for c in fake.all_commands() if c.upper().startswith(b"ETRN")]


def text(rid, node):
    """The exact reply line of table entry rid with its %s filled in."""
    return (harness.REPLY_TABLE[rid] % node).encode() + b"\r\n"


# ------------------------------------------------------ where it is offered ---

def test_advertised_only_on_enabled_listeners(proxy, fake_etrn):
    with proxy.client("mx") as c:
        r = start(c)
        assert "ETRN" in r.keywords, r.raw
    with proxy.client("plain") as c:
        r = start(c)
        assert "ETRN" not in r.keywords, r.raw
        chk(c.cmd("ETRN relay.example.net"), 502, "5.5.1", "R_NOT_IMPL")
        chk(c.cmd("NOOP"), 250, "2.0.0")
    assert etrns_seen(fake_etrn) == []


def test_not_offered_when_backend_lacks_etrn(pki, sasldb, fake, proxy_factory):
    """The backend's EHLO has no ETRN: neither has ours, and the command is
    502, as on a listener without it (one predicate for both)."""
    p = proxy_factory(fake, etrn_conf(pki, sasldb))
    with p.client("mx") as c:
        r = start(c)
        assert "ETRN" not in r.keywords, r.raw
        chk(c.cmd("ETRN relay.example.net"), 502, "5.5.1", "R_NOT_IMPL")
    assert etrns_seen(fake) == []


def test_not_offered_by_default(fake_etrn, proxy_factory):
    p = proxy_factory(fake_etrn, {"listeners": [{"name": "mx", "kind": "smtp"}]})
    with p.client() as c:
        r = start(c)
        assert "ETRN" not in r.keywords, r.raw
        chk(c.cmd("ETRN relay.example.net"), 502, "5.5.1", "R_NOT_IMPL")


# ------------------------------------------------------ sequence and syntax ---

def test_before_ehlo(proxy, fake_etrn):
    with proxy.client("mx") as c:
        assert c.greeting().code == 220
        chk(c.cmd("ETRN relay.example.net"), 503, "5.5.1", "R_SEQ_HELO")
    assert etrns_seen(fake_etrn) == []


def test_missing_argument_500(proxy, fake_etrn):
    """RFC 1985 5.1 and its example: ETRN without a node is "500 Syntax
    Error"; with an enhanced code, 5.5.2."""
    with proxy.client("mx") as c:
        start(c)
        chk(c.cmd("ETRN"), 500, "5.5.2", "R_ETRN_NO_NODE")
        chk(c.cmd("ETRN "), 500, "5.5.2", "R_ETRN_NO_NODE")
        chk(c.cmd("etrn"), 500, "5.5.2", "R_ETRN_NO_NODE")
    assert etrns_seen(fake_etrn) == []


@pytest.mark.parametrize("arg", [
    "localname",                # RFC 1985 7: 501
    "@", "#", "@@lan.example", "#@lan.example",
    " relay.example.net", "relay.example.net extra",
    "relay.example.net.", "relay..example.net", "-relay.example.net",
    "under_score.example", "[192.0.2.1]", "192.0.2.1", "user@lan.example",
    "<relay.example.net>", "@*.example.org", "#q;id", "#$(id)", "#q`x`",
    "x" * 300 + ".example",
])
def test_bad_syntax_501(proxy, fake_etrn, arg):
    with proxy.client("mx") as c:
        start(c)
        chk(c.cmd(f"ETRN {arg}"), 501, "5.5.4", "R_ETRN_SYNTAX")
        chk(c.cmd("NOOP"), 250, "2.0.0")
    assert etrns_seen(fake_etrn) == []


def test_non_ascii_501(proxy, fake_etrn):
    with proxy.client("mx") as c:
        start(c)
        chk(c.cmd("ETRN caf\u00e9.example".encode()), 501, "5.5.4", "R_ETRN_SYNTAX")
    assert etrns_seen(fake_etrn) == []


def test_inside_transaction_503(proxy, fake_etrn):
    """RFC 1985 5: illegal between MAIL and the end of DATA."""
    with proxy.client("mx") as c:
        start(c)
        chk(c.cmd("MAIL FROM:<a@example.org>"), 250)
        chk(c.cmd("ETRN relay.example.net"), 503, "5.5.1", "R_ETRN_IN_TX")
        chk(c.cmd("RCPT TO:<b@example.net>"), 250)
        chk(c.cmd("ETRN relay.example.net"), 503, "5.5.1", "R_ETRN_IN_TX")
        chk(c.cmd("RSET"), 250)
        r = c.cmd("ETRN relay.example.net")
        assert r.raw == b"250 2.0.0 Queuing started\r\n", r
    assert etrns_seen(fake_etrn) == ["ETRN relay.example.net"]


def test_after_a_message(proxy, fake_etrn):
    with proxy.client("mx") as c:
        start(c)
        r = c.send_message(b"Subject: x\r\n\r\nbody\r\n", ehlo=None)
        assert r.code == 250, r
        assert c.cmd("ETRN relay.example.net").code == 250
    assert etrns_seen(fake_etrn) == ["ETRN relay.example.net"]


# ------------------------------------------------------- policy: addresses ---

def test_network_rule_unauthenticated(proxy, fake_etrn):
    with proxy.client("mx") as c:
        start(c)
        r = c.cmd("ETRN relay.example.net")
        assert r.raw == b"250 2.0.0 Queuing started\r\n", r
        r = c.cmd("ETRN @lan.example")
        assert r.code == 250, r
        r = c.cmd("ETRN host.sub.lan.example")       # below @lan.example
        assert r.code == 250, r
        r = c.cmd("ETRN other.example.net")
        chk(r, 459, "4.7.1")
        assert r.raw == text("R_ETRN_NOT_LISTED", "other.example.net"), r
        r = c.cmd("ETRN @example.net")               # broader than granted
        assert r.raw == text("R_ETRN_NOT_LISTED", "@example.net"), r
        # alice's grant needs alice
        r = c.cmd("ETRN alice.example")
        assert r.raw == text("R_ETRN_NOT_LISTED", "alice.example"), r
    assert etrns_seen(fake_etrn) == ["ETRN relay.example.net", "ETRN @lan.example",
                                     "ETRN host.sub.lan.example"]


def test_case_preserved_and_compared_blind(proxy, fake_etrn):
    with proxy.client("mx") as c:
        start(c)
        assert c.cmd("ETRN Relay.Example.NET").code == 250
    assert etrns_seen(fake_etrn) == ["ETRN Relay.Example.NET"]


@pytest.mark.parametrize("version", [1, 2])
def test_client_address_from_proxy_header(proxy, fake_etrn, version):
    """Behind a load balancer the rule matches the real client's address;
    the loopback rule no longer applies."""
    mk = harness.proxy_v1 if version == 1 else harness.proxy_v2
    with proxy.client("lb") as c:
        c.send(mk("192.0.2.7", "127.0.0.1", 40000, proxy.ports["lb"]))
        start(c)
        assert c.cmd("ETRN mx.lb.example").code == 250
        r = c.cmd("ETRN relay.example.net")
        assert r.raw == text("R_ETRN_NOT_LISTED", "relay.example.net"), r
    with proxy.client("lb") as c:
        c.send(mk("198.51.100.1", "127.0.0.1", 40001, proxy.ports["lb"]))
        start(c)
        r = c.cmd("ETRN mx.lb.example")
        assert r.raw == text("R_ETRN_DENIED", "mx.lb.example"), r
    assert etrns_seen(fake_etrn) == ["ETRN mx.lb.example"]
    # the backend learnt the real client too (XCLIENT before the ETRN)
    assert any(b"ADDR=192.0.2.7" in cmd for cmd in fake_etrn.all_commands())


def test_top_level_domain_refused(proxy, fake_etrn):
    """RFC 1985 8: "@com" would release mail for every domain in com."""
    with proxy.client("mx") as c:
        start(c)
        for tld in ("@com", "@example", "@NET"):
            r = c.cmd(f"ETRN {tld}")
            chk(r, 459, "4.7.1")
            assert r.raw == text("R_ETRN_TLD", tld), r
    assert etrns_seen(fake_etrn) == []


def test_top_level_domain_when_explicitly_allowed(pki, sasldb, fake_etrn, proxy_factory):
    rules = [{"networks": ["127.0.0.0/8"], "allow": ["@test"]}]
    p = proxy_factory(fake_etrn, etrn_conf(pki, sasldb, rules, allow_wildcard_tld=True))
    with p.client("mx") as c:
        start(c)
        assert c.cmd("ETRN @test").code == 250
        assert c.cmd("ETRN host.example.test").code == 250
        r = c.cmd("ETRN @com")
        assert r.raw == text("R_ETRN_NOT_LISTED", "@com"), r
    assert etrns_seen(fake_etrn) == ["ETRN @test", "ETRN host.example.test"]


def test_tld_grant_refused_by_config(pki, sasldb, fake_etrn, proxy_factory):
    p = proxy_factory(fake_etrn, etrn_conf(pki, sasldb, [
        {"networks": ["127.0.0.0/8"], "allow": ["@com"]}]), start=False)
    p.write_conf()
    r = p.check_config()
    assert r.returncode != 0
    assert ("'etrn.rules[0].allow' entry \"@com\" releases a whole top-level "
            "domain (RFC 1985 section 8)") in r.stderr + r.stdout


# ------------------------------------------------------ policy: identities ---

def test_auth_required_on_submission(proxy, fake_etrn):
    with proxy.client("submission") as c:
        start(c)
        chk(c.cmd("ETRN alice.example"), 530, "5.7.0", "R_AUTH_REQUIRED")
    assert etrns_seen(fake_etrn) == []


def test_identity_rules(proxy, fake_etrn, pki):
    with proxy.client("submission") as c:
        login(c, pki, "alice", "alicepw")
        for node in ("alice.example", "@alice.org", "mx.alice.org", "#aliceq",
                     "shared.example"):
            r = c.cmd(f"ETRN {node}")
            assert r.raw == b"250 2.0.0 Queuing started\r\n", (node, r)
        for node in ("bob.example", "x.alice.example", "#AliceQ", "#bobq"):
            r = c.cmd(f"ETRN {node}")
            assert r.raw == text("R_ETRN_NOT_LISTED", node), (node, r)
        # rules for an identity apply wherever alice connects from; the
        # loopback network rule applies to her too
        assert c.cmd("ETRN relay.example.net").code == 250
    with proxy.client("submission") as c:
        login(c, pki, "bob", "bobpw")
        assert c.cmd("ETRN bob.example").code == 250
        assert c.cmd("ETRN shared.example").code == 250
        r = c.cmd("ETRN @alice.org")
        assert r.raw == text("R_ETRN_NOT_LISTED", "@alice.org"), r
    assert etrns_seen(fake_etrn) == [
        "ETRN alice.example", "ETRN @alice.org", "ETRN mx.alice.org", "ETRN #aliceq",
        "ETRN shared.example", "ETRN relay.example.net",
        "ETRN bob.example", "ETRN shared.example"]
    # the backend was told who asked (XCLIENT LOGIN=) before her ETRNs
    cmds = fake_etrn.all_commands()
    xi = [i for i, cmd in enumerate(cmds) if cmd.startswith(b"XCLIENT LOGIN=alice ")]
    ei = cmds.index(b"ETRN alice.example")
    assert xi and xi[0] < ei, cmds


def test_identity_without_rule(pki, sasldb, fake_etrn, proxy_factory):
    rules = [{"identity": "alice", "allow": ["alice.example"]}]
    p = proxy_factory(fake_etrn, etrn_conf(pki, sasldb, rules))
    with p.client("submission") as c:
        login(c, pki, "bob", "bobpw")
        r = c.cmd("ETRN alice.example")
        chk(r, 459, "4.7.1")
        assert r.raw == text("R_ETRN_DENIED", "alice.example"), r
    # not authenticated, on a listener that does not require it: identity
    # rules do not apply
    with p.client("mx") as c:
        start(c)
        r = c.cmd("ETRN alice.example")
        assert r.raw == text("R_ETRN_DENIED", "alice.example"), r
    assert etrns_seen(fake_etrn) == []


def test_one_log_line_per_etrn(proxy, fake_etrn, pki):
    with proxy.client("submission") as c:
        login(c, pki, "alice", "alicepw")
        assert c.cmd("ETRN @alice.org").code == 250
        assert c.cmd("ETRN bob.example").code == 459
        assert c.cmd("ETRN bad_name.example").code == 501
    log = proxy.log()
    lines = [l for l in log.splitlines() if ": etrn node=" in l]
    assert len(lines) == 3, lines
    assert re.search(r"etrn node=@alice\.org client=127\.0\.0\.1 identity=alice "
                     r"listener=submission result=250 allowed by etrn\.rules\[0\] "
                     r"\(line \d+\); backend: 250 Queuing started", lines[0]), lines[0]
    assert "node=bob.example client=127.0.0.1 identity=alice listener=submission " \
           "result=459 denied: not granted" in lines[1], lines[1]
    assert "node=bad_name.example" in lines[2] and "result=501 bad syntax" in lines[2]


# --------------------------------------------------------- backend replies ---

@pytest.mark.parametrize("backend, relayed", [
    ("250 Queuing started", b"250 2.0.0 Queuing started\r\n"),
    ("250 OK, queuing for node relay.example.net started",
     b"250 2.0.0 OK, queuing for node relay.example.net started\r\n"),
    ("251 OK, no messages waiting for node relay.example.net",
     b"251 2.0.0 OK, no messages waiting for node relay.example.net\r\n"),
    ("252 OK, pending messages for node relay.example.net started",
     b"252 2.0.0 OK, pending messages for node relay.example.net started\r\n"),
    ("253 OK, 14 pending messages for node relay.example.net started",
     b"253 2.0.0 OK, 14 pending messages for node relay.example.net started\r\n"),
    ("458 Unable to queue messages for node relay.example.net",
     b"458 4.3.0 Unable to queue messages for node relay.example.net\r\n"),
    ("459 Node relay.example.net not allowed: Unable to resolve name.",
     b"459 4.7.1 Node relay.example.net not allowed: Unable to resolve name.\r\n"),
    # the backend's own enhanced code is kept
    ("250 2.0.0 Queuing started", b"250 2.0.0 Queuing started\r\n"),
    ("459 4.7.0 no", b"459 4.7.0 no\r\n"),
    # multi-line, and sanitized
    ("250-first\r\n250 second", b"250-2.0.0 first\r\n250 2.0.0 second\r\n"),
    ("250 Queuing \x1b[2J started", b"250 2.0.0 Queuing ?[2J started\r\n"),
])
def test_backend_reply_relayed(proxy, fake_etrn, backend, relayed):
    fake_etrn.replies["ETRN"] = backend
    with proxy.client("mx") as c:
        start(c)
        r = c.cmd("ETRN relay.example.net")
        assert r.raw == relayed, r
        chk(c.cmd("NOOP"), 250, "2.0.0")


@pytest.mark.parametrize("backend, rid", [
    ("502 5.5.2 Error: command not recognized", "R_ETRN_BACKEND_REFUSED"),
    ("500 Syntax Error", "R_ETRN_BACKEND_REFUSED"),
    ("501 5.5.4 Error: invalid parameter syntax", "R_ETRN_BACKEND_REFUSED"),
    ("530 5.7.0 Authentication required", "R_ETRN_BACKEND_REFUSED"),
    ("450 4.7.1 try later", "R_ETRN_BACKEND_REFUSED"),
    ("254 odd", "R_ETRN_BACKEND_REFUSED"),
    ("421 4.3.2 Service shutting down", "R_ETRN_LOST"),
])
def test_backend_reply_replaced(proxy, fake_etrn, backend, rid):
    fake_etrn.replies["ETRN"] = backend
    with proxy.client("mx") as c:
        start(c)
        r = c.cmd("ETRN relay.example.net")
        assert r.raw == text(rid, "relay.example.net"), r
        # the session goes on; after a 421 a fresh backend connection
        fake_etrn.replies["ETRN"] = "250 Queuing started"
        assert c.cmd("ETRN relay.example.net").code == 250
        r = c.send_message(b"Subject: after\r\n\r\nbody\r\n", ehlo=None)
        assert r.code == 250, r
    assert f"backend reply to ETRN {backend[:3]}" in proxy.log()


def test_backend_down_458_441(pki, sasldb, proxy_factory):
    port = harness.free_port()          # nothing listens there
    p = proxy_factory(f"127.0.0.1:{port}", etrn_conf(pki, sasldb))
    with p.client("mx") as c:
        r = start(c)
        # the backend's capabilities are unknown: ETRN is offered, and
        # tried
        assert "ETRN" in r.keywords, r.raw
        r = c.cmd("ETRN relay.example.net")
        chk(r, 458, "4.4.1")
        assert r.raw == b"458 4.4.1 Unable to queue messages for node relay.example.net\r\n", r
        r = c.cmd("ETRN @lan.example")
        assert r.raw == text("R_ETRN_UNAVAIL", "@lan.example"), r
        # refused by policy before any backend is needed
        r = c.cmd("ETRN other.example")
        assert r.raw == text("R_ETRN_NOT_LISTED", "other.example"), r
        chk(c.cmd("QUIT"), 221, "2.0.0")


def test_backend_closes_458_442(proxy, fake_etrn):
    fake_etrn.replies["ETRN"] = "CLOSE"
    with proxy.client("mx") as c:
        start(c)
        r = c.cmd("ETRN relay.example.net", timeout=15)
        chk(r, 458, "4.4.2")
        assert r.raw == text("R_ETRN_LOST", "relay.example.net"), r
        chk(c.cmd("NOOP"), 250)


def test_backend_hangs_458_442(pki, sasldb, fake_etrn, proxy_factory):
    fake_etrn.replies["ETRN"] = "HANG"
    conf = etrn_conf(pki, sasldb)
    conf["timeouts"] = {"backend_command": 2}
    p = proxy_factory(fake_etrn, conf)
    with p.client("mx") as c:
        start(c)
        t0 = time.monotonic()
        r = c.cmd("ETRN relay.example.net", timeout=15)
        assert r.raw == text("R_ETRN_LOST", "relay.example.net"), r
        assert 1.5 < time.monotonic() - t0 < 10
        chk(c.cmd("NOOP"), 250)


def test_pipelined_etrns_answered_in_order(proxy, fake_etrn):
    with proxy.client("mx") as c:
        start(c)
        c.send("ETRN relay.example.net\r\nETRN @com\r\nETRN\r\nETRN @lan.example\r\n"
               "NOOP\r\n")
        rs = c.replies(5)
        assert [r.code for r in rs] == [250, 459, 500, 250, 250], rs
    assert etrns_seen(fake_etrn) == ["ETRN relay.example.net", "ETRN @lan.example"]


def test_etrn_split_across_writes(proxy, fake_etrn):
    with proxy.client("mx") as c:
        start(c)
        c.send_slowly(b"ETRN relay.example.net\r\n")
        assert c.reply().code == 250
    assert etrns_seen(fake_etrn) == ["ETRN relay.example.net"]


# ------------------------------------------------------ with real Postfix ---

ETRN_DOMAIN = "etrn.test"


@pytest.fixture(scope="module")
def flush_port():
    """Where Postfix sends mail for etrn.test: nothing listens until a test
    starts an smtp-sink there."""
    return harness.free_port()


@pytest.fixture(scope="module")
def postfix_flush(flush_port):
    """A Postfix that relays etrn.test (fast flush) to flush_port and does
    not retry on its own within a test (backoff 5 minutes)."""
    if not shutil.which("postfix"):
        pytest.skip("postfix not installed")
    pf = harness.PostfixBackend(hostname="flush-backend.test", extra_main_cf={
        "relay_domains": f"{ETRN_DOMAIN}, nonflush.test",
        "fast_flush_domains": ETRN_DOMAIN,
        "virtual_mailbox_domains": f"!{ETRN_DOMAIN}, !nonflush.test, static:all",
        "transport_maps": f"inline:{{{ETRN_DOMAIN}=smtp:[127.0.0.1]:{flush_port}, "
                          f"nonflush.test=smtp:[127.0.0.1]:{flush_port}}}",
        "queue_run_delay": "300s",
        "minimal_backoff_time": "300s",
        "maximal_backoff_time": "600s",
        "smtpd_etrn_restrictions": "",
    })
    try:
        pf.start()
    except Exception:
        pf.cleanup()
        raise
    yield pf
    pf.cleanup()


def test_postfix_flush_end_to_end(pki, sasldb, postfix_flush, flush_port, proxy_factory,
                                  marker):
    rules = [{"identity": "alice", "allow": [f"@{ETRN_DOMAIN}"]}]
    p = proxy_factory(postfix_flush, etrn_conf(pki, sasldb, rules))
    # 1. alice submits mail for carol@etrn.test; Postfix cannot deliver it
    with p.client("submission") as c:
        login(c, pki, "alice", "alicepw")
        r = c.send_message(f"Subject: {marker}\r\n\r\n{marker}\r\n".encode(),
                           mail_from="alice@example.org",
                           rcpts=(f"carol@{ETRN_DOMAIN}",), ehlo=None)
        assert r.code == 250 and "queued as" in r.text, r
        qid = r.text.rsplit(" ", 1)[1]
    deferred = harness.wait_until(
        lambda: re.search(rf"{qid}: to=<carol@{ETRN_DOMAIN}>.*status=deferred "
                          rf"\(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:{flush_port}: "
                          r"Connection refused\)", postfix_flush.log()), 15)
    assert deferred, postfix_flush.log_tail()
    sink = harness.SmtpSink(port=flush_port, hostname="etrn-sink.test")
    try:
        sink.start()
        time.sleep(1.0)
        # 2. the site is up now, but Postfix waits (backoff 5 min): nothing
        assert sink.find(marker) == []
        # 3. bob may not release alice's domain
        with p.client("submission") as c:
            login(c, pki, "bob", "bobpw")
            r = c.cmd(f"ETRN @{ETRN_DOMAIN}")
            assert r.raw == text("R_ETRN_DENIED", f"@{ETRN_DOMAIN}"), r
        time.sleep(1.0)
        assert sink.find(marker) == []
        # 4. alice ETRNs her domain through the proxy: delivered at once
        with p.client("submission") as c:
            login(c, pki, "alice", "alicepw")
            r = c.cmd("ETRN other.test")
            assert r.raw == text("R_ETRN_NOT_LISTED", "other.test"), r
            t0 = time.monotonic()
            r = c.cmd(f"ETRN @{ETRN_DOMAIN}")
            assert r.raw == b"250 2.0.0 Queuing started\r\n", r
            [(meta, msg)] = sink.wait_for(marker, timeout=10)
            assert time.monotonic() - t0 < 10
        assert any(f"carol@{ETRN_DOMAIN}" in rc for rc in meta["rcpt"]), meta
        # Postfix logs status=sent after the sink's 250, through postlogd
        assert harness.wait_until(
            lambda: re.search(rf"{qid}: to=<carol@{ETRN_DOMAIN}>.*status=sent",
                              postfix_flush.log()), 10), postfix_flush.log()[-2000:]
        assert "etrn node=@etrn.test client=127.0.0.1 identity=alice " \
            "listener=submission result=250" in p.log()
    finally:
        sink.cleanup()


def test_postfix_refusals_relayed(pki, sasldb, postfix_flush, proxy_factory):
    """The proxy allows; Postfix refuses (no fast flush for the domain, no
    queues by name): its 459 reaches the client with an enhanced code."""
    rules = [{"networks": ["127.0.0.0/8"], "allow": ["nonflush.test", "#queue1",
                                                     ETRN_DOMAIN]}]
    p = proxy_factory(postfix_flush, etrn_conf(pki, sasldb, rules))
    with p.client("mx") as c:
        r = start(c)
        assert "ETRN" in r.keywords, r.raw
        r = c.cmd("ETRN nonflush.test")
        assert r.raw == b"459 4.7.1 <nonflush.test>: service unavailable\r\n", r
        r = c.cmd("ETRN #queue1")
        assert r.code == 459 and r.enhanced == "4.7.1", r
        r = c.cmd(f"ETRN {ETRN_DOMAIN}")
        assert r.raw == b"250 2.0.0 Queuing started\r\n", r
    assert harness.wait_until(lambda: "reject: ETRN nonflush.test" in postfix_flush.log(), 5)
