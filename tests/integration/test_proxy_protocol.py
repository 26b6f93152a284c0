"""HAProxy PROXY protocol v1/v2 on a listener."""

import socket

import pytest

import harness
from test_received import parse_received


def pp_conf(allowed):
    return {"listeners": [{"name": "submission", "kind": "submission",
                           "proxy_protocol": True, "proxy_protocol_from": allowed}]}


def deliver(c, header):
    c.send(header)
    g = c.greeting()
    assert g.code == 220, g
    assert c.cmd("EHLO lb.client.example").code == 250
    c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    assert [r.code for r in c.replies(3)] == [250, 250, 354]
    c.send(b"Subject: pp\r\n\r\nbody\r\n.\r\n")
    assert c.reply().code == 250


@pytest.mark.parametrize("version", [1, 2])
def test_proxy_header_from_allowed_peer(fake, proxy_factory, version):
    p = proxy_factory(fake, pp_conf(["127.0.0.0/8"]))
    mk = harness.proxy_v1 if version == 1 else harness.proxy_v2
    src = "192.0.2.10" if version == 1 else "198.51.100.7"
    with p.client() as c:
        deliver(c, mk(src, "127.0.0.1", 50123, p.port))
    [t] = fake.wait_transactions(1)
    m = parse_received(t["content"])
    assert m["ip"] == src, m.group(0)


def test_proxy_header_split_across_writes(fake, proxy_factory):
    p = proxy_factory(fake, pp_conf(["127.0.0.0/8"]))
    with p.client() as c:
        c.send_slowly(harness.proxy_v2("203.0.113.5", "127.0.0.1", 40000, p.port))
        deliver(c, b"")
    [t] = fake.wait_transactions(1)
    assert parse_received(t["content"])["ip"] == "203.0.113.5"


def expect_dropped(c, timeout=6):
    """No 220 greeting, connection closed."""
    got = b""
    deadline = timeout
    try:
        while True:
            c.sock.settimeout(deadline)
            d = c.sock.recv(4096)
            if not d:
                break
            got += d
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        raise AssertionError(f"connection not closed within {timeout} s (got {got!r})")
    assert not got.startswith(b"220"), f"greeted a peer that should be dropped: {got!r}"


@pytest.mark.parametrize("version", [1, 2])
def test_proxy_header_from_unlisted_peer_dropped(fake, proxy_factory, version):
    p = proxy_factory(fake, pp_conf(["10.0.0.0/8"]))
    mk = harness.proxy_v1 if version == 1 else harness.proxy_v2
    with p.client() as c:
        try:
            c.send(mk("192.0.2.10", "127.0.0.1", 50123, p.port))
        except (ConnectionResetError, BrokenPipeError):
            return
        expect_dropped(c)
    assert fake.transactions() == []
    assert p.running()


def test_proxy_header_invalid_dropped(fake, proxy_factory):
    p = proxy_factory(fake, pp_conf(["127.0.0.0/8"]))
    with p.client() as c:
        c.send(b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n")
        expect_dropped(c)
    with p.client() as c:
        c.send(b"EHLO no.proxy.header\r\n")
        expect_dropped(c)
    assert p.running()


def test_proxy_header_missing_times_out(fake, proxy_factory):
    p = proxy_factory(fake, {**pp_conf(["127.0.0.0/8"]), "timeouts": {"greeting": 2}})
    with p.client() as c:
        expect_dropped(c, timeout=8)
