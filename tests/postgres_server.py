"""Start and stop a throw-away PostgreSQL server for the tests (unix socket only)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PostgresServer:
    directory: Path
    port: int
    bin_dir: Path
    user: str

    @property
    def url(self) -> str:
        return (
            f"postgresql+psycopg2://{self.user}@/neuromask?host={self.directory}&port={self.port}"
        )

    def stop(self) -> None:
        _run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.directory / "data"),
                "-m",
                "immediate",
                "stop",
            ],
            self.user,
            check=False,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def find_bin_dir() -> Path | None:
    for candidate in [
        shutil.which("initdb"),
        *sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")),
    ]:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate).resolve().parent
    return None


def start_server() -> PostgresServer:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL's initdb was not found")
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    directory = Path(tempfile.mkdtemp(prefix="neuromask-pg-"))
    os.chmod(directory, 0o755)
    if os.geteuid() == 0:
        info = pwd.getpwnam(user)
        os.chown(directory, info.pw_uid, info.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = directory / "data"
    _run([str(bin_dir / "initdb"), "-D", str(data), "-U", user, "-A", "trust", "--no-sync"], user)
    options = f"-k {directory} -p {port} -c listen_addresses='' -c fsync=off"
    _run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(directory / "log"),
            "-w",
            "start",
        ],
        user,
    )
    _run(
        [str(bin_dir / "createdb"), "-h", str(directory), "-p", str(port), "-U", user, "neuromask"],
        user,
    )
    return PostgresServer(directory, port, bin_dir, user)


def _run(command: list[str], user: str, check: bool = True) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", user, "--", *command]
    subprocess.run(command, check=check, capture_output=True, timeout=120)
