"""The development FTP server of the operator's file drops (pyftpdlib): `simflow dev` and the tests start it, the
worker's FTP client talks to it as to the operator's own server.

`python -m simulators.ftp_server --port 8021 --root var/ftp`; the account comes from the environment, the password
never on the command line (`ps` shows it): `FTP_SERVER_USER`, `FTP_SERVER_PASSWORD`, and `FTP_SERVER_PERMISSIONS`
(pyftpdlib's letters, default every right; `elr`: read only, as an account the operator has not allowed to write).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

ALL_PERMISSIONS = "elradfmwMT"


def build_server(host: str, port: int, root: Path, user: str, password: str, permissions: str) -> FTPServer:
    root.mkdir(parents=True, exist_ok=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, str(root), perm=permissions)
    handler = type("DropHandler", (FTPHandler,), {"authorizer": authorizer, "banner": "simflow FTP (development)"})
    return FTPServer((host, port), handler)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators.ftp_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    password = os.environ.get("FTP_SERVER_PASSWORD", "")
    if not password:
        parser.error("FTP_SERVER_PASSWORD is not set")
    logging.basicConfig(level=logging.WARNING)
    user = os.environ.get("FTP_SERVER_USER", "simflow")
    permissions = os.environ.get("FTP_SERVER_PERMISSIONS", ALL_PERMISSIONS)
    build_server(args.host, args.port, args.root, user, password, permissions).serve_forever()


if __name__ == "__main__":
    main()
