"""Runs one simulator as an HTTP server: `python -m simulators cfast --port 8101`."""

from __future__ import annotations

import argparse
import importlib

import uvicorn

SIMULATORS = ("cfast", "snaic", "ocs", "stripe_proxy", "sms", "smtp_sink")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m simulators")
    parser.add_argument("name", choices=SIMULATORS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    module = importlib.import_module(f"simulators.{args.name}")
    uvicorn.run(module.create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
