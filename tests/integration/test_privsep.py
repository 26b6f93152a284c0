"""Least privilege (issue 7; proxy/privsep.h, auth/keytab.h, docs/SECURITY.md).

What must hold: the master stays root and every child gives root up for
good: the workers run as `user` (real, effective, saved and filesystem ids;
one group; no_new_privs; no capabilities), the audit writer as `audit.user`.
Private keys and keytabs readable by root only still serve STARTTLS and
AUTH GSSAPI, because the master loaded them before the fork; no worker holds
them open.  msaproxy refuses to serve as root; a chroot holds.
"""
import os
import re
import signal
import subprocess
import stat
import shutil
import time

import pytest

import harness
import sasl_client
from pki import pki  # noqa: F401  (fixture)

AUDIT_USER = "msaproxy-audit"


def status(pid):
    d = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            d[k] = v.split()
    return d


def open_files(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def assert_is(pid, pw, gid=None):
    st = status(pid)
    gid = pw.pw_gid if gid is None else gid
    assert st["Uid"] == [str(pw.pw_uid)] * 4, st["Uid"]
    assert st["Gid"] == [str(gid)] * 4, st["Gid"]
    assert st["Groups"] == [str(gid)], st["Groups"]
    assert st["NoNewPrivs"] == ["1"]
    assert int(st["CapEff"][0], 16) == 0 and int(st["CapPrm"][0], 16) == 0


def root_only_copy(src, dst):
    shutil.copy(src, dst)
    os.chown(dst, 0, 0)
    os.chmod(dst, 0o600)
    return str(dst)


def hello(c):
    assert c.reply().code == 220
    r = c.cmd("EHLO client.example")
    assert r.code == 250
    return r


def test_workers_and_writer_unprivileged_keys_root_only(
        pki, kdc, krb5_env, alice_ccache, fake, proxy_factory, tmp_path):
    """STARTTLS with a key and AUTH GSSAPI with a keytab that only root can
    read, served by workers that are not root and cannot become it."""
    pw = harness.ensure_test_user()
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    key = root_only_copy(pki / "ecdsa.key", secrets / "ecdsa.key")
    keytab = root_only_copy(kdc.keytabs["smtp"], secrets / "smtp.keytab")
    auditdir = harness.make_tempdir("msaproxy-privsep-audit.")
    try:
        p = proxy_factory(fake, {
            "workers": 2,
            "tls": {"certificates": [{"cert": str(pki / "ecdsa.pem"), "key": key}]},
            "sasl": {"mechanisms": "GSSAPI", "realm": "LAB.TEST", "service": "smtp",
                     "hostname": "localhost", "keytab": keytab,
                     "sender_domains": "example.org"},
            "listeners": [{"name": "submission", "kind": "submission",
                           "require_auth": True}],
            "audit": {"enabled": True, "file": str(auditdir / "audit.log")}})
        assert harness.wait_until(lambda: len(p.children()) == 3, 5), p.log()
        # the master: root, as the only process that never reads the network
        assert status(p.proc.pid)["Uid"][0] == "0"
        kids = p.children()
        for pid in kids:
            assert_is(pid, pw)
            held = open_files(pid)
            assert key not in held and keytab not in held, held
        log = p.log()
        assert f"keytab {keytab}: " in log and "held in memory" in log
        assert "running as the invoking user" not in log
        assert f"worker(s) as {harness.TEST_USER}" in log
        # and yet: STARTTLS with the root-only key, GSSAPI with the keytab
        import ssl
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        with p.client() as c:
            hello(c)
            assert c.cmd("STARTTLS").code == 220
            c.sock = ctx.wrap_socket(c.sock, server_hostname="mail.test")
            r = c.cmd("EHLO client.example")
            assert "AUTH GSSAPI" in r.lines
            r = sasl_client.auth_gssapi(c, ccache=alice_ccache, env=krb5_env)
            assert (r.code, r.enhanced) == (235, "2.7.0"), r
        assert "AUTH GSSAPI as alice" in p.log()
        # an unprivileged process really cannot read them
        for f in (key, keytab):
            r = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                                "--clear-groups", "cat", f], capture_output=True)
            assert r.returncode != 0 and b"Permission denied" in r.stderr, r
        # the audit log is the writer's, written as the test user
        assert os.stat(auditdir / "audit.log").st_uid == pw.pw_uid
    finally:
        shutil.rmtree(auditdir, ignore_errors=True)


def test_audit_writer_as_its_own_user(fake, proxy_factory):
    """audit.user: the writer runs as another account than the workers, so
    a worker cannot write the log (it only sends records)."""
    apw = harness.ensure_test_user(AUDIT_USER)
    wpw = harness.ensure_test_user()
    auditdir = harness.make_tempdir("msaproxy-privsep-audit.")
    try:
        p = proxy_factory(fake, {
            "audit": {"enabled": True, "file": str(auditdir / "audit.log"),
                      "user": AUDIT_USER}})
        assert harness.wait_until(lambda: len(p.children()) == 2, 5), p.log()
        uids = {status(pid)["Uid"][0] for pid in p.children()}
        assert uids == {str(apw.pw_uid), str(wpw.pw_uid)}, uids
        with p.client() as c:
            hello(c)
            assert c.cmd("MAIL FROM:<a@example.org>").code == 250
            assert c.cmd("RCPT TO:<b@example.net>").code == 250
            assert c.cmd("DATA").code == 354
            c.send("Subject: privsep\r\n\r\nhi\r\n.\r\n")
            assert c.reply().code == 250
        st = os.stat(auditdir / "audit.log")
        assert st.st_uid == apw.pw_uid and st.st_mode & 0o777 == 0o640
        # the verdict record follows the 250 (docs/AUDIT.md)
        assert harness.wait_until(lambda: b'"type":"tx",' in (auditdir / "audit.log").read_bytes(), 5)
    finally:
        shutil.rmtree(auditdir, ignore_errors=True)


@pytest.mark.parametrize("user,why", [
    ("", "running as root: set user"),
    ("root", "running as root: set user"),
    ("nosuchuser-msaproxy", "user nosuchuser-msaproxy: no such user"),
])
def test_refuses_to_serve_as_root(fake, proxy_factory, user, why):
    p = proxy_factory(fake, {"user": user}, start=False)
    p.write_conf()
    r = subprocess.run([p.binary, "-f", "-c", str(p.conffile)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert why in r.stderr, r.stderr


def test_chroot(fake, proxy_factory, tmp_path, monkeypatch):
    """chroot: the workers serve from inside an empty directory."""
    if "ASAN_OPTIONS" in os.environ:
        # LeakSanitizer reads /proc/self/maps at exit, which an empty
        # chroot does not have: no leak check for these workers
        monkeypatch.setenv("ASAN_OPTIONS", os.environ["ASAN_OPTIONS"] + ":detect_leaks=0")
    jail = harness.make_tempdir("msaproxy-jail.")
    try:
        p = proxy_factory(fake, {"chroot": str(jail), "workers": 2})
        assert harness.wait_until(lambda: len(p.children()) == 2, 5), p.log()
        for pid in p.children():
            assert os.readlink(f"/proc/{pid}/root") == str(jail)
            assert_is(pid, harness.ensure_test_user())
        with p.client() as c:
            hello(c)
            assert c.cmd("MAIL FROM:<a@example.org>").code == 250
            assert c.cmd("RCPT TO:<b@example.net>").code == 250
            assert c.cmd("DATA").code == 354
            c.send("Subject: jail\r\n\r\nfrom the chroot\r\n.\r\n")
            r = c.reply()
            assert (r.code, r.enhanced) == (250, "2.0.0"), r
        [t] = fake.wait_transactions(1)
        assert b"from the chroot" in t["content"]
    finally:
        shutil.rmtree(jail, ignore_errors=True)


def test_chroot_must_exist(fake, proxy_factory):
    p = proxy_factory(fake, {"chroot": "/nonexistent/msaproxy-jail"}, start=False)
    p.write_conf()
    r = subprocess.run([p.binary, "-f", "-c", str(p.conffile)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert "chroot /nonexistent/msaproxy-jail: not a directory" in r.stderr, r.stderr


def test_sighup_reads_a_rotated_keytab(kdc, krb5_env, fake, proxy_factory, tmp_path):
    """The service key changes (new kvno): after SIGHUP the new workers
    accept tickets for the new key; the keytab stays root's."""
    svc = "smtprot/localhost"
    kdc.add_principal(svc)
    kt = tmp_path / "rotated.keytab"
    kdc.keytab(svc, path=kt)
    assert oct(os.stat(kt).st_mode & 0o777) == "0o600" and os.stat(kt).st_uid == 0
    p = proxy_factory(fake, {
        "sasl": {"mechanisms": "GSSAPI", "realm": "LAB.TEST", "service": "smtprot",
                 "hostname": "localhost", "keytab": str(kt)},
        "listeners": [{"name": "submission", "kind": "submission",
                       "require_auth": True}]})

    def login():
        cc = kdc.kinit("alice")
        with p.client() as c:
            hello(c)
            return sasl_client.auth_gssapi(c, service="smtprot", host="localhost",
                                           ccache=cc, env=krb5_env)

    r = login()
    assert (r.code, r.enhanced) == (235, "2.7.0"), r
    # a new key in the KDC and in the keytab file (ktadd without -norandkey)
    kt.unlink()
    kdc.kadmin(f"ktadd -k {kt} {kdc.principal(svc)}")
    os.chmod(kt, 0o600)
    r = login()          # the running workers still hold the old key only
    assert r.code == 535 or r.code == 454, r
    p.signal(signal.SIGHUP)
    assert harness.wait_until(lambda: "SIGHUP: generation 2" in p.log(), 5), p.log()
    assert re.search(rf"keytab {re.escape(str(kt))}: \d+ key\(s\) read again", p.log())
    r = login()
    assert (r.code, r.enhanced) == (235, "2.7.0"), r


def test_log_file_reopened_by_unprivileged_workers(fake, proxy_factory):
    """log.destination = "file": the master (root) creates the file and
    gives it to the workers' user, so that after a rotation (rename, then
    SIGHUP) the workers write to the new file too."""
    pw = harness.ensure_test_user()
    d = harness.make_tempdir("msaproxy-privsep-log.")
    try:
        logf = d / "msaproxy.log"
        p = proxy_factory(fake, {"log": {"destination": "file", "file": str(logf),
                                         "level": "debug"}})
        assert harness.wait_until(lambda: logf.exists() and
                                  b"worker 0: info: started" in logf.read_bytes(), 5)
        assert os.stat(logf).st_uid == pw.pw_uid
        os.rename(logf, d / "msaproxy.log.1")
        p.signal(signal.SIGHUP)
        assert harness.wait_until(lambda: logf.exists() and
                                  b"worker 0: info: SIGHUP: log reopened" in logf.read_bytes(), 5)
        with p.client() as c:
            hello(c)
            assert c.cmd("QUIT").code == 221
        # the new generation's worker and the old one both write here
        assert harness.wait_until(lambda: b"worker 0: debug:" in
                                  logf.read_bytes().split(b"log reopened", 1)[1], 5)
        assert b"cannot open log file" not in logf.read_bytes()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_umask_whatever_was_inherited(fake, proxy_factory):
    """Started with umask 000, the master still makes its pid file 0644
    and its log file 0640 (it sets umask 022 itself)."""
    d = harness.make_tempdir("msaproxy-privsep-umask.")
    old = os.umask(0)
    try:
        p = proxy_factory(fake, {"pid_file": str(d / "msaproxy.pid"),
                                 "log": {"destination": "file",
                                         "file": str(d / "msaproxy.log")}},
                          start=False)
        p.start(backend=fake)
        os.umask(old)
        assert stat.S_IMODE(os.stat(d / "msaproxy.pid").st_mode) == 0o644
        assert stat.S_IMODE(os.stat(d / "msaproxy.log").st_mode) == 0o640
        assert (d / "msaproxy.pid").read_text().strip() == str(p.proc.pid)
    finally:
        os.umask(old)
        shutil.rmtree(d, ignore_errors=True)
