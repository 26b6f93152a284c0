"""A throwaway PKI for the TLS tests: a CA, RSA and ECDSA certificates for
mail.test side by side, one for the SNI name other.test, and a "renewed"
one for reload tests."""
import shutil
import subprocess

import pytest

import harness


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _issue(d, name, cn, keyalg):
    """A key and a certificate for cn, signed by d/ca.pem."""
    if keyalg == "rsa":
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", f"{name}.key", cwd=d)
    else:
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", f"{name}.key", cwd=d)
    _openssl("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={cn}/O={name}", cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName = DNS:{cn}\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="session")
def pki():
    d = harness.make_tempdir("msaproxy-tlspki.")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=msaproxy test CA", cwd=d)
    _issue(d, "rsa", "mail.test", "rsa")
    _issue(d, "ecdsa", "mail.test", "ec")
    _issue(d, "other", "other.test", "ec")
    _issue(d, "renewed", "mail.test", "ec")
    _issue(d, "client", "alice", "ec")          # a client certificate
    for f in d.iterdir():
        f.chmod(0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


