"""A pg_auto_failover formation on 127.0.0.1: a monitor, a primary and a synchronous secondary.

Debian's ``postgresql-15-auto-failover`` (``.ci/run`` installs it), run as the ``postgres``
user, everything under one temporary directory (its config, state and pid files too: HOME and
the XDG directories point there). Facts this relies on (docs/postgres.md "High availability"):
``create monitor`` listens everywhere until told otherwise; every instance would take a quarter
of RAM as shared_buffers; creating the secondary stalls on a checkpoint of the primary unless one
is requested; a lost host is every process of the node at once (the keeper restarts a lone
postmaster), and backends start their own sessions, so the process tree is walked.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from devtools.server import free_ports

PG_BIN = "/usr/lib/postgresql/15/bin"
PG_AUTOCTL = "/usr/bin/pg_autoctl"
SMALL = "\n# tests/support/formation.py: three instances on one machine\nshared_buffers = 128MB\n"
DATABASE, ROLE = "lottery", "lottery"


def unavailable() -> str | None:
    """Why no formation can be built here (None when it can)."""
    if not os.path.exists(PG_AUTOCTL):
        return "pg_autoctl is not installed (apt-get install postgresql-15-auto-failover; .ci/run does)"
    if os.geteuid() != 0:
        return "the formation runs as the postgres user: the tests must run as root"
    return None


def children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(parent, []).append(int(entry))
    return tree


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, parents first."""
    tree, found, todo = children(), [], [root]
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def signal_tree(root: int, sig: int) -> int:
    """Send ``sig`` to every process of ``root``'s tree, again until no new one shows up (a
    keeper or postmaster may fork meanwhile); how many processes got it."""
    done: set[int] = set()
    while pending := [pid for pid in process_tree(root) if pid not in done]:
        for pid in pending:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            done.add(pid)
    return len(done)


class Node:
    def __init__(self, formation: Formation, name: str, port: int) -> None:
        self.formation, self.name = formation, name
        self.pgdata = formation.dir / name
        self.port = port
        self.proc: subprocess.Popen | None = None

    def run(self) -> None:
        log = open(self.formation.dir / f"{self.name}.log", "ab")  # noqa: SIM115 - the process keeps it
        self.proc = self.formation.autoctl("run", "--pgdata", str(self.pgdata), background=log)

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def tune(self) -> None:
        with open(self.pgdata / "postgresql.conf", "a") as f:
            f.write(SMALL)


class Formation:
    """``with Formation() as f:`` a monitor and two nodes, the first primary, the second its
    synchronous standby; ``f.url`` is the service's multi-host URL. Everything is stopped and
    removed on exit, whatever happened (frozen processes are killed too)."""

    def __init__(self, monitor_settings: dict[str, str] | None = None) -> None:
        self.monitor_settings = monitor_settings or {}
        self.dir = Path(tempfile.mkdtemp(prefix="lottery-formation-"))
        self.user = pwd.getpwnam("postgres")
        os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.env = {
            "PATH": f"{PG_BIN}:/usr/bin:/bin",
            "HOME": str(self.dir),
            "XDG_CONFIG_HOME": str(self.dir / "config"),
            "XDG_DATA_HOME": str(self.dir / "share"),
            "XDG_RUNTIME_DIR": str(self.dir / "run"),
            "LANG": "C.UTF-8",
        }
        # Three distinct ports: two alike made the second node's registration fail (a CI run, 2026-12-07).
        ports = free_ports(3)
        self.monitor = Node(self, "monitor", ports[0])
        self.nodes = [Node(self, "node1", ports[1]), Node(self, "node2", ports[2])]

    # -- running pg_autoctl as postgres -------------------------------------------------------

    def _as_postgres(self) -> None:
        os.setsid()  # its own session: never signalled with the test's process group
        os.setgid(self.user.pw_gid)
        os.setuid(self.user.pw_uid)

    def autoctl(self, *args: str, background: object = None, timeout: float = 180) -> subprocess.Popen:
        command = [PG_AUTOCTL, *args]
        if background is not None:
            return subprocess.Popen(
                command, env=self.env, cwd=self.dir, preexec_fn=self._as_postgres, stdout=background, stderr=background
            )
        done = subprocess.run(
            command, env=self.env, cwd=self.dir, preexec_fn=self._as_postgres, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pg_autoctl {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done  # type: ignore[return-value]  # a CompletedProcess; its stdout is what callers read

    # -- building it --------------------------------------------------------------------------

    def __enter__(self) -> Formation:
        try:
            self._build()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _build(self) -> None:
        for sub in ("config", "share", "run"):
            (self.dir / sub).mkdir(mode=0o700)
            os.chown(self.dir / sub, self.user.pw_uid, self.user.pw_gid)
        m = self.monitor
        self.autoctl(
            "create", "monitor", "--pgdata", str(m.pgdata), "--pgport", str(m.port),
            "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl",
        )  # fmt: skip
        self.autoctl("config", "set", "--pgdata", str(m.pgdata), "postgresql.listen_addresses", "127.0.0.1")
        m.tune()
        m.run()
        self._wait_sql(m.url("pg_auto_failover", "autoctl_node"))
        if self.monitor_settings:
            with psycopg.connect(m.url("pg_auto_failover"), autocommit=True) as conn:
                for name, value in self.monitor_settings.items():
                    conn.execute(f"ALTER SYSTEM SET pgautofailover.{name} = '{value}'")
                conn.execute("SELECT pg_reload_conf()")
        self.monitor_uri = f"postgresql://autoctl_node@127.0.0.1:{m.port}/pg_auto_failover?sslmode=disable"
        first, second = self.nodes
        self._create_node(first)
        self.wait_state({first.name: "single"})
        self._wait_sql(first.url())
        with psycopg.connect(first.url(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        self._create_node(second, checkpoint_on=first)
        self.wait_state({first.name: "primary", second.name: "secondary"})
        with psycopg.connect(first.url(), autocommit=True) as conn:
            sync = conn.execute("SELECT sync_state FROM pg_stat_replication").fetchall()
        assert sync == [("quorum",)] or sync == [("sync",)], f"the secondary is not synchronous: {sync}"

    def _create_node(self, node: Node, checkpoint_on: Node | None = None) -> None:
        log = open(self.dir / f"create-{node.name}.log", "ab")  # noqa: SIM115
        create = self.autoctl(
            "create", "postgres", "--pgdata", str(node.pgdata), "--pgport", str(node.port),
            "--hostname", "127.0.0.1", "--listen", "127.0.0.1", "--auth", "trust", "--no-ssl",
            "--monitor", self.monitor_uri, "--name", node.name,
            background=log,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while create.poll() is None:
            if time.monotonic() > deadline:
                create.kill()
                raise RuntimeError(f"pg_autoctl create postgres {node.name} still running after 180 s")
            if checkpoint_on is not None:  # its base backup waits for a checkpoint: ask for one
                try:
                    with psycopg.connect(checkpoint_on.url(), autocommit=True, connect_timeout=2) as conn:
                        conn.execute("CHECKPOINT")
                except psycopg.Error:
                    pass
            time.sleep(0.5)
        if create.returncode != 0:
            raise RuntimeError(f"creating {node.name} failed:\n{(self.dir / f'create-{node.name}.log').read_text()}")
        node.tune()
        node.run()

    def _wait_sql(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    # -- watching it ---------------------------------------------------------------------------

    def states(self) -> dict[str, str]:
        """Each node's state as the monitor reports it (its goal once reached)."""
        with psycopg.connect(self.monitor.url("pg_auto_failover"), autocommit=True, connect_timeout=2) as conn:
            rows = conn.execute("SELECT nodename, reportedstate::text FROM pgautofailover.node").fetchall()
        return dict(rows)

    def wait_state(self, wanted: dict[str, str], timeout: float = 120) -> float:
        """Until every named node reports its state; when (time.monotonic()) that was seen."""
        deadline = time.monotonic() + timeout
        while (seen := self.states()) and any(seen.get(k) != v for k, v in wanted.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"formation states {seen}, wanted {wanted}")
            time.sleep(0.1)
        return time.monotonic()

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"postgresql://{ROLE}@{hosts}/{DATABASE}?target_session_attrs=read-write&sslmode=disable"

    # -- faults and the end ----------------------------------------------------------------------

    def lose(self, node: Node, sig: int) -> int:
        """The node's host lost (SIGKILL) or frozen (SIGSTOP): every process of it at once.
        Stopped first (a stopped process forks no more), so the tree is whole when killed."""
        assert node.proc is not None
        count = signal_tree(node.proc.pid, signal.SIGSTOP)
        if sig != signal.SIGSTOP:
            signal_tree(node.proc.pid, sig)
        return count

    def __exit__(self, *exc: object) -> None:
        for node in [*self.nodes, self.monitor]:
            if node.proc is not None and node.proc.poll() is None:
                self.lose(node, signal.SIGKILL)
                node.proc.wait(30)
        # Whatever else ran there (a child that outlived its parent): by its working directory.
        for entry in os.listdir("/proc"):
            with contextlib.suppress(OSError):
                if entry.isdigit() and os.readlink(f"/proc/{entry}/cwd").startswith(str(self.dir)):
                    os.kill(int(entry), signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
