"""How maps are named on disk: pair directories and semantic versions."""

from __future__ import annotations

import re
from urllib.parse import quote

from latentmas_mesh.errors import InvalidRequest

_SEMVER = re.compile(r"^([0-9]{1,6})\.([0-9]{1,6})\.([0-9]{1,6})$")


def pair_directory_name(source: str, target: str) -> str:
    """<source>__<target>, each URL-quoted so any model name is one safe path component."""
    return f"{quote(source, safe='')}__{quote(target, safe='')}"


def is_version(text: str) -> bool:
    """Whether `text` is a MAJOR.MINOR.PATCH version this store writes."""
    return _SEMVER.match(text) is not None


def parse_version(version: str) -> tuple[int, int, int]:
    """ "1.2.3" -> (1, 2, 3); InvalidRequest for anything that is not three decimal numbers."""
    match = _SEMVER.match(version)
    if match is None:
        raise InvalidRequest(
            f"W-matrix version {version!r} is not MAJOR.MINOR.PATCH", details={"version": version}
        )
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch
