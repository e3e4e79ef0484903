"""`python -m workers KIND`: run worker processes of one kind until SIGTERM or Ctrl-C.

With --concurrency above 1 a supervisor keeps that many processes alive (crashed ones are
restarted with backoff). Every flag is also a LATENTMAS_WORKER_* variable (WorkerSettings); a
flag given wins. `latentmas worker` runs this module, so the library never imports workers.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from latentmas_mesh.log import configure_logging
from workers import worker_kinds
from workers.settings import WorkerSettings
from workers.supervisor import Supervisor, run_worker


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; flags left out are None, so settings fall back to the environment."""
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    parser.add_argument("kind", help="Worker kind, e.g. echo, align, ledger.")
    parser.add_argument("--connect", help="The broker's endpoint.")
    parser.add_argument("--concurrency", type=int, default=1, help="Worker processes to run.")
    parser.add_argument("--dialect", help="rfc18, or majortomo to serve a majortomo broker.")
    parser.add_argument("--curve-secret-key", type=Path, help="This worker's .key_secret.")
    parser.add_argument("--curve-server-key", type=Path, help="The broker's .key file.")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    kinds = worker_kinds()
    if args.kind not in kinds:
        parser.error(f"unknown worker kind {args.kind!r}; known kinds: {', '.join(sorted(kinds))}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the kind's worker here, or a supervisor of `--concurrency` of them."""
    args = parse_arguments(argv)
    given = {
        "connect": args.connect,
        "dialect": args.dialect,
        "curve_secret_key_file": args.curve_secret_key,
        "curve_server_key_file": args.curve_server_key,
    }
    settings = WorkerSettings(**{key: value for key, value in given.items() if value is not None})
    configure_logging(settings.log_format, settings.log_level)
    if args.concurrency == 1:
        run_worker(args.kind, settings)
        return
    supervisor = Supervisor(args.kind, settings, args.concurrency)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    supervisor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
