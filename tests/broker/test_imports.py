"""The broker imports only the framing, the wire helpers and the error codes (house rule)."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("pydantic", "latentmas_mesh.codec", "latentmas_mesh.protocol")

CHECK = f"""
import sys
import broker.server
print(sorted(name for name in sys.modules if name in {FORBIDDEN!r}))
"""


def test_broker_server_loads_neither_codec_nor_schemas():
    """In a fresh interpreter, importing broker.server leaves pydantic, codec and protocol out."""
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=60
    )

    assert "[]" == done.stdout.strip()
