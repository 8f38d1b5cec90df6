"""Generate the Docker Compose file for N lottery agencies.

Usage: python deploy/compose.py OUT.yaml N [--no-check]   (normally via ./generar-compose.sh)

It refuses (exit 1, naming each one) when a file the compose file mounts is missing next to
OUT.yaml: the agency files in ./.data/ and the tokens in ./secrets/. ``--no-check`` skips that.

One image (lottery:latest) serves both roles: `server` runs gunicorn, and
`client1`..`clientN` run `python -m client run`, one per agency. Everything
that may change between runs comes in through the environment, bind mounts
or secrets, so changing it never needs an image rebuild.

Prometheus: the `prometheus` service (deploy/prometheus.yml) only starts under the
`metrics` profile: `docker compose --profile metrics up`, then http://127.0.0.1:9090.

PostgreSQL: the `postgres` service only starts under the `postgres` profile.
The server switches backend when LOTTERY_DATABASE_URL is set:
    LOTTERY_DATABASE_URL=postgresql://lottery:lottery@postgres:5432/lottery \
        docker compose --profile postgres up

High availability (docs/postgres.md "High availability"): the `ha` profile runs pg_auto_failover,
a monitor and two nodes replicating synchronously; the server on both nodes' multi-host URL
writes to whichever is primary, and rides through a failover:
    LOTTERY_DATABASE_URL="$HA_URL" docker compose --profile ha up   (HA_URL below)
"""

from __future__ import annotations

import sys
from pathlib import Path

IMAGE = "lottery:latest"
SERVER_URL = "https://server:8000"
# HTTPS everywhere: ./deploy/make-tls.sh secrets writes the private CA and the server's
# certificate and key; the server gets all three, each uploader the CA to verify it.
TLS_SECRETS = {"tls.crt": "./secrets/tls.crt", "tls.key": "./secrets/tls.key", "tls-ca.crt": "./secrets/tls-ca.crt"}

# Exec-form healthcheck: the slim image has no curl, but it has Python.
# urlopen raises on connection errors and on 4xx/5xx, so any failure exits 1. It checks
# the server's certificate against the private CA, as the uploaders do.
_HEALTH_PROBE = (
    "import ssl, urllib.request; urllib.request.urlopen('https://localhost:8000/health', timeout=3, "
    "context=ssl.create_default_context(cafile='/run/secrets/tls-ca.crt'))"
)


def _server(agencies: int) -> dict:
    return {
        "build": ".",
        "image": IMAGE,
        # The image only ever comes from this build: never look it up in a
        # registry, and rebuild (from cache) on `up` so code edits are picked up.
        "pull_policy": "build",
        "environment": {
            # Must match the number of client services, so it is not overridable.
            "LOTTERY_AGENCIES": str(agencies),
            "LOTTERY_DATA_DIR": "/srv/data",
            "LOTTERY_TOKENS_FILE": "/run/secrets/tokens.json",
            "LOTTERY_TLS_CERT": "/run/secrets/tls.crt",
            "LOTTERY_TLS_KEY": "/run/secrets/tls.key",
            # The transparency log's signing key (docs/transparency.md): a secret, never in the volume.
            "LOTTERY_LOG_KEY_FILE": "/run/secrets/log.key",
            "LOTTERY_WINNING_NUMBER": "${LOTTERY_WINNING_NUMBER:-7574}",
            "LOTTERY_LOG_LEVEL": "${LOTTERY_LOG_LEVEL:-INFO}",
            # Empty means "no database": the file backend in LOTTERY_DATA_DIR.
            "LOTTERY_DATABASE_URL": "${LOTTERY_DATABASE_URL:-}",
            "GUNICORN_CMD_ARGS": "--bind 0.0.0.0:8000",
            # No value: passed through from the shell when set, else left unset so
            # gunicorn.conf.py keeps its own per-core default (an empty string
            # would crash its int() instead).
            "WEB_CONCURRENCY": None,
        },
        # Loopback only: the clients talk to the server over the compose network.
        "ports": ["127.0.0.1:8000:8000"],
        "volumes": ["lottery-data:/srv/data"],
        "secrets": ["tokens.json", *TLS_SECRETS, "log.key"],
        "healthcheck": {
            "test": ["CMD", "python", "-c", _HEALTH_PROBE],
            "interval": "5s",
            "timeout": "3s",
            "retries": 5,
            "start_period": "10s",
        },
    }


def _client(agency: int) -> dict:
    bets = f"/data/agency-{agency}.csv"
    return {
        "image": IMAGE,
        # Built by the `server` service; a registry pull could only fail.
        "pull_policy": "never",
        "command": ["python", "-m", "client", "run"],
        "environment": {
            "LOTTERY_SERVER": SERVER_URL,
            "LOTTERY_AGENCY": str(agency),
            "LOTTERY_BETS_FILE": bets,
            "LOTTERY_TOKEN_FILE": f"/run/secrets/agency-{agency}-token",
            "LOTTERY_CACERT": "/run/secrets/tls-ca.crt",
        },
        # The agency's data is mounted at run time, never baked into the image.
        "volumes": [f"./.data/agency-{agency}.csv:{bets}:ro"],
        "secrets": [f"agency-{agency}-token", "tls-ca.crt"],
        "depends_on": {"server": {"condition": "service_healthy"}},
        # A tiny init reaps and forwards signals, so `docker compose down`
        # stops a client that is still waiting for the draw without a 10 s wait.
        "init": True,
        # An uploader runs once; restarting it would upload the bets again.
        "restart": "no",
    }


def _postgres() -> dict:
    return {
        "image": "postgres:16-alpine",
        # Opt-in: only started with `--profile postgres`; the server does not
        # depend on it, so the default file backend works without it.
        "profiles": ["postgres"],
        "environment": {
            "POSTGRES_USER": "lottery",
            "POSTGRES_PASSWORD": "lottery",
            "POSTGRES_DB": "lottery",
        },
        "volumes": ["pg-data:/var/lib/postgresql/data"],
        "healthcheck": {
            "test": ["CMD", "pg_isready", "-U", "lottery", "-d", "lottery"],
            "interval": "5s",
            "timeout": "3s",
            "retries": 5,
            "start_period": "10s",
        },
    }


# pg_auto_failover (Debian's package on the PostgreSQL image: deploy/pg-auto-failover.Dockerfile).
HA_IMAGE = "lottery-pg-auto-failover:15"
HA_NODES = ("pg-node1", "pg-node2")
HA_MONITOR = "postgresql://autoctl_node@pg-monitor:5432/pg_auto_failover?sslmode=require"
# Both nodes; libpq tries them in turn and keeps the one that takes writes (the primary).
HA_URL = (
    "postgresql://lottery:lottery@"
    + ",".join(f"{node}:5432" for node in HA_NODES)
    + "/lottery?target_session_attrs=read-write"
)
HA_ENV = {
    "PGDATA": "/var/lib/postgresql/pgaf/data",
    # pg_autoctl's config and state live in the volume too, so a restarted container resumes.
    "XDG_CONFIG_HOME": "/var/lib/postgresql/pgaf/config",
    "XDG_DATA_HOME": "/var/lib/postgresql/pgaf/share",
}


def _ha_service(name: str, command: list[str], volume: str) -> dict:
    return {
        "build": {"context": "./deploy", "dockerfile": "pg-auto-failover.Dockerfile"},
        "image": HA_IMAGE,
        "pull_policy": "build",
        # Opt-in: only with `--profile ha`. The server does not depend on it (the default file
        # backend works without it); pointed at it, it answers 503 until a primary is up.
        "profiles": ["ha"],
        "hostname": name,
        "user": "postgres",  # pg_autoctl refuses to run as root
        "environment": dict(HA_ENV),
        # `create ... --run` is idempotent: the first start creates the node, a restart resumes it.
        "command": command,
        "volumes": [f"{volume}:/var/lib/postgresql/pgaf"],
        # A node or monitor killed is restarted; a node that comes back rejoins as a standby.
        "restart": "unless-stopped",
    }


def _ha(services: dict) -> None:
    """The `ha` profile: a pg_auto_failover monitor and two Postgres nodes, synchronous."""
    # Trust on the compose network only (no port is published); pg_autoctl creates `lottery`
    # (a superuser) and its database on the first primary, and --pg-hba-lan lets it in.
    common = ["--auth", "trust", "--ssl-self-signed"]
    services["pg-monitor"] = _ha_service(
        "pg-monitor",
        ["pg_autoctl", "create", "monitor", "--hostname", "pg-monitor", *common, "--run"],
        "pg-monitor-data",
    )
    for node in HA_NODES:
        command = [
            "pg_autoctl", "create", "postgres", "--name", node, "--hostname", node, *common, "--pg-hba-lan",
            "--username", "lottery", "--dbname", "lottery", "--monitor", HA_MONITOR, "--run",
        ]  # fmt: skip
        services[node] = {**_ha_service(node, command, f"{node}-data"), "depends_on": ["pg-monitor"]}


def _prometheus() -> dict:
    return {
        "image": "prom/prometheus:v3.5.0",
        # Opt-in: only started with `--profile metrics`; scrapes https://server:8000/metrics.
        "profiles": ["metrics"],
        "command": ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.retention.time=15d"],
        "volumes": ["./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro", "prometheus-data:/prometheus"],
        "ports": ["127.0.0.1:9090:9090"],
        "secrets": ["tls-ca.crt"],  # it scrapes https://server:8000 and checks the certificate
        "depends_on": {"server": {"condition": "service_healthy"}},
    }


def build_compose(agencies: int) -> dict:
    """The compose document (a plain dict) for `agencies` uploader services."""
    # bool is an int subclass; True is not "1 agency".
    if not isinstance(agencies, int) or isinstance(agencies, bool) or agencies < 1:
        raise ValueError(f"number of agencies must be an integer >= 1, got {agencies!r}")
    services = {"server": _server(agencies)}
    for k in range(1, agencies + 1):
        services[f"client{k}"] = _client(k)
    services["postgres"] = _postgres()
    _ha(services)
    services["prometheus"] = _prometheus()

    secrets = {"tokens.json": {"file": "./secrets/tokens.json"}}
    secrets.update({name: {"file": path} for name, path in TLS_SECRETS.items()})
    secrets["log.key"] = {"file": "./secrets/log.key"}
    for k in range(1, agencies + 1):
        secrets[f"agency-{k}-token"] = {"file": f"./secrets/agency-{k}.token"}

    return {
        # A fixed project name keeps volume names stable (lottery_lottery-data)
        # whatever the checkout directory is called.
        "name": "lottery",
        "services": services,
        "volumes": {
            "lottery-data": {},
            "pg-data": {},
            **{f"{name}-data": {} for name in ("pg-monitor", *HA_NODES)},
            "prometheus-data": {},
        },
        "secrets": secrets,
    }


def render(agencies: int) -> str:
    """The compose file text: a header comment plus the YAML document."""
    import yaml  # imported here so `build_compose` works without PyYAML

    header = (
        f"# Generated by ./generar-compose.sh (deploy/compose.py) for {agencies} agencies.\n"
        f"# Do not edit by hand: change deploy/compose.py, then run\n"
        f"#   ./generar-compose.sh docker-compose.yml {agencies}\n"
        "# PostgreSQL backend (opt-in):\n"
        "#   LOTTERY_DATABASE_URL=postgresql://lottery:lottery@postgres:5432/lottery"
        " docker compose --profile postgres up\n"
        "# PostgreSQL with automatic failover (opt-in, docs/postgres.md):\n"
        f"#   LOTTERY_DATABASE_URL='{HA_URL}' docker compose --profile ha up\n"
    )

    class Dumper(yaml.SafeDumper):
        pass

    # `KEY:` with nothing after it, as the compose docs write a pass-through
    # variable, rather than `KEY: null`.
    Dumper.add_representer(type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", ""))
    body = yaml.dump(
        build_compose(agencies),
        Dumper=Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=1000,
    )
    return header + body


def mounted_files(doc: dict) -> list[str]:
    """Every host file the compose document mounts (secrets and bind mounts), as written in it."""
    files = [secret["file"] for secret in doc.get("secrets", {}).values() if "file" in secret]
    for service in doc["services"].values():
        for entry in service.get("volumes", []):
            source = entry.split(":", 1)[0] if isinstance(entry, str) else entry.get("source", "")
            if source.startswith(("./", "../", "/")):
                files.append(source)
    return list(dict.fromkeys(files))


def missing_files(doc: dict, base: Path) -> list[str]:
    """The mounted files that are not there: compose resolves them against the compose file's folder."""
    return [name for name in mounted_files(doc) if not (base / name).is_file()]


def _missing_message(missing: list[str], base: Path, agencies: int) -> str:
    return "\n".join(
        [
            f"error: these files are mounted by the compose file but do not exist (relative to {base}):",
            *(f"  {name}" for name in missing),
            "Create them first:",
            f"  agency data: python -m client generate --agencies {agencies} --out .data  (or copy the course dataset)",
            f"  tokens:      python -m app.tokens --agencies {agencies} --out secrets",
            "  TLS:         ./deploy/make-tls.sh secrets",
            "  log key:     python -m tlog keygen lottery.local/log secrets/log.key",
            "               sudo chown 10001 secrets/log.key  (the container's user reads it; nobody else may)",
            "or add --no-check to write the compose file anyway.",
        ]
    )


def _parse_agencies(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"number of agencies must be an integer >= 1, got {text!r}")
    return value


def main(argv: list[str]) -> int:
    check = "--no-check" not in argv
    argv = [a for a in argv if a != "--no-check"]
    if len(argv) != 2:
        print("usage: generar-compose.sh OUT.yaml N [--no-check]   (N = number of agencies, >= 1)", file=sys.stderr)
        return 2
    out, n = argv
    try:
        agencies = _parse_agencies(n)
        text = render(agencies)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError:
        print("error: PyYAML is required (pip install -r requirements.txt)", file=sys.stderr)
        return 1
    base = Path(out).resolve().parent
    missing = missing_files(build_compose(agencies), base) if check else []
    if missing:
        print(_missing_message(missing, base, agencies), file=sys.stderr)
        return 1
    Path(out).write_text(text, encoding="utf-8")
    print(f"wrote {out} for {agencies} agencies")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
