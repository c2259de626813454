"""The worker's logging: libraries that log each HTTP call or rendering step at INFO are kept to their
warnings, our own loggers follow the root's level, and DEBUG lets everything through."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from infra.logging import CHATTY_LOGGERS, configure_logging


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    yield
    root.handlers[:], root.level = handlers, level
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)
    structlog.reset_defaults()


def test_chatty_libraries_keep_their_warnings_only() -> None:
    configure_logging("INFO")
    for name in ("httpx", "stripe", "weasyprint"):
        library = logging.getLogger(name)
        assert not library.isEnabledFor(logging.INFO), name
        assert library.isEnabledFor(logging.WARNING), name
    assert logging.getLogger("worker").level == logging.NOTSET  # ours follow the root's level


def test_debug_lets_every_library_through() -> None:
    logging.getLogger().setLevel(logging.DEBUG)
    configure_logging("DEBUG")
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
