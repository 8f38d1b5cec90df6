"""HTTPS with gunicorn's own TLS (LOTTERY_TLS_CERT, LOTTERY_TLS_KEY): a real handshake on 127.0.0.1.

A throwaway CA (trustme) signs the server's certificate: a client that trusts that CA gets
through; one that does not (the system's CAs, or another private CA) is refused in the
handshake. A certificate without its key stops the server with one line.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
import trustme

from devtools.server import ROOT, Server
from tests.helpers import without_log
from tests.support.server import refused_start


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    where = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.private_key_pem.write_to_path(str(where / "server.key"))
    leaf.cert_chain_pems[0].write_to_path(str(where / "server.crt"))
    ca.cert_pem.write_to_path(str(where / "ca.pem"))
    other.cert_pem.write_to_path(str(where / "other-ca.pem"))
    return where / "server.crt", where / "server.key", where / "ca.pem", where / "other-ca.pem"


@pytest.fixture(scope="module")
def https_server(pki, tmp_path_factory):
    cert, key, ca, _ = pki
    env = {"LOTTERY_TLS_CERT": str(cert), "LOTTERY_TLS_KEY": str(key)}
    with Server(tmp_path_factory.mktemp("tls") / "data", workers=2, agencies=2, env=env, verify=trusting(ca)) as server:
        yield server


def test_a_client_that_trusts_the_ca_gets_through(https_server: Server, pki) -> None:
    _, _, ca, _ = pki
    assert https_server.url.startswith("https://127.0.0.1:")
    with httpx.Client(base_url=https_server.url, verify=trusting(ca)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        r = client.post(
            "/agencies/1/bets", content=b"Ana,Gomez,30904465,1999-03-17,7574\n", headers={"Content-Type": "text/csv"}
        )
        assert (r.status_code, without_log(r.json())) == (201, {"agency": 1, "stored": 1})


@pytest.mark.parametrize("trust", ["system CAs", "another private CA"])
def test_a_client_that_does_not_trust_the_ca_is_refused(https_server: Server, pki, trust: str) -> None:
    verify = True if trust == "system CAs" else trusting(pki[3])
    with pytest.raises(httpx.ConnectError) as refused:
        httpx.get(https_server.url + "/health", verify=verify)
    assert isinstance(refused.value.__context__, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
        refused.value
    )


def test_plain_http_to_the_https_port_gets_no_answer(https_server: Server) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(https_server.url.replace("https://", "http://") + "/health")


@pytest.mark.parametrize("case", ["key missing", "key of another certificate", "not a certificate"])
def test_a_bad_certificate_or_key_stops_the_server_with_one_line(tmp_path: Path, pki, case: str) -> None:
    cert, key, _, _ = pki
    if case == "key missing":
        env = {"LOTTERY_TLS_CERT": str(cert), "LOTTERY_TLS_KEY": str(tmp_path / "nope.key")}
    elif case == "key of another certificate":
        trustme.CA().issue_cert("127.0.0.1").private_key_pem.write_to_path(str(tmp_path / "other.key"))
        env = {"LOTTERY_TLS_CERT": str(cert), "LOTTERY_TLS_KEY": str(tmp_path / "other.key")}
    else:
        (tmp_path / "bad.crt").write_text("not a certificate\n")
        env = {"LOTTERY_TLS_CERT": str(tmp_path / "bad.crt"), "LOTTERY_TLS_KEY": str(key)}
    lines, log = refused_start(tmp_path / "data", env)
    assert len(lines) == 1 and lines[0].startswith("lottery: invalid setting: LOTTERY_TLS_CERT/LOTTERY_TLS_KEY: "), log
    assert "Traceback" not in log


def test_a_certificate_without_a_key_stops_the_server_with_one_line(tmp_path: Path, pki) -> None:
    lines, _ = refused_start(tmp_path / "data", {"LOTTERY_TLS_CERT": str(pki[0])})
    assert lines == ["lottery: invalid setting: LOTTERY_TLS_CERT and LOTTERY_TLS_KEY go together: set both or neither"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="deploy/make-tls.sh needs the openssl command")
def test_the_certificates_of_make_tls_serve_https(tmp_path: Path) -> None:
    """./deploy/make-tls.sh (what compose mounts as secrets) makes a CA and a certificate that work."""
    subprocess.run([str(ROOT / "deploy" / "make-tls.sh"), str(tmp_path / "secrets")], check=True, capture_output=True)
    secrets = tmp_path / "secrets"
    env = {"LOTTERY_TLS_CERT": str(secrets / "tls.crt"), "LOTTERY_TLS_KEY": str(secrets / "tls.key")}
    ca = trusting(secrets / "tls-ca.crt")
    with Server(tmp_path / "data", workers=1, agencies=1, env=env, verify=ca) as server:
        assert httpx.get(server.url + "/health", verify=ca).status_code == 200
        localhost = server.url.replace("127.0.0.1", "localhost")  # the name compose's healthcheck uses
        assert httpx.get(localhost + "/health", verify=ca).status_code == 200
    assert oct((secrets / "tls-ca.key").stat().st_mode & 0o777) == "0o600"
