"""sasl_client.py - SMTP AUTH (RFC 4954) client side for msaproxy's tests.

    import sasl_client as sc
    r = sc.auth_plain(c, "alice", "alicepw")            # c: harness.SmtpClient
    r = sc.auth_login(c, "bob", "bobpw")
    r = sc.auth_scram_sha256(c, "alice", "alicepw")     # r.mech.server_verified
    r = sc.auth_gssapi(c, ccache=cc, env=kdc.env())     # RFC 4752, needs gssapi
    assert r.code == 235

Every auth_* function sends AUTH (with an initial response unless
initial_response=False), answers each 334 challenge and returns the first
non-334 reply (a harness.Reply; the mechanism object is attached as
reply.mech, the exchange as reply.transcript).  The client may be a
harness.SmtpClient (send()/reply(); also one wrapped in TLS by the caller) or
an smtplib.SMTP (putcmd()/getreply(); its replies are rebuilt as
harness.Reply with raw=b"").  EHLO (and STARTTLS) are the caller's job.

sasl_exchange() is the generic loop for hand-made exchanges (bad base64,
cancel with "*", wrong tokens...).

GSSAPI needs Debian's python3-gssapi, i.e. /usr/bin/python3.  MIT krb5 reads
KRB5_CONFIG / KRB5CCNAME / KRB5RCACHEDIR from the process environment at
each GSS call: krb5_environ(env) sets them for the duration and restores
them; auth_gssapi(env=...) does that itself.

run_msmtp() runs a second, independent client: msmtp (GNU SASL, MIT GSSAPI)
reading its ticket from KRB5CCNAME.
"""

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import select
import shutil
import signal
import socket
import stringprep
import subprocess
import tempfile
import threading
import time
import unicodedata
from pathlib import Path

import harness

CANCEL = object()       # a step function returns this to send "*" (RFC 4954 4)
_NO_IR = object()


class SaslError(Exception):
    """The server's data made the client give up (bad base64, bad SCRAM
    server signature, no usable GSSAPI security layer ...).  .reply is the
    server's reply to the client's '*' cancel, if one was read."""

    def __init__(self, msg, reply=None):
        super().__init__(msg)
        self.reply = reply


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(text):
    """Strict base64 decode (what a client must do with a 334 challenge)."""
    text = text.strip()
    if text == "":
        return b""
    return base64.b64decode(text, validate=True)


# ---------------------------------------------------------- the connection

class _Conn:
    """harness.SmtpClient or smtplib.SMTP behind one interface."""

    def __init__(self, client, timeout=None):
        self.c = client
        self.timeout = timeout
        self.smtplib = hasattr(client, "getreply") and hasattr(client, "putcmd")

    def send_line(self, line):
        self.c.send(line + "\r\n")       # both accept str

    def reply(self):
        if self.smtplib:
            code, msg = self.c.getreply()
            lines = msg.decode("utf-8", "replace").split("\n") if msg else [""]
            return harness.Reply(code, lines, b"")
        return self.c.reply(self.timeout)


def sasl_exchange(client, mech, step, initial=_NO_IR, transcript=None, timeout=None):
    """Send 'AUTH mech [initial]'; while the server answers 334, call
    step(challenge_bytes) and send its result base64-encoded (b"" -> an
    empty line; CANCEL -> '*').  initial: bytes for an initial response
    (b"" is sent as '=', RFC 4954 4), or omit it for none.  If step raises,
    '*' is sent, the reply read, and the exception re-raised (SaslError with
    .reply).  Returns the first non-334 reply, with .transcript, a list of
    ("C", line) / ("S", Reply)."""
    conn = _Conn(client, timeout)
    tr = transcript if transcript is not None else []

    def send(line):
        tr.append(("C", line))
        conn.send_line(line)

    def recv():
        r = conn.reply()
        tr.append(("S", r))
        return r

    cmd = f"AUTH {mech}"
    if initial is not _NO_IR:
        cmd += " " + (b64(initial) if initial else "=")
    send(cmd)
    r = recv()
    while r.code == 334:
        try:
            text = r.lines[0] if r.lines else ""
            try:
                challenge = unb64(text)
            except ValueError as e:
                raise SaslError(f"334 challenge is not base64: {text!r}") from e
            resp = step(challenge)
        except Exception as e:
            send("*")
            r = recv()
            r.transcript = tr
            if isinstance(e, SaslError):
                e.reply = r
            raise
        if resp is CANCEL:
            send("*")
        else:
            send(b64(resp) if resp else "")
        r = recv()
    r.transcript = tr
    return r


# --------------------------------------------------------- PLAIN and LOGIN

def plain_message(user, pw, authzid=""):
    return f"{authzid}\0{user}\0{pw}".encode()


def auth_plain(client, user, pw, authzid="", initial_response=True, timeout=None):
    """RFC 4616.  Without initial_response the server's empty 334 is
    answered with the credentials."""
    msg = plain_message(user, pw, authzid)
    sent = []

    def step(challenge):
        if sent:
            raise SaslError(f"PLAIN: unexpected second challenge {challenge!r}")
        sent.append(1)
        return msg

    if initial_response:
        sent.append(1)
        return sasl_exchange(client, "PLAIN", step, initial=msg, timeout=timeout)
    return sasl_exchange(client, "PLAIN", step, timeout=timeout)


def auth_login(client, user, pw, initial_response=False, timeout=None):
    """The LOGIN mechanism (draft-murchison-sasl-login): user name, then
    password, each in answer to a 334 ("Username:", "Password:").  With
    initial_response the user name goes on the AUTH line."""
    queue = [user.encode(), pw.encode()]
    if initial_response:
        first = queue.pop(0)

    def step(challenge):
        if not queue:
            raise SaslError(f"LOGIN: unexpected third challenge {challenge!r}")
        return queue.pop(0)

    if initial_response:
        return sasl_exchange(client, "LOGIN", step, initial=first, timeout=timeout)
    return sasl_exchange(client, "LOGIN", step, timeout=timeout)


# ------------------------------------------------------------- SCRAM ------

def saslprep(s):
    """RFC 4013 SASLprep (stored strings profile, as RFC 5802 asks); ASCII
    printable strings come back unchanged."""
    if all(0x20 < ord(ch) < 0x7f for ch in s):
        return s
    mapped = "".join(" " if stringprep.in_table_c12(ch) else ch
                     for ch in s if not stringprep.in_table_b1(ch))
    out = unicodedata.normalize("NFKC", mapped)
    for ch in out:
        if (stringprep.in_table_c12(ch) or stringprep.in_table_c21_c22(ch)
                or stringprep.in_table_c3(ch) or stringprep.in_table_c4(ch)
                or stringprep.in_table_c5(ch) or stringprep.in_table_c6(ch)
                or stringprep.in_table_c7(ch) or stringprep.in_table_c8(ch)
                or stringprep.in_table_c9(ch) or stringprep.in_table_a1(ch)):
            raise ValueError(f"SASLprep: prohibited character {ch!r}")
    ral = [stringprep.in_table_d1(ch) for ch in out]
    if any(ral) and (any(stringprep.in_table_d2(ch) for ch in out)
                     or not (ral[0] and ral[-1])):
        raise ValueError("SASLprep: bidi rules violated")
    return out


def _scram_name(s):
    return saslprep(s).replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    """RFC 5802 client (no channel binding: gs2 header "n,,"), hash per
    RFC 7677 (sha256) or sha1.  Pure hashlib/hmac.

        s = ScramClient("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
        s.client_first()            -> "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        s.client_final(server_first) -> "c=biws,r=...,p=..."
        s.verify_server_final("v=...") -> True/False (False on e=...)
    """

    def __init__(self, user, password, authzid="", nonce=None, hashname="sha256"):
        self.user, self.password, self.authzid = user, password, authzid
        self.nonce = nonce or secrets.token_urlsafe(18).replace("-", "A").replace("_", "B")
        self.hashname = hashname
        self.gs2_header = "n," + (f"a={_scram_name(authzid)}" if authzid else "") + ","
        self.client_first_bare = f"n={_scram_name(user)},r={self.nonce}"
        self.server_first = None
        self.auth_message = None
        self.server_signature = None
        self.server_verified = None     # None until a server-final was seen
        self.server_error = None        # the e= value, if any
        self.iterations = None
        self.salt = None

    def _hmac(self, key, msg):
        return hmac.new(key, msg, self.hashname).digest()

    def client_first(self):
        return self.gs2_header + self.client_first_bare

    def client_final(self, server_first):
        if isinstance(server_first, bytes):
            server_first = server_first.decode()
        self.server_first = server_first
        attrs = _scram_attrs(server_first)
        if "m" in attrs:
            raise SaslError("SCRAM: server sent a mandatory extension (m=)")
        if "e" in attrs:
            self.server_error = attrs["e"]
            raise SaslError(f"SCRAM: server error in server-first: e={attrs['e']}")
        for k in ("r", "s", "i"):
            if k not in attrs:
                raise SaslError(f"SCRAM: server-first lacks {k}=: {server_first!r}")
        r = attrs["r"]
        if not r.startswith(self.nonce) or len(r) <= len(self.nonce):
            raise SaslError(f"SCRAM: server nonce {r!r} does not extend ours {self.nonce!r}")
        try:
            self.salt = base64.b64decode(attrs["s"], validate=True)
            self.iterations = int(attrs["i"])
        except ValueError as e:
            raise SaslError(f"SCRAM: bad salt or iteration count in {server_first!r}") from e
        if self.iterations < 1:
            raise SaslError(f"SCRAM: iteration count {self.iterations}")
        salted = hashlib.pbkdf2_hmac(self.hashname, saslprep(self.password).encode(),
                                     self.salt, self.iterations)
        client_key = self._hmac(salted, b"Client Key")
        stored_key = hashlib.new(self.hashname, client_key).digest()
        without_proof = f"c={b64(self.gs2_header)},r={r}"
        self.auth_message = ",".join((self.client_first_bare, server_first,
                                      without_proof)).encode()
        client_sig = self._hmac(stored_key, self.auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, client_sig))
        server_key = self._hmac(salted, b"Server Key")
        self.server_signature = self._hmac(server_key, self.auth_message)
        return f"{without_proof},p={b64(proof)}"

    def verify_server_final(self, server_final):
        if isinstance(server_final, bytes):
            server_final = server_final.decode()
        attrs = _scram_attrs(server_final)
        if "e" in attrs:
            self.server_error = attrs["e"]
            self.server_verified = False
            return False
        try:
            v = base64.b64decode(attrs.get("v", ""), validate=True)
        except ValueError:
            v = b""
        self.server_verified = bool(v) and hmac.compare_digest(v, self.server_signature)
        return self.server_verified


def _scram_attrs(msg):
    out = {}
    for part in msg.split(","):
        if len(part) >= 2 and part[1] == "=":
            out.setdefault(part[0], part[2:])
    return out


def auth_scram(client, user, pw, authzid="", nonce=None, hashname="sha256",
               initial_response=True, verify=True, timeout=None):
    """SCRAM-SHA-256 (or -SHA-1 with hashname="sha1") over SMTP AUTH.  The
    server-final (v=...) arrives as a 334 and is answered with an empty
    line (RFC 4954 4).  verify: a wrong server signature sends '*' and
    raises SaslError; with verify=False it is only recorded
    (reply.mech.server_verified)."""
    mech_name = {"sha256": "SCRAM-SHA-256", "sha1": "SCRAM-SHA-1"}[hashname]
    m = ScramClient(user, pw, authzid=authzid, nonce=nonce, hashname=hashname)
    state = {"n": 0}

    def step(challenge):
        state["n"] += 1
        if state["n"] == 1 and not initial_response and challenge == b"":
            return m.client_first().encode()
        if m.server_first is None:
            return m.client_final(challenge).encode()
        ok = m.verify_server_final(challenge)
        if not ok and verify and m.server_error is None:
            raise SaslError(f"SCRAM: bad server signature in {challenge!r}")
        return b""

    if initial_response:
        r = sasl_exchange(client, mech_name, step, initial=m.client_first().encode(),
                          timeout=timeout)
    else:
        r = sasl_exchange(client, mech_name, step, timeout=timeout)
    r.mech = m
    return r


def auth_scram_sha256(client, user, pw, authzid="", nonce=None, initial_response=True,
                      verify=True, timeout=None):
    return auth_scram(client, user, pw, authzid=authzid, nonce=nonce, hashname="sha256",
                      initial_response=initial_response, verify=verify, timeout=timeout)


# ------------------------------------------------------------ GSSAPI -----

KRB5_VARS = ("KRB5_CONFIG", "KRB5_KDC_PROFILE", "KRB5RCACHEDIR", "KRB5RCACHETYPE",
             "KRB5CCNAME", "KRB5_KTNAME", "KRB5_CLIENT_KTNAME", "KRB5_TRACE")


@contextlib.contextmanager
def krb5_environ(env=None, **more):
    """Set env (e.g. kdc.env(ccache=cc)) in os.environ for the duration;
    restore (or unset) every variable afterwards.  Keys whose value is None
    are removed for the duration."""
    env = dict(env or {}, **more)
    saved = {k: os.environ.get(k) for k in env}
    try:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ccname(ccache):
    s = str(ccache)
    return s if re.match(r"^[A-Z]+:", s) else f"FILE:{s}"


class GssapiClient:
    """RFC 4752 client.  Create and step inside krb5_environ(...).

    Credentials: from ccache (gss_acquire_cred_from), or from a client
    keytab + principal into a private MEMORY ccache (no kinit), or the
    default (KRB5CCNAME).  Target: <service>@<host> (host-based name, so
    smtp/localhost@REALM with the test krb5.conf).

    After the context completes, the server's wrapped 4-octet offer is
    unwrapped: octet 0 is the bitmask of layers (1 none, 2 integrity,
    4 confidentiality), octets 1-3 the max buffer size.  The client
    answers wrap(0x01 00 00 00 + authzid), i.e. "no security layer".
    Recorded: .server_layers, .server_maxbuf, .ctx (initiator_name ...).
    """

    def __init__(self, service="smtp", host="localhost", ccache=None, authzid="",
                 client_keytab=None, principal=None, mutual=True, layer=1,
                 maxbuf=0):
        import gssapi
        self.gssapi = gssapi
        self.authzid = authzid
        self.layer, self.maxbuf = layer, maxbuf
        self.server_layers = None
        self.server_maxbuf = None
        self.done = False
        creds = None
        if client_keytab:
            name = gssapi.Name(principal, gssapi.NameType.kerberos_principal) if principal else None
            creds = gssapi.Credentials(name=name, usage="initiate",
                                       store={"client_keytab": str(client_keytab),
                                              "ccache": f"MEMORY:sasl_client_{secrets.token_hex(6)}"})
        elif ccache:
            creds = gssapi.Credentials(usage="initiate", store={"ccache": _ccname(ccache)})
        self.creds = creds
        flags = [gssapi.RequirementFlag.out_of_sequence_detection]
        if mutual:
            flags.append(gssapi.RequirementFlag.mutual_authentication)
        target = gssapi.Name(f"{service}@{host}", gssapi.NameType.hostbased_service)
        self.ctx = gssapi.SecurityContext(name=target, usage="initiate", creds=creds,
                                          flags=flags)

    def initial(self):
        return self.ctx.step(None) or b""

    def step(self, challenge):
        if not self.ctx.complete:
            return self.ctx.step(challenge) or b""
        if self.done:
            raise SaslError(f"GSSAPI: challenge after the security layer exchange: {challenge!r}")
        plain = self.ctx.unwrap(challenge).message
        if len(plain) != 4:
            raise SaslError(f"GSSAPI: security layer offer is {len(plain)} octets, not 4: {plain!r}")
        self.server_layers = plain[0]
        self.server_maxbuf = int.from_bytes(plain[1:4], "big")
        if not self.server_layers & self.layer:
            raise SaslError(f"GSSAPI: server offers layers {self.server_layers:#x}, "
                            f"not {self.layer:#x}")
        self.done = True
        msg = bytes([self.layer]) + self.maxbuf.to_bytes(3, "big") + self.authzid.encode()
        return self.ctx.wrap(msg, False).message


def auth_gssapi(client, service="smtp", host="localhost", ccache=None, env=None,
                authzid="", client_keytab=None, principal=None, initial_response=True,
                timeout=None, **kw):
    """AUTH GSSAPI (RFC 4752) with python3-gssapi.  env (e.g.
    kdc.env(ccache=cc)) is put in os.environ for the whole exchange.
    Returns the final reply; reply.mech is the GssapiClient."""
    with krb5_environ(env):
        m = GssapiClient(service=service, host=host, ccache=ccache, authzid=authzid,
                         client_keytab=client_keytab, principal=principal, **kw)
        if initial_response:
            r = sasl_exchange(client, "GSSAPI", m.step, initial=m.initial(), timeout=timeout)
        else:
            first = []

            def step(challenge):
                if not first:
                    first.append(1)
                    if challenge:
                        raise SaslError(f"GSSAPI: first challenge not empty: {challenge!r}")
                    return m.initial()
                return m.step(challenge)
            r = sasl_exchange(client, "GSSAPI", step, timeout=timeout)
    r.mech = m
    return r


# ------------------------------------------------------------- msmtp -----

class MsmtpResult:
    def __init__(self, argv, rc, output):
        self.argv, self.rc, self.output = argv, rc, output

    @property
    def sent(self):
        """Client lines (msmtp --debug '--> ')."""
        return [l[4:] for l in self.output.splitlines() if l.startswith("--> ")]

    @property
    def received(self):
        """Server lines (msmtp --debug '<-- ')."""
        return [l[4:] for l in self.output.splitlines() if l.startswith("<-- ")]

    def __repr__(self):
        return f"MsmtpResult(rc={self.rc}, output=...{self.output[-800:]!r})"


def run_msmtp(port, env, auth="gssapi", user="alice", password=None, host="localhost",
              mail_from="alice@example.org", rcpts=("bob@example.net",), message=None,
              tls=None, tls_trust_file=None, domain="msmtp.test", timeout=20, extra=()):
    """Send one message with msmtp (GNU SASL; GSSAPI through MIT krb5) and
    return MsmtpResult(rc, output, sent, received).  env must carry
    KRB5_CONFIG and KRB5CCNAME for GSSAPI (kdc.env(ccache=cc)).  host is
    both the address (localhost = 127.0.0.1 here) and the GSSAPI host part:
    msmtp asks for <smtp>@<host>.  tls: None (plain), "starttls" or "smtps";
    without tls_trust_file the certificate is not checked.  Exit codes are
    sysexits: 0 ok, 77 EX_NOPERM (auth failed), 69 EX_UNAVAILABLE, 75
    EX_TEMPFAIL, 76 EX_PROTOCOL ..."""
    argv = ["msmtp", "--debug", f"--host={host}", f"--port={port}", f"--domain={domain}",
            f"--from={mail_from}", f"--timeout={timeout}"]
    if auth:
        argv.append(f"--auth={auth}")
        if user:
            argv.append(f"--user={user}")
        if password is not None:
            argv.append(f"--passwordeval=printf %s {_shq(password)}")
    else:
        argv.append("--auth=off")
    if tls is None:
        argv.append("--tls=off")
    else:
        argv += ["--tls=on", f"--tls-starttls={'on' if tls == 'starttls' else 'off'}"]
        argv.append(f"--tls-trust-file={tls_trust_file}" if tls_trust_file
                    else "--tls-certcheck=off")
    argv += list(extra)
    argv += ["--", *rcpts]
    if message is None:
        message = (f"From: <{mail_from}>\r\nTo: <{rcpts[0]}>\r\nSubject: msmtp\r\n"
                   f"\r\nsent by msmtp\r\n")
    if isinstance(message, str):
        message = message.encode()
    e = dict(os.environ)
    for k in KRB5_VARS:
        e.pop(k, None)
    e.update({k: str(v) for k, v in (env or {}).items()})
    e["LC_ALL"] = "C"
    try:
        p = subprocess.run(argv, input=message, capture_output=True, env=e,
                           timeout=timeout + 10)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        return MsmtpResult(argv, p.returncode, out)
    except subprocess.TimeoutExpired as ex:
        out = ((ex.stdout or b"") + (ex.stderr or b"")).decode("utf-8", "replace")
        return MsmtpResult(argv, None, out + "\n[timed out]")


def _shq(s):
    return "'" + s.replace("'", "'\\''") + "'"


# ------------------------------------- Cyrus SASL reference SMTP AUTH peer --
#
# For the self-tests (and for comparing msaproxy with what Cyrus SASL itself
# does): every AUTH is handed to a fresh `sasl-sample-server` process (Cyrus
# SASL 2.1.28's own sample server, package sasl2-bin), i.e. the very library
# and plugins msaproxy links to, with users in a private sasldb and the
# GSSAPI acceptor key from KRB5_KTNAME.  Not a model of msaproxy's replies.

SAMPLE_SERVER = "sasl-sample-server"
CLIENT_FIRST_MECHS = {"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "GSSAPI", "EXTERNAL"}


class CyrusSaslSession:
    """One server-side exchange in one sasl-sample-server process.
    start()/step() return ("continue", challenge_bytes), ("ok", username)
    or ("fail", text)."""

    def __init__(self, mech, confdir, service="smtp", fqdn="localhost", env=None,
                 timeout=10):
        self.mech = mech
        self.timeout = timeout
        self.buf = b""
        self.log = []
        e = dict(os.environ)
        for k in KRB5_VARS:
            e.pop(k, None)
        e.update({k: str(v) for k, v in (env or {}).items()})
        e["SASL_CONF_PATH"] = str(confdir)
        argv = [SAMPLE_SERVER, "-s", service, "-d", fqdn, "-m", mech]
        if shutil.which("stdbuf"):
            argv = ["stdbuf", "-oL", "-eL"] + argv      # its stdio is buffered on a pipe
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=e)
        kind, _ = self._until_s()               # the mechanism list
        if kind != "S":
            raise RuntimeError(f"sasl-sample-server did not start: {self.log}")

    def _line(self):
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if not r:
                return None
            d = os.read(self.proc.stdout.fileno(), 4096)
            if not d:
                if self.buf:
                    d, self.buf = self.buf, b""
                    return d.decode("utf-8", "replace")
                return None
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.decode("utf-8", "replace")
        self.log.append(line)
        return line

    def _until_s(self):
        """Read to the next 'S: ' line, 'Negotiation complete' or the end."""
        while True:
            line = self._line()
            if line is None:
                return "end", None
            if line.startswith("S: ") or line == "S:":
                return "S", line[3:]
            if line.startswith("Negotiation complete"):
                return "done", None

    def _result(self):
        kind, data = self._until_s()
        if kind == "S":
            return "continue", unb64(data)
        if kind == "done":
            user = None
            for _ in range(5):
                line = self._line()
                if line is None:
                    break
                if line.startswith("Username: "):
                    user = line[len("Username: "):]
                    break
            self.close()
            return "ok", user
        self.close()
        return "fail", " / ".join(l for l in self.log if "sasl-sample-server:" in l)

    def _send(self, data):
        try:
            self.proc.stdin.write(b"C: " + b64(data).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass

    def start(self, ir=None):
        """ir: None (no initial response) or bytes (b"" = empty one)."""
        self._send(self.mech.encode() + (b"\0" + ir if ir is not None else b""))
        return self._result()

    def step(self, data):
        self._send(data)
        return self._result()

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        if self.proc:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass


class CyrusSmtpAuthServer:
    """A minimal SMTP server on 127.0.0.1 whose AUTH is Cyrus SASL
    (CyrusSaslSession per AUTH).  users: {name: password} for the sasldb
    (realm = fqdn); env: Kerberos environment incl. KRB5_KTNAME for GSSAPI.
    Records .auths [(mech, username)] and .messages [bytes].  Replies:
    235 2.7.0 / 535 5.7.8 / 501 5.7.0 (cancel) / 501 5.5.2 (bad base64) /
    504 5.5.4 (mechanism not offered)."""

    def __init__(self, users=None, mechs=("PLAIN", "LOGIN", "SCRAM-SHA-256", "GSSAPI"),
                 service="smtp", fqdn="localhost", env=None):
        self.dir = Path(tempfile.mkdtemp(prefix="msaproxy-cyrusref.", dir="/tmp"))
        self.mechs = list(mechs)
        self.service, self.fqdn, self.env = service, fqdn, dict(env or {})
        self.users = dict(users or {})
        self.auths = []
        self.messages = []
        self.sock = None
        self.threads = []
        self.conns = []
        self.stopping = False

    def start(self):
        sasldb = self.dir / "sasldb2"
        (self.dir / "sample.conf").write_text(
            "pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
            f"sasldb_path: {sasldb}\nmech_list: {' '.join(self.mechs)}\n")
        for u, pw in self.users.items():
            subprocess.run(["saslpasswd2", "-p", "-f", str(sasldb), "-u", self.fqdn, "-c", u],
                           input=pw.encode(), check=True, capture_output=True, timeout=10)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.stopping = True
        socks = ([self.sock] if self.sock else []) + list(self.conns)
        for s in socks:             # shutdown() wakes accept()/recv() in the threads
            for fn in (lambda: s.shutdown(socket.SHUT_RDWR), s.close):
                try:
                    fn()
                except OSError:
                    pass
        self.sock = None
        for t in self.threads:
            t.join(3)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, c):
        c.settimeout(15)
        f = c.makefile("rb")

        def out(s):
            c.sendall(s.encode() + b"\r\n")
        try:
            out("220 cyrus-ref.test ESMTP")
            authed = None
            while True:
                line = f.readline()
                if not line:
                    return
                line = line.rstrip(b"\r\n").decode("utf-8", "replace")
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    out("250-cyrus-ref.test\r\n250-8BITMIME\r\n250 AUTH " + " ".join(self.mechs)
                        if verb == "EHLO" else "250 cyrus-ref.test")
                elif verb == "AUTH":
                    authed = self._auth(line, f, out, authed)
                elif verb == "MAIL":
                    out("250 2.1.0 Ok" if authed else "530 5.7.0 Authentication required")
                elif verb == "RCPT":
                    out("250 2.1.5 Ok")
                elif verb == "DATA":
                    out("354 End data with <CR><LF>.<CR><LF>")
                    data = b""
                    while True:
                        l = f.readline()
                        if not l or l == b".\r\n":
                            break
                        data += l[1:] if l.startswith(b".") else l
                    self.messages.append(data)
                    out("250 2.0.0 Ok: queued")
                elif verb in ("RSET", "NOOP"):
                    out("250 2.0.0 Ok")
                elif verb == "QUIT":
                    out("221 2.0.0 Bye")
                    return
                else:
                    out("502 5.5.2 Error: command not recognized")
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _auth(self, line, f, out, authed):
        parts = line.split(" ")
        if authed:
            out("503 5.5.1 Error: already authenticated")
            return authed
        if len(parts) < 2 or parts[1].upper() not in self.mechs:
            out("504 5.5.4 Unrecognized authentication type")
            return None
        mech = parts[1].upper()
        ir = None
        if len(parts) > 2:
            try:
                ir = b"" if parts[2] == "=" else unb64(parts[2])
            except ValueError:
                out("501 5.5.2 Cannot decode response")
                return None
        if ir is None and mech in CLIENT_FIRST_MECHS:
            # RFC 4422 5: an empty challenge asks for the client's first
            # message.  (sasl-sample-server cannot send it itself: "No data
            # to send--something's wrong".)
            out("334 ")
            resp = f.readline().rstrip(b"\r\n").decode("utf-8", "replace")
            if resp == "*":
                out("501 5.7.0 Authentication aborted")
                return None
            try:
                ir = unb64(resp)
            except ValueError:
                out("501 5.5.2 Cannot decode response")
                return None
        sess = CyrusSaslSession(mech, self.dir, self.service, self.fqdn, self.env)
        try:
            kind, data = sess.start(ir)
            while kind == "continue":
                out("334 " + b64(data) if data else "334 ")
                resp = f.readline().rstrip(b"\r\n").decode("utf-8", "replace")
                if resp == "*":
                    out("501 5.7.0 Authentication aborted")
                    return None
                try:
                    data = unb64(resp)
                except ValueError:
                    out("501 5.5.2 Cannot decode response")
                    return None
                kind, data = sess.step(data)
            if kind == "ok":
                self.auths.append((mech, data))
                out("235 2.7.0 Authentication successful")
                return data
            self.auths.append((mech, None))
            out("535 5.7.8 Error: authentication failed")
            return None
        finally:
            sess.close()
