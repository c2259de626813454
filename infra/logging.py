"""structlog configuration: console in development, JSON when SIMFLOW_LOG_JSON=1; secrets redacted."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(password|secret|token|puk|api_key|authorization|totp)", re.IGNORECASE)


# Secrets recognisable by their shape, wherever they appear in a value: API keys, Stripe keys, webhook
# signing secrets, bearer JWTs.
_SECRET_VALUES = re.compile(
    r"(sfk_[a-z0-9]{12}_[A-Za-z0-9_-]+|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+|whsec_[A-Za-z0-9_-]+"
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)"
)


def scrub(value: str) -> str:
    return _SECRET_VALUES.sub("***", value)


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if _SECRET_KEYS.search(key):
            event_dict[key] = "***"
        elif isinstance(event_dict[key], str):
            event_dict[key] = scrub(event_dict[key])
    return event_dict


# Libraries that log every request or rendering step at INFO: one line per HTTP call (httpx, Stripe's SDK) or
# seven per invoice PDF (WeasyPrint), about 18 lines per top-up for the worker to format and write. Their
# warnings and errors still show; SIMFLOW_LOG_LEVEL=DEBUG shows everything.
CHATTY_LOGGERS = ("httpx", "httpcore", "stripe", "weasyprint", "fontTools")


def configure_logging(level: str | None = None) -> None:
    level_name = (level or os.environ.get("SIMFLOW_LOG_LEVEL", "INFO")).upper()
    logging.basicConfig(level=level_name, format="%(message)s")
    numeric = logging.getLevelName(level_name)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if numeric < logging.INFO else max(logging.WARNING, numeric))
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if os.environ.get("SIMFLOW_LOG_JSON") == "1"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level_name)),
    )
