#!/usr/bin/python3
"""burl_lab.py - the servers behind bench/run_burl_bench.sh (BURL, RFC 4468).

    /usr/bin/python3 bench/burl_lab.py up DIR [options]

Starts, on 127.0.0.1 with free ports and throwaway state, and keeps running
until SIGTERM / SIGINT (then stops everything it started, and nothing
else):

  - an MIT KDC (tests/integration/kdc.py standard_kdc: alice, bob, submit
    with a client keytab);
  - Cyrus IMAP 3.6 with URLAUTH, `submitservers: submit`
    (tests/integration/imap_servers.py CyrusImap), its per-user protocol
    telemetry switched off (it would write every fetched message to disk);
  - smtp-sink as the backend of both contenders (as bench/run_bench.sh:
    `smtp-sink -u nobody -m 5000 127.0.0.1:PORT 4096`, no dump files);
  - Dovecot 2.3 IMAP + submission (imap_servers.DovecotImap with
    `protocols = imap submission`, imap_urlauth_host/port = its own IMAP
    listener, submission_relay_* = the sink, STARTTLS with a throwaway
    certificate; otherwise Dovecot's defaults, like the "Dovecot submission
    (defaults)" peer of docs/PERFORMANCE.md).

Then it APPENDs K messages of SIZE octets as alice to each IMAP server and
GENURLAUTHs a `submit+alice` URL for each (Cyrus: `imap://alice@localhost/
INBOX;UIDVALIDITY=..;UID=..;URLAUTH=submit+alice:internal:..`, Dovecot:
`imap://alice@localhost:<port>/...`), writing DIR/cyrus-urls.txt and
DIR/dovecot-urls.txt (one per line, for msaload --burl-file).

Before the benchmark it checks both paths end to end with a second,
dumping smtp-sink: one BURL through Dovecot submission, one through
msaproxy (a config like the benchmark's, backend = that sink); the message
the sink got must end with the appended bytes.  Results in DIR/verify.txt
("dovecot ok", "msaproxy FAIL <why>" ...; msaproxy's log in
DIR/verify-msaproxy.log).

It writes DIR/msaproxy.conf (the benchmark's msaproxy configuration: a
submission listener with STARTTLS + AUTH PLAIN against a sasldb with
alice/alicepw, backend = the sink, a burl section naming the Cyrus server
with credentials "kerberos" (submit's client keytab) or "password"
(submit / submitpw from a 0600 file)), DIR/msaproxy.env (KRB5_CONFIG etc.
for msaproxy), DIR/lab.env (ports, PIDs, paths; shell syntax), and finally
DIR/ready.  On a setup failure it writes DIR/failed (the reason) and exits 1.

Options:
  --urls K             messages/URLs per IMAP server (100)
  --size BYTES         message size, CRLF line ends included (102400)
  --creds kerberos|password    msaproxy's credentials at Cyrus (kerberos)
  --msaproxy PATH      binary for the msaproxy check (TOP/msaproxy)
  --listen-port PORT   msaproxy's port in msaproxy.conf (a free one)
  --log-level LEVEL    msaproxy's log level in msaproxy.conf (info)
  --workers N          msaproxy workers (1)
  --users N            spread the URLs (and msaload's sessions) over N
                       users: alice, u02 .. uNN (password <user>pw) (1)
  --no-msaproxy-check  skip the msaproxy end-to-end check
  --pool-idle N        burl max_idle_connections for the Cyrus server
                       (default: msaproxy's own default)
  --pool-max N         burl max_connections (default: msaproxy's)
  --cyrus-preload SO   diagnostic only: LD_PRELOAD for Cyrus (e.g. a shim
                       that sets TCP_NODELAY on accepted sockets)
  --cyrus-run tmpfs|disk  where Cyrus's proc_path, mboxname_lockpath and
                       sockets live: a tmpfs (default; /run if it is one,
                       else /dev/shm), as Debian's /run/cyrus, or beside the
                       rest of its state (disk: the tests' layout, the
                       benchmark's before 2026-11-23 19:30 UTC)
  --cyrus-conf K=V     an extra imapd.conf option (repeatable); the
                       benchmark sets unix_group_enable: 0 (no Unix group
                       look-ups for virtual users), K=V overrides it

Needs root (Cyrus and Dovecot drop privileges), /usr/bin/python3 (Debian's,
with python3-gssapi and pytest, which imap_servers.py imports).
"""

import argparse
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP / "tests" / "integration"))

import harness  # noqa: E402
import imap_servers as ims  # noqa: E402
import kdc as kdc_mod  # noqa: E402

USER, PASSWORD = "alice", kdc_mod.ALICE_PASSWORD
RCPT = "bob@example.net"


def log(msg):
    print(f"burl_lab: {msg}", flush=True)


# ------------------------------------------------------------- messages ---

def make_message(size, n, tag):
    """Exactly size octets, CRLF line ends, 76-character body lines (none
    starts with '.'), a unique Message-ID and marker line."""
    marker = f"burl-bench-{tag}-{n}-{os.getpid()}"
    head = (f"From: <alice@example.org>\r\n"
            f"To: <{RCPT}>\r\n"
            f"Subject: BURL benchmark message {n} ({tag})\r\n"
            f"Message-ID: <{marker}@example.org>\r\n"
            f"X-Marker: {marker}\r\n"
            f"\r\n").encode()
    if size < len(head) + 2:
        raise ValueError(f"--size {size}: smaller than the headers")
    body = bytearray()
    left = size - len(head)
    line = 0
    while left > 0:
        if left >= 76 + 2 + 2:
            k = 76
        elif left <= 76 + 2:
            k = left - 2
        else:
            k = left - 4
        body += bytes((ord("a") + (line + i) % 26) for i in range(k)) + b"\r\n"
        left -= k + 2
        line += 1
    msg = head + bytes(body)
    assert len(msg) == size
    return msg, marker


def bench_users(n):
    """{user: password}: alice, then u02, u03 ... (password <user>pw)."""
    users = {USER: PASSWORD}
    for i in range(2, n + 1):
        users[f"u{i:02d}"] = f"u{i:02d}pw"
    return users


def make_urls(port, authority, k, size, tag, user=USER, password=PASSWORD):
    """APPEND k messages as user on one connection and GENURLAUTH a
    submit+<user> URL for each; -> the URLs."""
    m = ims.imap_connect(port, user, password)
    urls = []
    try:
        for n in range(k):
            msg, _ = make_message(size, n, f"{tag}-{user}")
            typ, data = m.append("INBOX", None, None, msg)
            mo = re.search(rb"\[APPENDUID (\d+) (\d+)\]", (data or [b""])[0] or b"")
            if typ != "OK" or not mo:
                raise RuntimeError(f"{tag}: APPEND: {typ} {data!r}")
            url = ims.imap_url(authority, user, "INBOX", int(mo.group(1)),
                               int(mo.group(2)))
            typ, data = m._simple_command(
                "GENURLAUTH", ims._imap_string(f"{url};URLAUTH=submit+{user}"), "INTERNAL")
            if typ != "OK":
                raise RuntimeError(f"{tag}: GENURLAUTH: {typ} {data!r}")
            _, got = m._untagged_response(typ, data, "GENURLAUTH")
            got = [ims._unquote(g).decode() for g in got if g]
            if not got:
                raise RuntimeError(f"{tag}: GENURLAUTH gave no URL ({data!r})")
            urls.append(got[0])
    finally:
        ims._logout(m)
    return urls


def make_url_file(port, authority, users, k, size, tag, out):
    """k URLs in all, spread over users; out: one URL per line (one
    user), or "USER:PASS URL" lines (several).  -> alice's URLs."""
    per = -(-k // len(users))
    lines, first = [], None
    for u, pw in users.items():
        urls = make_urls(port, authority, per, size, tag, u, pw)
        first = first or urls
        lines += [url if len(users) == 1 else f"{u}:{pw} {url}" for url in urls]
    Path(out).write_text("".join(l + "\n" for l in lines))
    return first


# -------------------------------------------------------------- daemons ---

def _die_with_parent():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except Exception:
        pass


class BenchSink:
    """smtp-sink as in bench/run_bench.sh: no dump files, no -v."""

    def __init__(self, d):
        self.port = harness.free_port()
        self.logfile = Path(d) / "sink.log"
        self.proc = None

    def start(self):
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            ["smtp-sink", "-u", harness.MAIL_USER, "-m", "5000",
             f"127.0.0.1:{self.port}", "4096"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent)
        harness.wait_port(self.port, 10, "smtp-sink", self.proc)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    cleanup = stop


def tmpfs_dir():
    """A tmpfs directory for Cyrus's run files (/run if it is a tmpfs, as
    on a normal Debian host, else /dev/shm), or None."""
    mounts = {}
    try:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            f = line.split()
            mounts[f[1]] = f[2]
    except OSError:
        return None
    for d in ("/run", "/dev/shm"):
        if mounts.get(d) == "tmpfs" and os.access(d, os.W_OK):
            return d
    return None


class CyrusBench(ims.CyrusImap):
    """CyrusImap as a production deployment runs it: proc_path,
    mboxname_lockpath and the sockets on a tmpfs (Debian's imapd.conf puts
    them in /run/cyrus; Cyrus rewrites proc/<pid> with a create + rename on
    every command and opens lock files with O_CREAT|O_TRUNC on every mailbox
    access, which on ext4 means inode allocation, journal and writeback per
    URLFETCH), unless run_on_tmpfs is False; extra imapd.conf options
    (extra_conf); optionally an LD_PRELOAD (diagnostics)."""

    def __init__(self, preload=None, run_on_tmpfs=True, **kw):
        self.preload = preload
        self.own_run = None
        base = tmpfs_dir() if run_on_tmpfs else None
        if run_on_tmpfs and base is None:
            raise RuntimeError("no tmpfs (/run or /dev/shm) for Cyrus's run files")
        if base:
            self.own_run = Path(tempfile.mkdtemp(prefix="msaproxy-cyrus-run.", dir=base))
            os.chmod(self.own_run, 0o755)
            kw["run_dir"] = self.own_run
        super().__init__(**kw)

    def _spawn(self, argv, env, timeout):
        if self.preload:
            env = dict(env, LD_PRELOAD=self.preload)
        return super()._spawn(argv, env, timeout)

    def cleanup(self):
        super().cleanup()
        if self.own_run:
            shutil.rmtree(self.own_run, ignore_errors=True)


class DovecotSubmission(ims.DovecotImap):
    """DovecotImap plus Dovecot's own submission service doing BURL through
    its internal imap-urlauth path (imap_urlauth_host/port name the IMAP
    listener, as DovecotImap sets them), relaying to relay_port."""

    what = "dovecot"

    def __init__(self, relay_port, cert, key, **kw):
        self.relay_port = relay_port
        self.cert, self.key = cert, key
        self.submission_port = harness.free_port()
        super().__init__(**kw)

    def _write_config(self):
        super()._write_config()
        text = self.conf.read_text()
        n1 = len(re.findall(r"(?m)^protocols = imap$", text))
        n2 = len(re.findall(r"(?m)^ssl = no$", text))
        if n1 != 1 or n2 != 1:
            raise RuntimeError("DovecotImap's config changed: cannot add submission")
        text = re.sub(r"(?m)^protocols = imap$", "protocols = imap submission", text)
        text = re.sub(r"(?m)^ssl = no$",
                      f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{self.key}", text)
        text += f"""
# --- added by bench/burl_lab.py: Dovecot's own BURL (RFC 4468) path ---
submission_relay_host = 127.0.0.1
submission_relay_port = {self.relay_port}
submission_relay_trusted = no
submission_relay_ssl = no
# every benchmark session is alice from 127.0.0.1
mail_max_userip_connections = 100000
default_process_limit = 1000
default_client_limit = 10000
service submission-login {{
  inet_listener submission {{
    address = 127.0.0.1
    port = {self.submission_port}
  }}
  inet_listener submissions {{
    port = 0
  }}
}}
"""
        self.conf.write_text(text)

    @property
    def master_pid(self):
        return self.pid


# ------------------------------------------------------------- msaproxy ---

def msaproxy_conf(args, d, port, backend_port, cyrus, kdc, sasldb, cert, key, pwfile):
    srv = {"name": "cyrus", "authority": cyrus.url_authority,
           "address": f"127.0.0.1:{cyrus.port}", "tls": "none"}
    if args.creds == "password":
        srv.update(credentials="password", user="submit", password_file=str(pwfile))
    else:
        srv.update(credentials="kerberos", principal=f"submit@{kdc.realm}",
                   keytab=str(kdc.keytabs["submit"]), service_host="localhost")
    if args.pool_idle is not None:
        srv["max_idle_connections"] = args.pool_idle
    if args.pool_max is not None:
        srv["max_connections"] = args.pool_max
    return {
        "server_name": "bench.test",
        "workers": args.workers,
        # msaproxy does not serve as root: its workers run as this account
        "user": harness.ensure_test_user().pw_name if os.geteuid() == 0 else "",
        "log": {"level": args.log_level},
        "listeners": [{"name": "bench-burl", "kind": "submission",
                       "address": f"127.0.0.1:{port}", "require_auth": True}],
        "backend": {"address": f"127.0.0.1:{backend_port}", "protocol": "smtp"},
        "tls": {"certificates": [{"cert": str(cert), "key": str(key)}],
                "session_tickets": True},
        "sasl": {"hostname": "localhost", "mechanisms": "PLAIN",
                 "sasldb_path": str(sasldb)},
        # The IMAP leg is plaintext on loopback, as Dovecot's (a unix
        # socket): fetch_tls "configured" (the default "as-client" would
        # want TLS, since the SMTP client uses STARTTLS).
        "burl": {"fetch_tls": "configured", "local_domains": f"{kdc.realm} example.org",
                 "imap_servers": [srv]},
        # The benchmark uses each of its K URLs MSGS/K times per run, and
        # url_reuse allows 5 resolutions of a URL a day by default: the limit
        # stays on (its cost is measured), with a bound the runs cannot reach.
        "rate_limits": {"url_reuse": {"max": 1000000}},
    }


def krb_env(kdc):
    e = kdc.env()
    e.pop("KRB5_KDC_PROFILE", None)
    e.pop("KRB5CCNAME", None)
    return e


def smtp_burl(port, url, timeout=30):
    """STARTTLS, AUTH PLAIN alice, EHLO again, MAIL, RCPT, BURL url LAST;
    -> (ok, transcript)."""
    tr = []
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, local_hostname="verify.example.org",
                      timeout=timeout) as s:
        s.ehlo()
        s.starttls(context=ctx)
        s.ehlo()
        code, resp = s.docmd("AUTH", "PLAIN " + __import__("base64").b64encode(
            f"\0{USER}\0{PASSWORD}".encode()).decode())
        tr.append(f"AUTH PLAIN -> {code} {resp!r}")
        if code != 235:
            return False, tr
        s.ehlo()
        tr.append(f"EHLO after AUTH: {'BURL' if s.has_extn('burl') else 'no BURL'} "
                  f"({s.esmtp_features.get('burl', '')!r})")
        if not s.has_extn("burl"):
            return False, tr
        for cmd, arg in (("MAIL", "FROM:<alice@example.org>"), ("RCPT", f"TO:<{RCPT}>"),
                         ("BURL", f"{url} LAST")):
            code, resp = s.docmd(cmd, arg)
            shown = arg if cmd != "BURL" else re.sub(r"(URLAUTH=[^:]*:[^:]*:).*", r"\1<redacted>",
                                                     arg)
            tr.append(f"{cmd} {shown} -> {code} {resp!r}")
            if code != 250:
                return False, tr
    return True, tr


def check_sink(vsink, marker, msg, timeout=10):
    """Did the dumping sink get the message (ending with exactly msg)?"""
    got = harness.wait_until(lambda: vsink.find(marker), timeout)
    if not got:
        return False, "the sink got no message with the marker"
    _, m = got[-1]
    want = harness.crlf_to_lf(msg)
    if not m.endswith(want):
        return False, (f"the sink's message ({len(m)} octets) does not end with "
                       f"the {len(want)} appended ones")
    return True, f"the sink got {len(m)} octets ending with the appended message"


def verify_msaproxy(args, d, conf, env, url, vsink, marker, msg):
    port = conf["listeners"][0]["address"].rsplit(":", 1)[1]
    cf = d / "verify-msaproxy.conf"
    lf = d / "verify-msaproxy.log"
    cf.write_text(harness.render_conf(conf))
    if not os.access(args.msaproxy, os.X_OK):
        return False, f"no msaproxy binary at {args.msaproxy}"
    with open(lf, "ab") as out:
        p = subprocess.Popen([args.msaproxy, "-f", "-c", str(cf)], stdin=subprocess.DEVNULL,
                             stdout=out, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True, preexec_fn=_die_with_parent)
    try:
        try:
            harness.wait_port(int(port), 10, "msaproxy", p)
        except RuntimeError as e:
            return False, str(e)
        tr = []
        deadline = time.monotonic() + 15
        while True:
            try:
                ok, tr = smtp_burl(int(port), url)
            except (OSError, smtplib.SMTPException) as e:
                ok, tr = False, tr + [f"{type(e).__name__}: {e}"]
            # BURL is offered once the Kerberos ticket is in: retry a while
            if ok or time.monotonic() > deadline or not any(
                    "no BURL" in t for t in tr):
                break
            time.sleep(0.5)
        if not ok:
            return False, "; ".join(tr)
        ok, why = check_sink(vsink, marker, msg)
        return ok, why + "; " + "; ".join(tr)
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


# ------------------------------------------------------------------ up ---

def up(args):
    d = Path(args.dir).resolve()
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    for f in ("ready", "failed"):
        try:
            (d / f).unlink()
        except FileNotFoundError:
            pass
    started = []
    stop = {"now": False}

    def on_signal(sig, _frame):
        stop["now"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def keep_logs():
        ld = d / "logs"
        ld.mkdir(exist_ok=True)
        for name, obj in started:
            for attr in ("logfile", "outfile"):
                f = getattr(obj, attr, None)
                if f and Path(f).is_file() and Path(f).stat().st_size < 50 << 20:
                    try:
                        shutil.copy(f, ld / f"{name}-{Path(f).name}")
                    except OSError:
                        pass

    try:
        t0 = time.monotonic()
        kdc = kdc_mod.standard_kdc()
        started.append(("kdc", kdc))
        log(f"KDC {kdc.realm} on {kdc.address}")

        users = bench_users(args.users)
        # Virtual users (no Unix accounts) and no group: ACLs, as a
        # submission set-up has: without this, auth_unix looks every URL's
        # owner up by getpwnam() and getgrouplist() (NSS files + systemd:
        # ~180 syscalls per URLFETCH here).  --cyrus-conf unix_group_enable=1
        # restores the default.
        extra = {"unix_group_enable": "0"}
        for kv in args.cyrus_conf or []:
            k, sep, v = kv.partition("=")
            if not sep or not k.strip() or not v.strip():
                raise ValueError(f"--cyrus-conf {kv!r}: KEY=VALUE")
            extra[k.strip()] = v.strip()
        cyrus = CyrusBench(kdc=kdc, preload=args.cyrus_preload,
                           users=dict(ims.USERS, **users),
                           run_on_tmpfs=args.cyrus_run == "tmpfs", extra_conf=extra)
        started.append(("cyrus", cyrus))
        cyrus.start()
        # telemetry writes both directions of every session to disk
        shutil.rmtree(cyrus.lib / "log", ignore_errors=True)
        log(f"Cyrus imapd on 127.0.0.1:{cyrus.port} (URL authority {cyrus.url_authority}), "
            f"run files in {cyrus.run_dir}" + (f", extra imapd.conf {extra}" if extra else ""))

        sink = BenchSink(d)
        started.append(("sink", sink))
        sink.start()
        vsink = harness.SmtpSink()
        started.append(("verify-sink", vsink))
        vsink.start()
        log(f"smtp-sink on 127.0.0.1:{sink.port}, check sink on 127.0.0.1:{vsink.port}")

        tlsd = d / "tls"
        tlsd.mkdir(exist_ok=True)
        cert, key = tlsd / "cert.pem", tlsd / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-days", "7",
                        "-subj", "/CN=bench.test", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        os.chmod(key, 0o600)
        sasldb = d / "sasldb2"
        try:
            sasldb.unlink()
        except FileNotFoundError:
            pass
        for u, pw in users.items():
            subprocess.run(["saslpasswd2", "-f", str(sasldb), "-a", "msaproxy", "-u",
                            "localhost", "-c", "-p", u], input=pw.encode(), check=True)
        # msaproxy's unprivileged workers read the sasldb at every AUTH
        os.chmod(sasldb, 0o644)
        pwfile = d / "submit.pw"
        pwfile.write_text(kdc_mod.SUBMIT_PASSWORD + "\n")
        os.chmod(pwfile, 0o600)

        dovecot = DovecotSubmission(vsink.port, cert, key, users=dict(ims.USERS, **users))
        started.append(("dovecot", dovecot))
        dovecot.start()
        log(f"Dovecot IMAP on 127.0.0.1:{dovecot.port}, submission on "
            f"127.0.0.1:{dovecot.submission_port}")

        cu = make_url_file(cyrus.port, cyrus.url_authority, users, args.urls, args.size,
                           "cyrus", d / "cyrus-urls.txt")
        du = make_url_file(dovecot.port, dovecot.url_authority, users, args.urls, args.size,
                           "dovecot", d / "dovecot-urls.txt")
        log(f"{args.urls} + {args.urls} messages of {args.size} octets appended "
            f"({len(users)} user(s)), URLs generated")

        # ---- end-to-end checks, into the dumping sink
        results = []
        msg, marker = make_message(args.size, 0, f"dovecot-{USER}")
        try:
            ok, tr = smtp_burl(dovecot.submission_port, du[0])
            why = "; ".join(tr)
            if ok:
                ok, w = check_sink(vsink, marker, msg)
                why = w + "; " + why
        except (OSError, smtplib.SMTPException) as e:
            ok, why = False, f"{type(e).__name__}: {e}"
        results.append(f"dovecot {'ok' if ok else 'FAIL'} {why}")
        log(results[-1])
        if not ok:
            raise RuntimeError(f"Dovecot's BURL does not work: {why}")

        port = args.listen_port or harness.free_port()
        env = dict(os.environ)
        env.update(krb_env(kdc))
        menv = krb_env(kdc)
        if args.no_msaproxy_check:
            results.append("msaproxy not-checked")
        else:
            vport = harness.free_port()
            conf = msaproxy_conf(args, d, vport, vsink.port, cyrus, kdc, sasldb, cert, key,
                                 pwfile)
            conf["log"]["level"] = "debug"
            msg, marker = make_message(args.size, 0, f"cyrus-{USER}")
            ok, why = verify_msaproxy(args, d, conf, env, cu[0], vsink, marker, msg)
            results.append(f"msaproxy {'ok' if ok else 'FAIL'} {why}")
            log(results[-1])
        (d / "verify.txt").write_text("".join(r + "\n" for r in results))

        # ---- Dovecot relays to the benchmark sink from now on
        dovecot.stop()
        dovecot.relay_port = sink.port
        dovecot.start()

        conf = msaproxy_conf(args, d, port, sink.port, cyrus, kdc, sasldb, cert, key, pwfile)
        (d / "msaproxy.conf").write_text(harness.render_conf(conf))
        (d / "msaproxy.env").write_text("".join(f"{k}={v}\n" for k, v in menv.items()))

        dv = subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout
        env_lines = {
            "LAB_SINK_PORT": sink.port, "LAB_SINK_PID": sink.proc.pid,
            "LAB_CYRUS_PORT": cyrus.port, "LAB_CYRUS_PID": cyrus.pid,
            "LAB_CYRUS_RUN": f"{args.cyrus_run} ({cyrus.run_dir})",
            "LAB_CYRUS_EXTRA": " ".join(f"{k}={v}" for k, v in extra.items()) or "-",
            "LAB_DOVECOT_IMAP_PORT": dovecot.port,
            "LAB_DOVECOT_SUBMISSION_PORT": dovecot.submission_port,
            "LAB_DOVECOT_PID": dovecot.pid, "LAB_DOVECOT_LOG": dovecot.logfile,
            "LAB_DOVECOT_VERSION": dv.split()[0] if dv else "?",
            "LAB_KDC_PID": kdc.pid, "LAB_KDC_REALM": kdc.realm,
            "LAB_MSAPROXY_PORT": port, "LAB_MSAPROXY_CONF": d / "msaproxy.conf",
            "LAB_MSAPROXY_ENV": d / "msaproxy.env",
            "LAB_CYRUS_URLS": d / "cyrus-urls.txt", "LAB_DOVECOT_URLS": d / "dovecot-urls.txt",
            "LAB_URLS": args.urls, "LAB_SIZE": args.size, "LAB_CREDS": args.creds,
            "LAB_USERS": len(users),
            "LAB_USER": USER, "LAB_PASSWORD": PASSWORD,
            "LAB_MSAPROXY_CHECK": results[-1].split()[1],
            "LAB_SETUP_SECONDS": f"{time.monotonic() - t0:.1f}",
        }
        (d / "lab.env").write_text("".join(f"{k}='{v}'\n" for k, v in env_lines.items()))
        (d / "ready").write_text("ready\n")
        log(f"ready after {time.monotonic() - t0:.1f} s")
        gone = set()
        while not stop["now"]:
            time.sleep(1)
            for name, obj in started:
                alive = obj.running() if hasattr(obj, "running") else \
                    obj.proc is not None and obj.proc.poll() is None
                if not alive and name not in gone and name != "verify-sink":
                    gone.add(name)
                    log(f"{name} is gone")
                    (d / "events.txt").open("a").write(
                        f"{time.strftime('%H:%M:%S')} {name} is gone\n")
    except KeyboardInterrupt:
        pass
    except Exception as e:
        traceback.print_exc()
        (d / "failed").write_text(f"{type(e).__name__}: {e}\n")
        keep_logs()
        for _, obj in reversed(started):
            try:
                obj.cleanup()
            except Exception:
                pass
        return 1
    keep_logs()
    for _, obj in reversed(started):
        try:
            obj.cleanup()
        except Exception:
            traceback.print_exc()
    log("stopped")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up")
    u.add_argument("dir")
    u.add_argument("--urls", type=int, default=100)
    u.add_argument("--size", type=int, default=102400)
    u.add_argument("--creds", choices=("kerberos", "password"), default="kerberos")
    u.add_argument("--msaproxy", default=str(TOP / "msaproxy"))
    u.add_argument("--listen-port", type=int, default=0)
    u.add_argument("--log-level", default="info")
    u.add_argument("--workers", type=int, default=1)
    u.add_argument("--users", type=int, default=1)
    u.add_argument("--no-msaproxy-check", action="store_true")
    u.add_argument("--pool-idle", type=int)
    u.add_argument("--pool-max", type=int)
    u.add_argument("--cyrus-preload")
    u.add_argument("--cyrus-run", choices=("tmpfs", "disk"), default="tmpfs")
    u.add_argument("--cyrus-conf", action="append")
    args = ap.parse_args()
    if args.urls < 1 or args.urls > 100000:
        ap.error("--urls: 1..100000")
    if args.users < 1 or args.users > 99 or args.users > args.urls:
        ap.error("--users: 1..99, at most --urls")
    if os.geteuid() != 0:
        ap.error("must run as root (Cyrus and Dovecot drop privileges)")
    return up(args)


if __name__ == "__main__":
    sys.exit(main())
