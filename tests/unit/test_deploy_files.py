"""The deployment files, checked by parsing them: no Docker engine needed.

Covers the compose generator (deploy/compose.py and ./generar-compose.sh), the
committed docker-compose.yml, the Dockerfile and the .dockerignore.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.compose import build_compose, mounted_files

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "generar-compose.sh"


def generate(out: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the real ./generar-compose.sh, pinned to this interpreter (which has PyYAML)."""
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        [str(SCRIPT), str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) for each volume entry, short or long syntax."""
    result = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, target, *mode = entry.split(":")
            result.append((source, target, "ro" in (mode[0].split(",") if mode else [])))
        else:
            result.append((entry["source"], entry["target"], bool(entry.get("read_only"))))
    return result


@pytest.fixture(scope="module", params=[1, 3, 10])
def compose(request, tmp_path_factory) -> tuple[int, dict]:
    """A compose file for N agencies, written by the real script and parsed back."""
    n = request.param
    out = tmp_path_factory.mktemp("compose") / f"compose-{n}.yaml"
    for name in mounted_files(build_compose(n)):  # the script checks they exist
        (out.parent / name).parent.mkdir(parents=True, exist_ok=True)
        (out.parent / name).write_text("x")
    proc = generate(out, str(n))
    assert proc.returncode == 0, proc.stderr
    return n, yaml.safe_load(out.read_text(encoding="utf-8"))


# --- compose: structure -----------------------------------------------------------


def test_service_names_are_server_and_one_client_per_agency(compose):
    n, doc = compose
    clients = [f"client{k}" for k in range(1, n + 1)]
    # `postgres`, the `ha` formation and `prometheus` are present but opt-in (profiles); the rest is exact.
    ha = ["pg-monitor", "pg-node1", "pg-node2"]
    assert list(doc["services"]) == ["server", *clients, "postgres", *ha, "prometheus"]
    assert doc["services"]["postgres"]["profiles"] == ["postgres"]
    assert all(doc["services"][name]["profiles"] == ["ha"] for name in ha)
    assert doc["services"]["prometheus"]["profiles"] == ["metrics"]
    active = [name for name, svc in doc["services"].items() if not svc.get("profiles")]
    assert active == ["server", *clients]


# The whole file for one agency, written out by hand from the README's deployment section:
# what `docker compose` gets, independent of how deploy/compose.py builds it.
EXPECTED_ONE_AGENCY = """
name: lottery
services:
  server:
    build: .
    image: lottery:latest
    pull_policy: build
    environment:
      LOTTERY_AGENCIES: '1'
      LOTTERY_DATA_DIR: /srv/data
      LOTTERY_TOKENS_FILE: /run/secrets/tokens.json
      LOTTERY_WINNING_NUMBER: ${LOTTERY_WINNING_NUMBER:-7574}
      LOTTERY_LOG_LEVEL: ${LOTTERY_LOG_LEVEL:-INFO}
      LOTTERY_DATABASE_URL: ${LOTTERY_DATABASE_URL:-}
      GUNICORN_CMD_ARGS: --bind 0.0.0.0:8000
      WEB_CONCURRENCY:
      LOTTERY_TLS_CERT: /run/secrets/tls.crt
      LOTTERY_TLS_KEY: /run/secrets/tls.key
      LOTTERY_LOG_KEY_FILE: /run/secrets/log.key
    ports: ["127.0.0.1:8000:8000"]
    volumes: ["lottery-data:/srv/data"]
    secrets: [tokens.json, tls.crt, tls.key, tls-ca.crt, log.key]
    healthcheck:
      test:
      - CMD
      - python
      - -c
      - >-
        import ssl, urllib.request; urllib.request.urlopen('https://localhost:8000/health', timeout=3,
        context=ssl.create_default_context(cafile='/run/secrets/tls-ca.crt'))
      interval: 5s
      timeout: 3s
      retries: 5
      start_period: 10s
  client1:
    image: lottery:latest
    pull_policy: never
    command: [python, -m, client, run]
    environment:
      LOTTERY_SERVER: https://server:8000
      LOTTERY_AGENCY: '1'
      LOTTERY_BETS_FILE: /data/agency-1.csv
      LOTTERY_TOKEN_FILE: /run/secrets/agency-1-token
      LOTTERY_CACERT: /run/secrets/tls-ca.crt
    volumes: ["./.data/agency-1.csv:/data/agency-1.csv:ro"]
    secrets: [agency-1-token, tls-ca.crt]
    depends_on: {server: {condition: service_healthy}}
    init: true
    restart: 'no'
  postgres:
    image: postgres:16-alpine
    profiles: [postgres]
    environment: {POSTGRES_USER: lottery, POSTGRES_PASSWORD: lottery, POSTGRES_DB: lottery}
    volumes: ["pg-data:/var/lib/postgresql/data"]
    healthcheck:
      test: [CMD, pg_isready, -U, lottery, -d, lottery]
      interval: 5s
      timeout: 3s
      retries: 5
      start_period: 10s
  pg-monitor:
    build: {context: ./deploy, dockerfile: pg-auto-failover.Dockerfile}
    image: lottery-pg-auto-failover:15
    pull_policy: build
    profiles: [ha]
    hostname: pg-monitor
    user: postgres
    environment: &pgaf
      PGDATA: /var/lib/postgresql/pgaf/data
      XDG_CONFIG_HOME: /var/lib/postgresql/pgaf/config
      XDG_DATA_HOME: /var/lib/postgresql/pgaf/share
    command: [pg_autoctl, create, monitor, --hostname, pg-monitor, --auth, trust, --ssl-self-signed, --run]
    volumes: ["pg-monitor-data:/var/lib/postgresql/pgaf"]
    restart: unless-stopped
  pg-node1:
    build: {context: ./deploy, dockerfile: pg-auto-failover.Dockerfile}
    image: lottery-pg-auto-failover:15
    pull_policy: build
    profiles: [ha]
    hostname: pg-node1
    user: postgres
    environment: *pgaf
    command: [
      pg_autoctl, create, postgres, --name, pg-node1, --hostname, pg-node1, --auth, trust, --ssl-self-signed,
      --pg-hba-lan, --username, lottery, --dbname, lottery,
      --monitor, "postgresql://autoctl_node@pg-monitor:5432/pg_auto_failover?sslmode=require", --run
    ]
    volumes: ["pg-node1-data:/var/lib/postgresql/pgaf"]
    restart: unless-stopped
    depends_on: [pg-monitor]
  pg-node2:
    build: {context: ./deploy, dockerfile: pg-auto-failover.Dockerfile}
    image: lottery-pg-auto-failover:15
    pull_policy: build
    profiles: [ha]
    hostname: pg-node2
    user: postgres
    environment: *pgaf
    command: [
      pg_autoctl, create, postgres, --name, pg-node2, --hostname, pg-node2, --auth, trust, --ssl-self-signed,
      --pg-hba-lan, --username, lottery, --dbname, lottery,
      --monitor, "postgresql://autoctl_node@pg-monitor:5432/pg_auto_failover?sslmode=require", --run
    ]
    volumes: ["pg-node2-data:/var/lib/postgresql/pgaf"]
    restart: unless-stopped
    depends_on: [pg-monitor]
  prometheus:
    image: prom/prometheus:v3.5.0
    profiles: [metrics]
    command: [--config.file=/etc/prometheus/prometheus.yml, --storage.tsdb.retention.time=15d]
    volumes: ["./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro", "prometheus-data:/prometheus"]
    ports: ["127.0.0.1:9090:9090"]
    secrets: [tls-ca.crt]
    depends_on:
      server: {condition: service_healthy}
volumes: {lottery-data: {}, pg-data: {}, pg-monitor-data: {}, pg-node1-data: {}, pg-node2-data: {}, prometheus-data: {}}
secrets:
  tokens.json: {file: ./secrets/tokens.json}
  tls.crt: {file: ./secrets/tls.crt}
  tls.key: {file: ./secrets/tls.key}
  tls-ca.crt: {file: ./secrets/tls-ca.crt}
  log.key: {file: ./secrets/log.key}
  agency-1-token: {file: ./secrets/agency-1.token}
"""


def test_generated_file_for_one_agency_is_exactly_the_expected_one(tmp_path):
    out = tmp_path / "compose.yaml"
    proc = generate(out, "1", "--no-check")  # the mounted files' check has its own tests
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(out.read_text(encoding="utf-8")) == yaml.safe_load(EXPECTED_ONE_AGENCY)


def test_server_service(compose):
    n, doc = compose
    server = doc["services"]["server"]
    env = server["environment"]
    assert server["build"] == "."
    assert env["LOTTERY_AGENCIES"] == str(n)
    assert env["LOTTERY_DATA_DIR"] == "/srv/data"
    assert env["LOTTERY_TOKENS_FILE"] == "/run/secrets/tokens.json"
    assert (env["LOTTERY_TLS_CERT"], env["LOTTERY_TLS_KEY"]) == ("/run/secrets/tls.crt", "/run/secrets/tls.key")
    assert env["LOTTERY_LOG_KEY_FILE"] == "/run/secrets/log.key" and "log.key" in server["secrets"]
    assert doc["secrets"]["log.key"] == {"file": "./secrets/log.key"}
    assert env["GUNICORN_CMD_ARGS"] == "--bind 0.0.0.0:8000"
    assert env["LOTTERY_DATABASE_URL"] == "${LOTTERY_DATABASE_URL:-}"
    for name in ("LOTTERY_WINNING_NUMBER", "LOTTERY_LOG_LEVEL"):
        assert env[name].startswith("${" + name + ":-"), name
    # Pass-through: set from the shell or left unset (gunicorn.conf.py's default).
    assert "WEB_CONCURRENCY" in env and env["WEB_CONCURRENCY"] is None
    assert server["ports"] == ["127.0.0.1:8000:8000"]
    assert "depends_on" not in server  # postgres is opt-in, never required


def test_server_data_dir_is_a_named_volume(compose):
    _, doc = compose
    data = [(s, t) for s, t, _ in mounts(doc["services"]["server"]) if t == "/srv/data"]
    assert data == [("lottery-data", "/srv/data")]
    assert "lottery-data" in doc["volumes"]


def test_server_healthcheck_probes_health_without_curl(compose):
    _, doc = compose
    check = doc["services"]["server"]["healthcheck"]
    test = check["test"]
    assert test[0] == "CMD" and test[1] == "python"
    probe = " ".join(test)
    assert "urllib" in probe and "/health" in probe and "curl" not in probe
    assert "https://localhost:8000/health" in probe and "cafile='/run/secrets/tls-ca.crt'" in probe
    assert {"interval", "timeout", "retries", "start_period"} <= set(check)


def test_each_client_uploads_its_own_agency(compose):
    n, doc = compose
    image = doc["services"]["server"]["image"]
    for k in range(1, n + 1):
        client = doc["services"][f"client{k}"]
        env = client["environment"]
        assert client["image"] == image
        assert "build" not in client  # built once, by `server`
        assert client["command"] == ["python", "-m", "client", "run"]
        assert env["LOTTERY_SERVER"] == "https://server:8000"
        assert env["LOTTERY_CACERT"] == "/run/secrets/tls-ca.crt"
        assert env["LOTTERY_AGENCY"] == str(k)
        assert env["LOTTERY_BETS_FILE"] == f"/data/agency-{k}.csv"
        assert env["LOTTERY_TOKEN_FILE"] == f"/run/secrets/agency-{k}-token"
        # The CSV is a read-only bind mount of the host file, not part of the image.
        assert mounts(client) == [(f"./.data/agency-{k}.csv", f"/data/agency-{k}.csv", True)]
        assert client["depends_on"] == {"server": {"condition": "service_healthy"}}
        assert client["restart"] == "no"  # the string, not YAML's boolean


def test_secrets_are_wired(compose):
    n, doc = compose
    secrets = doc["secrets"]
    tls = ["tls.crt", "tls.key", "tls-ca.crt"]
    assert doc["services"]["server"]["secrets"] == ["tokens.json", *tls, "log.key"]
    assert secrets["tokens.json"] == {"file": "./secrets/tokens.json"}
    for name in tls:  # written by ./deploy/make-tls.sh secrets
        assert secrets[name] == {"file": f"./secrets/{name}"}
    for k in range(1, n + 1):
        name = f"agency-{k}-token"
        assert doc["services"][f"client{k}"]["secrets"] == [name, "tls-ca.crt"]  # the CA, never the key
        assert secrets[name] == {"file": f"./secrets/agency-{k}.token"}
    assert len(secrets) == n + 5  # tokens, TLS (3), the log's key, one token per agency


def test_postgres_profile(compose):
    _, doc = compose
    pg = doc["services"]["postgres"]
    assert pg["image"] == "postgres:16-alpine"
    assert {pg["environment"][v] for v in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")} == {"lottery"}
    assert ("pg-data", "/var/lib/postgresql/data", False) in mounts(pg)
    assert "pg-data" in doc["volumes"]
    assert "pg_isready" in pg["healthcheck"]["test"]


def test_ha_profile_is_a_synchronous_pg_auto_failover_formation_behind_a_multi_host_url(compose):
    _, doc = compose
    from deploy.compose import HA_URL

    monitor, *nodes = (doc["services"][name] for name in ("pg-monitor", "pg-node1", "pg-node2"))
    dockerfile = (ROOT / "deploy" / "pg-auto-failover.Dockerfile").read_text(encoding="utf-8")
    assert "postgresql-15-auto-failover" in dockerfile and dockerfile.startswith("#")
    assert monitor["command"][:3] == ["pg_autoctl", "create", "monitor"] and monitor["command"][-1] == "--run"
    hosts = []
    for node in nodes:
        command = node["command"]
        assert command[:3] == ["pg_autoctl", "create", "postgres"] and command[-1] == "--run"
        option = dict(zip(command[3::1], command[4::1], strict=False))
        assert option["--monitor"].startswith("postgresql://autoctl_node@pg-monitor:5432/pg_auto_failover")
        assert (option["--username"], option["--dbname"]) == ("lottery", "lottery")
        assert node["user"] == "postgres" and node["depends_on"] == ["pg-monitor"]
        assert node["restart"] == "unless-stopped"  # a lost node comes back and rejoins as standby
        assert "ports" not in node  # trust auth: reachable on the compose network only
        hosts.append(f"{option['--hostname']}:5432")
        [(volume, target, _)] = mounts(node)
        assert target == "/var/lib/postgresql/pgaf" and volume in doc["volumes"]
        assert all(node["environment"][v].startswith(target) for v in ("PGDATA", "XDG_CONFIG_HOME", "XDG_DATA_HOME"))
    # Two nodes in one formation replicate synchronously by pg_auto_failover's default: no
    # option turns it off here. The service's URL names both and keeps the writable one.
    assert not any(
        "number-sync-standbys" in part or "candidate-priority" in part for n in nodes for part in n["command"]
    )
    assert HA_URL == f"postgresql://lottery:lottery@{','.join(hosts)}/lottery?target_session_attrs=read-write"
    committed = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert f"LOTTERY_DATABASE_URL='{HA_URL}' docker compose --profile ha up" in committed


def test_prometheus_profile_scrapes_the_server(compose):
    _, doc = compose
    prometheus = doc["services"]["prometheus"]
    assert ("./deploy/prometheus.yml", "/etc/prometheus/prometheus.yml", True) in mounts(prometheus)
    assert prometheus["ports"] == ["127.0.0.1:9090:9090"]  # loopback only, like the server
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": ["server:8000"]}]


# --- the committed file and the generator's edges -------------------------------


def test_committed_compose_is_the_scripts_output_for_5(tmp_path):
    out = tmp_path / "compose.yaml"
    assert generate(out, "5", "--no-check").returncode == 0
    committed = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert committed == out.read_text(encoding="utf-8"), "regenerate: ./generar-compose.sh docker-compose.yml 5"
    assert committed.startswith("# Generated by ./generar-compose.sh")


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "2.5", ""])
def test_generator_refuses_bad_agency_count(tmp_path, bad):
    out = tmp_path / "out.yaml"
    proc = generate(out, bad)
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "agencies" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("args", [[], ["only-one"], ["a", "1", "extra"]])
def test_script_prints_usage_on_wrong_arguments(args):
    proc = subprocess.run([str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.startswith("usage:")


def test_build_compose_refuses_zero():
    with pytest.raises(ValueError):
        build_compose(0)


def test_script_is_executable_and_strict():
    assert os.access(SCRIPT, os.X_OK)
    text = SCRIPT.read_text(encoding="utf-8")
    assert text.startswith("#!")
    assert "set -euo pipefail" in text


# --- Dockerfile -------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    pairs = []
    for line in logical:
        word, _, rest = line.partition(" ")
        pairs.append((word.upper(), rest.strip()))
    return pairs


def copy_sources() -> list[str]:
    """The build-context paths COPY/ADD read (not those copied from another stage)."""
    sources = []
    for word, args in dockerfile():
        if word not in ("COPY", "ADD"):
            continue
        parts = shlex.split(args)
        if any(p.startswith("--from") for p in parts):
            continue
        parts = [p for p in parts if not p.startswith("--")]
        sources += parts[:-1]
    return sources


def test_dockerfile_base_user_and_port():
    steps = dockerfile()
    froms = [args.split()[0] for word, args in steps if word == "FROM"]
    assert froms and all(image == "python:3.11-slim" for image in froms)
    # The last stage (what runs) switches to a non-root user before CMD.
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    words = [w for w, _ in final]
    assert "USER" in words and "CMD" in words
    user = final[words.index("USER")][1]
    assert user.split(":")[0] not in ("root", "0")
    assert words.index("USER") < words.index("CMD")
    assert ("EXPOSE", "8000") in steps
    assert any(w == "VOLUME" and "/srv/data" in a for w, a in final)
    assert any(w == "WORKDIR" and a == "/srv" for w, a in final)
    env = " ".join(a for w, a in final if w == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    cmd = final[words.index("CMD")][1]
    assert "gunicorn" in cmd and "gunicorn.conf.py" in cmd
    assert "0.0.0.0:8000" in " ".join(a for w, a in final if w in ("ENV", "CMD"))


def test_dockerfile_installs_requirements_without_cache():
    runs = [a for w, a in dockerfile() if w == "RUN"]
    # The image takes the runtime pins only: test tools stay out of it.
    assert any("pip install" in r and "--no-cache-dir" in r and "requirements-runtime.txt" in r for r in runs)
    assert "requirements-runtime.txt" in " ".join(copy_sources())


def test_dockerfile_copies_only_code_never_data_or_secrets():
    for source in copy_sources():
        top = Path(source).parts[0]
        assert top not in (".", "data", ".data", "secrets", ".venv"), source
    assert {Path(s).parts[0] for s in copy_sources()} == {
        "app",
        "client",
        "tlog",  # the transparency log's package: the server and the uploader import it
        "gunicorn.conf.py",
        "requirements-runtime.txt",
    }


def test_dockerfile_copy_sources_exist_in_repo():
    # A COPY of a path that is not in the repo fails `docker build`.
    missing = [s for s in copy_sources() if not (ROOT / s).exists()]
    assert not missing, f"Dockerfile COPYs paths missing from the repo: {missing}"


# --- .dockerignore ----------------------------------------------------------------


def ignored(path: str) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent wins."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, line.lstrip("!").strip("/")))
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negated, pattern in patterns:
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            verdict = not negated
    return verdict


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "data/bets.csv",
        ".data/agency-1.csv",
        "secrets/tokens.json",
        "secrets/agency-1.token",
        ".pytest_cache/v/x",
        "bench/results.json",
        "tests/unit/test_x.py",
        "app/__pycache__/x.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_junk_out_of_the_context(path):
    assert ignored(path)


def test_dockerignore_lets_every_copied_path_in():
    for source in copy_sources():
        path = source.rstrip("/")
        assert not ignored(path), source
        if source.endswith("/"):  # a folder: its modules must get in too
            assert not ignored(f"{path}/module.py"), source
