"""The compose file's fixtures (tests/compose_support.py): the parsed file, and the Temporal parts its one-shots run
against."""

from tests.compose_support import compose, mtls_frontend, pki, raw, services, temporal_dev_server  # noqa: F401
