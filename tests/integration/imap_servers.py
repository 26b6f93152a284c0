"""imap_servers.py - IMAP peers for msaproxy's BURL (RFC 4468) tests.

Everything binds 127.0.0.1 on a port from free_port(), keeps its state in a
temporary directory, and has start()/stop()/cleanup(); stop() is safe to call
twice and kills only processes this module started.  Standard library only
(GSSAPI logins import Debian's python3-gssapi lazily: run /usr/bin/python3).

  CyrusImap     Cyrus imapd 3.6 under its own cyrmaster: servername
                localhost, `submitservers: submit` (the trusted URLAUTH
                server: submit may URLFETCH anyone's submit+ URL), users
                alice/bob/submit in a private sasldb, GSSAPI with an
                imap/localhost key from the test KDC, INBOX created at first
                login.  URLs must name the authority "localhost" WITHOUT a
                port (Cyrus compares the URL's server with servername).
  DovecotImap   Dovecot 2.3 IMAP only, users alice/bob/submit in a
                passwd-file; submit is also a master user, so it can log in
                AS a user: AUTHENTICATE PLAIN with authzid=alice,
                authcid=submit; LOGIN alice*submit submitpw; and GSSAPI as
                submit@REALM with authzid alice (see DovecotImap for why that
                works on 2.3.19 and how).  URLFETCH of another user's URL is
                broken in Dovecot 2.3 (an assertion in imap-urlauth-login),
                so with Dovecot the proxy must log in as the user and read
                the message with SELECT + UID FETCH.
  HostileImap   a scripted fake IMAP server (threads) that misbehaves on
                purpose at URLFETCH / UID FETCH time (huge literal, drip,
                garbage, disconnect mid-literal, BYE, NO, NIL, hang) and
                records every connection, command and login.

Client helpers (imaplib): imap_connect(), imap_append(), imap_genurlauth(),
imap_urlfetch(), imap_uid_fetch(), imap_url(); GssapiSasl for AUTHENTICATE
GSSAPI (RFC 4752) from a ccache or a client keytab.

Pytest fixtures (imported by conftest.py): cyrus_imap, dovecot_imap (one of
each per session, sharing kdc_session), submit_keytab, hostile_imap
(a factory).

Installation (scripts/install-deps.sh): dovecot-imapd + dovecot-gssapi, and
cyrus-common with the imapd binary unpacked from `apt-get download
cyrus-imapd` into /opt/msaproxy-test/cyrus (installing the cyrus-imapd
package would remove dovecot-imapd).  $MSAPROXY_CYRUS_IMAPD overrides the
imapd path.
"""

import base64
import imaplib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from harness import (MAIL_GROUP, MAIL_USER, ServerClosed, ThreadedServer, _pid_alive,
                     free_port, make_tempdir, wait_port, wait_until)
import kdc as kdc_mod

__all__ = ["cyrus_imap", "dovecot_imap", "submit_keytab", "hostile_imap"]

USERS = {"alice": kdc_mod.ALICE_PASSWORD, "bob": kdc_mod.BOB_PASSWORD,
         "submit": kdc_mod.SUBMIT_PASSWORD}
SUBMIT_USER = "submit"

CYRUS_DIR = os.environ.get("MSAPROXY_CYRUS_DIR", "/opt/msaproxy-test/cyrus")
CYRMASTER = "/usr/sbin/cyrmaster"
DOVECOT = "/usr/sbin/dovecot"
DOVECOT_GSSAPI_MODULE = "/usr/lib/dovecot/modules/auth/libmech_gssapi.so"

# URLFETCH and GENURLAUTH (RFC 4467) are unknown to imaplib
for _c in ("URLFETCH", "GENURLAUTH", "RESETKEY"):
    imaplib.Commands.setdefault(_c, ("AUTH", "SELECTED"))


# ------------------------------------------------------------- processes ---

def _die_with_parent():
    """preexec_fn: the daemon gets SIGTERM when pytest dies (no strays)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _proc_table():
    """{pid: (ppid, cmdline bytes)} of every process now."""
    out = {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{e}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        out[int(e)] = (ppid, cmd)
    return out


def _descendants(pid):
    """[(pid, cmdline)] of every live descendant of pid."""
    table = _proc_table()
    kids, todo = [], [pid]
    while todo:
        p = todo.pop()
        for q, (pp, cmd) in table.items():
            if pp == p:
                kids.append((q, cmd))
                todo.append(q)
    return kids


def _kill_leftovers(procs):
    """SIGKILL those of procs [(pid, cmdline)] that are still the same
    process (same command line: a reused pid is left alone)."""
    for pid, cmd in procs:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() != cmd:
                    continue
        except OSError:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class _Daemon:
    """A server process that we start in the foreground as our child, in its
    own session (so its process group holds only what it started).
    stop(): SIGTERM, wait, then SIGKILL whatever it left."""

    what = "daemon"

    def __init__(self, prefix, basedir=None, port=None):
        self.dir = Path(basedir) if basedir else make_tempdir(prefix)
        self.own_dir = basedir is None
        self.port = port or free_port()
        self.proc = None
        self._out = None
        self.startup_seconds = None
        self.outfile = self.dir / "daemon.out"

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def _spawn(self, argv, env, timeout):
        t0 = time.monotonic()
        self._out = open(self.outfile, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, env=env, cwd=str(self.dir),
                                     start_new_session=True, preexec_fn=_die_with_parent)
        try:
            wait_port(self.port, timeout, self.what, self.proc)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}\n{self.log_tail()}") from None
        self.startup_seconds = time.monotonic() - t0

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.running() else None

    def stop(self, timeout=5):
        """SIGTERM to the daemon's process group (its own session: only what
        it started), wait for the master, SIGKILL what is left."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        kids = _descendants(pgid)
        alive = self.proc.poll() is None
        if alive:
            # the whole group at once: Dovecot's master otherwise waits for
            # an imap process busy with a client, which may outlive it
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline and any(_pid_alive(p) for p, _ in kids):
            time.sleep(0.02)
        if alive:
            # (the group id cannot have been reused: we reaped its leader
            # just now)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _kill_leftovers(kids)       # any that left the group
        self.proc = None
        if self._out:
            self._out.close()
            self._out = None

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
            return self.outfile.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])


def _ensure_principal(kdc, name):
    """name@REALM in the KDC (random key) unless it exists already."""
    p = kdc.principal(name)
    out = kdc.kadmin(f"listprincs {p}")
    if p not in [l.strip() for l in out.splitlines()]:
        kdc.add_principal(name)
    return p


def _krb_env(kdc, **kw):
    e = kdc.env(**kw)
    e.pop("KRB5_KDC_PROFILE", None)
    return e


# ------------------------------------------------------------------ Cyrus ---

def find_cyrus_imapd():
    """Path of a Cyrus imapd binary, or None: $MSAPROXY_CYRUS_IMAPD, the
    cyrus-imapd package's, or the copy install-deps.sh unpacked."""
    for f in (os.environ.get("MSAPROXY_CYRUS_IMAPD"), "/usr/lib/cyrus/bin/imapd",
              os.path.join(CYRUS_DIR, "usr/lib/cyrus/bin/imapd")):
        if f and os.access(f, os.X_OK):
            return f
    return None


def cyrus_missing():
    """Why CyrusImap cannot run here (str), or None."""
    if os.geteuid() != 0:
        return "Cyrus imapd needs root (cyrmaster drops to user cyrus)"
    if not os.access(CYRMASTER, os.X_OK):
        return f"{CYRMASTER} missing (cyrus-common; scripts/install-deps.sh)"
    if not shutil.which("saslpasswd2"):
        return "saslpasswd2 missing (sasl2-bin)"
    try:
        import pwd
        pwd.getpwnam("cyrus")
    except KeyError:
        return "user cyrus missing (cyrus-common)"
    if not find_cyrus_imapd():
        return (f"no Cyrus imapd binary (scripts/install-deps.sh unpacks it into "
                f"{CYRUS_DIR}; or set MSAPROXY_CYRUS_IMAPD)")
    return None


class CyrusImap(_Daemon):
    """Cyrus IMAP 3.6 (cyrmaster in the foreground) on 127.0.0.1:port.

    kdc: a started kdc.Kdc (GSSAPI: an imap/localhost key is added and
    exported for Cyrus; loginrealms = its realm so submit@REALM logs in as
    submit), or None for password logins only.
    Attributes: port, url_authority ("localhost": what URLs must carry),
    users {name: password}, realm, imapd (binary), dir.
    The URLAUTH rules observed on 3.6.1: submit (listed in submitservers)
    may URLFETCH any user's submit+<user> URL; the owner and other users get
    `* URLFETCH "<url>" NIL`; "authuser" URLs are fetched by anyone logged
    in, "user+submit" ones by submit only; GENURLAUTH of a URL naming
    localhost:<port> fails with NO.
    Cyrus logs only to syslog (none here); per-user protocol telemetry is
    written to lib/log/<user>/ (see telemetry()).
    """

    what = "cyrmaster"

    def __init__(self, kdc=None, basedir=None, port=None, servername="localhost",
                 users=None, submitservers=(SUBMIT_USER,), imapd=None, extra_conf=None,
                 run_dir=None):
        super().__init__("msaproxy-cyrus.", basedir, port)
        self.kdc = kdc
        self.realm = kdc.realm if kdc else None
        self.servername = servername
        self.users = dict(USERS if users is None else users)
        self.submitservers = list(submitservers)
        self.imapd = imapd or find_cyrus_imapd()
        self.extra = dict(extra_conf or {})
        self.conf = self.dir / "imapd.conf"
        self.master_conf = self.dir / "cyrus.conf"
        self.lib = self.dir / "lib"
        self.spool = self.dir / "spool"
        # proc/ (a file rewritten and renamed per command), lock/ (lock
        # files opened with O_CREAT per mailbox access) and the sockets;
        # run_dir puts them elsewhere, e.g. on a tmpfs as Debian's
        # /run/cyrus (the caller removes it)
        self.run_dir = Path(run_dir) if run_dir else self.dir / "run"
        self.sasldb = self.dir / "sasldb2"
        self.keytab = self.dir / "imap.keytab"
        self.pidfile = self.run_dir / "master.pid"
        self.outfile = self.dir / "master.log"

    @property
    def url_authority(self):
        return self.servername

    def _write_config(self):
        # lib/socket: each imapd binds its idle client socket there
        for d in (self.lib / "sieve", self.lib / "socket", self.spool, self.run_dir / "socket",
                  self.run_dir / "proc", self.run_dir / "lock"):
            d.mkdir(parents=True, exist_ok=True)
        for u in self.users:
            (self.lib / "log" / u).mkdir(parents=True, exist_ok=True)
        conf = {
            "configdirectory": self.lib,
            "defaultpartition": "default",
            "partition-default": self.spool,
            "proc_path": self.run_dir / "proc",
            "mboxname_lockpath": self.run_dir / "lock",
            "lmtpsocket": self.run_dir / "socket" / "lmtp",
            "idlesocket": self.run_dir / "socket" / "idle",
            "notifysocket": self.run_dir / "socket" / "notify",
            "sievedir": self.lib / "sieve",
            # URLs must name exactly this server (string compare, a port
            # included): imap://alice@localhost/INBOX;...
            "servername": self.servername,
            "altnamespace": "yes",
            "unixhierarchysep": "yes",
            "virtdomains": "off",
            "autocreate_quota": "0",          # INBOX at first login
            "allowplaintext": "yes",
            "failedloginpause": "0",          # default: 3 s after a failed login
            "sasl_pwcheck_method": "auxprop",
            "sasl_auxprop_plugin": "sasldb",
            "sasl_sasldb_path": self.sasldb,
            "sasl_mech_list": "PLAIN LOGIN" + (" GSSAPI" if self.kdc else ""),
            # RFC 4467 submit+<user> URLs may be fetched by these users
            "submitservers": " ".join(self.submitservers),
            "syslog_prefix": f"msaproxy-test-cyrus-{self.port}",
        }
        if self.realm:
            # submit@REALM (GSSAPI) logs in as "submit"
            conf["loginrealms"] = self.realm
        conf.update(self.extra)
        # an empty value ("foo:") makes cyrmaster exit 78 without a word
        bad = [k for k, v in conf.items() if str(v).strip() == ""]
        if bad:
            raise ValueError(f"empty imapd.conf values: {bad}")
        self.conf.write_text("# generated by tests/integration/imap_servers.py\n" +
                             "".join(f"{k}: {v}\n" for k, v in conf.items()))
        self.master_conf.write_text(f"""\
# generated by tests/integration/imap_servers.py
START {{
  recover cmd="ctl_cyrusdb -r -C {self.conf}"
}}
SERVICES {{
  imap cmd="{self.imapd} -C {self.conf}" listen="127.0.0.1:{self.port}" prefork=0
}}
EVENTS {{
}}
DAEMON {{
}}
""")
        try:
            self.sasldb.unlink()
        except FileNotFoundError:
            pass
        for u, pw in self.users.items():
            r = subprocess.run(["saslpasswd2", "-p", "-c", "-f", str(self.sasldb),
                                "-u", self.servername, u],
                               input=pw.encode(), capture_output=True, timeout=20)
            if r.returncode != 0:
                raise RuntimeError(f"saslpasswd2 {u}: {r.stdout!r} {r.stderr!r}")
        if self.kdc:
            _ensure_principal(self.kdc, f"imap/{self.servername}")
            try:
                self.keytab.unlink()
            except FileNotFoundError:
                pass
            self.kdc.keytab([f"imap/{self.servername}"], self.keytab)
        tops = [self.dir] + ([] if self.run_dir.is_relative_to(self.dir) else [self.run_dir])
        for p in [q for t in tops for q in (t, *t.rglob("*"))]:
            shutil.chown(p, "cyrus", "mail")
        os.chmod(self.dir, 0o755)
        os.chmod(self.sasldb, 0o600)

    def start(self, timeout=15):
        if self.imapd is None or os.geteuid() != 0:
            raise RuntimeError(cyrus_missing() or "no Cyrus imapd")
        self._write_config()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
        if self.kdc:
            env.update(_krb_env(self.kdc, keytab=self.keytab))
            env.pop("KRB5CCNAME", None)
        # -L: stdout/stderr of master and its children; nothing else logs
        self._spawn([CYRMASTER, "-C", str(self.conf), "-M", str(self.master_conf),
                     "-p", str(self.pidfile), "-L", str(self.outfile)], env, timeout)
        return self

    def telemetry(self, user):
        """Cyrus's protocol telemetry of user's sessions (str; both
        directions, one file per imapd process)."""
        d = self.lib / "log" / user
        parts = []
        for f in sorted(d.glob("*")) if d.is_dir() else []:
            try:
                parts.append(f.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)


# ---------------------------------------------------------------- Dovecot ---

def dovecot_missing():
    if os.geteuid() != 0:
        return "Dovecot needs root (it drops to dovecot/dovenull/nobody)"
    if not os.access(DOVECOT, os.X_OK) or not os.path.exists("/usr/lib/dovecot/imap"):
        return "dovecot-imapd not installed (scripts/install-deps.sh)"
    return None


class DovecotImap(_Daemon):
    """Dovecot 2.3 IMAP (dovecot -F, protocols = imap) on 127.0.0.1:port.

    kdc: a started kdc.Kdc for GSSAPI (imap/localhost key, readable by the
    auth process through group dovecot), or None.
    k5principals: False leaves the users' k5principals field out (then
    GSSAPI with an authzid fails, see below).
    Attributes: port, url_authority ("localhost:<port>": Dovecot's
    imap_urlauth_host/port, so GENURLAUTH works for own mailboxes), users,
    master_users {name: password} (default submit/submitpw), master_user
    and master_password (the first of them), realm, logfile.

    How the proxy's identity logs in as a user (all observed here by
    test_imap_harness.py):
      PLAIN   authzid=alice, authcid=submit, password submitpw.  Dovecot's
              mech-plain sets the *login* user (alice) when authzid !=
              authcid, and then authenticates submit against the passdbs
              with `master = yes` only; `pass = yes` makes it look alice up
              in the normal passdb too (she must exist).
      LOGIN   "alice*submit" submitpw (auth_master_user_separator = *).
      GSSAPI  as submit@REALM with authzid "alice".  This does NOT go
              through the master passdb: in 2.3.19 mech-gssapi.c sets the
              username to the authzid and then asks mech_gssapi_userok()
              whether the authenticated principal may act as that user;
              since the names differ it calls mech_gssapi_krb5_userok(),
              which accepts if the principal is listed in the user's passdb
              extra field `k5principals` (else krb5_kuserok(), i.e. a
              ~alice/.k5login).  So alice's and bob's passdb entries carry
              k5principals=submit@REALM.  Without that field the login
              fails with "User not authorized to log in as alice".
    Cross-user URLFETCH (submit fetching alice's URL) cannot work on
    2.3.19: imap-urlauth-login panics (sasl-server.c assertion on the
    DOVECOT-TOKEN mechanism; fixed upstream in 2.4.0, commit 38924d2d68).
    """

    what = "dovecot"

    def __init__(self, kdc=None, basedir=None, port=None, users=None,
                 master_users=None, hostname="localhost", k5principals=True, debug=False,
                 auth_failure_delay=0, extra_conf=""):
        super().__init__("msaproxy-dovecot.", basedir, port)
        self.kdc = kdc
        self.realm = kdc.realm if kdc else None
        self.hostname = hostname
        self.users = dict(USERS if users is None else users)
        self.master_users = dict({SUBMIT_USER: USERS[SUBMIT_USER]}
                                 if master_users is None else master_users)
        self.k5principals = k5principals
        self.auth_failure_delay = auth_failure_delay
        self.debug = debug
        self.extra = extra_conf
        self.conf = self.dir / "dovecot.conf"
        self.passwd = self.dir / "passwd"
        self.master_passwd = self.dir / "master-users"
        self.keytab = self.dir / "imap.keytab"
        self.logfile = self.dir / "dovecot.log"
        self.mail = self.dir / "mail"
        self.gssapi = bool(kdc) and os.path.exists(DOVECOT_GSSAPI_MODULE)
        if len(str(self.dir)) > 60:
            raise RuntimeError(f"{self.dir}: too long for Dovecot's unix sockets")

    @property
    def url_authority(self):
        return f"{self.hostname}:{self.port}"

    @property
    def master_user(self):
        """The (first) master user's name: "submit" by default."""
        return next(iter(self.master_users), None)

    @property
    def master_password(self):
        return self.master_users.get(self.master_user)

    def _write_config(self):
        d = self.dir
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(exist_ok=True)
        shutil.chown(self.mail, MAIL_USER, MAIL_GROUP)
        os.chmod(self.mail, 0o700)
        k5 = ""
        if self.gssapi and self.master_users and self.k5principals:
            # who may GSSAPI-authenticate as this user with an authzid
            k5 = "k5principals=" + ",".join(self.kdc.principal(m) for m in self.master_users)
        self.passwd.write_text("".join(
            f"{u}:{{PLAIN}}{pw}::::::{k5 if u not in self.master_users else ''}\n"
            for u, pw in self.users.items()))
        self.master_passwd.write_text("".join(
            f"{u}:{{PLAIN}}{pw}\n" for u, pw in self.master_users.items()))
        for f in (self.passwd, self.master_passwd):
            shutil.chown(f, "root", "dovecot")
            os.chmod(f, 0o640)
        mechs = "plain login"
        krb = ""
        imp = "TZ"
        if self.gssapi:
            _ensure_principal(self.kdc, f"imap/{self.hostname}")
            try:
                self.keytab.unlink()
            except FileNotFoundError:
                pass
            # the auth process runs as user dovecot
            self.kdc.keytab([f"imap/{self.hostname}"], self.keytab,
                            owner=("root", "dovecot"), mode=0o640)
            mechs += " gssapi"
            krb = (f"auth_gssapi_hostname = \"$ALL\"\n"
                   f"auth_krb5_keytab = {self.keytab}\n")
            imp += (f" KRB5_CONFIG={self.kdc.krb5_conf}"
                    f" KRB5RCACHEDIR={self.kdc.rcache_dir}")
        dbg = "yes" if self.debug else "no"
        master_passdb = f"""\
# master users: authenticate as themselves, log in as the authzid
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {self.master_passwd}
  master = yes
  pass = yes
}}
""" if self.master_users else ""
        self.conf.write_text(f"""\
# Dovecot IMAP for msaproxy's tests, generated by tests/integration/imap_servers.py
protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = msaproxy-test-dovecot-{self.port}
log_path = {self.logfile}
info_log_path = {self.logfile}
debug_log_path = {self.logfile}
hostname = {self.hostname}
# dovecot wipes its environment; the Kerberos settings go through here
import_environment = {imp}
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
ssl = no
disable_plaintext_auth = no
verbose_proctitle = yes
auth_verbose = yes
auth_debug = {dbg}
mail_debug = {dbg}

auth_mechanisms = {mechs}
# every test connects from 127.0.0.1: no 2 s delay per failed login, and no
# anvil auth penalty (2, 4, 8 ... 15 s for the IP after failures)
auth_failure_delay = {self.auth_failure_delay}
# alice@REALM (GSSAPI) -> alice
auth_username_format = %Ln
auth_master_user_separator = *
{krb}
{master_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {self.passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {self.passwd}
  # Dovecot refuses mail access as root
  default_fields = uid={MAIL_USER} gid={MAIL_GROUP} home={self.mail}/%n
}}
mail_location = maildir:~/Maildir
# URLAUTH keys are stored as mailbox attributes
mail_attribute_dict = file:%h/dovecot-attributes
namespace inbox {{
  inbox = yes
  separator = /
}}
imap_urlauth_host = {self.hostname}
imap_urlauth_port = {self.port}
imap_urlauth_submit_user = {SUBMIT_USER}

service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
{self.extra}
""")

    def start(self, timeout=15):
        why = dovecot_missing()
        if why:
            raise RuntimeError(why)
        self._write_config()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
        self._spawn([DOVECOT, "-F", "-c", str(self.conf)], env, timeout)
        return self

    def log(self):
        parts = []
        for f in (self.outfile, self.logfile):
            try:
                parts.append(f.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)


# ---------------------------------------------------------- IMAP clients ---

def imap_url(authority, user, mailbox, uidvalidity, uid, section=None, expire=None):
    """The rump IMAP URL (RFC 5092) of one message, without ;URLAUTH=:
    imap://alice@localhost/INBOX;UIDVALIDITY=1/;UID=2[/;SECTION=x][;EXPIRE=t].
    authority: "host" or "host:port" (Cyrus: "localhost"; Dovecot:
    "localhost:<port>")."""
    achar = "-._~!$'()*+,&="
    url = (f"imap://{urllib.parse.quote(user, safe=achar)}@{authority}/"
           f"{urllib.parse.quote(mailbox, safe=achar + ':@/')}"
           f";UIDVALIDITY={int(uidvalidity)}/;UID={int(uid)}")
    if section:
        url += f"/;SECTION={urllib.parse.quote(section, safe=achar + ':@/')}"
    if expire:
        url += f";EXPIRE={expire}"
    return url


class GssapiSasl:
    """imaplib authobject for AUTHENTICATE GSSAPI (RFC 4752).

    Credentials: from keytab (a client keytab: gss_acquire_cred_from into a
    private MEMORY ccache, no kinit; principal defaults to the keytab's
    first), else from ccache, else from $KRB5CCNAME.  The process must see
    the test realm's KRB5_CONFIG (the krb5_env fixture sets it).
    authzid: the SASL authorization identity ("" = act as yourself).
    No security layer is chosen.  After success: self.initiator (str)."""

    def __init__(self, service="imap", hostname="localhost", authzid="", keytab=None,
                 principal=None, ccache=None):
        import gssapi
        self.gssapi = gssapi
        creds = None
        name = gssapi.Name(principal, gssapi.NameType.kerberos_principal) if principal else None
        if keytab:
            creds = gssapi.Credentials(
                name=name, usage="initiate",
                store={"client_keytab": str(keytab),
                       "ccache": f"MEMORY:msaproxy-imap-{os.getpid()}-{os.urandom(4).hex()}"})
        elif ccache:
            creds = gssapi.Credentials(name=name, usage="initiate",
                                       store={"ccache": str(ccache)})
        target = gssapi.Name(f"{service}@{hostname}", gssapi.NameType.hostbased_service)
        R = gssapi.RequirementFlag
        self.ctx = gssapi.SecurityContext(name=target, usage="initiate", creds=creds,
                                          flags=[R.mutual_authentication,
                                                 R.out_of_sequence_detection])
        self.authzid = authzid or ""
        self.initiator = None

    def __call__(self, challenge):
        if not self.ctx.complete:
            out = self.ctx.step(challenge or None) or b""
            if self.ctx.complete:
                self.initiator = str(self.ctx.initiator_name)
            return out
        # RFC 4752 3.1: the server's wrapped 4 octets offer security layers;
        # answer "no security layer" (1), max size 0, then the authzid
        offer = self.ctx.unwrap(challenge).message
        if len(offer) != 4 or not offer[0] & 1:
            raise imaplib.IMAP4.error(f"GSSAPI: bad security layer offer {offer!r}")
        return self.ctx.wrap(b"\x01\x00\x00\x00" + self.authzid.encode(), False).message


def imap_connect(port, user=None, password=None, mech="LOGIN", authzid="", keytab=None,
                 principal=None, ccache=None, service="imap", hostname="localhost",
                 host="127.0.0.1", timeout=10):
    """A logged-in imaplib.IMAP4.

    mech  "LOGIN"   LOGIN user password
          "PLAIN"   AUTHENTICATE PLAIN authzid NUL user NUL password
          "GSSAPI"  GssapiSasl(keytab/principal/ccache, authzid)
          None      not logged in
    Raises imaplib.IMAP4.error when the server says NO/BAD."""
    m = imaplib.IMAP4(host, port, timeout=timeout)
    try:
        if mech is None:
            return m
        mech = mech.upper()
        if mech == "LOGIN":
            m.login(user, password)
        elif mech == "PLAIN":
            resp = f"{authzid or ''}\0{user}\0{password}".encode()
            m.authenticate("PLAIN", lambda _challenge: resp)
        elif mech == "GSSAPI":
            m.authenticate("GSSAPI", GssapiSasl(service, hostname, authzid, keytab,
                                                principal, ccache))
        else:
            raise ValueError(f"unknown mech {mech}")
    except BaseException:
        try:
            m.shutdown()
        except OSError:
            pass
        raise
    return m


def _logout(m):
    try:
        m.logout()
    except (OSError, imaplib.IMAP4.error):
        pass


def _imap_string(s):
    if isinstance(s, bytes):
        s = s.decode()
    if any(c in s for c in '"\\\r\n'):
        raise ValueError(f"cannot quote {s!r}")
    return f'"{s}"'


def _unquote(b):
    b = b.strip()
    if b.startswith(b'"') and b.endswith(b'"') and len(b) >= 2:
        return re.sub(rb'\\(.)', rb'\1', b[1:-1])
    return b


def imap_append(port, user, password, message_bytes, mailbox="INBOX", **login):
    """APPEND message_bytes (CRLF line ends: imaplib would turn a bare LF or
    CR into CRLF, so that is refused) as user; -> (uidvalidity, uid) from
    the APPENDUID response code (RFC 4315)."""
    if re.search(rb"\r(?!\n)|(?<!\r)\n", message_bytes):
        raise ValueError("imap_append: message must use CRLF line ends only")
    m = imap_connect(port, user, password, **login)
    try:
        typ, data = m.append(mailbox, None, None, message_bytes)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"APPEND: {typ} {data!r}")
        mo = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0] or b"")
        if not mo:
            raise imaplib.IMAP4.error(f"APPEND: no APPENDUID in {data!r}")
        return int(mo.group(1)), int(mo.group(2))
    finally:
        _logout(m)


def imap_genurlauth(port, user, password, url, access=None, mechanism="INTERNAL", **login):
    """GENURLAUTH "<url>;URLAUTH=<access>" INTERNAL (RFC 4467) as user; ->
    the full URL with its token.  access defaults to submit+<user>."""
    access = access or f"submit+{user}"
    m = imap_connect(port, user, password, **login)
    try:
        typ, data = m._simple_command("GENURLAUTH", _imap_string(f"{url};URLAUTH={access}"),
                                      mechanism)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"GENURLAUTH: {typ} {data!r}")
        _, got = m._untagged_response(typ, data, "GENURLAUTH")
        urls = [_unquote(g).decode() for g in got if g]
        if not urls:
            raise imaplib.IMAP4.error(f"GENURLAUTH: no URL in the answer ({data!r})")
        return urls[0]
    finally:
        _logout(m)


def urlfetch(m, *urls):
    """URLFETCH on a logged-in imaplib connection; -> (tagged status,
    {url: bytes or None}).  Literals (Cyrus, Dovecot), quoted strings and
    NIL are understood; URLs quoted (Cyrus) or atoms (Dovecot)."""
    typ, data = m._simple_command("URLFETCH", *[_imap_string(u) for u in urls])
    _, got = m._untagged_response(typ, data, "URLFETCH")
    out = {}
    for item in got:
        if isinstance(item, tuple):
            head, lit = item
            mo = re.match(rb'\s*("(?:[^"\\]|\\.)*"|\S+)\s+\{\d+\}$', head)
            if mo:
                out[_unquote(mo.group(1)).decode()] = lit
            continue
        if not item:
            continue
        mo = re.match(rb'\s*("(?:[^"\\]|\\.)*"|\S+)\s+(NIL|"(?:[^"\\]|\\.)*")\s*$', item, re.I)
        if mo:
            v = mo.group(2)
            out[_unquote(mo.group(1)).decode()] = None if v.upper() == b"NIL" else _unquote(v)
    return typ, out


def imap_urlfetch(port, user, password, url, **login):
    """Log in (LOGIN by default; mech=/authzid=/keytab= as imap_connect) and
    URLFETCH url; -> its bytes, or None (NIL, or a NO answer)."""
    m = imap_connect(port, user, password, **login)
    try:
        typ, got = urlfetch(m, url)
        if typ != "OK":
            return None
        if url in got:
            return got[url]
        return next(iter(got.values()), None)
    finally:
        _logout(m)


def uid_fetch(m, uid, section="", mailbox="INBOX"):
    """EXAMINE mailbox + UID FETCH uid BODY.PEEK[section]; -> (uidvalidity,
    bytes or None)."""
    typ, data = m.select(_imap_string(mailbox), readonly=True)
    if typ != "OK":
        raise imaplib.IMAP4.error(f"EXAMINE {mailbox}: {typ} {data!r}")
    uv = m.untagged_responses.get("UIDVALIDITY", [b"0"])[-1]
    typ, data = m.uid("FETCH", str(int(uid)), f"(UID BODY.PEEK[{section}])")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID FETCH: {typ} {data!r}")
    for item in data:
        if isinstance(item, tuple) and re.search(rb"\bUID %d\b" % int(uid), item[0]):
            return int(uv), item[1]
    return int(uv), None


def imap_uid_fetch(port, user, password, uid, section="", mailbox="INBOX", **login):
    """Log in (e.g. mech="PLAIN", authzid="alice" with submit/submitpw),
    EXAMINE mailbox, UID FETCH BODY.PEEK[section]; -> bytes or None."""
    m = imap_connect(port, user, password, **login)
    try:
        return uid_fetch(m, uid, section, mailbox)[1]
    finally:
        _logout(m)


# ------------------------------------------------------------ HostileImap ---

HOSTILE_MODES = ("ok", "huge_literal", "drip", "garbage", "disconnect_mid_literal",
                 "bye", "no", "nil", "hang", "refuse", "close")
DEFAULT_HOSTILE_CAPS = ["IMAP4rev1", "LITERAL+", "SASL-IR", "AUTH=PLAIN", "URLAUTH"]
GARBAGE = (b"\x00\xff\xfeHTTP/1.1 400 Bad Request\r\nServer: not-imap\r\n\r\n"
           b"\x1b[31m%s\x07\r\n<html>\x80\x81\x82</html>\n")


class HostileSession:
    def __init__(self, peer):
        self.peer = peer
        self.raw = bytearray()        # every byte received
        self.commands = []            # (tag, VERB, [args as bytes]) in order
        self.logins = []              # {"mech", "authcid", "authzid", "ok"}
        self.urls = []                # URLFETCH arguments (str)
        self.closed = False


class HostileImap(ThreadedServer):
    """A fake IMAP server that misbehaves on purpose (one thread per
    connection), for the proxy's URLFETCH client.

    It speaks enough IMAP to get there: greeting `* OK [CAPABILITY ...]`,
    CAPABILITY, LOGIN, AUTHENTICATE PLAIN (with or without SASL-IR),
    URLFETCH, SELECT/EXAMINE, UID FETCH, NOOP, LOGOUT; strings may be atoms,
    quoted or literals ({n} and {n+}).  Logins are checked against users
    ({name: password}; None = anything goes).

    mode (what happens at the fetch, i.e. URLFETCH or UID FETCH, unless
    phase="greeting" for drip/garbage):
      ok                     the body as a literal, then OK
      huge_literal           announces {4294967296}, then sends huge_chunk
                             bytes every drip_interval s until stopped or
                             the client goes away
      drip                   the normal answer, one byte every
                             drip_interval s
      garbage                non-IMAP bytes, then silence (the connection
                             stays open)
      disconnect_mid_literal announces the body's size, sends half, closes
      bye                    after a successful login: OK, then
                             `* BYE ...` and close
      no                     tagged NO
      nil                    URLFETCH: `* URLFETCH "<url>" NIL` + OK;
                             UID FETCH: no FETCH data, OK
      hang                   never answers the fetch
      refuse                 nothing listens on the port
      close                  accepts and closes at once (no greeting)
    Records: sessions (HostileSession); connection_count(), login_count(),
    commands(), urls().  Knobs may be changed while it runs.
    """

    def __init__(self, mode="ok", body=b"", port=None, users=None, caps=None,
                 drip_interval=1.0, phase="fetch", huge_chunk=4096, uidvalidity=1700000000,
                 uid=1, quote_urls=True):
        if mode not in HOSTILE_MODES:
            raise ValueError(f"mode must be one of {HOSTILE_MODES}")
        self.mode = mode
        self.body = body
        self.users = dict(USERS) if users is None else users
        self.caps = list(DEFAULT_HOSTILE_CAPS if caps is None else caps)
        self.drip_interval = drip_interval
        self.phase = phase
        self.huge_chunk = huge_chunk
        self.uidvalidity = uidvalidity
        self.uid = uid
        self.quote_urls = quote_urls
        super().__init__(port)

    @property
    def url_authority(self):
        return f"localhost:{self.port}"

    def start(self):
        if self.mode == "refuse":
            return self
        return super().start()

    # -- observation --
    def _sessions(self):
        with self.lock:
            return list(self.sessions)

    def connection_count(self):
        return len(self._sessions())

    def logins(self, ok_only=True):
        return [l for s in self._sessions() for l in s.logins if l["ok"] or not ok_only]

    def login_count(self):
        return len(self.logins())

    def commands(self):
        """[(tag, VERB, args)] of every session, in order."""
        return [c for s in self._sessions() for c in s.commands]

    def verbs(self):
        return [v for _, v, _ in self.commands()]

    def urls(self):
        return [u for s in self._sessions() for u in s.urls]

    def wait_connections(self, n=1, timeout=10):
        return wait_until(lambda: self.connection_count() >= n, timeout)

    # -- server --
    def _new_session(self, peer):
        return HostileSession(peer)

    def _hang(self, c):
        """Say nothing until stopped or the client closes."""
        c.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                if not c.recv(65536):
                    break
            except socket.timeout:
                continue
        raise ServerClosed()

    def _drip(self, c, data):
        for i in range(len(data)):
            if self.stopping.is_set():
                raise ServerClosed()
            c.sendall(data[i:i + 1])
            if self.stopping.wait(self.drip_interval):
                raise ServerClosed()

    def _send(self, c, data):
        c.sendall(data if isinstance(data, bytes) else data.encode() + b"\r\n")

    def _dialogue(self, c, sess):
        if self.mode == "close":
            c.shutdown(socket.SHUT_RDWR)
            return
        rd = _ImapReader(c, sess, self)
        greeting = f"* OK [CAPABILITY {' '.join(self.caps)}] hostile IMAP ready\r\n".encode()
        if self.phase == "greeting" and self.mode == "drip":
            self._drip(c, greeting)
        elif self.phase == "greeting" and self.mode == "garbage":
            self._send(c, GARBAGE)
            self._hang(c)
        else:
            self._send(c, greeting)
        authed = False
        while not self.stopping.is_set():
            cmd = rd.command()
            if cmd is None:
                return
            tag, verb, args = cmd
            sess.commands.append((tag, verb, args))
            if verb == "CAPABILITY":
                self._send(c, f"* CAPABILITY {' '.join(self.caps)}\r\n{tag} OK done\r\n".encode())
            elif verb == "NOOP":
                self._send(c, f"{tag} OK NOOP done")
            elif verb == "LOGOUT":
                self._send(c, f"* BYE bye\r\n{tag} OK LOGOUT done\r\n".encode())
                return
            elif verb in ("LOGIN", "AUTHENTICATE"):
                if authed:
                    self._send(c, f"{tag} BAD Already logged in")
                    continue
                authed = self._login(c, rd, sess, tag, verb, args)
                if authed and self.mode == "bye":
                    self._send(c, b"* BYE Server shutting down (hostile)\r\n")
                    c.shutdown(socket.SHUT_RDWR)
                    return
            elif not authed:
                self._send(c, f"{tag} BAD Not logged in")
            elif verb in ("SELECT", "EXAMINE"):
                rw = "READ-ONLY" if verb == "EXAMINE" else "READ-WRITE"
                self._send(c, (f"* FLAGS (\\Seen)\r\n* 1 EXISTS\r\n* 0 RECENT\r\n"
                               f"* OK [UIDVALIDITY {self.uidvalidity}] UIDs valid\r\n"
                               f"* OK [UIDNEXT {self.uid + 1}] next\r\n"
                               f"{tag} OK [{rw}] {verb} done\r\n").encode())
            elif verb == "URLFETCH":
                urls = [a.decode("utf-8", "replace") for a in args]
                sess.urls += urls
                self._fetch(c, tag, verb, urls)
            elif verb == "UID" and args and args[0].upper() == b"FETCH":
                self._fetch(c, tag, verb, args[1:])
            else:
                self._send(c, f"{tag} BAD Unknown command")

    def _login(self, c, rd, sess, tag, verb, args):
        rec = {"mech": "LOGIN", "authcid": None, "authzid": None, "ok": False}
        sess.logins.append(rec)
        if verb == "LOGIN":
            if len(args) != 2:
                self._send(c, f"{tag} BAD LOGIN needs user and password")
                return False
            user, pw = (a.decode("utf-8", "replace") for a in args)
            rec["authcid"] = user
        else:
            if not args or args[0].upper() != b"PLAIN":
                rec["mech"] = args[0].decode("ascii", "replace").upper() if args else ""
                self._send(c, f"{tag} NO Unsupported mechanism")
                return False
            rec["mech"] = "PLAIN"
            if len(args) > 1:                      # RFC 4959 SASL-IR
                ir = args[1]
            else:
                self._send(c, b"+ \r\n")
                ir = rd.line()
                if ir is None:
                    raise ServerClosed()
                ir = ir.rstrip(b"\r\n")
            if ir == b"*":
                self._send(c, f"{tag} BAD Authentication cancelled")
                return False
            try:
                raw = b"" if ir == b"=" else base64.b64decode(ir, validate=True)
                authz, user, pw = (x.decode("utf-8") for x in raw.split(b"\0"))
            except ValueError:
                self._send(c, f"{tag} BAD Invalid PLAIN response")
                return False
            rec["authcid"], rec["authzid"] = user, authz or None
        if self.users is not None and self.users.get(user) != pw:
            self._send(c, f"{tag} NO [AUTHENTICATIONFAILED] Authentication failed")
            return False
        rec["ok"] = True
        self._send(c, f"{tag} OK [CAPABILITY {' '.join(self.caps)}] Logged in")
        return True

    def _fetch(self, c, tag, verb, args):
        mode = self.mode if self.phase == "fetch" else "ok"
        body = self.body
        if verb == "URLFETCH":
            url = args[0] if args else ""
            shown = _imap_string(url) if self.quote_urls else url
            head = f"* URLFETCH {shown} ".encode()
            tail = b"\r\n"
        else:
            uid = args[0].decode("ascii", "replace") if args else str(self.uid)
            items = args[1].decode("ascii", "replace") if len(args) > 1 else "(BODY[])"
            mo = re.search(r"BODY(?:\.PEEK)?\[([^\]]*)\]", items, re.I)
            sect = mo.group(1) if mo else ""
            head = f"* 1 FETCH (UID {uid} BODY[{sect}] ".encode()
            tail = b")\r\n"
        done = f"{tag} OK {verb} completed\r\n".encode()
        if mode == "no":
            self._send(c, f"{tag} NO {verb} failed (hostile test server)")
        elif mode == "nil":
            if verb == "URLFETCH":
                self._send(c, head + b"NIL\r\n" + done)
            else:
                self._send(c, done)
        elif mode == "hang":
            self._hang(c)
        elif mode == "garbage":
            self._send(c, GARBAGE)
            self._hang(c)
        elif mode == "huge_literal":
            self._send(c, head + b"{4294967296}\r\n")
            chunk = b"x" * self.huge_chunk
            while not self.stopping.is_set():
                c.sendall(chunk)          # raises once the client is gone
                if self.stopping.wait(self.drip_interval):
                    break
            raise ServerClosed()
        elif mode == "disconnect_mid_literal":
            self._send(c, head + b"{%d}\r\n" % len(body) + body[:len(body) // 2])
            c.shutdown(socket.SHUT_RDWR)
            raise ServerClosed()
        elif mode == "drip":
            self._drip(c, head + b"{%d}\r\n" % len(body) + body + tail + done)
        else:                                       # ok, bye (after login)
            self._send(c, head + b"{%d}\r\n" % len(body) + body + tail + done)


class _ImapReader:
    """Reads IMAP commands: lines plus literals ({n} answered with a
    continuation, {n+} not), tokenized into tag, VERB, [args]."""

    def __init__(self, c, sess, server):
        self.c, self.sess, self.server = c, sess, server
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
            if len(self.buf) > 1 << 20:
                raise ServerClosed()
            if not self._fill():
                return None

    def exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def command(self):
        tokens = []
        while True:
            line = self.line()
            if line is None:
                return None
            line = line.rstrip(b"\r\n")
            mo = re.search(rb"\{(\d+)(\+?)\}$", line)
            tokens += _tokenize(line[:mo.start()] if mo else line)
            if not mo:
                break
            if not mo.group(2):
                self.c.sendall(b"+ go ahead\r\n")
            lit = self.exact(int(mo.group(1)))
            if lit is None:
                return None
            tokens.append(lit)
        if len(tokens) < 2:
            return ("*", "", tokens)
        return (tokens[0].decode("ascii", "replace"),
                tokens[1].decode("ascii", "replace").upper(), tokens[2:])


def _tokenize(b):
    """Atoms (brackets may hold spaces: BODY.PEEK[HEADER.FIELDS (A B)]),
    quoted strings (unquoted) and parenthesized lists (kept raw)."""
    out, i, n = [], 0, len(b)
    while i < n:
        ch = b[i:i + 1]
        if ch == b" ":
            i += 1
        elif ch == b'"':
            j, val = i + 1, bytearray()
            while j < n and b[j:j + 1] != b'"':
                if b[j:j + 1] == b"\\" and j + 1 < n:
                    j += 1
                val += b[j:j + 1]
                j += 1
            out.append(bytes(val))
            i = j + 1
        elif ch == b"(":
            depth, j = 0, i
            while j < n:
                if b[j:j + 1] == b"(":
                    depth += 1
                elif b[j:j + 1] == b")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            out.append(bytes(b[i:j + 1]))
            i = j + 1
        else:
            j, brackets = i, 0
            while j < n and (brackets or b[j:j + 1] != b" "):
                if b[j:j + 1] == b"[":
                    brackets += 1
                elif b[j:j + 1] == b"]":
                    brackets = max(0, brackets - 1)
                j += 1
            out.append(bytes(b[i:j]))
            i = j
    return out


# ---------------------------------------------------------------- fixtures ---

@pytest.fixture(scope="session")
def cyrus_imap(kdc_session):
    """One Cyrus imapd per session (GSSAPI via the session KDC).  Tests share
    it: tell messages apart by a unique marker."""
    why = cyrus_missing()
    if why:
        pytest.skip(why)
    srv = CyrusImap(kdc=kdc_session)
    try:
        srv.start()
    except Exception:
        srv.cleanup()
        raise
    yield srv
    srv.cleanup()


@pytest.fixture(scope="session")
def dovecot_imap(kdc_session):
    """One Dovecot IMAP per session (GSSAPI via the session KDC; submit is a
    master user)."""
    why = dovecot_missing()
    if why:
        pytest.skip(why)
    srv = DovecotImap(kdc=kdc_session)
    try:
        srv.start()
    except Exception:
        srv.cleanup()
        raise
    yield srv
    srv.cleanup()


@pytest.fixture(scope="session")
def submit_keytab(kdc_session):
    """Client keytab of submit@REALM (the proxy's initiator identity towards
    IMAP); exported with -norandkey, so submitpw keeps working."""
    return kdc_session.keytabs["submit"]


@pytest.fixture
def hostile_imap():
    """make(mode="ok", **kw) -> a started HostileImap; all stopped at the
    end of the test."""
    made = []

    def make(mode="ok", **kw):
        h = HostileImap(mode, **kw)
        made.append(h)
        return h.start()

    yield make
    for h in made:
        h.stop()
