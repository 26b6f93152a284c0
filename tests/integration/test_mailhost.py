"""trust/mailhost.c and trust/mailhost_ldap.c (BURL_ACCESS's $M directory)
against a real OpenLDAP slapd (ldap_server.py).

The C side is tests/unit/mailhost_driver (built by `make check`): it loads
an msaproxy.conf with a burl.mailhost group, runs the directory on its own
event loop, takes "LOOKUP user" lines on stdin and prints
"RESULT <FOUND|NOT_FOUND|UNAVAILABLE> <host|-> <ms> <user>" when each
answer comes (see the driver's header).

What must hold:
  - alice and bob are FOUND with their mailHost (bob's has a port), in any
    case; carol (no mailHost), unknown users, an entry whose mailHost is not
    host[:port], and a uid that two entries share are NOT_FOUND;
  - the user goes into the filter RFC 4515-escaped: a uid with '*', '(',
    ')' and ' ' is found as itself, and injections like `*)(uid=*` match
    nothing (slapd's log shows the escaped filter);
  - slapd down: UNAVAILABLE within the timeout (refused: at once; stopped
    with SIGSTOP: after `timeout` seconds); slapd back: FOUND again without
    restarting anything;
  - answers are cached: with slapd gone, alice (positive) and carol
    (negative) are still answered within their TTLs, and no longer after;
  - simple bind with a password file; a wrong password is UNAVAILABLE;
  - ldaps:// and StartTLS, verified against ldap_ca_file; the wrong CA is
    UNAVAILABLE;
  - a cancelled lookup never answers; many lookups at once share one
    connection; no file descriptor is leaked across outages;
  - the map file is consulted before LDAP.

Run with /usr/bin/python3 as root (slapd and its database in a temp dir).
Binaries: the tree's build, or the one next to $MSAPROXY_BIN (build-asan/
for the sanitizer run), or $MSAPROXY_BUILD_DIR.
"""

import os
import queue
import subprocess
import threading
import time
from pathlib import Path

import pytest

import ldap_server
from harness import make_tempdir

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TIMEOUT = 2          # burl.mailhost.timeout in these tests


def _build_dir():
    if os.environ.get("MSAPROXY_BUILD_DIR"):
        return Path(os.environ["MSAPROXY_BUILD_DIR"])
    if os.environ.get("MSAPROXY_BIN"):
        return Path(os.environ["MSAPROXY_BIN"]).resolve().parent
    return REPO


DRIVER = _build_dir() / "tests" / "unit" / "mailhost_driver"


def _need_driver():
    if not os.access(DRIVER, os.X_OK):
        pytest.skip(f"{DRIVER} not built (make check)")


def _conf_text(mailhost):
    """A minimal msaproxy.conf whose burl section has the mailhost group
    given as a dict (strings quoted, bools and ints as they are)."""
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
    keys = "\n".join(f"    {k} = {val(v)};" for k, v in mailhost.items())
    return f"""\
listeners = ( {{ name = "sub"; address = "127.0.0.1:1587"; }} );
backend = {{ address = "127.0.0.1:25"; }};
burl = {{
  imap_servers = (
    {{ name = "imap1"; authority = "imap1.example.com"; address = "127.0.0.1:143";
      keytab = "/nonexistent.keytab"; }}
  );
  mailhost = {{
{keys}
  }};
}};
"""


class Driver:
    """mailhost_driver as a child: commands on stdin, answers on stdout,
    its log (stderr) in a file."""

    def __init__(self, workdir, mailhost, verbose=True):
        _need_driver()
        self.dir = Path(workdir)
        tag = os.urandom(4).hex()
        self.conf = self.dir / f"driver-{tag}.conf"
        self.conf.write_text(_conf_text(mailhost))
        self.logfile = self.dir / f"driver-{tag}.log"
        self._log = open(self.logfile, "wb")
        argv = [str(DRIVER), "-c", str(self.conf)] + (["-v"] if verbose else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.results = {}            # user -> [(status, host, ms)]
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self.lines.get(timeout=20)
        if first != "READY":
            self.close()
            raise RuntimeError(f"driver: {first}\n{self.log()}")

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("RESULT "):
                _, status, host, ms, user = line.split(" ", 4)
                with self._cv:
                    self.results.setdefault(user, []).append(
                        (status, None if host == "-" else host, int(ms)))
                    self._cv.notify_all()
            else:
                self.lines.put(line)
        self.lines.put(None)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def start(self, user):
        """Start a lookup; the answer is collected in the background."""
        self.send(f"LOOKUP {user}")

    def wait(self, user, n=1, timeout=TIMEOUT + 5):
        """The n-th answer for user: (status, host or None, ms)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.results.get(user, [])) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no answer for {user!r} within {timeout} s\n"
                                         f"{self.log()[-3000:]}")
                self._cv.wait(left)
            return self.results[user][n - 1]

    def lookup(self, user, timeout=TIMEOUT + 5):
        n = len(self.results.get(user, [])) + 1
        self.start(user)
        return self.wait(user, n, timeout)

    def answers(self, user):
        with self._cv:
            return list(self.results.get(user, []))

    def command(self, line, timeout=10):
        self.send(line)
        return self.lines.get(timeout=timeout)

    def stats(self):
        line = self.command("STATS")
        assert line.startswith("STATS "), line
        return {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}

    def log(self):
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def close(self):
        """QUIT; the driver must exit 0 (ASan: no leak, no error)."""
        if self.proc.poll() is None:
            try:
                self.send("QUIT")
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        rc = self.close()
        if exc[0] is None:
            assert rc == 0, f"driver exited {rc}\n{self.log()[-3000:]}"


def _need_root():
    if os.geteuid() != 0:
        pytest.skip("slapd's database and ports in a temp dir: run as root")


@pytest.fixture(scope="module")
def slapd():
    _need_root()
    why = ldap_server.slapd_missing()
    if why:
        pytest.skip(why)
    s = ldap_server.Slapd(tls=True)
    try:
        s.start()
    except Exception:
        s.cleanup()
        raise
    yield s
    s.cleanup()


@pytest.fixture
def own_slapd():
    """A slapd of the test's own, to stop, pause and restart."""
    _need_root()
    why = ldap_server.slapd_missing()
    if why:
        pytest.skip(why)
    s = ldap_server.Slapd()
    try:
        s.start()
    except Exception:
        s.cleanup()
        raise
    yield s
    s.cleanup()


@pytest.fixture
def workdir():
    d = make_tempdir("msaproxy-mailhost.")
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


def _ldap(s, **kw):
    m = {"ldap_uri": s.uri, "ldap_base": ldap_server.PEOPLE, "timeout": TIMEOUT}
    m.update(kw)
    return m


# ------------------------------------------------------------------ answers ---

def test_found_and_not_found(slapd, workdir):
    with Driver(workdir, _ldap(slapd)) as d:
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        assert d.lookup("bob")[:2] == ("FOUND", "imap2.example.com:10143")
        # uid matching is the directory's: caseIgnoreMatch
        assert d.lookup("ALICE")[:2] == ("FOUND", "imap1.example.com")
        assert d.lookup("carol")[:2] == ("NOT_FOUND", None)      # no mailHost
        assert d.lookup("nobody")[:2] == ("NOT_FOUND", None)     # no entry
        assert d.lookup("mallory")[:2] == ("NOT_FOUND", None)    # "not a host!"
        # the tree's ou=others holds a second uid=twin: search the suffix
    with Driver(workdir, _ldap(slapd, ldap_base=ldap_server.SUFFIX)) as d:
        assert d.lookup("twin")[:2] == ("NOT_FOUND", None)       # ambiguous
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        log = d.log()
    assert "matches more than one entry for twin" in log


def test_value_refused_is_logged(slapd, workdir):
    with Driver(workdir, _ldap(slapd)) as d:
        assert d.lookup("mallory")[0] == "NOT_FOUND"
        log = d.log()
    assert "mailHost of mallory is not host[:port]" in log


def test_filter_escaping(slapd, workdir):
    injections = ["*)(uid=*", "*", "alice*", "ali*", "alice)(|(uid=*",
                  "*)(|(objectClass=*)", "\\2a", "alice\\29"]
    with Driver(workdir, _ldap(slapd)) as d:
        before = len(slapd.searches())
        # found as itself, metacharacters and all
        assert d.lookup("d*ve (x)")[:2] == ("FOUND", "imap3.example.com")
        for u in injections:
            assert d.lookup(u)[:2] == ("NOT_FOUND", None), u
    filters = slapd.searches()[before:]
    assert len(filters) == 1 + len(injections), filters
    assert filters[0].lower() == "(uid=d\\2ave \\28x\\29)"
    assert filters[1].lower() == "(uid=\\2a\\29\\28uid=\\2a)"
    for f in filters:
        # one filter item each: the user never added a clause or a wildcard
        assert f.count("(") == 1 and f.count(")") == 1 and "*" not in f, f


def test_filter_template(slapd, workdir):
    m = _ldap(slapd, ldap_filter="(&(objectClass=inetOrgPerson)(|(uid=%u)(cn=%u)))")
    with Driver(workdir, m) as d:
        assert d.lookup("bob")[:2] == ("FOUND", "imap2.example.com:10143")
        assert d.lookup("b*")[:2] == ("NOT_FOUND", None)


def test_other_attribute(slapd, workdir):
    # cn holds the uid here: a host-shaped value for alice and bob
    with Driver(workdir, _ldap(slapd, ldap_attribute="cn")) as d:
        assert d.lookup("alice")[:2] == ("FOUND", "alice")
        assert d.lookup("d*ve (x)")[:2] == ("NOT_FOUND", None)   # not a host


def test_oversized_answer(slapd, workdir):
    """An answer larger than msaproxy holds (64 KB) breaks the connection:
    UNAVAILABLE, and the next lookup works on a new one."""
    with Driver(workdir, _ldap(slapd, ldap_attribute="description")) as d:
        assert d.lookup("huge")[0] == "UNAVAILABLE"
        st = d.stats()
    assert st["ldap_searches"] == 2          # sent once more, then given up
    with Driver(workdir, _ldap(slapd)) as d:
        assert d.lookup("huge")[:2] == ("FOUND", "imap1.example.com")


def test_map_file_first(slapd, workdir):
    mapf = workdir / "mailhosts"
    mapf.write_text("# overrides\nalice imap9.example.com:993\nzoe imap4.example.com\n")
    with Driver(workdir, _ldap(slapd, map_file=str(mapf))) as d:
        assert d.lookup("alice")[:2] == ("FOUND", "imap9.example.com:993")
        assert d.lookup("Zoe")[:2] == ("FOUND", "imap4.example.com")
        assert d.lookup("bob")[:2] == ("FOUND", "imap2.example.com:10143")
        st = d.stats()
    assert st["map_hits"] == 2 and st["ldap_searches"] == 1


def test_map_file_only(workdir):
    _need_driver()
    mapf = workdir / "mailhosts"
    mapf.write_text("alice imap1.example.com\n")
    with Driver(workdir, {"map_file": str(mapf)}) as d:
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        assert d.lookup("bob")[:2] == ("NOT_FOUND", None)


def test_bad_map_file(workdir):
    _need_driver()
    mapf = workdir / "mailhosts"
    mapf.write_text("alice imap1.example.com\nbob\n")
    with pytest.raises(RuntimeError) as e:
        Driver(workdir, {"map_file": str(mapf)})
    assert f"{mapf}:2: a user without a mailhost" in str(e.value)


# ------------------------------------------------------------ availability ---

def test_down_then_back(own_slapd, workdir):
    s = own_slapd
    with Driver(workdir, _ldap(s, cache_ttl=0, negative_ttl=0)) as d:
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        fds_up = d.stats()["fds"]
        s.stop()
        t0 = time.monotonic()
        status, _, ms = d.lookup("alice")
        assert status == "UNAVAILABLE"
        assert ms < TIMEOUT * 1000 and time.monotonic() - t0 < TIMEOUT + 1
        # within the retry delay: at once, still UNAVAILABLE
        assert d.lookup("bob")[0] == "UNAVAILABLE"
        s.start()
        time.sleep(1.1)          # MAILHOST_LDAP_RETRY_DELAY
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        assert d.lookup("bob")[:2] == ("FOUND", "imap2.example.com:10143")
        # a few more outages: no descriptor left behind
        for _ in range(3):
            s.stop()
            assert d.lookup("alice")[0] == "UNAVAILABLE"
            s.start()
            time.sleep(1.1)
            assert d.lookup("alice")[0] == "FOUND"
        st = d.stats()
        log = d.log()
    assert st["fds"] == fds_up, st
    assert st["ldap_connects"] == 5
    assert "reachable again" in log


def test_hung_server(own_slapd, workdir):
    """SIGSTOPped slapd: the connection (and new ones: the kernel accepts
    them) stays open, nothing answers: UNAVAILABLE after the timeout."""
    s = own_slapd
    with Driver(workdir, _ldap(s, cache_ttl=0, negative_ttl=0)) as d:
        assert d.lookup("alice")[0] == "FOUND"
        s.pause()
        try:
            status, _, ms = d.lookup("alice")
            assert status == "UNAVAILABLE"
            assert TIMEOUT * 1000 - 100 <= ms < TIMEOUT * 1000 + 1500, ms
            # the connection was given up; a new one hangs as well
            status, _, ms = d.lookup("bob")
            assert status == "UNAVAILABLE"
            assert ms < TIMEOUT * 1000 + 1500, ms
        finally:
            s.resume()
        time.sleep(1.1)
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        log = d.log()
    assert "no answer within 2 s" in log


def test_down_at_start(workdir):
    _need_driver()
    _need_root()
    s = ldap_server.Slapd()
    try:
        s.provision()            # never started
        with Driver(workdir, _ldap(s)) as d:
            assert d.lookup("alice")[0] == "UNAVAILABLE"
            s.start()
            time.sleep(1.1)
            assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
    finally:
        s.cleanup()


def test_idle_connection_closed_by_server(own_slapd, workdir):
    """The server drops the connection between lookups (idletimeout, a
    restart): the next lookup is answered on a new one, not failed."""
    s = own_slapd
    with Driver(workdir, _ldap(s, cache_ttl=0, negative_ttl=0)) as d:
        assert d.lookup("alice")[0] == "FOUND"
        s.stop()
        s.start()
        # no retry delay: the connection was established, then lost
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        assert d.stats()["ldap_connects"] == 2


# ------------------------------------------------------------------- cache ---

def test_cache_serves_while_down(own_slapd, workdir):
    s = own_slapd
    with Driver(workdir, _ldap(s, cache_ttl=300, negative_ttl=300)) as d:
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        assert d.lookup("carol")[:2] == ("NOT_FOUND", None)
        s.stop()
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        assert d.lookup("ALICE")[:2] == ("FOUND", "imap1.example.com")
        assert d.lookup("carol")[:2] == ("NOT_FOUND", None)
        assert d.lookup("bob")[0] == "UNAVAILABLE"               # never asked
        st = d.stats()
    assert st["cache_hits"] == 3
    assert st["ldap_searches"] == 2


def test_cache_ttl_expires(own_slapd, workdir):
    s = own_slapd
    with Driver(workdir, _ldap(s, cache_ttl=2, negative_ttl=1)) as d:
        assert d.lookup("alice")[0] == "FOUND"
        assert d.lookup("carol")[0] == "NOT_FOUND"
        s.stop()
        time.sleep(1.1)
        assert d.lookup("carol")[0] == "UNAVAILABLE"     # negative TTL over
        assert d.lookup("alice")[0] == "FOUND"           # positive still on
        time.sleep(1.1)
        assert d.lookup("alice")[0] == "UNAVAILABLE"


def test_cache_disabled(own_slapd, workdir):
    s = own_slapd
    with Driver(workdir, _ldap(s, cache_size=0)) as d:
        assert d.lookup("alice")[0] == "FOUND"
        assert d.lookup("alice")[0] == "FOUND"
        st = d.stats()
    assert st["cache_hits"] == 0 and st["ldap_searches"] == 2


# -------------------------------------------------------------- bind, TLS ---

@pytest.fixture(scope="module")
def slapd_bind():
    _need_root()
    why = ldap_server.slapd_missing()
    if why:
        pytest.skip(why)
    s = ldap_server.Slapd(require_bind=True)
    try:
        s.start()
    except Exception:
        s.cleanup()
        raise
    yield s
    s.cleanup()


def test_bind(slapd_bind, workdir):
    s = slapd_bind
    with Driver(workdir, _ldap(s)) as d:
        # anonymous: the directory shows nothing
        assert d.lookup("alice")[0] == "NOT_FOUND"
    with Driver(workdir, _ldap(s, ldap_bind_dn=ldap_server.BIND_DN,
                               ldap_bind_password_file=str(s.password_file))) as d:
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        assert d.lookup("bob")[:2] == ("FOUND", "imap2.example.com:10143")
        log = d.log()
    assert ldap_server.BIND_PASSWORD not in log


def test_bind_refused(slapd_bind, workdir):
    s = slapd_bind
    bad = workdir / "bad.pw"
    bad.write_text("wrong\n")
    os.chmod(bad, 0o600)
    with Driver(workdir, _ldap(s, ldap_bind_dn=ldap_server.BIND_DN,
                               ldap_bind_password_file=str(bad))) as d:
        assert d.lookup("alice")[0] == "UNAVAILABLE"
        log = d.log()
    assert "bind as cn=msaproxy,dc=example,dc=com refused: Invalid credentials" in log
    assert "wrong" not in log.replace("wrong password", "")


def test_password_file_mode(slapd_bind, workdir):
    _need_driver()
    pw = workdir / "open.pw"
    pw.write_text(ldap_server.BIND_PASSWORD + "\n")
    os.chmod(pw, 0o644)
    with pytest.raises(RuntimeError) as e:
        Driver(workdir, _ldap(slapd_bind, ldap_bind_dn=ldap_server.BIND_DN,
                              ldap_bind_password_file=str(pw)))
    assert "readable by others (chmod 600)" in str(e.value)


def test_ldaps(slapd, workdir):
    with Driver(workdir, _ldap(slapd, ldap_uri=slapd.ldaps_uri,
                               ldap_ca_file=str(slapd.ca_file))) as d:
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        assert d.lookup("d*ve (x)")[:2] == ("FOUND", "imap3.example.com")
    with Driver(workdir, _ldap(slapd, ldap_uri=slapd.ldaps_uri,
                               ldap_ca_file=str(slapd.wrong_ca_file))) as d:
        assert d.lookup("alice")[0] == "UNAVAILABLE"
        log = d.log()
    assert "certificate" in log


def test_starttls(slapd, workdir):
    # by name: the certificate is for localhost (and localhost may resolve
    # to ::1 first, where slapd does not listen: the next address is tried)
    uri = f"ldap://localhost:{slapd.port}"
    with Driver(workdir, _ldap(slapd, ldap_uri=uri, ldap_starttls=True,
                               ldap_ca_file=str(slapd.ca_file))) as d:
        assert d.lookup("alice")[:2] == ("FOUND", "imap1.example.com")
        for i in range(20):
            d.start(f"user{i}")
        for i in range(20):
            assert d.wait(f"user{i}")[0] == "NOT_FOUND"
        assert d.lookup("bob")[:2] == ("FOUND", "imap2.example.com:10143")
    with Driver(workdir, _ldap(slapd, ldap_uri=uri, ldap_starttls=True,
                               ldap_ca_file=str(slapd.wrong_ca_file))) as d:
        assert d.lookup("alice")[0] == "UNAVAILABLE"
    log = slapd.log()
    assert "EXT oid=1.3.6.1.4.1.1466.20037" in log


# ---------------------------------------------------------------- the API ---

def test_cancel(slapd, workdir):
    with Driver(workdir, _ldap(slapd)) as d:
        assert d.command("CANCEL alice") == "CANCELLED alice"
        assert d.lookup("bob")[0] == "FOUND"
        time.sleep(0.3)
        assert d.answers("alice") == []
        assert d.lookup("alice")[0] == "FOUND"


def test_cancel_in_flight(own_slapd, workdir):
    """Cancelled while the server has its search: abandoned, never
    answered, and the connection stays usable."""
    s = own_slapd
    with Driver(workdir, _ldap(s, timeout=5)) as d:
        assert d.lookup("alice")[0] == "FOUND"
        s.pause()
        try:
            d.start("bob")
            time.sleep(0.3)             # sent, not answered
            assert d.command("DROP bob") == "DROPPED bob"
        finally:
            s.resume()
        assert d.lookup("carol")[0] == "NOT_FOUND"
        time.sleep(0.3)
        assert d.answers("bob") == []
        st = d.stats()
    assert st["ldap_connects"] == 1 and st["ldap_searches"] == 3
    assert "ABANDON" in s.log()


def test_many_at_once(slapd, workdir):
    users = [f"u{i}" for i in range(200)] + ["alice", "bob", "carol"]
    with Driver(workdir, _ldap(slapd)) as d:
        d.send("\n".join(f"LOOKUP {u}" for u in users))
        for u in users:
            status, host, _ = d.wait(u)
            want = {"alice": "FOUND", "bob": "FOUND"}.get(u, "NOT_FOUND")
            assert status == want, (u, status)
        st = d.stats()
    assert st["ldap_connects"] == 1
    assert st["pending"] == 0


def test_quit_with_pending(own_slapd, workdir):
    """The directory freed with searches out (and a hung server): no
    callback, no leak (the ASan build checks), exit 0."""
    s = own_slapd
    with Driver(workdir, _ldap(s)) as d:
        assert d.lookup("alice")[0] == "FOUND"
        s.pause()
        for u in ("bob", "carol", "dave"):
            d.start(u)
        time.sleep(0.2)
        # leaving the with block: QUIT, exit status 0 checked
    s.resume()
    assert d.answers("bob") == []


# ------------------------------------------------------------ msaproxy -t ---

def test_config_check_reads_map_file(binary, workdir):
    """`msaproxy -t` parses the map file too: FILE:LINE for a bad line."""
    mapf = workdir / "mailhosts"
    conf = workdir / "msaproxy.conf"
    conf.write_text(_conf_text({"map_file": str(mapf)}))
    mapf.write_text("alice imap1.example.com\nbob imap2.example.com:10143\n")
    r = subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout
    mapf.write_text("alice imap1.example.com\nbob imap2.example.com:99999\ncarol\n")
    r = subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert (f'{mapf}:2: mailhost "imap2.example.com:99999" is not host or host:port'
            in r.stderr.splitlines())
    assert f"{mapf}:3: a user without a mailhost" in r.stderr.splitlines()
