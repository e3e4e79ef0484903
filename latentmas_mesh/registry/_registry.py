"""Load the shipped registry file, merge an operator's file over it, and look models up by name."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from latentmas_mesh.errors import ModelNotSupported
from latentmas_mesh.registry._spec import ModelSpec

SHIPPED_FILE = "models.json"
REGISTRY_FILE_BYTES_MAX = 8 << 20
SUGGESTIONS_MAX = 5


class RegistryFileError(ValueError):
    """A registry file (shipped or the operator's) is unreadable, not JSON, or fails validation.

    Raised at start-up, never on the wire: the message names the file and the offending entry.
    """


class TierLevel(BaseModel):
    """One step of the capability-tier scale used by pricing (spec 7.4.2 "Model Tier")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tier: int = Field(ge=1, le=5)
    label: str
    rule: str


class RegistryFile(BaseModel):
    """The JSON document of a registry file; an operator's file may hold only `models`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = 1
    description: str = ""
    tier_scale: tuple[TierLevel, ...] = ()
    families: dict[str, str] = Field(default_factory=dict)
    models: tuple[ModelSpec, ...] = ()


def _key(name: str) -> str:
    """Lookup key: names and aliases match case-insensitively, ignoring outer whitespace."""
    return name.strip().casefold()


class Registry:
    """Immutable set of models with case-insensitive lookup by canonical name or alias."""

    __slots__ = ("_by_key", "_families", "_models", "_tier_scale")

    def __init__(
        self,
        models: Iterable[ModelSpec],
        *,
        families: dict[str, str] | None = None,
        tier_scale: Iterable[TierLevel] = (),
    ) -> None:
        self._models: tuple[ModelSpec, ...] = tuple(models)
        self._families = dict(families or {})
        self._tier_scale = tuple(tier_scale)
        self._by_key = _index(self._models)

    def get(self, name_or_alias: str) -> ModelSpec:
        """The model called `name_or_alias` (any case). Unknown names raise ModelNotSupported
        (resolution "Request model addition") with the closest known names in details."""
        spec = self._by_key.get(_key(name_or_alias))
        if spec is None:
            suggestions = difflib.get_close_matches(
                _key(name_or_alias), list(self._by_key), n=SUGGESTIONS_MAX, cutoff=0.6
            )
            raise ModelNotSupported(
                f"model {name_or_alias!r} is not in the registry",
                details={
                    "model": name_or_alias,
                    "suggestions": [self._by_key[s].name for s in suggestions],
                },
            )
        return spec

    def __contains__(self, name_or_alias: object) -> bool:
        return isinstance(name_or_alias, str) and _key(name_or_alias) in self._by_key

    def __len__(self) -> int:
        return len(self._models)

    def models(self, family: str | None = None) -> list[ModelSpec]:
        """Every model in file order, or only those of `family` (slug or display name, any case)."""
        if family is None:
            return list(self._models)
        wanted = _key(family)
        slugs = {slug for slug, shown in self._families.items() if _key(shown) == wanted}
        slugs.add(wanted)
        return [m for m in self._models if _key(m.family) in slugs]

    def families(self) -> dict[str, str]:
        """Family slug -> display name (slug itself where no display name was given)."""
        shown = {m.family: m.family for m in self._models}
        shown.update({k: v for k, v in self._families.items() if k in shown})
        return shown

    @property
    def tier_scale(self) -> tuple[TierLevel, ...]:
        """The documented meaning of each capability tier."""
        return self._tier_scale


def _index(models: tuple[ModelSpec, ...]) -> dict[str, ModelSpec]:
    """Map every name and alias to its model; a key claimed by two models is an error."""
    by_key: dict[str, ModelSpec] = {}
    for spec in models:
        for key in {_key(spec.name), *(_key(a) for a in spec.aliases)}:
            other = by_key.get(key)
            if other is not None:
                raise RegistryFileError(
                    f"name or alias {key!r} is claimed by both {other.name!r} and {spec.name!r}"
                )
            by_key[key] = spec
    return by_key


def _read_file(text: str, origin: str) -> RegistryFile:
    """Parse and validate one registry document; errors name the origin and the entry."""
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryFileError(f"{origin}: not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise RegistryFileError(f"{origin}: top level must be a JSON object with a 'models' list")
    try:
        return RegistryFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(err, raw) for err in exc.errors()[:10])
        raise RegistryFileError(f"{origin}: {exc.error_count()} problem(s): {problems}") from exc


def _describe(err: ErrorDetails, raw: dict[str, Any]) -> str:
    """One validation error as `models[3] (name) field: message`."""
    loc = list(err["loc"])
    where = ".".join(str(p) for p in loc) or "<root>"
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        entries = raw.get("models")
        if (
            isinstance(entries, list)
            and loc[1] < len(entries)
            and isinstance(entries[loc[1]], dict)
        ):
            where = f"models[{loc[1]}] ({entries[loc[1]].get('name', '?')})" + "".join(
                f".{p}" for p in loc[2:]
            )
    return f"{where}: {err['msg']}"


def _read_path(path: Path) -> RegistryFile:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RegistryFileError(f"{path}: cannot read registry file: {exc}") from exc
    if size > REGISTRY_FILE_BYTES_MAX:
        raise RegistryFileError(f"{path}: {size} bytes exceeds {REGISTRY_FILE_BYTES_MAX}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryFileError(f"{path}: cannot read registry file: {exc}") from exc
    return _read_file(text, str(path))


def _merge(base: RegistryFile, extra: RegistryFile) -> Registry:
    """Operator entries replace shipped ones of the same canonical name; new ones are appended."""
    replaced = {_key(m.name): m for m in extra.models}
    merged = [replaced.pop(_key(m.name), m) for m in base.models]
    merged.extend(m for m in extra.models if _key(m.name) in replaced)
    families = {**base.families, **extra.families}
    return Registry(merged, families=families, tier_scale=extra.tier_scale or base.tier_scale)


def load_registry(extra_path: Path | None = None) -> Registry:
    """The shipped registry, with the operator's file at `extra_path` merged over it.

    Raises RegistryFileError naming the file and entry when either file is invalid, and when a
    name or alias would resolve to two different models after merging.
    """
    shipped_text = resources.files(__package__).joinpath(SHIPPED_FILE).read_text(encoding="utf-8")
    shipped = _read_file(shipped_text, f"shipped {SHIPPED_FILE}")
    extra = _read_path(extra_path) if extra_path is not None else RegistryFile()
    try:
        return _merge(shipped, extra)
    except RegistryFileError as exc:
        origin = str(extra_path) if extra_path is not None else f"shipped {SHIPPED_FILE}"
        raise RegistryFileError(f"{origin}: {exc}") from exc


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    """The registry for hot paths: shipped file plus `MeshSettings().registry_path`, built once."""
    from latentmas_mesh.settings import MeshSettings

    return load_registry(MeshSettings().registry_path)
