"""Client of the operator FTP where integrators find their files (seed 002 §8): stdlib `ftplib`, run in a thread,
one connection per call.

`ensure_drop_folders(org_slug)` makes `/{org_slug}/AccountStatus`, `/RatedCDRs`, `/BilledCDRs` and `/SimOrders`
and may be called any number of times: a folder already there is left as it is, so a retried activity or a
second onboarding of the same organisation changes nothing.

Failures map onto `integrations.errors`: a 5xx answer (login refused, permission denied) is the server's final
word (`RejectedError`, code `ftp_<code>`); connection failures, timeouts and 4xx answers may pass
(`TransientError`).
"""

from __future__ import annotations

import asyncio
import ftplib
import re
from dataclasses import dataclass

from integrations.errors import RejectedError, TransientError

SYSTEM = "ftp"
DROP_FOLDERS = ("AccountStatus", "RatedCDRs", "BilledCDRs", "SimOrders")
# The organisation slug's own rule (api.schemas.Slug): a single safe path segment.
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,63}")


@dataclass(frozen=True)
class DropFolders:
    """The organisation's folders on the FTP, and those this call created (empty when all were there)."""

    paths: tuple[str, ...]
    created: tuple[str, ...]


def _answer_code(exc: ftplib.Error) -> str:
    text = str(exc)
    return text[:3] if text[:3].isdigit() else "error"


class FtpClient:
    def __init__(self, host: str, port: int, username: str, password: str, *, timeout_s: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.timeout_s = timeout_s

    async def ensure_drop_folders(self, org_slug: str) -> DropFolders:
        if not _SLUG.fullmatch(org_slug):
            raise ValueError(f"org_slug {org_slug!r} is not an organisation slug")
        return await asyncio.to_thread(self._ensure_drop_folders, org_slug)

    def _ensure_drop_folders(self, org_slug: str) -> DropFolders:
        root = f"/{org_slug}"
        paths = (root, *(f"{root}/{name}" for name in DROP_FOLDERS))
        try:
            # The operator's server speaks plain FTP (seed 002 §8); FTPS is not offered by it nor by the local one.
            with ftplib.FTP(timeout=self.timeout_s) as ftp:  # noqa: S321
                ftp.connect(self.host, self.port)
                ftp.login(self.username, self.password)
                created = tuple(path for path in paths if self._ensure_folder(ftp, path))
        except ftplib.error_perm as exc:
            raise RejectedError(SYSTEM, f"ftp_{_answer_code(exc)}", str(exc)) from exc
        except (ftplib.error_temp, ftplib.error_reply, ftplib.error_proto) as exc:
            raise TransientError(SYSTEM, f"ftp_{_answer_code(exc)}", str(exc)) from exc
        except (OSError, EOFError) as exc:  # refused, reset, timeout, connection closed mid-answer
            raise TransientError(SYSTEM, "ftp_unreachable", f"{self.host}:{self.port}: {exc!r}") from exc
        return DropFolders(paths=paths, created=created)

    @staticmethod
    def _exists(ftp: ftplib.FTP, path: str) -> bool:
        try:
            ftp.cwd(path)
        except ftplib.error_perm:
            return False
        return True

    def _ensure_folder(self, ftp: ftplib.FTP, path: str) -> bool:
        """True when this call made the folder. A MKD refused because another client made it meanwhile is fine;
        one refused otherwise (no permission) is raised."""
        if self._exists(ftp, path):
            return False
        try:
            ftp.mkd(path)
        except ftplib.error_perm:
            if self._exists(ftp, path):
                return False
            raise
        return True
