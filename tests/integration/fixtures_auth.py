"""Fixtures for the SMTP AUTH / Kerberos tests (kdc.py, sasl_client.py).

Load them from conftest.py with either
    pytest_plugins = ["fixtures_auth"]          # only while conftest.py is an
                                                # initial conftest (pytest
                                                # tests/integration ...)
or, working however pytest is invoked,
    from fixtures_auth import *  # noqa: F401,F403

    kdc_session   session: one started KDC, realm LAB.TEST, principals
                  alice/alicepw bob/bobpw submit/submitpw smtp/localhost;
                  keytabs kdc.keytabs["smtp"|"submit"|"alice"|"bob"]
    kdc           the same KDC, guaranteed running before and after the test
                  (a test may kdc.stop() it to simulate "KDC unreachable")
    krb5_env      os.environ gets kdc.env() for the test (KRB5_CONFIG,
                  KRB5_KDC_PROFILE, KRB5RCACHEDIR, KRB5CCNAME=<empty per-test
                  file>), so an msaproxy started by proxy_factory and
                  in-process GSS calls use the private realm; returns the dict
    kinit         kinit(principal="alice", **kw) -> fresh ccache path
    alice_ccache  kinit("alice")
    gssapi_conf   msaproxy overrides {"sasl": {service, hostname, keytab}}
    cyrus_ref     a CyrusSmtpAuthServer (Cyrus SASL's own sample server
                  behind a tiny SMTP front) with alice/bob/submit and the
                  smtp/localhost keytab: a reference peer for comparisons
"""

import os
import shutil

import pytest

import kdc as kdc_mod
import sasl_client

__all__ = ["kdc_session", "kdc", "krb5_env", "kinit", "alice_ccache", "gssapi_conf",
           "cyrus_ref"]

_TOOLS = ("krb5kdc", "kdb5_util", "kadmin.local", "kinit", "klist")


@pytest.fixture(scope="session")
def kdc_session():
    missing = [t for t in _TOOLS if not shutil.which(t)]
    if missing:
        pytest.skip(f"MIT Kerberos tools missing: {' '.join(missing)} "
                    "(krb5-kdc krb5-admin-server krb5-user)")
    k = kdc_mod.standard_kdc()
    yield k
    k.cleanup()


@pytest.fixture
def kdc(kdc_session):
    kdc_session.start()
    yield kdc_session
    kdc_session.start()          # a test that stopped it must not break the next


@pytest.fixture
def krb5_env(kdc, monkeypatch):
    env = kdc.env(ccache=f"FILE:{kdc.ccache_dir}/test-{os.urandom(4).hex()}")
    for k in sasl_client.KRB5_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def kinit(kdc):
    made = []

    def do(principal="alice", **kw):
        cc = kdc.kinit(principal, **kw)
        made.append(cc)
        return cc

    yield do
    for cc in made:
        try:
            os.unlink(cc)
        except OSError:
            pass


@pytest.fixture
def alice_ccache(kinit):
    return kinit("alice")


@pytest.fixture
def gssapi_conf(kdc):
    return {"sasl": {"service": "smtp", "hostname": "localhost",
                     "keytab": kdc.keytabs["smtp"]}}


@pytest.fixture
def cyrus_ref(kdc):
    if not shutil.which(sasl_client.SAMPLE_SERVER) or not shutil.which("saslpasswd2"):
        pytest.skip("sasl-sample-server / saslpasswd2 missing (sasl2-bin)")
    srv = sasl_client.CyrusSmtpAuthServer(
        users={"alice": kdc_mod.ALICE_PASSWORD, "bob": kdc_mod.BOB_PASSWORD,
               "submit": kdc_mod.SUBMIT_PASSWORD},
        env=kdc.env(keytab=kdc.keytabs["smtp"]))
    srv.start()
    yield srv
    srv.stop()
