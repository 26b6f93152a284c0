"""kdc.py - a private MIT Kerberos KDC for msaproxy's SMTP AUTH GSSAPI tests.

    kdc = Kdc()                         # realm LAB.TEST, free port, temp dir
    kdc.start()                         # creates the database on first start
    kdc.add_principal("alice", "alicepw")
    kdc.add_principal("smtp/localhost")                # random key
    kt = kdc.keytab(["smtp/localhost"])                # -> path
    cc = kdc.kinit("alice", password="alicepw")        # -> ccache path
    env = kdc.env(ccache=cc)            # KRB5_CONFIG, KRB5_KDC_PROFILE, ...
    kdc.stop(); kdc.start()             # same port, same database
    kdc.cleanup()                       # stop + remove the directory

Everything lives in one directory under /tmp (krb5.conf, kdc.conf, database,
stash, acl, keytabs, ccaches, replay cache, logs).  krb5kdc runs in the
foreground (-n) as our child in its own session and listens on
127.0.0.1:port for UDP and TCP only.  Every MIT tool is run with
KRB5_CONFIG/KRB5_KDC_PROFILE pointing into that directory, so nothing under
/etc (whose krb5.conf names ATHENA.MIT.EDU) is read or written.

Needs root only where the tests need it (keytab ownership); Debian packages
krb5-kdc, krb5-admin-server (kadmin.local), krb5-user (kinit, klist).
Standard library only.  The same facts the team's reference lab relies on:
dns_lookup_kdc/realm = false, rdns = false, dns_canonicalize_hostname =
false (so smtp@localhost is smtp/localhost@REALM), udp_preference_limit = 1,
a world-writable sticky replay cache directory (acceptors write
krb5_<euid>.rcache2 there; a process that dropped to another uid must be
able to create its file).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DEFAULT_REALM = "LAB.TEST"
MASTER_PASSWORD = "masterpw"       # throwaway database master key
_NAME_RE = re.compile(r"^[A-Za-z0-9._/@-]+$")
_PW_RE = re.compile(r'^[^\s"\\]+$')


class KrbError(RuntimeError):
    """An MIT tool failed.  .result is the CompletedProcess (or None)."""

    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.result = result


def _make_tempdir(prefix):
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    for parent in d.parents:
        if not parent.stat().st_mode & 0o001:
            raise RuntimeError(f"{parent} is not traversable by other users")
    return d


def free_udp_tcp_port():
    """A port on 127.0.0.1 free for both TCP and UDP right now."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
        finally:
            t.close()
            u.close()
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


def _die_with_parent():
    """preexec_fn: SIGTERM the child when the test process dies (so an
    interrupted pytest run leaves no krb5kdc behind)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _tcp_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _udp_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        try:
            u.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Kdc:
    """A throwaway MIT KDC.  See the module docstring."""

    def __init__(self, realm=DEFAULT_REALM, basedir=None, port=None,
                 ticket_lifetime="10h"):
        self.realm = realm
        self.dir = Path(basedir) if basedir else _make_tempdir("msaproxy-kdc.")
        self.own_dir = basedir is None
        self.port = port or free_udp_tcp_port()
        self.fixed_port = port is not None
        self.ticket_lifetime = ticket_lifetime
        self.krb5_conf = self.dir / "krb5.conf"
        self.kdc_conf = self.dir / "kdc.conf"
        self.db = self.dir / "db" / "principal"
        self.stash = self.dir / "db" / "stash"
        self.acl = self.dir / "db" / "kadm5.acl"
        self.keytab_dir = self.dir / "keytabs"
        self.ccache_dir = self.dir / "ccache"
        self.rcache_dir = self.dir / "rcache"
        self.logfile = self.dir / "kdc.log"
        self.outfile = self.dir / "krb5kdc.out"
        self.passwords = {}          # principal (with realm) -> password
        self.proc = None
        self._out = None
        self._provisioned = False

    # ------------------------------------------------------------ naming ---
    def principal(self, name):
        """name with @REALM appended unless it has a realm already."""
        return name if "@" in name else f"{name}@{self.realm}"

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    # --------------------------------------------------------- provision ---
    def _write_configs(self):
        d = self.dir
        self.krb5_conf.write_text(f"""\
# generated by tests/integration/kdc.py; throwaway
[libdefaults]
    default_realm = {self.realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    udp_preference_limit = 1
    forwardable = true
    ticket_lifetime = {self.ticket_lifetime}
    default_ccache_name = FILE:{self.ccache_dir}/default
    default_keytab_name = FILE:{self.keytab_dir}/default.keytab
    default_client_keytab_name = FILE:{self.keytab_dir}/default-client.keytab

[realms]
    {self.realm} = {{
        kdc = 127.0.0.1:{self.port}
    }}

[domain_realm]
    localhost = {self.realm}
    .test = {self.realm}
    test = {self.realm}

[logging]
    default = FILE:{d}/krb5lib.log
""")
        self.kdc_conf.write_text(f"""\
# generated by tests/integration/kdc.py; throwaway
[kdcdefaults]
    kdc_listen = 127.0.0.1:{self.port}
    kdc_tcp_listen = 127.0.0.1:{self.port}

[realms]
    {self.realm} = {{
        database_name = {self.db}
        key_stash_file = {self.stash}
        acl_file = {self.acl}
        kdc_listen = 127.0.0.1:{self.port}
        kdc_tcp_listen = 127.0.0.1:{self.port}
        max_life = 10h 0m 0s
        max_renewable_life = 7d 0h 0m 0s
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}

[logging]
    kdc = FILE:{self.logfile}
    admin_server = FILE:{d}/kadmin.log
    default = FILE:{d}/krb5lib.log
""")

    def provision(self):
        """Write the configs and create the database (once)."""
        if self._provisioned:
            return self
        for sub in ("db", "keytabs", "ccache"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir / "db", 0o700)
        os.chmod(self.keytab_dir, 0o755)
        os.chmod(self.ccache_dir, 0o755)
        self.rcache_dir.mkdir(exist_ok=True)
        os.chmod(self.rcache_dir, 0o1777)
        self._write_configs()
        self.acl.write_text(f"*/admin@{self.realm} *\n")
        self._run(["kdb5_util", "-r", self.realm, "create", "-s", "-P", MASTER_PASSWORD],
                  what="kdb5_util create")
        self._provisioned = True
        return self

    # ------------------------------------------------------------- tools ---
    def env(self, ccache=None, keytab=None, client_keytab=None, trace=None):
        """Environment for processes using this realm (msaproxy, clients,
        MIT tools).  KRB5CCNAME defaults to a file in the KDC directory (empty
        until something kinits into it), never root's /tmp/krb5cc_0.
        keytab -> KRB5_KTNAME (acceptor), client_keytab -> KRB5_CLIENT_KTNAME
        (initiator without kinit), trace -> KRB5_TRACE file."""
        e = {
            "KRB5_CONFIG": str(self.krb5_conf),
            "KRB5_KDC_PROFILE": str(self.kdc_conf),
            "KRB5RCACHEDIR": str(self.rcache_dir),
            "KRB5CCNAME": _ccname(ccache) if ccache else f"FILE:{self.ccache_dir}/default",
        }
        if keytab:
            e["KRB5_KTNAME"] = _ktname(keytab)
        if client_keytab:
            e["KRB5_CLIENT_KTNAME"] = _ktname(client_keytab)
        if trace:
            e["KRB5_TRACE"] = str(trace)
        return e

    def _full_env(self, extra=None):
        e = dict(os.environ)
        for k in ("KRB5_KTNAME", "KRB5_CLIENT_KTNAME", "KRB5_TRACE"):
            e.pop(k, None)
        e.update(self.env())
        e.update(extra or {})
        e.setdefault("LC_ALL", "C")
        return e

    def _run(self, argv, input=None, what=None, check=True, env=None, timeout=20):
        try:
            r = subprocess.run(argv, input=input, capture_output=True, text=True,
                               env=self._full_env(env), timeout=timeout,
                               stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise KrbError(f"{what or argv[0]}: no result within {timeout} s") from e
        if check and r.returncode != 0:
            raise KrbError(f"{what or argv[0]} failed ({r.returncode}): "
                           f"{r.stdout}{r.stderr}".strip(), r)
        return r

    def kadmin(self, *queries):
        """Run kadmin.local queries (one per element); returns the output.
        Raises KrbError when kadmin.local reports an error."""
        r = self._run(["kadmin.local", "-r", self.realm],
                      input="".join(q + "\n" for q in queries), what="kadmin.local")
        out = r.stdout + r.stderr
        bad = [l for l in out.splitlines()
               if re.search(r"\b(while|error|failed|not found|unknown|usage)\b", l, re.I)
               and "NOTICE" not in l]
        if bad:
            raise KrbError(f"kadmin.local {queries!r}: " + "\n".join(bad), r)
        return out

    def add_principal(self, name, password=None, options=()):
        """Create name@REALM with password, or with a random key if None.
        options: extra addprinc flags, e.g. ("-maxlife", '"10 seconds"').
        Returns the full principal name."""
        p = self.principal(name)
        if not _NAME_RE.match(p):
            raise ValueError(f"bad principal name {p!r}")
        opts = " ".join(options)
        if password is None:
            self.kadmin(f"addprinc {opts} -randkey {p}")
        else:
            if not _PW_RE.match(password):
                raise ValueError("password must not contain spaces, quotes or backslashes")
            self.kadmin(f"addprinc {opts} -pw {password} {p}")
            self.passwords[p] = password
        return p

    def delete_principal(self, name):
        self.kadmin(f"delprinc -force {self.principal(name)}")
        self.passwords.pop(self.principal(name), None)

    def set_password(self, name, password):
        """New password (new key, new kvno: existing keytabs go stale)."""
        p = self.principal(name)
        self.kadmin(f"cpw -pw {password} {p}")
        self.passwords[p] = password

    def keytab(self, principals, path=None, owner=None, mode=0o600):
        """Export the principals' keys to a keytab (appended if it exists).
        Keys of principals that have a password are exported with -norandkey
        so the password keeps working; random-key principals get -norandkey
        too (no key change: several keytabs can share a service key).
        owner: user name (or (user, group)) to chown the file to, for a
        process that drops privileges.  Returns the path (str)."""
        if isinstance(principals, str):
            principals = [principals]
        names = [self.principal(p) for p in principals]
        if path is None:
            stem = "+".join(n.split("@")[0].replace("/", "_") for n in names)
            path = self.keytab_dir / f"{stem}.keytab"
        path = Path(path)
        self.kadmin(f"ktadd -norandkey -k {path} " + " ".join(names))
        if owner:
            user, group = owner if isinstance(owner, tuple) else (owner, None)
            shutil.chown(path, user, group)
        os.chmod(path, mode)
        return str(path)

    def keytab_principals(self, path):
        """Principals in a keytab (klist -k), de-duplicated, in order."""
        r = self._run(["klist", "-k", str(path)], what="klist -k")
        out = []
        for line in r.stdout.splitlines():
            m = re.match(r"^\s*\d+\s+(\S+@\S+)\s*$", line)
            if m and m.group(1) not in out:
                out.append(m.group(1))
        return out

    def kinit(self, principal, password=None, keytab=None, ccache=None, timeout=10,
              options=()):
        """Get a TGT for principal into ccache (default: a fresh file
        ccache/<name> in the KDC directory) from password (default: the one
        given to add_principal) or keytab.  Returns the ccache path (str;
        an MIT residual without a type prefix is a FILE ccache).
        Raises KrbError on failure (e.g. KDC stopped: 'Cannot contact any
        KDC for realm ...')."""
        p = self.principal(principal)
        if ccache is None:
            ccache = self.ccache_dir / (p.split("@")[0].replace("/", "_") + "-" + os.urandom(4).hex())
        ccache = str(ccache)
        argv = ["kinit", "-c", _ccname(ccache), *options]
        if keytab is not None:
            argv += ["-k", "-t", str(keytab), p]
            stdin = None
        else:
            if password is None:
                password = self.passwords.get(p)
            if password is None:
                raise ValueError(f"no password known for {p}; pass password= or keytab=")
            argv.append(p)
            stdin = password + "\n"
        self._run(argv, input=stdin, what=f"kinit {p}", timeout=timeout)
        return ccache

    def klist(self, ccache):
        """`klist -c ccache` output (raises KrbError if the ccache is empty)."""
        return self._run(["klist", "-c", _ccname(ccache)], what="klist").stdout

    def ccache_principal(self, ccache):
        m = re.search(r"Default principal: (\S+)", self.klist(ccache))
        return m.group(1) if m else None

    def kdestroy(self, ccache):
        self._run(["kdestroy", "-c", _ccname(ccache)], check=False)

    def kvno(self, service, ccache, keytab=None):
        """Get a service ticket with ccache's TGT (kvno); with keytab, also
        check it decrypts with that keytab.  Returns CompletedProcess."""
        argv = ["kvno", "-c", _ccname(ccache)]
        if keytab:
            argv += ["-k", str(keytab)]
        return self._run(argv + [self.principal(service)], what="kvno")

    # -------------------------------------------------------- lifecycle ---
    def start(self, timeout=10):
        """Start krb5kdc in the foreground (-n); provisions on first use.
        Idempotent.  A restart after stop() reuses the port and database."""
        if self.running():
            return self
        if not self._provisioned:
            for attempt in range(5):
                if self.fixed_port or (_udp_free(self.port) and not _tcp_open(self.port)):
                    break
                self.port = free_udp_tcp_port()
            self.provision()
        self._out = open(self.outfile, "ab")
        self.proc = subprocess.Popen(
            ["krb5kdc", "-n", "-r", self.realm],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            env=self._full_env(), start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while not _tcp_open(self.port):
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self._close_out()
                self.proc = None
                raise KrbError(f"krb5kdc exited with {rc} before listening on "
                               f"{self.address}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise KrbError(f"krb5kdc did not listen on {self.address} within "
                               f"{timeout} s\n{self.log_tail()}")
            time.sleep(0.02)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.running() else None

    def stop(self, timeout=5):
        """SIGTERM krb5kdc (our child only) and wait; SIGKILL if it lingers.
        Returns once the port is closed.  Safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        self._close_out()

    def _close_out(self):
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
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=30):
        parts = []
        for f in (self.outfile, self.logfile):
            try:
                parts += f.read_text(errors="replace").splitlines()[-n:]
            except OSError:
                pass
        return "\n".join(parts)


def _ccname(ccache):
    s = str(ccache)
    return s if re.match(r"^[A-Z]+:", s) else f"FILE:{s}"


def _ktname(keytab):
    s = str(keytab)
    return s if re.match(r"^[A-Z]+:", s) else f"FILE:{s}"


# -------------------------------------------------- the tests' standard realm

ALICE_PASSWORD = "alicepw"
BOB_PASSWORD = "bobpw"
SUBMIT_PASSWORD = "submitpw"


def standard_kdc(realm=DEFAULT_REALM, service="smtp", hostname="localhost"):
    """A started Kdc with the principals msaproxy's tests use:
    alice/alicepw, bob/bobpw, submit/submitpw (client keytab for the BURL
    release), <service>/<hostname> (random key, acceptor keytab).
    Keytabs (paths) in kdc.keytabs: "smtp" (acceptor), "submit", "alice",
    "bob"."""
    kdc = Kdc(realm=realm)
    try:
        kdc.start()
        kdc.add_principal("alice", ALICE_PASSWORD)
        kdc.add_principal("bob", BOB_PASSWORD)
        kdc.add_principal("submit", SUBMIT_PASSWORD)
        svc = kdc.add_principal(f"{service}/{hostname}")
        kdc.service_principal = svc
        kdc.keytabs = {
            "smtp": kdc.keytab([svc], kdc.keytab_dir / "smtp.keytab"),
            "submit": kdc.keytab(["submit"], kdc.keytab_dir / "submit.keytab"),
            "alice": kdc.keytab(["alice"], kdc.keytab_dir / "alice.keytab"),
            "bob": kdc.keytab(["bob"], kdc.keytab_dir / "bob.keytab"),
        }
    except Exception:
        kdc.cleanup()
        raise
    return kdc
