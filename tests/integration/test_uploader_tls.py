"""A whole round over HTTPS with a private CA (a real TLS handshake, issue 10), and a wrong CA refused."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from client.generate import generate
from devtools.server import Server
from tests.helpers import expected_rows, stored_rows
from tests.support.uploader import uploader

trustme = pytest.importorskip("trustme")


class TlsServer(Server):
    """gunicorn serving HTTPS with ``cert``/``key`` (its own --certfile/--keyfile), probed over TLS."""

    def __init__(self, data_dir: Path, *, cert: Path, key: Path, cacert: Path, **kwargs):
        super().__init__(data_dir, verify=ssl.create_default_context(cafile=str(cacert)), **kwargs)
        self.env["GUNICORN_CMD_ARGS"] += f" --certfile {cert} --keyfile {key}"
        self.url = f"https://127.0.0.1:{self.port}"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca, other_ca = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    paths = {name: tmp_path / f"{name}.pem" for name in ("ca", "other_ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    other_ca.cert_pem.write_to_path(str(paths["other_ca"]))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    for i, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(str(paths["cert"]), append=i > 0)
    return paths


def test_a_round_over_https_with_a_private_ca_and_a_wrong_ca_refused(tmp_path: Path, pki: dict[str, Path]) -> None:
    files = dict(enumerate(generate(tmp_path / "in", agencies=1, bets=2_000, seed=4), 1))
    with TlsServer(
        tmp_path / "data", workers=2, agencies=1, cert=pki["cert"], key=pki["key"], cacert=pki["ca"]
    ) as server:
        wrong = uploader(
            "run", "--agency", "1", "--file", str(files[1]), "--server", server.url, "--cacert", str(pki["other_ca"])
        )
        _, err = wrong.communicate(timeout=30)
        assert wrong.returncode == 1
        assert f"error: the certificate of {server.url} is not trusted (" in err
        assert f"the CA in {pki['other_ca']} did not sign it: pass the CA certificate that did with --cacert" in err
        assert "reintento" not in err  # not retried: it cannot get better
        no_ca = uploader("run", "--agency", "1", "--file", str(files[1]), "--server", server.url)
        _, err = no_ca.communicate(timeout=30)
        assert no_ca.returncode == 1
        assert "if it uses a private CA, pass that CA's certificate with --cacert FILE (or LOTTERY_CACERT)" in err

        right = uploader(
            "run",
            "--agency",
            "1",
            "--file",
            str(files[1]),
            "--server",
            server.url,
            "--batch-size",
            "500",
            env={"LOTTERY_CACERT": str(pki["ca"])},
        )
        _, err = right.communicate(timeout=60)
        assert right.returncode == 0, err
        assert "action: consulta_ganadores | result: success" in err
        assert stored_rows(server.data_dir) == expected_rows(files)
