"""harness.py - real and fake peers for msaproxy's black-box integration tests.

Everything binds 127.0.0.1 on ports chosen at run time and keeps its state in
a temporary directory; every class has start()/stop() and stop() is safe to
call twice (fixtures call it on failure too).  Standard library only.

  PostfixBackend  a private Postfix instance (own config, queue and data
                  directories): smtpd on 127.0.0.1:port accepts any recipient
                  from 127.0.0.0/8 and virtual(8) delivers every domain to one
                  Maildir.  CHUNKING, SMTPUTF8 and DSN are on (Postfix
                  defaults); XCLIENT/XFORWARD allowed from 127.0.0.0/8.
  SmtpSink        Postfix's smtp-sink, one dump file per transaction.  It never
                  offers CHUNKING, so the proxy must talk DATA to it.
  FakeBackend     a scriptable SMTP/LMTP server in Python threads: chosen EHLO
                  capabilities, per-command replies, dies/hangs mid-DATA, sends
                  garbage, records the exact bytes it received.
  Msaproxy        writes a libconfig file from a dict of overrides, runs
                  `msaproxy -f -c FILE`, exposes its log, stops it with SIGTERM
                  (asserting a clean exit) or SIGKILL.
  SmtpClient      a raw-socket SMTP client: send bytes, read one complete
                  (multi-line) reply with a timeout.  For pipelining and
                  byte-exact tests.
  RedisServer     a private redis-server (no persistence, throwaway dir) with
                  a small RESP client; pause()/resume() make it hang.

Running Postfix and smtp-sink needs root (they drop privileges to postfix /
nobody, so the temp directories and all their parents must be traversable).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_BINARY = os.environ.get("MSAPROXY_BIN", str(REPO / "msaproxy"))

# MSAPROXY_VALGRIND=1: every msaproxy started by Msaproxy.start runs under
# valgrind's memcheck.  The workers are forked (not exec'd) and so are
# checked too; a process with a memory error or a definite leak exits 99,
# which the master (for a worker) turns into exit status 1, and which
# Msaproxy.stop(check=True) turns into a test failure.  The reports go to
# msaproxy's log (stderr).  Timeouts are stretched by VALGRIND_SLOWDOWN.
VALGRIND = os.environ.get("MSAPROXY_VALGRIND", "") not in ("", "0")
VALGRIND_CMD = [
    "valgrind", "--tool=memcheck", "--error-exitcode=99", "--leak-check=full",
    "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
    "--trace-children=yes", "--child-silent-after-fork=no",
    "--num-callers=30", f"--suppressions={REPO / 'tests' / 'valgrind.supp'}",
    "-q",
]
VALGRIND_SLOWDOWN = 6

MAIL_USER = "nobody"
MAIL_GROUP = "nogroup"


# --------------------------------------------------------------- helpers ---

# The unprivileged account msaproxy's workers and audit writer run as in the
# tests (scripts/install-deps.sh creates it; so does ensure_test_user()).
TEST_USER = os.environ.get("MSAPROXY_TEST_USER", "msaproxy")


def ensure_test_user(name=TEST_USER):
    """The account exists (tests run as root: create it if missing)."""
    import pwd
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", name], check=True)
        return pwd.getpwnam(name)


_ports_given = []


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that
    this process has not handed out recently: the kernel may give the same
    ephemeral port to two binds in a row, and two listeners of one
    configuration must not get the same one."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            break
    _ports_given.append(port)
    del _ports_given[:-4096]
    return port


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port, timeout=10.0, what="service", proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} "
                               f"before opening 127.0.0.1:{port}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not open 127.0.0.1:{port} within {timeout} s")


def wait_until(pred, timeout=10.0, interval=0.05):
    """Poll pred() until it returns a true value; return that value or None."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def make_tempdir(prefix):
    """A fresh directory under /tmp that unprivileged daemons can traverse."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    p = Path(d)
    for parent in p.parents:
        st = parent.stat()
        if not st.st_mode & 0o001:
            raise RuntimeError(f"{parent} is not traversable by other users")
    return p


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
        return st != "Z"
    except OSError:
        return False


def crlf_to_lf(b):
    return b.replace(b"\r\n", b"\n")


def dot_stuff(content):
    """RFC 5321 4.5.2 transparency for CRLF content: every line that starts
    with '.' gets one more."""
    out = []
    for line in content.split(b"\r\n"):
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out)


def unfold_headers(msg):
    """Header section of msg (bytes, CRLF or LF) as a list of
    (raw_lines, unfolded_text) in order."""
    text = msg.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    out = []
    for line in text.split("\n"):
        if line[:1] in (" ", "\t") and out:
            raw, unf = out[-1]
            out[-1] = (raw + [line], unf + " " + line.strip())
        else:
            out.append(([line], line))
    return out


def header_values(msg, name):
    name = name.lower() + ":"
    return [u for _, u in unfold_headers(msg) if u.lower().startswith(name)]


def body_of(msg):
    """Everything after the first empty line (CRLF or LF message)."""
    cands = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n")
             for i in [msg.find(sep)] if i >= 0]
    if not cands:
        return b""
    i, n = min(cands)
    return msg[i + n:]


def split_first_received(msg):
    """(first header field if it is a Received: field, the rest).  Works on
    CRLF and LF messages; continuation lines start with SP or TAB."""
    if not msg.startswith(b"Received:"):
        return None, msg
    nl = b"\r\n" if msg.find(b"\r\n") == msg.find(b"\n") - 1 else b"\n"
    pos = 0
    while True:
        i = msg.find(nl, pos)
        if i < 0:
            return msg, b""
        nxt = i + len(nl)
        if msg[nxt:nxt + 1] not in (b" ", b"\t"):
            return msg[:nxt], msg[nxt:]
        pos = nxt


# ---------------------------------------------------------------- Postfix ---

class PostfixBackend:
    """A private Postfix instance under a temp directory.

    smtpd on 127.0.0.1:port, any recipient accepted, every domain delivered by
    virtual(8) into self.maildir (LF line ends, original recipient in
    X-Original-To).  Use a unique marker in each test message and
    wait_for(marker) to find it: the instance is shared between tests.
    """

    def __init__(self, basedir=None, port=None, hostname="backend.test",
                 extra_main_cf=None):
        self.dir = Path(basedir) if basedir else make_tempdir("msaproxy-pf.")
        self.own_dir = basedir is None
        self.port = port or free_port()
        self.hostname = hostname
        self.extra = dict(extra_main_cf or {})
        self.etc = self.dir / "etc"
        self.spool = self.dir / "spool"
        self.data = self.dir / "data"
        self.mailboxes = self.dir / "mailboxes"
        self.maildir = self.mailboxes / "sink"
        self.maillog = self.dir / "maillog"
        self.started = False

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _write_config(self):
        for d in (self.etc, self.spool, self.data, self.mailboxes):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        shutil.chown(self.data, "postfix")
        os.chmod(self.data, 0o700)
        shutil.chown(self.mailboxes, MAIL_USER, MAIL_GROUP)
        uid = int(subprocess.check_output(["id", "-u", MAIL_USER]).strip())
        gid = int(subprocess.check_output(["id", "-g", MAIL_USER]).strip())
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.spool),
            "data_directory": str(self.data),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.dir),
            "syslog_name": "msaproxy-test-postfix",
            "myhostname": self.hostname,
            "mydomain": "test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtpd_banner": "$myhostname ESMTP Postfix (msaproxy test backend)",
            "biff": "no",
            "alias_maps": "",
            "alias_database": "",
            "smtp_dns_support_level": "disabled",
            "delay_warning_time": "0",
            # every recipient from every client (XCLIENT may change the
            # client address the restrictions see)
            "smtpd_client_restrictions": "",
            "smtpd_helo_restrictions": "",
            "smtpd_sender_restrictions": "",
            "smtpd_relay_restrictions": "check_client_access static:OK, reject",
            "smtpd_recipient_restrictions": "",
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            # show the login the proxy passes with XCLIENT LOGIN=
            "smtpd_sasl_authenticated_header": "yes",
            "smtpd_authorized_xforward_hosts": "127.0.0.0/8",
            "message_size_limit": "104857600",
            "virtual_mailbox_limit": "0",
            "mailbox_size_limit": "0",
            "virtual_mailbox_domains": "static:all",
            "virtual_mailbox_base": str(self.mailboxes),
            "virtual_mailbox_maps": "static:sink/",
            "virtual_uid_maps": f"static:{uid}",
            "virtual_gid_maps": f"static:{gid}",
            "virtual_minimum_uid": "1",
            # quick retries so nothing lingers; no bounce mail loops
            "queue_run_delay": "10s",
            "minimal_backoff_time": "10s",
            "maximal_backoff_time": "20s",
            "bounce_queue_lifetime": "0",
            "notify_classes": "",
        }
        main.update(self.extra)
        (self.etc / "main.cf").write_text(
            "# generated by tests/integration/harness.py\n" +
            "".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.etc / "master.cf").write_text(f"""\
# generated by tests/integration/harness.py (chroot off everywhere)
127.0.0.1:{self.port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""")

    def _postfix(self, *args, check=True):
        r = subprocess.run(["postfix", "-c", str(self.etc), *args],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"postfix {' '.join(args)} failed ({r.returncode}): "
                               f"{r.stdout}{r.stderr}{self.log_tail()}")
        return r

    def start(self, timeout=15):
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} already in use")
        self._write_config()
        self._postfix("start")
        self.started = True
        wait_port(self.port, timeout, "postfix smtpd")
        return self

    def master_pid(self):
        try:
            return int((self.spool / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self):
        if not self.started:
            return
        self.started = False
        pid = self.master_pid()
        self._postfix("stop", check=False)
        if pid and not wait_until(lambda: not _pid_alive(pid), 10):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    # -- observation --
    def log_tail(self, n=40):
        try:
            return "\n".join(self.maillog.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log(self):
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return ""

    def connection_count(self):
        return len(re.findall(r"smtpd\[\d+\]: connect from", self.log()))

    def message_files(self):
        d = self.maildir / "new"
        if not d.is_dir():
            return []
        return sorted(d.iterdir(), key=lambda p: (p.stat().st_mtime, p.name))

    def messages(self):
        out = []
        for p in self.message_files():
            try:
                out.append((p, p.read_bytes()))
            except OSError:
                pass
        return out

    def find(self, marker):
        """Delivered messages (path, bytes) containing marker (bytes/str)."""
        if isinstance(marker, str):
            marker = marker.encode()
        return [(p, m) for p, m in self.messages() if marker in m]

    def wait_for(self, marker, count=1, timeout=15):
        """Wait until `count` delivered messages contain marker; return them."""
        r = wait_until(lambda: (lambda f: f if len(f) >= count else None)(self.find(marker)),
                       timeout, 0.1)
        if r is None:
            raise AssertionError(f"no delivery of {marker!r} within {timeout} s "
                                 f"(found {len(self.find(marker))}); maillog:\n"
                                 f"{self.log_tail()}")
        return r

    def queue_files(self):
        out = []
        for sub in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt"):
            d = self.spool / sub
            if d.is_dir():
                out.extend(p for p in d.rglob("*") if p.is_file())
        return out

    def queue_contains(self, marker):
        if isinstance(marker, str):
            marker = marker.encode()
        hits = []
        for p in self.queue_files():
            try:
                if marker in p.read_bytes():
                    hits.append(p)
            except OSError:
                pass
        return hits


# --------------------------------------------------------------- smtp-sink ---

class SmtpSink:
    """Postfix's smtp-sink with one dump file per transaction (-d).

    options: extra smtp-sink flags, e.g. ["-p"] (no PIPELINING), ["-8"]
    (no 8BITMIME), ["-E"] (no ENHANCEDSTATUSCODES), ["-N"] (no DSN),
    ["-L"] (LMTP).  smtp-sink never offers CHUNKING nor SMTPUTF8.
    """

    def __init__(self, options=None, basedir=None, port=None, hostname="sink.test"):
        self.dir = Path(basedir) if basedir else make_tempdir("msaproxy-sink.")
        self.own_dir = basedir is None
        self.dumps = self.dir / "dumps"
        self.port = port or free_port()
        self.hostname = hostname
        self.options = list(options or [])
        self.proc = None
        self.logfile = self.dir / "smtp-sink.log"

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=10):
        self.dumps.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dumps, MAIL_USER, MAIL_GROUP)
        self._log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            ["smtp-sink", "-u", MAIL_USER, "-h", self.hostname, "-4", "-v",
             *self.options, "-d", f"{self.dumps}/%Y%m%d%H%M%S.",
             f"127.0.0.1:{self.port}", "64"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        wait_port(self.port, timeout, "smtp-sink", self.proc)
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self._log.close()

    def cleanup(self):
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def connection_count(self):
        return len(re.findall(r"smtp-sink: connect \(", self.log()))

    def dump_files(self):
        if not self.dumps.is_dir():
            return []
        return sorted((p for p in self.dumps.rglob("*") if p.is_file()),
                      key=lambda p: (p.stat().st_mtime, p.name))

    @staticmethod
    def parse_dump(raw):
        """Split a dump file into (meta dict, message bytes).

        Format (smtp-sink(1)): X-Client-Addr, X-Client-Proto, X-Helo-Args,
        X-Mail-Args, X-Rcpt-Args..., a 3-line Received header, then the
        message as received (LF line ends), then one empty line."""
        meta = {"rcpt": []}
        lines = raw.split(b"\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith(b"Received: "):
                i += 1
                while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                    i += 1
                break
            k, _, v = line.partition(b": ")
            k = k.decode()
            if k == "X-Rcpt-Args":
                meta["rcpt"].append(v.decode())
            else:
                meta[k] = v.decode()
            i += 1
        msg = b"\n".join(lines[i:])
        if msg.endswith(b"\n\n"):
            msg = msg[:-1]
        return meta, msg

    def messages(self):
        """[(meta, message bytes with LF line ends)] of complete dumps."""
        out = []
        for p in self.dump_files():
            out.append(self.parse_dump(p.read_bytes()))
        return out

    def find(self, marker):
        if isinstance(marker, str):
            marker = marker.encode()
        return [(meta, m) for meta, m in self.messages() if marker in m]

    def wait_for(self, marker, count=1, timeout=10):
        r = wait_until(lambda: (lambda f: f if len(f) >= count else None)(self.find(marker)),
                       timeout, 0.05)
        if r is None:
            raise AssertionError(f"smtp-sink got no {marker!r} within {timeout} s; "
                                 f"log tail:\n{self.log()[-3000:]}")
        return r


# ------------------------------------------------------------ FakeBackend ---

DEFAULT_FAKE_CAPS = ["PIPELINING", "SIZE 104857600", "8BITMIME",
                     "ENHANCEDSTATUSCODES", "SMTPUTF8", "DSN"]


class FakeSession:
    def __init__(self, peer):
        self.peer = peer
        self.raw = bytearray()          # every byte received, in order
        self.commands = []              # command lines (bytes, CRLF stripped)
        self.transactions = []          # see FakeBackend docstring
        self.closed = False


class ServerClosed(Exception):
    """Raised inside a fake server's dialogue to end the connection."""


class ThreadedServer:
    """A fake server on 127.0.0.1: an accept thread and one thread per
    connection, for the tests' scriptable peers (FakeBackend here, the
    hostile IMAP server in imap_servers.py).  A subclass makes a session
    record per connection (_new_session) and speaks its protocol in
    _dialogue(c, sess), raising ServerClosed (or letting OSError out) to
    end the connection."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.sessions = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sock = None
        self.threads = []
        self.conns = []

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        s.settimeout(0.2)
        self.sock = s
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.stopping.set()
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            for f in (lambda: c.shutdown(socket.SHUT_RDWR), c.close):
                try:
                    f()
                except OSError:
                    pass
        for t in self.threads:
            t.join(2)

    cleanup = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                c, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sess = self._new_session(peer)
            with self.lock:
                self.sessions.append(sess)
                self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c, sess), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c, sess):
        try:
            self._dialogue(c, sess)
        except (OSError, ServerClosed):
            pass
        finally:
            sess.closed = True
            try:
                c.close()
            except OSError:
                pass


class FakeBackend(ThreadedServer):
    """A scriptable SMTP/LMTP server on 127.0.0.1 (one thread per connection).

    Knobs (set before or after start(); read per command):
      caps                 EHLO/LHLO capability lines (list of str);
                           add "CHUNKING" to accept BDAT
      lmtp                 True: after the data, one reply per accepted RCPT
      greeting             "220 ..." line
      replies              {VERB: reply} for any command, overriding defaults;
                           reply is a str ("550 5.1.1 No", multi-line with
                           "\\r\\n" between lines), or "CLOSE" (drop the
                           connection without replying), "HANG" (never reply)
      rcpt_replies         {address: reply} for RCPT TO:<address>
      data_reply           final reply after the data (SMTP)
      lmtp_data_replies    {address: reply} per recipient after the data (LMTP)
      die_in_data_after    close the connection after this many content bytes
      hang_in_data_after   stop reading/answering after this many content bytes
      garbage_after_data   raw bytes sent instead of the final data reply
    Records: sessions (FakeSession: raw bytes, command lines, transactions);
    a transaction is a dict: mail (bytes line), rcpts ([bytes lines]),
    accepted ([addresses]), mode ("DATA"/"BDAT"), wire (content bytes exactly
    as received, stuffing included, without the final ".\\r\\n"), content
    (unstuffed), complete (bool), chunks ([(size, last)] for BDAT).
    """

    def __init__(self, caps=None, hostname="fake.test", lmtp=False, port=None):
        self.caps = list(DEFAULT_FAKE_CAPS if caps is None else caps)
        self.hostname = hostname
        self.lmtp = lmtp
        self.greeting = f"220 {hostname} ESMTP fake"
        self.replies = {}
        self.rcpt_replies = {}
        self.data_reply = "250 2.0.0 Ok: queued as FAKE1"
        self.lmtp_data_replies = {}
        self.die_in_data_after = None
        self.hang_in_data_after = None
        self.garbage_after_data = None
        super().__init__(port)

    # -- observation --
    def connection_count(self):
        with self.lock:
            return len(self.sessions)

    def transactions(self, complete_only=True):
        with self.lock:
            sess = list(self.sessions)
        out = []
        for s in sess:
            for t in s.transactions:
                if t.get("mode") and (t["complete"] or not complete_only):
                    out.append(t)
        return out

    def messages(self):
        return [t["content"] for t in self.transactions()]

    def wait_transactions(self, count=1, timeout=10):
        r = wait_until(lambda: (lambda t: t if len(t) >= count else None)(self.transactions()),
                       timeout)
        if r is None:
            raise AssertionError(f"fake backend: fewer than {count} complete "
                                 f"transactions within {timeout} s")
        return r

    def all_commands(self):
        with self.lock:
            sess = list(self.sessions)
        return [c for s in sess for c in s.commands]

    # -- server --
    def _new_session(self, peer):
        return FakeSession(peer)

    def _hang(self):
        self.stopping.wait()

    def _send(self, c, reply):
        if reply == "CLOSE":
            c.shutdown(socket.SHUT_RDWR)
            raise ServerClosed()
        if reply == "HANG":
            self._hang()
            raise ServerClosed()
        if isinstance(reply, bytes):
            c.sendall(reply)
        else:
            c.sendall(reply.encode() + b"\r\n")

    def _dialogue(self, c, sess):
        rd = _Reader(c, sess)
        self._send(c, self.replies.get("CONNECT", self.greeting))
        tx = None
        while not self.stopping.is_set():
            line = rd.line()
            if line is None:
                return
            cmd = line.rstrip(b"\r\n")
            sess.commands.append(cmd)
            verb = cmd.split(b" ", 1)[0].upper().decode("ascii", "replace")
            arg = cmd[len(verb) + 1:] if b" " in cmd else b""
            if verb in self.replies and verb not in ("DATA", "BDAT"):
                self._send(c, self.replies[verb])
                if verb == "QUIT":
                    return
                if verb == "MAIL" and self.replies[verb].startswith("2"):
                    tx = self._new_tx(sess, cmd)
                continue
            if verb in ("EHLO", "LHLO"):
                lines = [self.hostname] + self.caps
                txt = "\r\n".join(("250 " if i == len(lines) - 1 else "250-") + l
                                  for i, l in enumerate(lines))
                self._send(c, txt)
                tx = None
            elif verb == "HELO":
                self._send(c, f"250 {self.hostname}")
                tx = None
            elif verb == "XCLIENT":
                self._send(c, self.greeting)
                tx = None
            elif verb == "XFORWARD":
                self._send(c, "250 2.0.0 Ok")
            elif verb == "MAIL":
                tx = self._new_tx(sess, cmd)
                self._send(c, "250 2.1.0 Ok")
            elif verb == "RCPT":
                if tx is None:
                    self._send(c, "503 5.5.1 Error: need MAIL command")
                    continue
                m = re.search(rb"<([^>]*)>", arg)
                addr = m.group(1).decode("utf-8", "replace") if m else ""
                tx["rcpts"].append(cmd)
                r = self.rcpt_replies.get(addr, "250 2.1.5 Ok")
                if r.startswith("2"):
                    tx["accepted"].append(addr)
                self._send(c, r)
            elif verb == "DATA":
                if "DATA" in self.replies:
                    self._send(c, self.replies["DATA"])
                    if not self.replies["DATA"].startswith("3"):
                        continue
                elif tx is None or not tx["accepted"]:
                    self._send(c, "554 5.5.1 Error: no valid recipients")
                    continue
                else:
                    self._send(c, "354 End data with <CR><LF>.<CR><LF>")
                tx["mode"] = "DATA"
                if not self._read_data(c, rd, tx):
                    return
                self._final(c, tx)
                tx = None
            elif verb == "BDAT":
                parts = arg.split()
                try:
                    size = int(parts[0])
                except (IndexError, ValueError):
                    self._send(c, "501 5.5.4 Syntax: BDAT size [LAST]")
                    continue
                last = len(parts) > 1 and parts[1].upper() == b"LAST"
                chunk = rd.exact(size)
                if chunk is None:
                    return
                if tx is None:
                    self._send(c, "503 5.5.1 Error: need MAIL command")
                    continue
                tx["mode"] = "BDAT"
                tx["chunks"].append((size, last))
                tx["wire"] += chunk
                if self.die_in_data_after is not None and \
                        len(tx["wire"]) >= self.die_in_data_after:
                    c.shutdown(socket.SHUT_RDWR)
                    return
                if self.hang_in_data_after is not None and \
                        len(tx["wire"]) >= self.hang_in_data_after:
                    self._hang()
                    return
                if "BDAT" in self.replies:
                    self._send(c, self.replies["BDAT"])
                    continue
                if last:
                    tx["content"] = bytes(tx["wire"])
                    self._final(c, tx)
                    tx = None
                else:
                    self._send(c, f"250 2.0.0 {size} bytes received")
            elif verb == "RSET":
                tx = None
                self._send(c, "250 2.0.0 Ok")
            elif verb == "NOOP":
                self._send(c, "250 2.0.0 Ok")
            elif verb == "QUIT":
                self._send(c, "221 2.0.0 Bye")
                return
            else:
                self._send(c, "502 5.5.2 Error: command not recognized")

    def _new_tx(self, sess, cmd):
        tx = {"mail": cmd, "rcpts": [], "accepted": [], "mode": None,
              "wire": bytearray(), "content": b"", "complete": False, "chunks": []}
        sess.transactions.append(tx)
        return tx

    def _read_data(self, c, rd, tx):
        prev_crlf = True
        content = bytearray()
        while True:
            line = rd.line()
            if line is None:
                return False
            if line == b".\r\n" and prev_crlf:
                tx["content"] = bytes(content)
                return True
            tx["wire"] += line
            content += line[1:] if line.startswith(b".") else line
            prev_crlf = line.endswith(b"\r\n")
            n = len(tx["wire"])
            if self.die_in_data_after is not None and n >= self.die_in_data_after:
                c.shutdown(socket.SHUT_RDWR)
                return False
            if self.hang_in_data_after is not None and n >= self.hang_in_data_after:
                self._hang()
                return False

    def _final(self, c, tx):
        if self.garbage_after_data is not None:
            self._send(c, self.garbage_after_data)
            return
        tx["complete"] = True
        if self.lmtp:
            for a in tx["accepted"]:
                self._send(c, self.lmtp_data_replies.get(a, self.data_reply))
        else:
            self._send(c, self.data_reply)


class _Reader:
    def __init__(self, c, sess):
        self.c = c
        self.sess = sess
        self.buf = bytearray()

    def _fill(self):
        d = self.c.recv(65536)
        if not d:
            return False
        self.sess.raw += d
        self.buf += d
        return True

    def line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return out
            if not self._fill():
                return None

    def exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


# --------------------------------------------------------- reply checks ---

def _load_reply_table():
    """R_* -> "code enh text" from proxy/smtp_reply.c (the one reply table)."""
    try:
        src = (REPO / "proxy" / "smtp_reply.c").read_text()
    except OSError:
        return {}
    return {m.group(1): m.group(2) for m in
            re.finditer(r'\[(R_[A-Z0-9_]+)\]\s*=\s*"((?:[^"\\]|\\.)*)"', src)}


REPLY_TABLE = _load_reply_table()


def check_reply(r, code, enhanced=None, rid=None):
    """Assert code, enhanced code and (if the table is readable and the text
    has no printf conversion) the exact text of reply id `rid`."""
    assert r.code == code, f"expected {code} {enhanced or ''}, got {r.raw!r}"
    if enhanced is not None:
        assert r.enhanced == enhanced, f"expected {code} {enhanced}, got {r.raw!r}"
    if rid and rid in REPLY_TABLE and "%" not in REPLY_TABLE[rid]:
        want = REPLY_TABLE[rid]
        got = f"{r.code} {r.lines[-1]}"
        assert got == want, f"expected {want!r} ({rid}), got {got!r}"
    return r


# ------------------------------------------------------------- SmtpClient ---

class Reply:
    def __init__(self, code, lines, raw):
        self.code = code          # int
        self.lines = lines        # text after "250-" / "250 " per line
        self.raw = raw            # bytes as received, CRLFs included

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enhanced(self):
        """RFC 3463 code at the start of the last line, or None."""
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})(?: |$)", self.lines[-1] if self.lines else "")
        return m.group(1) if m else None

    @property
    def keywords(self):
        """EHLO capability keywords (upper case, first word of lines 2..n)."""
        return [l.split(" ", 1)[0].upper() for l in self.lines[1:]]

    def cap(self, keyword):
        """The full EHLO line for keyword, or None."""
        for l in self.lines[1:]:
            if l.split(" ", 1)[0].upper() == keyword.upper():
                return l
        return None

    def __repr__(self):
        return f"Reply({self.raw!r})"


class SmtpClient:
    """Raw SMTP client: exact bytes out, one parsed reply at a time in."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0, connect=True):
        self.host, self.port, self.timeout = host, port, timeout
        self.buf = bytearray()
        self.sock = None
        self.eof = False
        if connect:
            self.connect()

    def connect(self):
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send_slowly(self, data, step=1, delay=0.0005):
        if isinstance(data, str):
            data = data.encode()
        for i in range(0, len(data), step):
            self.sock.sendall(data[i:i + step])
            if delay:
                time.sleep(delay)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        d = self.sock.recv(65536)
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def reply(self, timeout=None):
        """Read one complete reply.  Raises EOFError if the server closed the
        connection first, socket.timeout after `timeout` seconds."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        lines = []
        raw = bytearray()
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout(f"no complete reply within {timeout} s "
                                         f"(have {bytes(raw + self.buf)!r})")
                if not self._fill(left):
                    if raw or self.buf:
                        raise EOFError(f"connection closed in a reply: {bytes(raw + self.buf)!r}")
                    raise EOFError("connection closed by server")
                continue
            line = bytes(self.buf[:i + 1])
            del self.buf[:i + 1]
            raw += line
            s = line.rstrip(b"\r\n").decode("utf-8", "replace")
            if len(s) < 3 or not s[:3].isdigit() or (len(s) > 3 and s[3] not in " -"):
                raise AssertionError(f"malformed reply line {line!r}")
            lines.append(s[4:])
            if len(s) == 3 or s[3] == " ":
                return Reply(int(s[:3]), lines, bytes(raw))

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n")
        return self.reply(timeout)

    def expect(self, line, code, enhanced=None, timeout=None, text=None):
        """Send line; assert the reply's code, enhanced code and (text) the
        words after the enhanced code."""
        r = self.cmd(line, timeout)
        assert r.code == code, f"{line!r}: expected {code}, got {r.raw!r}"
        if enhanced is not None:
            assert r.enhanced == enhanced, f"{line!r}: expected {code} {enhanced}, got {r.raw!r}"
        if text is not None:
            got = r.lines[-1].split(" ", 1)[1] if r.enhanced else r.lines[-1]
            assert got == text, f"{line!r}: expected text {text!r}, got {r.raw!r}"
        return r

    def greeting(self, timeout=None):
        return self.reply(timeout)

    def closed(self, timeout=3.0):
        """True if the server closes the connection within timeout (any
        pending bytes are discarded into self.buf)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                if not self._fill(left):
                    return True
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True

    def send_message(self, content, mail_from="sender@example.org", rcpts=("rcpt@example.net",),
                     ehlo="client.example"):
        """EHLO (if ehlo), MAIL, RCPT..., DATA, dot-stuffed content, '.'.
        Returns the final reply."""
        if ehlo:
            self.expect(f"EHLO {ehlo}", 250)
        self.expect(f"MAIL FROM:<{mail_from}>", 250)
        for r in rcpts:
            self.expect(f"RCPT TO:<{r}>", 250)
        self.expect("DATA", 354)
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        self.send(dot_stuff(content[:-2]) + b"\r\n.\r\n")
        return self.reply()


# --------------------------------------------------------------- Msaproxy ---

def _conf_value(v, indent):
    pad = "  " * indent
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        inner = "".join(f"{pad}  {k} = {_conf_value(x, indent + 1)};\n" for k, x in v.items())
        return "{\n" + inner + pad + "}"
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, dict) for x in v):
            return "(\n" + ",\n".join(pad + "  " + _conf_value(x, indent + 1) for x in v) + "\n" + pad + ")"
        return "[ " + ", ".join(_conf_value(x, indent) for x in v) + " ]"
    raise TypeError(f"cannot render {v!r} in a libconfig file")


def render_conf(conf):
    """A dict as a libconfig file: dicts are groups, lists of dicts are lists
    ( ... ), other lists are arrays [ ... ]."""
    return "".join(f"{k} = {_conf_value(v, 0)};\n" for k, v in conf.items())


def deep_merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


class Msaproxy:
    """msaproxy under test.

    overrides: merged into the default test config (dicts merge, lists and
    scalars replace).  Listeners without an "address" get 127.0.0.1 and a
    free port; self.ports maps listener name -> port, self.port is the first.
    The log (stderr+stdout of the foreground process) is in self.logfile.
    """

    def __init__(self, backend_address, overrides=None, workdir=None, binary=None,
                 server_name="proxy.test"):
        self.binary = binary or DEFAULT_BINARY
        self.dir = Path(workdir) if workdir else make_tempdir("msaproxy-run.")
        self.own_dir = workdir is None
        self.conffile = self.dir / "msaproxy.conf"
        self.logfile = self.dir / "msaproxy.log"
        conf = {
            "server_name": server_name,
            "workers": 1,
            "user": TEST_USER,
            "bare_newline": "reject",
            "log": {"destination": "stderr", "level": "debug"},
            "listeners": [{"name": "submission", "kind": "submission"}],
            "backend": {"address": backend_address, "protocol": "smtp",
                        "chunking": True},
            "timeouts": {"greeting": 5, "command": 10, "data": 10,
                         "backend_connect": 3, "backend_command": 5,
                         "backend_data": 10, "shutdown": 3},
        }
        if os.environ.get("MSAPROXY_TEST_AUDIT") and "audit" not in (overrides or {}):
            # the whole suite with the durable audit trail on (every session
            # flow through its hooks): MSAPROXY_TEST_AUDIT=1 pytest ...
            conf["audit"] = {"enabled": True, "file": str(self.dir / "audit.log")}
        deep_merge(conf, overrides or {})
        self.ports = {}
        for lst in conf["listeners"]:
            # submission listeners require AUTH by default; tests of
            # everything else run without it unless they say otherwise
            lst.setdefault("require_auth", False)
            if "address" not in lst:
                p = free_port()
                lst["address"] = f"127.0.0.1:{p}"
            m = re.match(r"127\.0\.0\.1:(\d+)$", lst["address"])
            if m:
                self.ports[lst["name"]] = int(m.group(1))
        self.conf = conf
        self.proc = None
        self.returncode = None

    @property
    def port(self):
        return next(iter(self.ports.values()))

    @property
    def server_name(self):
        return self.conf["server_name"]

    @property
    def shutdown_timeout(self):
        return self.conf["timeouts"]["shutdown"]

    def write_conf(self):
        self.conffile.write_text(render_conf(self.conf))

    def start(self, backend=None, timeout=10, probe_wait=1.0):
        """Start in the foreground (-f) and wait for every TCP listener.  If
        backend has connection_count(), wait (up to probe_wait) for the
        proxy's EHLO probe to reach it; otherwise sleep probe_wait."""
        if not os.access(self.binary, os.X_OK):
            raise FileNotFoundError(f"{self.binary} not built (scripts/build.sh)")
        self.prepare_audit_dir()
        self.write_conf()
        before = backend.connection_count() if backend is not None and \
            hasattr(backend, "connection_count") else None
        self._log = open(self.logfile, "ab")
        cmd = [self.binary, "-f", "-c", str(self.conffile)]
        if VALGRIND:
            cmd = VALGRIND_CMD + cmd
            timeout *= VALGRIND_SLOWDOWN
            probe_wait *= VALGRIND_SLOWDOWN
        self.proc = subprocess.Popen(cmd,
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            for name, p in self.ports.items():
                wait_port(p, timeout, f"msaproxy listener {name}", self.proc)
        except RuntimeError as e:
            self.kill()
            raise RuntimeError(f"{e}\n--- msaproxy log ---\n{self.log()}") from None
        if before is not None:
            wait_until(lambda: backend.connection_count() > before, probe_wait * 2)
            time.sleep(0.2)
        elif probe_wait:
            time.sleep(probe_wait)
        return self

    def prepare_audit_dir(self):
        """What an operator does once (mkdir /var/log/msaproxy; chown): the
        audit writer runs unprivileged and writes (and rotates) in the
        directory of audit.file, so it must own it."""
        audit = self.conf.get("audit") or {}
        user = audit.get("user") or self.conf.get("user")
        if not audit.get("enabled") or not audit.get("file") or not user or os.geteuid() != 0:
            return
        d = Path(audit["file"]).parent
        if str(d).startswith("/tmp/") and d.is_dir() and d.stat().st_uid == 0:
            pw = ensure_test_user(user)
            os.chown(d, pw.pw_uid, pw.pw_gid)
            for f in d.glob(Path(audit["file"]).name + "*"):
                os.chown(f, pw.pw_uid, pw.pw_gid)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def children(self):
        """The pids of the master's live children (workers and the audit
        writer), sorted."""
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                out.append(int(pid))
        return sorted(out)

    def rss_kb(self, field="VmRSS"):
        """Resident memory (kB) of the master and its workers, summed;
        field="VmHWM" gives the peaks."""
        total = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                st = open(f"/proc/{pid}/stat").read()
                pgid = int(st.rsplit(")", 1)[1].split()[2])
                if pgid != self.proc.pid:
                    continue
                for line in open(f"/proc/{pid}/status"):
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                continue
        return total

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, check=True, timeout=None):
        """SIGTERM and wait; with check, assert exit status 0 within
        timeouts.shutdown + 3 s.  Returns the exit status."""
        if self.proc is None:
            return self.returncode
        timeout = self.shutdown_timeout + 3 if timeout is None else timeout
        if VALGRIND:
            # the leak check of the master and each worker at exit
            timeout = timeout * 2 + 30
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"msaproxy did not exit within {timeout} s of "
                                     f"SIGTERM\n--- log ---\n{self.log()[-4000:]}")
        self.returncode = self.proc.returncode
        self._reap_group()
        self.proc = None
        self._log.close()
        if check:
            assert self.returncode == 0, (f"msaproxy exited with {self.returncode}"
                                          f"\n--- log ---\n{self.log()[-4000:]}")
        return self.returncode

    def _reap_group(self):
        # workers left behind in our own process group (we started it with
        # start_new_session, so the group id is the master's pid)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.returncode = self.proc.returncode
        self.proc = None
        self._log.close()

    def cleanup(self):
        if self.proc is not None:
            try:
                self.stop(check=False)
            except AssertionError:
                pass
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, listener=None, timeout=10.0):
        port = self.ports[listener] if listener else self.port
        return SmtpClient(port, timeout=timeout)

    def check_config(self, path=None):
        """Run `msaproxy -t -c FILE`; return CompletedProcess."""
        return subprocess.run([self.binary, "-t", "-c", str(path or self.conffile)],
                              capture_output=True, text=True, timeout=20)


def run_check(binary, path):
    return subprocess.run([binary or DEFAULT_BINARY, "-t", "-c", str(path)],
                          capture_output=True, text=True, timeout=20)


# --------------------------------------------------------- PROXY protocol ---

def proxy_v1(src, dst, sport, dport):
    return f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()


def proxy_v2(src, dst, sport, dport):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    body = socket.inet_aton(src) + socket.inet_aton(dst) + \
        sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return sig + bytes([0x21, 0x11]) + len(body).to_bytes(2, "big") + body


# ------------------------------------------------------------ RedisServer ---

def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a)
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RedisError(Exception):
    pass


def _resp_read(f):
    line = f.readline()
    if not line:
        raise EOFError("redis closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RedisError(f"unexpected reply {line!r}")


class RedisServer:
    """A private redis-server on 127.0.0.1: no persistence (--save '',
    --appendonly no), its working directory a throwaway temp dir.

    command(*args) speaks RESP itself (standard library only); pause()
    and resume() stop and continue the process (SIGSTOP/SIGCONT): the
    kernel still accepts connections, nothing answers -- a hanging Redis."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = None
        self.proc = None
        self.logfile = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=10):
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server not installed "
                                    "(scripts/install-deps.sh)")
        self.dir = make_tempdir("msaproxy-redis.")
        self.logfile = self.dir / "redis.log"
        log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--daemonize", "no", "--protected-mode", "no"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        wait_port(self.port, timeout, "redis-server", self.proc)
        wait_until(lambda: self._ping(), timeout)
        return self

    def _ping(self):
        try:
            return self.command("PING") == "PONG"
        except (OSError, EOFError, RedisError):
            return False

    def command(self, *args, timeout=5.0):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(_resp_encode(args))
            with s.makefile("rb") as f:
                return _resp_read(f)

    def keys(self, pattern="*"):
        return sorted(k.decode() for k in self.command("KEYS", pattern))

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self):
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
