"""Types of the optional C module `_envelope.c` (see wire.py)."""

from collections.abc import Sequence
from typing import Any

def load(
    path: str,
    version: tuple[int, int, int],
    again: type[BaseException],
    terminated: type[BaseException],
    error: type[BaseException],
    eterm: int,
    /,
) -> None: ...
def recv_envelope(handle: int, count: int, flags: int, /) -> tuple[list[Any], bool]: ...
def send_envelope(handle: int, frames: Sequence[object], flags: int, /) -> int: ...
