"""The W-matrix store (section 4.3.3): versioned safetensors + JSON records in a directory."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from latentmas_mesh.alignment._types import METHODS, Method
from latentmas_mesh.alignment.quality import AlignmentQuality
from latentmas_mesh.alignment.wmatrix import WMatrix
from latentmas_mesh.artifacts.files import write_json
from latentmas_mesh.artifacts.listing import MISS_REFRESH_S, ListingCache
from latentmas_mesh.artifacts.maps import load_wmatrix, save_wmatrix
from latentmas_mesh.artifacts.naming import is_version, pair_directory_name, parse_version
from latentmas_mesh.errors import InternalError, InvalidRequest, WMatrixNotFound

if TYPE_CHECKING:
    from latentmas_mesh.protocol.wmatrix import WMatrixStandard

CACHE_ENTRIES_MAX: Final = 64
# Appendix C.2 "Use fallback method": with no method named, hybrid is tried first (4.3.2
# recommends it for production); a named method that is missing falls back in this order.
PREFERENCE: Final[tuple[Method, ...]] = ("hybrid", "orthogonal", "learned")
FALLBACK_ORDER: Final[dict[Method, tuple[Method, ...]]] = {
    "hybrid": ("orthogonal", "learned"),
    "orthogonal": ("hybrid", "learned"),
    "learned": ("hybrid", "orthogonal"),
}


@dataclass(frozen=True)
class WMatrixRecord:
    """One stored W-matrix: section 4.3.3's WMatrixStandard without the arrays, plus its hash.

    Versions are numbered per (source_model, target_model) across methods, so a version alone
    names one map (Appendix C's align request names a version but no method). A new fit of a
    pair bumps MINOR; a change of unified dimension (not interchangeable) bumps MAJOR.
    """

    source_model: str
    target_model: str
    method: Method
    version: str
    unified_dimension: int
    source_dim: int
    target_dim: int
    content_hash: str
    computational_cost: int
    quality: AlignmentQuality | None
    fit_inputs: str | None = None
    """Digest of what the fit read (`fit_inputs_digest`); None for maps stored without it."""

    def quality_metrics(self) -> dict[str, float | int]:
        """Section 4.3.3 qualityMetrics: expected_quality is the held-out mean cosine,
        information_retention the held-out R², both clipped to [0, 1]; cost in multiply-adds."""
        cosine = 0.0 if self.quality is None else self.quality.cosine_similarity
        retention = 0.0 if self.quality is None else self.quality.information_retention
        return {
            "expected_quality": min(max(cosine, 0.0), 1.0),
            "information_retention": min(max(retention, 0.0), 1.0),
            "computational_cost": self.computational_cost,
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["quality"] = None if self.quality is None else self.quality.to_dict()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WMatrixRecord:
        quality = data.get("quality")
        return cls(**{**data, "quality": None if quality is None else AlignmentQuality(**quality)})

    def to_standard(self, wmatrix: WMatrix) -> WMatrixStandard:
        """The protocol's WMatrixStandard message for this record and its arrays."""
        from latentmas_mesh.protocol.quality import WMatrixQualityMetrics
        from latentmas_mesh.protocol.wmatrix import TransformationRules, WMatrixStandard

        return WMatrixStandard(
            version=self.version,
            source_model=self.source_model,
            target_model=self.target_model,
            unified_dimension=self.unified_dimension,
            method=self.method,
            transformation_rules=TransformationRules(
                orthogonal_matrix=None if self.method == "learned" else wmatrix.core_.copy(),
                scaling_factors=wmatrix.scaling_.copy(),
            ),
            quality_metrics=WMatrixQualityMetrics(**self.quality_metrics()),
        )


@dataclass(frozen=True)
class Resolved:
    """What `WMatrixStore.resolve` found; `fallback` says how, when it is not what was asked."""

    wmatrix: WMatrix
    record: WMatrixRecord | None
    fallback: str | None


class WMatrixStore:
    """A directory of W-matrices: <root>/<source>__<target>/<version>.{safetensors,json}.

    Model names are percent-encoded into directory names. Loaded maps are cached in memory by
    content hash (at most CACHE_ENTRIES_MAX, least recently used dropped first).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._cache: OrderedDict[str, WMatrix] = OrderedDict()
        self._listing: ListingCache[tuple[WMatrixRecord, ...]] = ListingCache(_scan_records)

    def _pair_dir(self, source_model: str, target_model: str) -> Path:
        return self.root / pair_directory_name(source_model, target_model)

    def put(
        self,
        wmatrix: WMatrix,
        *,
        source_model: str,
        target_model: str,
        version: str | None = None,
        fit_inputs: str | None = None,
    ) -> WMatrixRecord:
        """Store a fitted map under the next version (or `version`); returns its record.

        Storing content already stored for the pair returns the existing record (idempotent).
        An explicit version that exists with different content raises InvalidRequest.
        `fit_inputs` records what the fit read, so `fitted_from` finds the map again.
        """
        existing = self.records(source_model, target_model)
        for record in existing:
            if record.content_hash == wmatrix.content_hash:
                return record
        chosen = version or _next_version(existing, int(wmatrix.core_.shape[0]))
        parse_version(chosen)
        if any(record.version == chosen for record in existing):
            raise InvalidRequest(
                f"version {chosen} of {source_model} -> {target_model} exists with other content",
                details={"version": chosen},
            )
        record = WMatrixRecord(
            source_model=source_model,
            target_model=target_model,
            method=wmatrix.method,
            version=chosen,
            unified_dimension=int(wmatrix.core_.shape[0]),
            source_dim=wmatrix.n_features_in_,
            target_dim=wmatrix.n_features_out_,
            content_hash=wmatrix.content_hash,
            computational_cost=wmatrix.computational_cost,
            quality=wmatrix.quality_,
            fit_inputs=fit_inputs,
        )
        directory = self._pair_dir(source_model, target_model)
        # The tensors are durable before the record that names them is written.
        save_wmatrix(directory / f"{chosen}.safetensors", wmatrix)
        write_json(directory / f"{chosen}.json", record.to_json())
        self._listing.invalidate(directory)
        return record

    def records(self, source_model: str, target_model: str) -> list[WMatrixRecord]:
        """Every stored record of the pair, oldest version first (from memory while fresh)."""
        return list(self._listing.get(self._pair_dir(source_model, target_model)))

    def fitted_from(
        self, source_model: str, target_model: str, fit_inputs: str
    ) -> WMatrixRecord | None:
        """The newest stored map a fit of exactly `fit_inputs` made, if any: fitting the same
        inputs again would only store another copy of it."""
        directory = self._pair_dir(source_model, target_model)
        for listing in (self._listing.get(directory), self._listing.get(directory, max_age_s=0)):
            found = [record for record in listing if record.fit_inputs == fit_inputs]
            if found:
                return found[-1]
        return None

    def get(
        self,
        source_model: str,
        target_model: str,
        *,
        method: Method | None = None,
        version: str | None = None,
    ) -> tuple[WMatrix, WMatrixRecord]:
        """The map for exactly (pair, method, version); None means newest / any method.

        Raises WMatrixNotFound, whose details list what the pair does have.
        """
        if version is not None:
            parse_version(version)
        if method is not None and method not in METHODS:
            raise InvalidRequest(f"unknown method {method!r}", details={"method": method})
        directory = self._pair_dir(source_model, target_model)
        candidates = _matching(self._listing.get(directory), method, version)
        if not candidates:  # a miss looks again (the map may just have been stored elsewhere)
            listing = self._listing.get(directory, max_age_s=MISS_REFRESH_S)
            candidates = _matching(listing, method, version)
        if not candidates:
            raise self._not_found(source_model, target_model, method, version)
        record = candidates[-1]
        return self._load(record), record

    def resolve(
        self,
        source_model: str,
        target_model: str,
        *,
        method: Method | None = None,
        version: str | None = None,
        compose: Callable[[str, str], WMatrix] | None = None,
    ) -> Resolved:
        """Appendix C.2 "Use fallback method", applied by the store.

        A pinned `version` is exact: it is served or WMatrixNotFound is raised (a caller who
        pinned a version must not silently get another map). Otherwise: the newest map of
        `method` (of PREFERENCE order when None), then the newest of FALLBACK_ORDER[method],
        then `compose(source, target)` (a composition through the unified-space hub), which
        raises WMatrixNotFound itself when it cannot.
        """
        if version is not None:
            wmatrix, record = self.get(source_model, target_model, method=method, version=version)
            return Resolved(wmatrix, record, None)
        order = PREFERENCE if method is None else (method, *FALLBACK_ORDER[method])
        for position, candidate in enumerate(order):
            try:
                wmatrix, record = self.get(source_model, target_model, method=candidate)
            except WMatrixNotFound:
                continue
            fallback = None if position == 0 or method is None else f"method:{candidate}"
            return Resolved(wmatrix, record, fallback)
        if compose is None:
            raise self._not_found(source_model, target_model, method, version)
        return Resolved(compose(source_model, target_model), None, "hub-composition")

    def _not_found(
        self, source_model: str, target_model: str, method: str | None, version: str | None
    ) -> WMatrixNotFound:
        available = [
            {"version": r.version, "method": r.method}
            for r in self.records(source_model, target_model)
        ]
        return WMatrixNotFound(
            f"no W-matrix for {source_model} -> {target_model}"
            + (f" method {method}" if method else "")
            + (f" version {version}" if version else ""),
            details={
                "source_model": source_model,
                "target_model": target_model,
                "method": method,
                "version": version,
                "available": available,
            },
        )

    def _load(self, record: WMatrixRecord) -> WMatrix:
        cached = self._cache.get(record.content_hash)
        if cached is not None:
            self._cache.move_to_end(record.content_hash)
            return cached
        path = self._pair_dir(record.source_model, record.target_model)
        wmatrix = load_wmatrix(path / f"{record.version}.safetensors")
        if wmatrix.content_hash != record.content_hash:
            raise InternalError(
                f"stored W-matrix {record.version} does not match its record's content hash",
                details={"record": record.content_hash, "file": wmatrix.content_hash},
            )
        self._cache[record.content_hash] = wmatrix
        while len(self._cache) > CACHE_ENTRIES_MAX:
            self._cache.popitem(last=False)
        return wmatrix


def fit_inputs_digest(method: Method, unified_dim: int, *anchors: tuple[str, str, str]) -> str:
    """The digest naming one fit: the method, the unified dimension and each side's (model,
    anchor set, anchor content hash). Two fits of one digest read the same numbers."""
    described = json.dumps([method, unified_dim, [list(side) for side in anchors]])
    return f"sha256:{hashlib.sha256(described.encode()).hexdigest()}"


def _next_version(existing: list[WMatrixRecord], unified_dimension: int) -> str:
    if not existing:
        return "1.0.0"
    major, minor, _ = parse_version(existing[-1].version)
    if existing[-1].unified_dimension != unified_dimension:
        return f"{major + 1}.0.0"
    return f"{major}.{minor + 1}.0"


def _scan_records(directory: Path) -> tuple[WMatrixRecord, ...]:
    """The pair's records that have their tensor file, oldest version first."""
    if not directory.is_dir():
        return ()
    found = []
    for path in directory.glob("*.json"):
        if is_version(path.stem) and (directory / f"{path.stem}.safetensors").exists():
            found.append(WMatrixRecord.from_json(json.loads(path.read_text())))
    return tuple(sorted(found, key=lambda record: parse_version(record.version)))


def _matching(
    records: tuple[WMatrixRecord, ...], method: str | None, version: str | None
) -> list[WMatrixRecord]:
    return [
        record
        for record in records
        if (method is None or record.method == method)
        and (version is None or record.version == version)
    ]
