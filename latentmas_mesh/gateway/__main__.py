"""`python -m latentmas_mesh.gateway [--connect URL] [--http-host H] [--http-port P]`: the HTTP
gateway in the foreground until SIGTERM or Ctrl-C (`latentmas gateway` runs this module)."""

from __future__ import annotations

import argparse
import sys

from latentmas_mesh.errors import ProtocolError
from latentmas_mesh.gateway.server import serve
from latentmas_mesh.gateway.settings import GatewaySettings
from latentmas_mesh.log import configure_logging

EXIT_CONFIGURATION = 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latentmas_mesh.gateway")
    parser.add_argument("--connect", help="The broker's endpoint.")
    parser.add_argument("--http-host", help="Address to bind.")
    parser.add_argument("--http-port", type=int, help="Port to bind (0: a free one).")
    parsed = parser.parse_args(argv)
    flags = {key: value for key, value in vars(parsed).items() if value is not None}
    settings = GatewaySettings(**flags)
    configure_logging(settings.log_format, settings.log_level)
    try:
        serve(settings)
    except ProtocolError as error:  # a setting that cannot work: say which, no traceback
        sys.stderr.write(f"latentmas gateway: {error.message}\n")
        raise SystemExit(EXIT_CONFIGURATION) from None


if __name__ == "__main__":
    main()
