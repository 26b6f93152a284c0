"""ldap_server.py - a private OpenLDAP slapd for the mailHost directory tests
(trust/mailhost_ldap.c, tests/integration/test_mailhost.py).

    s = Slapd()                 # free ports, temp dir, the small tree below
    s.start()                   # slapadd (first start only), then slapd -d
    s.uri                       # "ldap://127.0.0.1:PORT"
    s.ldaps_uri                 # "ldaps://127.0.0.1:TLSPORT" (tls=True)
    s.stop(); s.start()         # same ports, same database
    s.pause(); s.resume()       # SIGSTOP/SIGCONT: connects succeed (the
                                # kernel's backlog) but nothing answers
    s.cleanup()                 # stop + remove the directory

slapd runs in the foreground (-d stats: its log, with every SEARCH and its
filter, goes to s.log()) from a generated slapd.conf (schemas from
/etc/ldap/schema, back_mdb from /usr/lib/ldap), as our child in its own
session, listening on 127.0.0.1 only.  Nothing of the system's slapd is used
(install-deps.sh preseeds slapd/no_configuration, so there is none).

The tree (suffix dc=example,dc=com):
    ou=people
        uid=alice   mailHost imap1.example.com
        uid=bob     mailHost imap2.example.com:10143
        uid=carol   no mailHost
        uid=d*ve (x)  mailHost imap3.example.com  (a uid with filter
                    metacharacters: found only through correct escaping)
        uid=mallory mailHost "not a host!"         (refused by msaproxy)
        uid=twin    mailHost imap1.example.com
        uid=huge    mailHost imap1.example.com, and a 100 KB description
    ou=others
        uid=twin    mailHost imap2.example.com     (two entries: ambiguous)
    cn=msaproxy     the bind DN (password BIND_PASSWORD)
With require_bind=True anonymous users may not read the people.  With
tls=True a CA and a certificate for localhost / 127.0.0.1 are made
(s.ca_file, s.wrong_ca_file), and slapd also listens on ldaps:// and offers
StartTLS.

Needs root only for the ports (none are privileged) and the temp dir under
/tmp; Debian packages slapd, ldap-utils (slapadd is slapd's).  Standard
library only.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

from harness import free_port, make_tempdir
from imap_servers import _Daemon

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"
SUFFIX = "dc=example,dc=com"
PEOPLE = f"ou=people,{SUFFIX}"
BIND_DN = f"cn=msaproxy,{SUFFIX}"
BIND_PASSWORD = "bindsecret"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "rootsecret"

# user -> mailHost (None: the entry has none), as in the tree
MAILHOSTS = {
    "alice": "imap1.example.com",
    "bob": "imap2.example.com:10143",
    "carol": None,
    "d*ve (x)": "imap3.example.com",
    "mallory": "not a host!",
}


def slapd_missing():
    """Why Slapd cannot run here (str), or None."""
    for f in (SLAPD, SLAPADD):
        if not os.access(f, os.X_OK):
            return f"{f} missing (Debian package slapd: scripts/install-deps.sh)"
    if not os.path.exists(os.path.join(MODULE_DIR, "back_mdb.so")):
        return f"{MODULE_DIR}/back_mdb.so missing (slapd)"
    if not os.path.exists(os.path.join(SCHEMA_DIR, "misc.schema")):
        return f"{SCHEMA_DIR}/misc.schema missing (slapd)"
    return None


def _entry(dn, attrs):
    lines = [f"dn: {dn}"]
    for k, vals in attrs:
        for v in vals if isinstance(vals, (list, tuple)) else [vals]:
            lines.append(f"{k}: {v}")
    return "\n".join(lines) + "\n"


def _person(uid, mailhost, ou=PEOPLE):
    # a uid with ',' '+' '"' '\' '<' '>' ';' would need DN escaping; the
    # names here only have '*', '(', ')' and ' ', which are fine in a DN
    oc = ["inetOrgPerson"] + (["inetLocalMailRecipient"] if mailhost else [])
    attrs = [("objectClass", oc), ("uid", uid), ("cn", uid), ("sn", uid)]
    if mailhost:
        attrs.append(("mailHost", mailhost))
    return _entry(f"uid={uid},{ou}", attrs)


def tree_ldif():
    parts = [
        _entry(SUFFIX, [("objectClass", ["dcObject", "organization"]),
                        ("dc", "example"), ("o", "Example")]),
        _entry(PEOPLE, [("objectClass", "organizationalUnit"), ("ou", "people")]),
        _entry(f"ou=others,{SUFFIX}", [("objectClass", "organizationalUnit"),
                                       ("ou", "others")]),
        _entry(BIND_DN, [("objectClass", ["organizationalRole", "simpleSecurityObject"]),
                         ("cn", "msaproxy"), ("userPassword", BIND_PASSWORD)]),
    ]
    for uid, mh in MAILHOSTS.items():
        parts.append(_person(uid, mh))
    huge = _person("huge", "imap1.example.com").rstrip("\n")
    parts.append(huge + "\ndescription: " + "x" * 100000 + "\n")
    parts.append(_person("twin", "imap1.example.com"))
    parts.append(_person("twin", "imap2.example.com", ou=f"ou=others,{SUFFIX}"))
    return "\n".join(parts)


def _openssl(args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_tls_files(d):
    """ca.pem, server.pem/.key (localhost, 127.0.0.1) and an unrelated
    wrong-ca.pem in d."""
    for ca in ("ca", "wrong-ca"):
        _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                  "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                  "-subj", f"/CN=msaproxy LDAP test {ca}"], d)
    _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", "server.key"], d)
    _openssl(["req", "-new", "-key", "server.key", "-out", "server.csr",
              "-subj", "/CN=localhost"], d)
    (d / "server.ext").write_text("subjectAltName = DNS:localhost, IP:127.0.0.1\n")
    _openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
              "-CAcreateserial", "-out", "server.pem", "-days", "2",
              "-extfile", "server.ext"], d)


class Slapd(_Daemon):
    """A throwaway slapd.  See the module docstring."""

    what = "slapd"

    def __init__(self, basedir=None, port=None, tls=False, require_bind=False):
        super().__init__("msaproxy-slapd.", basedir, port)
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.require_bind = require_bind
        self.conf = self.dir / "slapd.conf"
        self.db = self.dir / "db"
        self.ldif = self.dir / "tree.ldif"
        self.ca_file = self.dir / "ca.pem"
        self.wrong_ca_file = self.dir / "wrong-ca.pem"
        self.password_file = self.dir / "bind.pw"
        self._provisioned = False
        self.paused = False

    @property
    def uri(self):
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self):
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def _write_config(self):
        tls = ""
        if self.tls:
            tls = (f"TLSCACertificateFile {self.dir}/ca.pem\n"
                   f"TLSCertificateFile {self.dir}/server.pem\n"
                   f"TLSCertificateKeyFile {self.dir}/server.key\n")
        if self.require_bind:
            access = ("access to attrs=userPassword by anonymous auth by * none\n"
                      "access to * by users read by * none\n")
        else:
            access = ("access to attrs=userPassword by anonymous auth by * none\n"
                      "access to * by * read\n")
        self.conf.write_text(f"""\
# generated by tests/integration/ldap_server.py; throwaway
include {SCHEMA_DIR}/core.schema
include {SCHEMA_DIR}/cosine.schema
include {SCHEMA_DIR}/inetorgperson.schema
include {SCHEMA_DIR}/misc.schema
pidfile {self.dir}/slapd.pid
argsfile {self.dir}/slapd.args
modulepath {MODULE_DIR}
moduleload back_mdb
{tls}
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {self.db}
index uid eq
{access}""")

    def provision(self):
        """Config, TLS files, password file and the database (once)."""
        if self._provisioned:
            return self
        why = slapd_missing()
        if why:
            raise RuntimeError(why)
        self.db.mkdir(exist_ok=True)
        os.chmod(self.db, 0o700)
        if self.tls:
            make_tls_files(self.dir)
        self._write_config()
        self.ldif.write_text(tree_ldif())
        self.password_file.write_text(BIND_PASSWORD + "\n")
        os.chmod(self.password_file, 0o600)
        r = subprocess.run([SLAPADD, "-f", str(self.conf), "-l", str(self.ldif)],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"slapadd failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        self._provisioned = True
        return self

    def start(self, timeout=15):
        self.provision()
        urls = f"ldap://127.0.0.1:{self.port}/"
        if self.tls:
            urls += f" ldaps://127.0.0.1:{self.tls_port}/"
        # -d stats: foreground, the log (connections, binds, searches with
        # their filters) on stderr; -h: only our listeners
        self._spawn([SLAPD, "-d", "stats", "-h", urls, "-f", str(self.conf)],
                    {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}, timeout)
        self.paused = False
        return self

    def stop(self, timeout=5):
        if self.paused:
            self.resume()
        super().stop(timeout)

    def pause(self):
        """Stop answering without closing anything (SIGSTOP)."""
        if self.running():
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.paused = True
            # the signal is asynchronous: wait until every thread is
            # stopped, or a request sent right now could still be served
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not self._all_stopped():
                time.sleep(0.01)

    def _all_stopped(self):
        task = Path(f"/proc/{self.proc.pid}/task")
        try:
            for t in task.iterdir():
                with open(t / "stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                        return False
        except OSError:
            return False
        return True

    def resume(self):
        if self.proc is not None and self.paused:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.paused = False

    def searches(self):
        """The filters of the SEARCH operations slapd logged, in order."""
        out = []
        for line in self.log().splitlines():
            i = line.find(' SRCH base="')
            if i >= 0 and "filter=" in line:
                out.append(line.split("filter=", 1)[1].strip().strip('"'))
        return out

    def ldapsearch(self, filt, attrs=("mailHost",)):
        """ldapsearch as the root DN (ldap-utils): the raw LDIF text."""
        r = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", self.uri, "-D", ROOT_DN,
                            "-w", ROOT_PASSWORD, "-b", SUFFIX, filt, *attrs],
                           capture_output=True, text=True, timeout=20)
        if r.returncode != 0:
            raise RuntimeError(f"ldapsearch: {r.stderr}")
        return r.stdout
