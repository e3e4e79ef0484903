"""`python -m broker`: run an MDP/0.2 broker in the foreground until SIGTERM or Ctrl-C.

Prints one JSON line on stdout once bound: {"endpoints": [...], "metrics_port": N}. Every flag
is also a LATENTMAS_BROKER_* variable (BrokerSettings); a flag given wins. `latentmas broker`
runs this module, so the library never imports the broker.
"""

from __future__ import annotations

import argparse
import json
import signal
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from broker.server import Broker
from broker.settings import BrokerSettings
from latentmas_mesh.log import configure_logging


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; flags left out are None, so settings fall back to the environment."""
    parser = argparse.ArgumentParser(prog="python -m broker", description=__doc__.splitlines()[0])
    parser.add_argument("--bind", action="append", help="Endpoint to bind; repeat for more.")
    parser.add_argument("--metrics-port", type=int, help="Prometheus port (0 picks a free one).")
    parser.add_argument("--heartbeat-ms", type=int, help="Heartbeat interval.")
    parser.add_argument("--curve-secret-key", type=Path, help="The broker's .key_secret file.")
    parser.add_argument("--curve-client-keys", type=Path, help="Allowed clients' .key files.")
    parser.add_argument("--curve-worker-keys", type=Path, help="Allowed workers' .key files.")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Bind, print where, serve until a stop signal."""
    args = parse_arguments(argv)
    given = {
        "bind": args.bind,
        "metrics_port": args.metrics_port,
        "heartbeat_ms": args.heartbeat_ms,
        "curve_secret_key_file": args.curve_secret_key,
        "curve_client_keys_dir": args.curve_client_keys,
        "curve_worker_keys_dir": args.curve_worker_keys,
    }
    settings = BrokerSettings(**{key: value for key, value in given.items() if value is not None})
    configure_logging(settings.log_format, settings.log_level)
    server = Broker(settings)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    endpoints = server.bind()
    print(json.dumps({"endpoints": endpoints, "metrics_port": server.metrics_port}), flush=True)
    server.run()


if __name__ == "__main__":
    main()
