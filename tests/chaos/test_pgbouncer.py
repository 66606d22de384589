"""The library behind PgBouncer (Debian's ``pgbouncer``), set up as docs/reliability.md says:
enqueues, the admin and the test process go through a ``pool_mode = transaction`` pool; the
workers use a session-mode database alias of the same PgBouncer (LISTEN, the pruner's advisory
lock and the claim path need one server connection for the whole session).

The worker suite's main modules run in a pytest subprocess pointed at PgBouncer."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.chaos.cluster import Cluster, port_is_free

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_DB = "chaos_pgbouncer"
SESSION_ALIAS = f"{TEST_DB}_session"
#: The worker suite's main cases. ``test_worker_notify.py`` is left out on purpose: it LISTENs
#: from the test process itself, through the transaction pool, which is exactly what the
#: set-up forbids.
WORKER_SUITE = [
    "tests/test_worker.py",
    "tests/test_worker_drain.py",
    "tests/test_enqueue.py",
    "tests/test_admin.py",
]


class PgBouncer:
    """A PgBouncer process in front of ``cluster``: transaction pooling by default, and a
    session-mode alias ``SESSION_ALIAS`` of ``TEST_DB`` for the workers."""

    def __init__(self, cluster: Cluster, root: Path, port: int) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        self.port = port
        (root / "users.txt").write_text('"postgres" ""\n')
        (root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{SESSION_ALIAS} = host=127.0.0.1 port={cluster.port} dbname={TEST_DB} pool_mode=session\n"
            f"* = host=127.0.0.1 port={cluster.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {root / 'users.txt'}\n"
            "pool_mode = transaction\nmax_client_conn = 1000\ndefault_pool_size = 40\n"
            # psycopg sends no such parameters, but other clients may.
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {root / 'pgbouncer.log'}\n"
        )
        cmd = [binary, str(root / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            user = pwd.getpwnam("postgres")
            for path in root.iterdir():
                os.chown(path, user.pw_uid, user.pw_gid)
            os.chown(root, user.pw_uid, user.pw_gid)
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 20
        while port_is_free(port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (
                    (root / "pgbouncer.log").read_text()
                    if (root / "pgbouncer.log").exists()
                    else ""
                )
                raise RuntimeError(
                    f"PgBouncer did not start: {self.process.stdout.read() if self.process.stdout else ''}{log}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def pgbouncer(cluster: Cluster) -> Iterator[PgBouncer]:
    port = int(os.environ.get("CHAOS_PGBOUNCER_PORT", "6433"))
    if not port_is_free(port):
        pytest.fail(f"Port {port} is in use; set CHAOS_PGBOUNCER_PORT to a free port.")
    direct = {"host": "127.0.0.1", "port": cluster.port, "user": "postgres", "autocommit": True}
    with psycopg.connect(dbname="postgres", **direct) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}"')
        conn.execute(f'CREATE DATABASE "{TEST_DB}"')
    # Not pytest's tmp_path: its parents are private to root, and PgBouncer runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="rexecutor-pgbouncer-"))
    bouncer = PgBouncer(cluster, root, port)
    yield bouncer
    bouncer.stop()
    shutil.rmtree(root, ignore_errors=True)
    with psycopg.connect(dbname="postgres", **direct) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')


def test_worker_suite_through_pgbouncer_transaction_pooling(pgbouncer: PgBouncer, figures) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "REXECUTOR_", "CHAOS_")) and k != "DJANGO_SETTINGS_MODULE"
    }
    env.update(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{pgbouncer.port}/rexecutor",
        REXECUTOR_TEST_DB_NAME=TEST_DB,
        # Worker subprocesses (tests/settings_worker.py) use the session-mode alias.
        REXECUTOR_TEST_WORKER_DB_NAME=SESSION_ALIAS,
        # Django's advice for transaction pooling (server-side cursors need a transaction).
        REXECUTOR_TEST_DISABLE_SERVER_SIDE_CURSORS="1",
    )
    started = time.monotonic()
    # --reuse-db: the database exists already (made directly above, because PgBouncer keeps
    # server connections to it and PostgreSQL would refuse to drop it at the end).
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *WORKER_SUITE, "-q", "-p", "no:cacheprovider", "--reuse-db"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    figures("worker suite through PgBouncer", summary)
    figures("elapsed", time.monotonic() - started, "s")
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-3000:]
    assert " passed" in summary and "skipped" not in summary.replace(" 0 skipped", ""), summary
