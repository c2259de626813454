"""Child processes of the embedded default (`simflow dev`) and of the test suite.

Each service is a real process (simulators, localstripe, Temporal dev server, worker, API) started
with a readiness probe and stopped as a group on exit, so nothing is left behind on Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parent.parent


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A port free now, never one this process handed out before (the kernel may offer a just-closed port again,
    and two services of one stack would then collide)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


def venv_bin(name: str) -> str:
    """A console script of the running interpreter's environment (temporal, localstripe, …)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is not installed in {Path(sys.executable).parent}")
    return found


def http_ready(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code < 500
        except httpx.HTTPError:
            return False

    return probe


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            return False

    return probe


@dataclass
class ManagedProcess:
    name: str
    args: Sequence[str]
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> ManagedProcess:
        env = {**os.environ, **self.env}
        env.setdefault("PYTHONPATH", str(ROOT))
        stdout: int | IO[bytes] = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("ab")
            stdout = self._log_file
        self.process = subprocess.Popen(  # noqa: S603 - our own commands
            list(self.args),
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_log()
                raise RuntimeError(f"{self.name} exited with code {self.process.returncode} (log: {self.log_path})")
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.name} not ready after {timeout_s:.0f} s (log: {self.log_path})")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends `sig` to the process group; for SIGKILL, also reaps the process and closes its log."""
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, sig)
            if sig == signal.SIGKILL:
                self.process.wait(timeout=10)
                self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self, grace_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            self._close_log()
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        except ProcessLookupError:
            pass
        self._close_log()


def simulator_process(
    name: str, port: int, env: dict[str, str] | None = None, log_dir: Path | None = None
) -> ManagedProcess:
    return ManagedProcess(
        name=name,
        args=[sys.executable, "-m", "simulators", name, "--port", str(port)],
        ready=http_ready(f"http://127.0.0.1:{port}/_sim/health"),
        env=env or {},
        log_path=(log_dir / f"{name}.log") if log_dir else None,
    )


def smtp_sink_process(port: int, smtp_port: int, log_dir: Path | None = None) -> ManagedProcess:
    """The development mail sink: SMTP on `smtp_port`, its page on `port` (simulators/smtp_sink.py)."""
    return simulator_process("smtp_sink", port, env={"SMTP_SINK_SMTP_PORT": str(smtp_port)}, log_dir=log_dir)


def ftp_server_process(
    port: int,
    root: Path,
    username: str,
    password: str,
    *,
    permissions: str | None = None,
    log_dir: Path | None = None,
) -> ManagedProcess:
    """The development FTP server of the file drops (simulators/ftp_server.py), serving `root`."""
    env = {"FTP_SERVER_USER": username, "FTP_SERVER_PASSWORD": password}
    if permissions is not None:
        env["FTP_SERVER_PERMISSIONS"] = permissions
    return ManagedProcess(
        name="ftp",
        args=[sys.executable, "-m", "simulators.ftp_server", "--port", str(port), "--root", str(root)],
        ready=tcp_ready("127.0.0.1", port),
        env=env,
        log_path=(log_dir / "ftp.log") if log_dir else None,
    )


def localstripe_process(port: int, log_dir: Path | None = None) -> ManagedProcess:
    return ManagedProcess(
        name="localstripe",
        args=[venv_bin("localstripe"), "--port", str(port), "--from-scratch"],
        ready=tcp_ready("127.0.0.1", port),
        log_path=(log_dir / "localstripe.log") if log_dir else None,
    )


SEARCH_ATTRIBUTES = {
    "OrgId": "Keyword",
    "CompanyId": "Keyword",
    "Iccid": "Keyword",
    "Msisdn": "Keyword",  # written by workflows started before MsisdnHash only (workflows/_search.py)
    "MsisdnHash": "Keyword",
    "BusinessStatus": "Keyword",
}


def temporal_dev_server_process(
    port: int, ui_port: int, db_file: Path, namespace: str = "default", log_dir: Path | None = None
) -> ManagedProcess:
    db_file.parent.mkdir(parents=True, exist_ok=True)
    args = [
        venv_bin("temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db_file),
        "--namespace",
        namespace,
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
    ]
    for key, kind in SEARCH_ATTRIBUTES.items():
        args += ["--search-attribute", f"{key}={kind}"]
    return ManagedProcess(
        name="temporal",
        args=args,
        ready=tcp_ready("127.0.0.1", port),
        log_path=(log_dir / "temporal.log") if log_dir else None,
    )
