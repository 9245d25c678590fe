"""A throwaway PostgreSQL server for tests (Debian's ``postgresql`` package, no Docker).

:func:`postgres_server` runs ``initdb`` into a fresh temporary directory as the ``postgres`` OS
user (initdb refuses to run as root), starts the cluster with ``pg_ctl`` on a free TCP port of
127.0.0.1 with its unix socket inside that directory (so it never collides with a system
cluster), creates a database and yields a ``postgresql+psycopg://`` URL with trust
authentication. On exit it stops the server (``-m immediate``: nothing to keep) and deletes the
directory. Durability is off (``-F``, ``fsync=off``): a test cluster dies with the test run.
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy import make_url

INSTALL_HINT = (
    "PostgreSQL server binaries not found; install them with: apt-get install -y postgresql"
)
OS_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries (or the OS user to run them) are missing on this machine."""


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb and pg_ctl."""
    candidates = [
        Path(path)
        for path in glob.glob("/usr/lib/postgresql/*/bin")
        if os.access(Path(path, "initdb"), os.X_OK) and os.access(Path(path, "pg_ctl"), os.X_OK)
    ]
    if not candidates:
        raise PostgresUnavailable(INSTALL_HINT)

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parent.name.split(".") if part.isdigit())

    return max(candidates, key=version)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(argv: list[str], *, user: str | None) -> list[str]:
    """``argv`` run as ``user`` (via runuser when we are root), else unchanged."""
    if user is None:
        return argv
    return ["runuser", "-u", user, "--", *argv]


def _run(argv: list[str], *, user: str | None, timeout: float = 60) -> None:
    result = subprocess.run(
        _as_postgres(argv, user=user),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


@contextlib.contextmanager
def postgres_server(database: str = "studies_test") -> Iterator[str]:
    """Start a private PostgreSQL cluster; yield the URL of a fresh database in it.

    Raises :class:`PostgresUnavailable` with the install command when the server binaries are
    missing, so a test run fails loudly instead of silently testing only SQLite.
    """
    bindir = find_bindir()
    user: str | None = None
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            owner = pwd.getpwnam(OS_USER)
        except KeyError:
            raise PostgresUnavailable(f"no {OS_USER!r} OS user; {INSTALL_HINT}") from None
        user = OS_USER
    root = Path(tempfile.mkdtemp(prefix="studies-pg-"))
    data, log, port = root / "data", root / "server.log", free_port()
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        try:
            # the cluster's superuser is "postgres" whoever runs initdb, so the URL is fixed
            initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
            _run([*initdb, "-E", "UTF8", "--no-sync"], user=user)
            options = f"-F -c fsync=off -c listen_addresses=127.0.0.1 -p {port} -k {root}"
            _run([*pg_ctl, "-l", str(log), "-o", options, "-w", "-t", "60", "start"], user=user)
            started = True
            createdb = [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port)]
            _run([*createdb, "-U", "postgres", database], user=user)
        except RuntimeError as error:
            server_log = log.read_text() if log.exists() else "(none)"
            raise RuntimeError(f"{error}\nserver log:\n{server_log}") from error
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"
    finally:
        if started:
            with contextlib.suppress(Exception):
                _run([*pg_ctl, "-m", "immediate", "stop"], user=user)
        shutil.rmtree(root, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """Create the empty database ``name`` on the server of ``url``; its URL."""
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:  # CREATE DATABASE needs it
        connection.execute(f'CREATE DATABASE "{name}"')
    return parsed.set(database=name).render_as_string(hide_password=False)
