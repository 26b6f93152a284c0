"""Self-tests of the harness itself: they need no msaproxy binary."""

import smtplib

import harness


def test_postfix_delivers_to_maildir(postfix, marker):
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=10) as s:
        code, caps = s.ehlo("selftest.example")
        assert code == 250
        caps = caps.decode().upper().split("\n")
        for kw in ("PIPELINING", "CHUNKING", "SMTPUTF8", "DSN", "XCLIENT"):
            assert any(c.startswith(kw) for c in caps), (kw, caps)
        s.sendmail("a@example.org", ["b@example.net"],
                   f"Subject: {marker}\r\n\r\n.leading dot\r\nbody {marker}\r\n".encode())
    [(path, msg)] = postfix.wait_for(marker)
    assert path.parent == postfix.maildir / "new"
    assert b"X-Original-To: b@example.net\n" in msg
    # Postfix stores LF line ends; smtplib stuffed the dot and Postfix removed it
    assert harness.body_of(msg) == f".leading dot\nbody {marker}\n".encode()


def test_sink_dumps_transaction(sink, marker):
    c = harness.SmtpClient(sink.port)
    assert c.greeting().code == 220
    c.send(b"EHLO selftest\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n")
    ehlo, m, r, d = c.replies(4)
    assert "CHUNKING" not in ehlo.keywords
    assert (m.code, r.code, d.code) == (250, 250, 354)
    c.send(f"Subject: x\r\n\r\n..one dot\r\n{marker}\r\n.\r\n".encode())
    assert c.reply().code == 250
    c.cmd("QUIT")
    [(meta, msg)] = sink.wait_for(marker)
    assert meta["rcpt"] == ["<c@d.example>"]
    assert msg == f"Subject: x\n\n.one dot\n{marker}\n".encode()


def test_fake_backend_records_bytes():
    with harness.FakeBackend(caps=harness.DEFAULT_FAKE_CAPS + ["CHUNKING"]) as fb:
        fb.rcpt_replies["bad@x.example"] = "550 5.1.1 <bad@x.example>: no such user"
        c = harness.SmtpClient(fb.port)
        c.greeting()
        c.send(b"EHLO t\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<bad@x.example>\r\nDATA\r\n")
        rs = c.replies(5)
        assert [r.code for r in rs] == [250, 250, 250, 550, 354]
        assert rs[3].enhanced == "5.1.1"
        c.send(b"..a\r\nb\r\n.\r\n")
        assert c.reply().code == 250
        c.send(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 3\r\nx\r\nBDAT 0 LAST\r\n")
        assert [r.code for r in c.replies(4)] == [250, 250, 250, 250]
        c.cmd("QUIT")
        t1, t2 = fb.wait_transactions(2)
        assert (t1["wire"], t1["content"], t1["accepted"]) == (b"..a\r\nb\r\n", b".a\r\nb\r\n", ["c@d"])
        assert (t2["mode"], t2["content"], t2["chunks"]) == ("BDAT", b"x\r\n", [(3, False), (0, True)])


def test_config_renderer():
    txt = harness.render_conf({"a": "x\"y", "b": {"c": 1, "d": True},
                               "l": [{"n": "s"}], "arr": ["10.0.0.0/8"], "e": []})
    assert txt == ('a = "x\\"y";\nb = {\n  c = 1;\n  d = true;\n};\n'
                   'l = (\n  {\n    n = "s";\n  }\n);\narr = [ "10.0.0.0/8" ];\ne = [  ];\n')
