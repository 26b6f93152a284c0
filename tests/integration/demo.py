#!/usr/bin/python3
"""demo.py - msaproxy end to end on 127.0.0.1, driven by scripts/demo.sh.

Starts a private Postfix (delivering every recipient into one Maildir) and
msaproxy in front of it, both on free ports with all state in one temp
directory; sends one message through msaproxy with swaks (or, without swaks,
a built-in client that prints the same C:/S: transcript); shows where the
message landed and its content with the Received headers; then stops
everything -- or, with --keep, leaves it running and says how to stop it.

Needs root (Postfix drops privileges).  Uses ./msaproxy or $MSAPROXY_BIN.
"""

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402


def say(msg=""):
    print(msg, flush=True)


def send_with_swaks(port, sender, rcpt, subject, demo_id):
    cmd = ["swaks", "--server", "127.0.0.1", "--port", str(port),
           "--ehlo", "demo-client.example", "--from", sender, "--to", rcpt,
           "--header", f"Subject: {subject}", "--header", f"X-Demo-Id: {demo_id}",
           "--body", "Hello from the msaproxy demo.\n"
                     ".A line that starts with a dot (dot-stuffed on the wire).\n",
           "--timeout", "30"]
    say("$ " + " ".join(shlex.quote(c) for c in cmd))
    r = subprocess.run(cmd)
    return r.returncode == 0


def send_builtin(port, sender, rcpt, subject, demo_id):
    c = harness.SmtpClient(port, timeout=30)

    def show(prefix, data):
        for line in data.decode(errors="replace").splitlines():
            say(f"{prefix} {line}")

    show("<-", c.greeting().raw)
    ok = True
    for line in (f"EHLO demo-client.example", f"MAIL FROM:<{sender}>",
                 f"RCPT TO:<{rcpt}>", "DATA"):
        show(" ->", line.encode())
        r = c.cmd(line)
        show("<-", r.raw)
        ok = ok and r.code in (250, 354)
    body = (f"Subject: {subject}\r\nX-Demo-Id: {demo_id}\r\nFrom: <{sender}>\r\n"
            f"To: <{rcpt}>\r\n\r\nHello from the msaproxy demo.\r\n"
            f".A line that starts with a dot (dot-stuffed on the wire).\r\n").encode()
    wire = harness.dot_stuff(body[:-2]) + b"\r\n.\r\n"
    show(" ->", wire)
    c.send(wire)
    r = c.reply()
    show("<-", r.raw)
    ok = ok and r.code == 250
    show(" ->", b"QUIT")
    show("<-", c.cmd("QUIT").raw)
    c.close()
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true",
                    help="leave Postfix and msaproxy running; print how to stop them")
    ap.add_argument("--binary", default=harness.DEFAULT_BINARY, help="msaproxy binary")
    ap.add_argument("--no-swaks", action="store_true", help="use the built-in client")
    ap.add_argument("--no-deps", action="store_true", help=argparse.SUPPRESS)  # demo.sh's
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("demo.py: must run as root (the private Postfix drops privileges)")
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"demo.py: {args.binary} not found: run scripts/build.sh first")

    # msaproxy does not serve as root: its workers run as this account
    harness.ensure_test_user()
    top = harness.make_tempdir("msaproxy-demo.")
    pf = harness.PostfixBackend(basedir=top / "postfix", hostname="backend.demo.test")
    proxy = None
    ok = False
    try:
        say(f"== state directory: {top}")
        pf.start()
        say(f"== Postfix (private instance) listening on {pf.address}, "
            f"delivering every recipient to {pf.maildir}/")
        (top / "msaproxy").mkdir()
        os.chmod(top / "msaproxy", 0o755)
        proxy = harness.Msaproxy(pf.address, workdir=top / "msaproxy", binary=args.binary,
                                 server_name="msaproxy.demo.test",
                                 overrides={"log": {"level": "info"},
                                            "timeouts": {"shutdown": 5}})
        proxy.start(backend=pf, probe_wait=1.5)
        say(f"== msaproxy listening on 127.0.0.1:{proxy.port} "
            f"(config {proxy.conffile}, log {proxy.logfile})")
        say()

        demo_id = uuid.uuid4().hex
        sender, rcpt = "alice@example.org", "bob@example.net"
        subject = "msaproxy demo"
        say("== SMTP transcript (client -> msaproxy)")
        if shutil.which("swaks") and not args.no_swaks:
            sent = send_with_swaks(proxy.port, sender, rcpt, subject, demo_id)
        else:
            sent = send_builtin(proxy.port, sender, rcpt, subject, demo_id)
        say()
        if not sent:
            say("!! the message was not accepted; msaproxy log:")
            say(proxy.log()[-3000:])
            return 1

        [(path, msg)] = pf.wait_for(demo_id, timeout=20)
        say(f"== delivered by Postfix to: {path}")
        say("== message as stored (Postfix stores LF line ends):")
        say("-" * 72)
        say(msg.decode(errors="replace").rstrip("\n"))
        say("-" * 72)
        recs = harness.header_values(msg, "Received")
        say("== Received headers, newest first:")
        for r in recs:
            say("   " + r)
        ok = any("(msaproxy)" in r for r in recs)
        if not ok:
            say("!! no Received header from msaproxy")
        if args.keep:
            stop = top / "stop.sh"
            stop.write_text(
                "#!/bin/sh\n# stops the msaproxy demo started by scripts/demo.sh --keep\n"
                f"kill -TERM {proxy.proc.pid} 2>/dev/null || true\n"
                f"postfix -c {shlex.quote(str(pf.etc))} stop 2>/dev/null || true\n"
                f"sleep 1\nrm -rf {shlex.quote(str(top))}\n")
            stop.chmod(0o755)
            say()
            say("== still running (--keep):")
            say(f"   msaproxy  pid {proxy.proc.pid}, 127.0.0.1:{proxy.port}")
            say(f"   Postfix   master pid {pf.master_pid()}, {pf.address}, "
                f"Maildir {pf.maildir}/new/")
            say(f"   try:      swaks --server 127.0.0.1 --port {proxy.port} "
                f"--to someone@example.net")
            say(f"   stop with: sh {stop}")
            proxy = None   # leave it running
            pf = None
        return 0 if ok else 1
    finally:
        if proxy is not None:
            try:
                proxy.stop(check=False)
            except AssertionError as e:
                say(f"!! {e}")
        if pf is not None:
            pf.stop()
            shutil.rmtree(top, ignore_errors=True)
            say("== stopped msaproxy and Postfix, removed " + str(top))


if __name__ == "__main__":
    sys.exit(main())
