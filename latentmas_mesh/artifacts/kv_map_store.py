"""Fitted KV aligners: <root>/<source>__<target>/<version>/, newest by semver.

Each version is a map directory (`kv_map_dir`: manifest.json, weights.safetensors, SHA256SUMS)
that others can read and that is checked whole before use; a `<version>.safetensors` file of
the earlier one-file layout is still read. Fitted offline (the Hugging Face integration's CLI)
and put here. A version, once stored, never
changes (putting other content under it is refused), so loaded aligners are cached by
(pair, version) and the request path reads neither directory nor file after the first request
of a pair (`artifacts.listing` says when new versions become visible).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from latentmas_mesh.alignment.kv import KVAligner
from latentmas_mesh.artifacts.kv_map_dir import read_kv_map, read_manifest, write_kv_map
from latentmas_mesh.artifacts.listing import MISS_REFRESH_S, ListingCache
from latentmas_mesh.artifacts.maps import load_kv_aligner
from latentmas_mesh.artifacts.naming import is_version, pair_directory_name, parse_version
from latentmas_mesh.errors import InvalidRequest, WMatrixNotFound

CACHE_ENTRIES_MAX: Final = 16


def _versions(directory: Path) -> tuple[str, ...]:
    """Stored versions, oldest first: map directories and one-file maps of the earlier layout
    (hidden names are writes in progress)."""
    if not directory.is_dir():
        return ()
    found = set()
    for path in directory.iterdir():
        if path.name.startswith("."):
            continue
        name = path.stem if path.suffix == ".safetensors" and path.is_file() else path.name
        if is_version(name) and (path.is_dir() or path.suffix == ".safetensors"):
            found.add(name)
    return tuple(sorted(found, key=parse_version))


class KVMapStore:
    """Versioned KV aligners per (source, target) pair, cached in memory once loaded."""

    def __init__(self, root: str | Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.root = Path(root)
        self._listing: ListingCache[tuple[str, ...]] = ListingCache(_versions, clock=clock)
        self._cache: OrderedDict[tuple[Path, str], KVAligner] = OrderedDict()

    def put(
        self,
        aligner: KVAligner,
        *,
        source: str,
        target: str,
        version: str,
        provenance: dict[str, Any] | None = None,
    ) -> Path:
        """Store an aligner under `version` as a map directory (it must carry a measured
        quality); `provenance` is the fitter's account for the manifest. Storing the same
        content again is a no-op, other content under an existing version is refused."""
        parse_version(version)
        if aligner.quality is None:
            raise InvalidRequest("a stored KV aligner must carry held-out quality", details={})
        directory = self.root / pair_directory_name(source, target)
        stored = self._read(directory, version) if version in _versions(directory) else None
        if stored is not None:
            if stored.content_hash == aligner.content_hash:
                return self._path(directory, version)
            raise InvalidRequest(
                f"KV maps {source} -> {target} version {version} exist with other content",
                details={"version": version, "stored": stored.content_hash},
            )
        path = directory / version
        write_kv_map(path, aligner, source=source, target=target, version=version,
                     provenance=provenance)  # fmt: skip
        self._listing.invalidate(directory)
        return path

    def manifest(self, source: str, target: str, version: str) -> dict[str, Any] | None:
        """The manifest of a stored version (None for a one-file map of the earlier layout)."""
        path = self.root / pair_directory_name(source, target) / version
        return read_manifest(path) if path.is_dir() else None

    @staticmethod
    def _path(directory: Path, version: str) -> Path:
        folder = directory / version
        return folder if folder.is_dir() else directory / f"{version}.safetensors"

    def _read(self, directory: Path, version: str) -> KVAligner:
        path = self._path(directory, version)
        if path.is_dir():
            return read_kv_map(path)[0]
        return load_kv_aligner(path)

    def versions(self, source: str, target: str) -> tuple[str, ...]:
        """The stored versions of a pair, oldest first (from memory while fresh)."""
        return self._listing.get(self.root / pair_directory_name(source, target))

    def get(self, source: str, target: str, version: str | None) -> tuple[KVAligner, str]:
        """(aligner, version); WMatrixNotFound listing the stored versions when absent."""
        directory = self.root / pair_directory_name(source, target)
        chosen = self._choose(version, self._listing.get(directory))
        if chosen is None:  # a miss looks again (the maps may just have been stored elsewhere)
            listing = self._listing.get(directory, max_age_s=MISS_REFRESH_S)
            chosen = self._choose(version, listing)
        if chosen is None:
            raise WMatrixNotFound(
                f"no KV maps for {source} -> {target}" + (f" version {version}" if version else ""),
                details={"source_model": source, "target_model": target, "version": version,
                         "available": list(self._listing.get(directory))},
            )  # fmt: skip
        key = (directory, chosen)
        aligner = self._cache.get(key)
        if aligner is None:
            aligner = self._read(directory, chosen)
            self._cache[key] = aligner
            while len(self._cache) > CACHE_ENTRIES_MAX:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return aligner, chosen

    @staticmethod
    def _choose(version: str | None, versions: tuple[str, ...]) -> str | None:
        if version is None:
            return versions[-1] if versions else None
        return version if version in versions else None
