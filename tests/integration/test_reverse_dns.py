"""reverse_dns: the client's PTR name in the Received header, looked up
without blocking (libevent's evdns) through a fake DNS server on 127.0.0.1
(the test machine has no resolver): a name, NXDOMAIN, and a server that
never answers (the greeting still comes, after timeouts.greeting at most)."""
import socket
import struct
import threading
import time

import pytest

import harness


class FakeDns:
    """Answers every PTR query with `name`, NXDOMAIN when name is None, or
    nothing at all when silent."""

    def __init__(self, name=None, silent=False):
        self.name, self.silent = name, silent
        self.queries = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop_flag = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    @staticmethod
    def encode(name):
        return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"

    def run(self):
        while not self.stop_flag:
            try:
                q, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            qid = q[:2]
            i = 12
            labels = []
            while q[i] != 0:
                labels.append(q[i + 1:i + 1 + q[i]].decode())
                i += 1 + q[i]
            question = q[12:i + 5]
            self.queries.append(".".join(labels))
            if self.silent:
                continue
            if self.name is None:
                resp = qid + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + question
            else:
                rdata = self.encode(self.name)
                answer = struct.pack(">HHHIH", 0xC00C, 12, 1, 60, len(rdata)) + rdata
                resp = qid + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + question + answer
            self.sock.sendto(resp, peer)

    def close(self):
        self.stop_flag = True
        self.thread.join(2)
        self.sock.close()


def received_of(fake, marker):
    [t] = fake.wait_transactions(1)
    return t["content"].split(b"\r\n\tby ")[0].decode()


def run_one(p, marker):
    with p.client(timeout=15) as c:
        t0 = time.monotonic()
        assert c.reply().code == 220
        waited = time.monotonic() - t0
        assert c.cmd("EHLO client.example").code == 250
        assert c.cmd("MAIL FROM:<a@example.org>").code == 250
        assert c.cmd("RCPT TO:<b@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(f"Subject: {marker}\r\n\r\nx\r\n.\r\n")
        assert c.reply().code == 250
    return waited


@pytest.mark.parametrize("case", ["name", "nxdomain", "silent"])
def test_reverse_dns(case, fake, proxy_factory, marker):
    dns = FakeDns(name="client.ptr.test" if case == "name" else None,
                  silent=case == "silent")
    try:
        p = proxy_factory(fake, {"reverse_dns": True,
                                 "resolver": f"127.0.0.1:{dns.port}",
                                 "timeouts": {"greeting": 2}})
        waited = run_one(p, marker)
        rec = received_of(fake, marker)
        # evdns randomizes the case of its queries (DNS 0x20)
        assert "1.0.0.127.in-addr.arpa" in [q.lower() for q in dns.queries]
        if case == "name":
            assert rec == "Received: from client.example (client.ptr.test [127.0.0.1])", rec
            assert waited < 1
        else:
            assert rec == "Received: from client.example (unknown [127.0.0.1])", rec
            # a silent resolver costs half the greeting timeout (1 s)
            assert waited < (1 if case == "nxdomain" else 2)
    finally:
        dns.close()
