"""Contract tests: `integrations.ftp.FtpClient` against the real pyftpdlib server of `make run` and the tests.

The drop folders are made once and found afterwards (twice, concurrently, or partly made before), and each failure
maps onto the error tree: a refused write or login is final, an unreachable server may pass.
"""

from __future__ import annotations

import asyncio
import ftplib
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.processes import free_port, ftp_server_process
from integrations.errors import IntegrationError, RejectedError, TransientError
from integrations.ftp import DROP_FOLDERS, FtpClient
from tests.conftest import LOG_DIR, FtpServer


def client(server: FtpServer, *, password: str | None = None, port: int | None = None) -> FtpClient:
    return FtpClient("127.0.0.1", port or server.port, server.username, password or server.password, timeout_s=5.0)


def new_slug() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


def listing(server: FtpServer, path: str) -> list[str]:
    with ftplib.FTP() as ftp:
        ftp.connect("127.0.0.1", server.port, timeout=5)
        ftp.login(server.username, server.password)
        return sorted(name.rsplit("/", 1)[-1] for name in ftp.nlst(path))


async def test_drop_folders_are_made_under_the_organisation(ftp_server: FtpServer) -> None:
    slug = new_slug()
    result = await client(ftp_server).ensure_drop_folders(slug)
    expected = (f"/{slug}", *(f"/{slug}/{name}" for name in DROP_FOLDERS))
    assert result.paths == expected and result.created == expected
    assert listing(ftp_server, f"/{slug}") == sorted(["AccountStatus", "BilledCDRs", "RatedCDRs", "SimOrders"])
    assert all((ftp_server.root / slug / name).is_dir() for name in DROP_FOLDERS)


async def test_a_second_call_changes_nothing_and_keeps_the_files(ftp_server: FtpServer) -> None:
    slug = new_slug()
    ftp = client(ftp_server)
    await ftp.ensure_drop_folders(slug)
    order_file = ftp_server.root / slug / "SimOrders" / "commande-1.csv"
    order_file.write_text("iccid;imsi\n", encoding="utf-8")
    again = await ftp.ensure_drop_folders(slug)
    assert again.created == ()
    assert order_file.read_text(encoding="utf-8") == "iccid;imsi\n"


async def test_folders_made_before_are_kept_and_the_others_made(ftp_server: FtpServer) -> None:
    slug = new_slug()
    (ftp_server.root / slug / "RatedCDRs").mkdir(parents=True)
    result = await client(ftp_server).ensure_drop_folders(slug)
    assert result.created == tuple(f"/{slug}/{name}" for name in DROP_FOLDERS if name != "RatedCDRs")


async def test_concurrent_calls_make_each_folder_once(ftp_server: FtpServer) -> None:
    slug = new_slug()
    results = await asyncio.gather(*(client(ftp_server).ensure_drop_folders(slug) for _ in range(4)))
    created = [path for result in results for path in result.created]
    assert sorted(created) == sorted(results[0].paths), "every folder made by exactly one call"


@pytest.fixture(scope="module")
def read_only_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """An account the operator has not allowed to write: pyftpdlib's list and read rights only."""
    server = FtpServer(free_port(), "lecteur", secrets.token_urlsafe(24), tmp_path_factory.mktemp("ftp-ro"))
    (server.root / "deja-la").mkdir()
    for name in DROP_FOLDERS:
        (server.root / "deja-la" / name).mkdir()
    proc = ftp_server_process(
        server.port, server.root, server.username, server.password, permissions="elr", log_dir=LOG_DIR
    ).start(timeout_s=60)
    yield server
    proc.stop()


async def test_a_refused_write_is_a_final_integration_error(read_only_server: FtpServer) -> None:
    slug = new_slug()
    with pytest.raises(RejectedError) as info:
        await client(read_only_server).ensure_drop_folders(slug)
    assert isinstance(info.value, IntegrationError) and info.value.retryable is False
    assert info.value.system == "ftp" and info.value.code == "ftp_550"
    assert not (read_only_server.root / slug).exists()


async def test_folders_already_there_need_no_write_right(read_only_server: FtpServer) -> None:
    result = await client(read_only_server).ensure_drop_folders("deja-la")
    assert result.created == ()


async def test_a_refused_login_is_final(ftp_server: FtpServer) -> None:
    with pytest.raises(RejectedError) as info:
        await client(ftp_server, password="not-the-password").ensure_drop_folders(new_slug())
    assert info.value.code == "ftp_530" and not info.value.retryable


async def test_an_unreachable_server_may_be_retried(ftp_server: FtpServer) -> None:
    with pytest.raises(TransientError) as info:
        await client(ftp_server, port=free_port()).ensure_drop_folders(new_slug())
    assert info.value.code == "ftp_unreachable" and info.value.retryable


@pytest.mark.parametrize("slug", ["", "../etc", "a/b", "Org", "-x", "x" * 65])
async def test_only_an_organisation_slug_names_a_folder(ftp_server: FtpServer, slug: str) -> None:
    with pytest.raises(ValueError, match="not an organisation slug"):
        await client(ftp_server).ensure_drop_folders(slug)


def test_the_stack_runs_the_ftp_server_with_the_account_it_gives_the_worker(tmp_path: Path) -> None:
    from infra.secret_settings import unsafe_secrets
    from infra.settings import Settings
    from infra.stack import Stack

    stack = Stack.scratch(tmp_path)
    settings = stack.settings(Settings())
    ftp = next(p for p in stack.infrastructure(settings) if p.name == "ftp")
    worker = stack.worker_process(settings)
    password = settings.ftp_password.get_secret_value()
    assert len(password) >= 32 and ftp.env["FTP_SERVER_PASSWORD"] == worker.env["SIMFLOW_FTP_PASSWORD"] == password
    assert worker.env["SIMFLOW_FTP_PORT"] == str(stack.ports["ftp"]) == ftp.args[ftp.args.index("--port") + 1]
    assert Stack.scratch(tmp_path).settings(Settings()).ftp_password.get_secret_value() == password, "kept per var/"
    assert "SIMFLOW_FTP_PASSWORD" not in unsafe_secrets(Settings(ftp_password="")), "like the SMTP password: optional"
