"""`python -m latentmas_mesh.gateway [--connect URL] [--http-host H] [--http-port P]`."""

from __future__ import annotations

import argparse

from latentmas_mesh.gateway.server import serve
from latentmas_mesh.gateway.settings import GatewaySettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m latentmas_mesh.gateway")
    parser.add_argument("--connect", help="The broker's endpoint.")
    parser.add_argument("--http-host", help="Address to bind.")
    parser.add_argument("--http-port", type=int, help="Port to bind (0: a free one).")
    parsed = parser.parse_args(argv)
    flags = {key: value for key, value in vars(parsed).items() if value is not None}
    serve(GatewaySettings(**flags))


if __name__ == "__main__":
    main()
