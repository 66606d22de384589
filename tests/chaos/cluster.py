"""A throw-away PostgreSQL cluster (and PgBouncer) for the chaos suite, as a pytest plugin.

The chaos scenarios restart, stop and kill backends of PostgreSQL, so they must never touch a
shared server. Loaded with ``-p tests.chaos.cluster`` (``make chaos`` does), this plugin creates
a cluster in a temporary directory with ``initdb``, starts it on ``CHAOS_PG_PORT`` (default 5433)
and points ``DATABASE_URL`` at it before pytest-django reads the settings; the cluster is stopped
and removed when the run ends. Without the plugin ``tests/chaos`` is not collected at all."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Generator
from pathlib import Path

import pytest

PG_BIN_ROOT = Path("/usr/lib/postgresql")


def _pg_bin() -> Path:
    found = os.environ.get("CHAOS_PG_BIN")
    if found:
        return Path(found)
    versions = (
        sorted(PG_BIN_ROOT.iterdir(), key=lambda p: int(p.name)) if PG_BIN_ROOT.is_dir() else []
    )
    if not versions:
        raise pytest.UsageError("No PostgreSQL server binaries (set CHAOS_PG_BIN to their bin/).")
    return versions[-1] / "bin"


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


class Cluster:
    """One PostgreSQL cluster owned by this test run: start, stop, restart, kill backends."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.data = root / "data"
        self.socket_dir = root / "sock"
        self.log = root / "postgresql.log"
        self.bin = _pg_bin()
        # initdb and postgres refuse to run as root: run them as the postgres user then.
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True)
        if self.user:
            user = pwd.getpwnam(self.user)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(self.socket_dir, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\nmax_connections = 300\n"
                # Throw-away data: durability costs only time here.
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "shared_buffers = 64MB\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "restart"
        )

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/rexecutor"

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


_cluster: Cluster | None = None


def get_cluster() -> Cluster:
    if _cluster is None:
        raise RuntimeError("tests/chaos needs its own cluster: run with -p tests.chaos.cluster")
    return _cluster


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None]:
    # A wrapper runs before pytest-django's own hook, which reads DATABASES from DATABASE_URL.
    global _cluster
    port = int(os.environ.get("CHAOS_PG_PORT", "5433"))
    if not port_is_free(port):
        raise pytest.UsageError(f"Port {port} is in use; set CHAOS_PG_PORT to a free port.")
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="rexecutor-chaos-")), port)
    try:
        cluster.init()
        cluster.start()
    except subprocess.CalledProcessError as exc:
        cluster.destroy()
        raise pytest.UsageError(f"Could not start the chaos cluster: {exc.stderr}") from exc
    _cluster = cluster
    os.environ["DATABASE_URL"] = cluster.url
    os.environ.pop("REXECUTOR_TEST_DB_NAME", None)
    early_config.add_cleanup(cluster.destroy)
    return (yield)
