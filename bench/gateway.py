"""HTTP gateway benchmark: the same align and wmatrix workers reached through HTTP and ZeroMQ.

One AgentMesh (CURVE broker, ledger, one align and one wmatrix worker, the gateway process) on
loopback, one agent. The ZeroMQ side is the SDK, MeshClient under the agent's own CURVE keys
(client -> broker -> worker); the HTTP side is httpx (one keep-alive connection) with the same
agent's bearer token (client -> gateway -> broker -> worker). Both reach the SAME worker, so
what differs is the HTTP leg and what the gateway does with the bytes.

Three comparisons:
  1. KV align of a 64 MiB float16 cache (keys + values), llama-3-8b -> mistral-7b (both 32 layers
     x 8 KV heads x 128: 128 KiB a token, 512 tokens), through POST /api/latentmas/kv-cache/align
     in the binary form (Content-Type and Accept application/vnd.latentmas.frames: codec frames,
     each after a u64 little-endian length) against MeshClient.align_kv_cache. Each side encodes
     its request and decodes the reply to arrays (HTTP: codec.decode(split_frames(body))).
  2. Small requests: a generate of a stored W-matrix (smollm2 -> gemma-3, anchors registered and
     fitted once before; a repeat answers the stored map without fitting), POST
     /api/latentmas/w-matrix/generate (JSON) against MeshClient.generate_w_matrix.
  3. The JSON nested-list form of a 4 MiB float16 cache (32 tokens of the same pair; both ways
     JSON, the answer parsed back with parse_json) against the binary form of the same cache.
     JSON numbers arrive as float32 at the gateway (the JSON edge's float dtype), so the worker
     aligns twice the bytes there: that is what the JSON form costs, and it is counted in.

A floor for the big-cache HTTP figure is measured too: the same binary body POSTed by the same
httpx client to a bare uvicorn ASGI echo (a child process, uvicorn's defaults as the gateway
runs it: httptools, uvloop; the body read whole, then streamed back), with no gateway, no
decode and no ZeroMQ. The HTTP path is the ZeroMQ path (the gateway's connection to the broker
replaces the SDK's) plus that HTTP round trip, so 1 / (1 / ZeroMQ rate + echo time) is what a
gateway on uvicorn and httpx could reach here (noise aside): http_floor_vs_zmq_64mib is the
best ratio this machine allows, http_vs_floor_64mib how much of the gap is the gateway's own.

The KV maps are synthetic (random head maps, as bench/align_service.py builds them); their
quality figures are placeholders set by this script, not measured (heldout_rows = 0 says so).
Throughput is MB/s of input bytes (keys + values as float16) and requests/s. Rounds alternate
HTTP and ZeroMQ (HTTP, ZMQ, HTTP, ZMQ...), so a noisy neighbour hurts both alike; each figure is
its best round. Targets: 64 MiB through HTTP >= 0.7x ZeroMQ MB/s; small requests through HTTP
>= 0.3x ZeroMQ requests/s. json_vs_binary_4mib is JSON throughput / binary throughput (lower
means JSON is slower; no target).

.venv/bin/python bench/gateway.py [--tokens 512] [--json-tokens 32] [--rounds 3]
    [--kv-requests 2] [--small-requests 200] [--json-requests 2] [--quick]
--quick: a smoke run (64 and 8 tokens, one round, few requests); its figures are not the
issue's (the JSON line's kv_input_bytes says what was sent).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from latentmas_mesh import codec
from latentmas_mesh.agents import AgentRegistry
from latentmas_mesh.alignment import KVAligner, geometry_from_registry
from latentmas_mesh.alignment.kernels import HeadMaps
from latentmas_mesh.alignment.quality import AlignmentQuality
from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.client import MeshClient, MeshKeys
from latentmas_mesh.gateway.frames import MEDIA_TYPE, body_bytes, join_frames, split_frames
from latentmas_mesh.protocol.align import AlignKVCacheRequest, AlignKVCacheResponse
from latentmas_mesh.protocol.anchors import RegisterAnchorsRequest
from latentmas_mesh.protocol.json_edge import dump_json, parse_json
from latentmas_mesh.protocol.kv import KVCache, KVCacheMetadata
from latentmas_mesh.protocol.registry import WMATRIX_SERVICE
from latentmas_mesh.protocol.wmatrix import GenerateWMatrixResponse
from latentmas_mesh.registry import default_registry
from latentmas_mesh.testing.agent_mesh import MESH_KEYS, AgentMesh

SOURCE, TARGET = "llama-3-8b", "mistral-7b"  # identical geometry: a synthetic map is cheap
SMALL_SOURCE, SMALL_TARGET = "smollm2-135m-instruct", "gemma-3-270m"
SMALL_METHOD = "orthogonal"
AGENT = "bench"
KV_VERSION = "1.0.0"
UNIFIED_DIM = 16
ANCHOR_ROWS = 400
TIMEOUT_MS = 300_000
PAUSE_S = 0.2
API = "/api/latentmas"
ALIGN_PATH = f"{API}/kv-cache/align"
GENERATE_PATH = f"{API}/w-matrix/generate"
JSON_TYPE = "application/json"
JSON_BYTES_MAX = 1 << 30
# Placeholders, not measurements: heldout_rows = 0 says no row was held out to measure them.
SYNTHETIC_QUALITY = AlignmentQuality(
    cosine_similarity=0.93,
    euclidean_distance=0.12,
    information_retention=0.94,
    confidence=0.91,
    heldout_rows=0,
)
NOW = dt.datetime(2026, 1, 25, 12, 0, tzinfo=dt.UTC)
TARGETS = {"http_vs_zmq_mbps_64mib": 0.7, "http_vs_zmq_rps_small": 0.3}
# (label, figure key, reference key, size key)
TABLE = (
    ("KV align, big cache: ZeroMQ SDK (reference)", "big_zmq", "big_zmq", "big"),
    ("KV align, big cache: HTTP binary form", "big_http", "big_zmq", "big"),
    ("big cache bytes round trip, bare uvicorn echo", "big_echo", "big_zmq", "big"),
    ("floor: ZeroMQ SDK + bare HTTP round trip", "big_floor", "big_zmq", "big"),
    ("generate (stored map): ZeroMQ SDK (reference)", "small_zmq", "small_zmq", ""),
    ("generate (stored map): HTTP JSON", "small_http", "small_zmq", ""),
    ("KV align, small cache: HTTP binary (reference)", "json_binary", "json_binary", "json"),
    ("KV align, small cache: HTTP JSON nested lists", "json_json", "json_binary", "json"),
)


@dataclass
class Site:
    """The running mesh and the two clients of the same agent."""

    mesh: AgentMesh
    url: str
    sdk: MeshClient
    http: Any  # httpx.Client


# ------------------------------------------------------------------------------- the data


def synthetic_aligner(rng: np.random.Generator) -> KVAligner:
    """Random per-head maps (each target head reads the same source head), placeholder quality."""
    source = geometry_from_registry(SOURCE, default_registry())
    target = geometry_from_registry(TARGET, default_registry())
    layers, heads, dim = target.layers, target.kv_heads, target.head_dim
    grid = np.stack(np.meshgrid(np.arange(layers), np.arange(heads), indexing="ij"), axis=-1)
    inputs = np.ascontiguousarray(grid[:, :, None, :], dtype=np.int64)

    def maps() -> HeadMaps:
        weight = rng.standard_normal((layers, heads, dim, dim), dtype=np.float32)
        bias = 0.01 * rng.standard_normal((layers, heads, dim), dtype=np.float32)
        return HeadMaps(inputs, weight / np.float32(np.sqrt(dim)), bias)

    aligner = KVAligner.from_head_maps(
        source, target, maps(), maps(),
        keys_quality=SYNTHETIC_QUALITY, values_quality=SYNTHETIC_QUALITY,
    )  # fmt: skip
    aligner.exchange_quality_ = SYNTHETIC_QUALITY  # the published figure: a placeholder here
    return aligner


def synthetic_anchors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Both small models' activations on the same anchor rows, linear in one 8-d latent."""
    z = rng.standard_normal((ANCHOR_ROWS, 8))
    return (
        (z @ rng.standard_normal((8, 24))).astype(np.float32),
        (z @ rng.standard_normal((8, 32))).astype(np.float32),
    )


def kv_request(rng: np.random.Generator, tokens: int) -> AlignKVCacheRequest:
    """A float16 cache of SOURCE's geometry, `tokens` long, to align to TARGET."""
    geometry = geometry_from_registry(SOURCE, default_registry())
    shape = (geometry.layers, geometry.kv_heads, tokens, geometry.head_dim)
    cache = KVCache(
        source_model=SOURCE,
        keys=rng.standard_normal(shape, dtype=np.float32).astype(np.float16),
        values=rng.standard_normal(shape, dtype=np.float32).astype(np.float16),
        metadata=KVCacheMetadata(
            sequence_length=tokens, context_description="bench", token_count=tokens,
            generated_at=NOW,
        ),
    )  # fmt: skip
    return AlignKVCacheRequest(kv_cache=cache, target_model=TARGET)


def input_bytes(request: AlignKVCacheRequest) -> int:
    return request.kv_cache.keys.nbytes + request.kv_cache.values.nbytes


# ------------------------------------------------------------------------------- the site


def start_site(root: Path) -> Site:
    """Registry with one agent, synthetic KV maps stored, the mesh up, both clients open,
    anchors registered and the small pair's W-matrix fitted once (so generate is a lookup)."""
    import httpx

    state, cache_dir = root / "state", root / "cache"
    with AgentRegistry(state) as registry:
        enrolment = registry.add(AGENT)
    rng = np.random.default_rng(0)
    KVMapStore(cache_dir / "kvmaps").put(
        synthetic_aligner(rng), source=SOURCE, target=TARGET, version=KV_VERSION
    )
    env = {
        "LATENTMAS_CACHE_DIR": str(cache_dir),
        "LATENTMAS_ALIGNMENT_UNIFIED_DIM": str(UNIFIED_DIM),
        "LATENTMAS_LOG_LEVEL": "warning",
    }
    mesh = AgentMesh(state, extra_env=env)
    local = mesh.start(timeout_s=120)
    try:
        keys = MeshKeys(
            secret_key_file=state / "keys" / "secrets" / f"{AGENT}.key_secret",
            broker_key_file=state / MESH_KEYS / "keys" / "broker" / "broker.key",
            ledger_keys_dir=state / MESH_KEYS / "keys" / "workers" / "latentmas.ledger",
        )
        assert keys.agent_id == enrolment.agent.agent_id, "SDK keys are not the HTTP agent's"
        sdk = MeshClient(
            local.broker_url, keys=keys, timeout_ms=TIMEOUT_MS, attempt_timeout_ms=TIMEOUT_MS
        )
        http = httpx.Client(
            base_url=local.gateway_url,
            headers={"authorization": f"Bearer {enrolment.token}"},
            timeout=TIMEOUT_MS / 1000,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        site = Site(mesh, local.gateway_url, sdk, http)
        x, y = synthetic_anchors(rng)
        for model, rows in ((SMALL_SOURCE, x), (SMALL_TARGET, y)):
            anchors = RegisterAnchorsRequest(model=model, anchor_set="corpus:v1", activations=rows)
            sdk.transport.call(WMATRIX_SERVICE, anchors)
        sdk.generate_w_matrix(SMALL_SOURCE, SMALL_TARGET, SMALL_METHOD)  # the one fit
    except BaseException:
        mesh.stop()
        raise
    return site


# ------------------------------------------------------------------------------- the floor


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def echo_server(port: int) -> None:
    """A bare ASGI echo under uvicorn, configured as the gateway's server is: the body read
    whole (one join, as the gateway's read_limited does), then sent back as one view."""
    import uvicorn

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        parts, more = [], True
        while more:
            message = await receive()
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(parts)
        headers = [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": memoryview(body), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
        lifespan="off", server_header=False,
    )  # fmt: skip


def echo_stack(frames: list[Any]) -> tuple[Callable[[], Any], Callable[[], None]]:
    """The echo server in a child process: (one round trip of `frames`' body, a closer)."""
    import httpx

    port = free_port()
    process = mp.get_context("spawn").Process(target=echo_server, args=(port,), daemon=True)
    process.start()
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        timeout=TIMEOUT_MS / 1000,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    )
    headers = {"content-type": MEDIA_TYPE, "content-length": str(body_bytes(frames))}
    deadline = time.monotonic() + 60
    while True:  # until it listens
        try:
            client.get("/")
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or not process.is_alive():
                raise
            time.sleep(0.1)

    def round_trip() -> None:
        response = expect_ok(client.post("/", content=join_frames(frames), headers=headers))
        assert len(response.content) == body_bytes(frames)

    def close() -> None:
        client.close()
        process.kill()
        process.join(5)

    return round_trip, close


# ------------------------------------------------------------------------------- the calls


def expect_ok(response: Any) -> Any:
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
    return response


def http_binary_align(site: Site, request: AlignKVCacheRequest) -> Callable[[], Any]:
    """One binary-form align per call: encode (frames uncopied), POST, decode the answer."""
    counter = itertools.count()
    headers = {"content-type": MEDIA_TYPE, "accept": MEDIA_TYPE}

    def call() -> AlignKVCacheResponse:
        frames = codec.encode(request, request_id=f"http-bin-{next(counter)}")
        length = {"content-length": str(body_bytes(frames))}
        response = expect_ok(
            site.http.post(ALIGN_PATH, content=join_frames(frames), headers={**headers, **length})
        )
        reply = codec.decode(split_frames(response.content)).message
        assert isinstance(reply, AlignKVCacheResponse), type(reply)
        return reply

    return call


def http_json_align(site: Site, request: AlignKVCacheRequest) -> Callable[[], Any]:
    """One JSON-form align per call: dump the nested lists, POST, parse the answer."""
    headers = {"content-type": JSON_TYPE, "accept": JSON_TYPE}

    def call() -> AlignKVCacheResponse:
        response = expect_ok(
            site.http.post(ALIGN_PATH, content=dump_json(request), headers=headers)
        )
        return parse_json(AlignKVCacheResponse, response.content, json_bytes_max=JSON_BYTES_MAX)

    return call


def zmq_align(site: Site, request: AlignKVCacheRequest) -> Callable[[], Any]:
    def call() -> AlignKVCacheResponse:
        return site.sdk.align_kv_cache(request.kv_cache, SOURCE, TARGET)

    return call


def http_generate(site: Site) -> Callable[[], Any]:
    body = {"source_model": SMALL_SOURCE, "target_model": SMALL_TARGET, "method": SMALL_METHOD}

    def call() -> GenerateWMatrixResponse:
        response = expect_ok(site.http.post(GENERATE_PATH, json=body))
        return parse_json(GenerateWMatrixResponse, response.content)

    return call


def zmq_generate(site: Site) -> Callable[[], Any]:
    def call() -> Any:
        return site.sdk.generate_w_matrix(SMALL_SOURCE, SMALL_TARGET, SMALL_METHOD)

    return call


def rate(call: Callable[[], Any], count: int) -> float:
    """Calls per second of `count` calls in a row."""
    time.sleep(PAUSE_S)
    began = time.perf_counter()
    for _ in range(count):
        call()
    return count / (time.perf_counter() - began)


def first_call_s(call: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = call()
    return time.perf_counter() - began, result


# ------------------------------------------------------------------------------- the runs


def measure(site: Site, args: argparse.Namespace) -> tuple[dict[str, float], dict[str, int]]:
    """Best rate of every variant over alternating rounds; first calls check the answers."""
    rng = np.random.default_rng(1)
    big, small = kv_request(rng, args.tokens), kv_request(rng, args.json_tokens)
    calls = {
        "big_http": http_binary_align(site, big),
        "big_zmq": zmq_align(site, big),
        "small_http": http_generate(site),
        "small_zmq": zmq_generate(site),
        "json_json": http_json_align(site, small),
        "json_binary": http_binary_align(site, small),
    }
    big_echo, close_echo = echo_stack(codec.encode(big, request_id="echo"))
    calls = {"big_http": calls.pop("big_http"), "big_zmq": calls.pop("big_zmq"),
             "big_echo": big_echo, **calls}  # fmt: skip
    extras: dict[str, float] = {}
    # First calls: warm every path (the worker loads the maps on the first align) and check
    # that HTTP and ZeroMQ answer the same numbers.
    extras["big_zmq_first_s"], by_zmq = first_call_s(calls["big_zmq"])
    extras["big_http_first_s"], by_http = first_call_s(calls["big_http"])
    assert np.array_equal(by_http.aligned_kv_cache.keys, by_zmq.aligned_kv_cache.keys)
    assert np.array_equal(by_http.aligned_kv_cache.values, by_zmq.aligned_kv_cache.values)
    generated_http, generated_zmq = calls["small_http"](), calls["small_zmq"]()
    assert generated_http.version == generated_zmq.version, "generate fitted again"
    as_json, as_binary = calls["json_json"](), calls["json_binary"]()
    np.testing.assert_allclose(
        np.asarray(as_json.aligned_kv_cache.keys, dtype=np.float32),
        np.asarray(as_binary.aligned_kv_cache.keys, dtype=np.float32),
        rtol=2e-2, atol=2e-2,
    )  # fmt: skip
    big_echo()
    counts = {
        "big_http": args.kv_requests,
        "big_zmq": args.kv_requests,
        "big_echo": args.kv_requests,
        "small_http": args.small_requests,
        "small_zmq": args.small_requests,
        "json_json": args.json_requests,
        "json_binary": args.json_requests,
    }
    best: dict[str, float] = {}
    try:
        for _ in range(args.rounds):
            for name, call in calls.items():  # HTTP, ZMQ, echo, HTTP, ZMQ, JSON, binary
                best[name] = max(best.get(name, 0.0), rate(call, counts[name]))
    finally:
        close_echo()
    # The floor: the ZeroMQ path plus a bare HTTP round trip of the same bytes, as if the
    # gateway added nothing to what uvicorn and httpx cost.
    best["big_floor"] = 1 / (1 / best["big_zmq"] + 1 / best["big_echo"])
    sizes = {"big": input_bytes(big), "json": input_bytes(small)}
    sizes["json_body"] = len(dump_json(small))
    sizes["binary_body"] = body_bytes(codec.encode(big, request_id="size"))
    return {**best, **extras}, sizes


def summarise(
    args: argparse.Namespace, measured: dict[str, float], sizes: dict[str, int]
) -> dict[str, Any]:
    """Every figure for the JSON line: the issue's ratios first, then rates and context."""
    figures: dict[str, Any] = {}
    for _, key, _, size in TABLE:
        rps = measured[key]
        figures[f"{key}_rps"] = round(rps, 3)
        figures[f"{key}_ms_per_request"] = round(1e3 / rps, 3)
        if size:
            figures[f"{key}_mbps"] = round(rps * sizes[size] / 1e6, 3)
    figures["http_vs_zmq_mbps_64mib"] = round(measured["big_http"] / measured["big_zmq"], 3)
    figures["http_vs_zmq_rps_small"] = round(measured["small_http"] / measured["small_zmq"], 3)
    figures["json_vs_binary_4mib"] = round(measured["json_json"] / measured["json_binary"], 3)
    figures["http_floor_vs_zmq_64mib"] = round(measured["big_floor"] / measured["big_zmq"], 3)
    figures["http_vs_floor_64mib"] = round(measured["big_http"] / measured["big_floor"], 3)
    figures["big_http_added_ms"] = round(
        figures["big_http_ms_per_request"] - figures["big_zmq_ms_per_request"], 3
    )
    figures["small_http_added_ms"] = round(
        figures["small_http_ms_per_request"] - figures["small_zmq_ms_per_request"], 3
    )
    figures["targets"] = {name: f">= {value}" for name, value in TARGETS.items()}
    figures["targets_met"] = {name: figures[name] >= value for name, value in TARGETS.items()}
    figures.update(
        pair=[SOURCE, TARGET],
        small_pair=[SMALL_SOURCE, SMALL_TARGET],
        small_method=SMALL_METHOD,
        kv_dtype="float16",
        kv_tokens=args.tokens,
        kv_input_bytes=sizes["big"],
        kv_binary_body_bytes=sizes["binary_body"],
        json_tokens=args.json_tokens,
        json_input_bytes=sizes["json"],
        json_body_bytes=sizes["json_body"],
        maps="synthetic: random head maps; quality figures are placeholders",
        rounds=args.rounds,
        kv_requests_per_round=args.kv_requests,
        small_requests_per_round=args.small_requests,
        json_requests_per_round=args.json_requests,
        big_zmq_first_s=round(measured["big_zmq_first_s"], 3),
        big_http_first_s=round(measured["big_http_first_s"], 3),
        quick=args.quick,
        cpus=os.cpu_count(),
        load_average_1m=round(os.getloadavg()[0], 2),
    )
    return figures


def print_table(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    big_mib, json_mib = figures["kv_input_bytes"] / 2**20, figures["json_input_bytes"] / 2**20
    print(
        f"\ngateway benchmark: HTTP (httpx, one keep-alive connection, bearer token) vs ZeroMQ "
        f"(MeshClient, CURVE), same agent, same workers; best of {args.rounds} rounds, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; synthetic maps (placeholder "
        "quality)"
    )
    print(
        f"big cache: {SOURCE} -> {TARGET}, {args.tokens} tokens float16 ({big_mib:.1f} MiB in); "
        f"small cache: {args.json_tokens} tokens ({json_mib:.1f} MiB in, JSON body "
        f"{figures['json_body_bytes'] / 2**20:.1f} MiB); generate: {SMALL_SOURCE} -> "
        f"{SMALL_TARGET} {SMALL_METHOD}, stored"
    )
    header = f"{'figure':<48}{'req/s':>10}{'MB/s':>10}{'ms/req':>11}{'vs ref':>8}"
    print(header)
    print("-" * len(header))
    for label, key, ref, size in TABLE:
        mbps = f"{figures[f'{key}_mbps']:>10,.1f}" if size else f"{'':>10}"
        print(
            f"{label:<48}{figures[f'{key}_rps']:>10,.2f}{mbps}"
            f"{figures[f'{key}_ms_per_request']:>11,.2f}"
            f"{figures[f'{key}_rps'] / figures[f'{ref}_rps']:>8.2f}"
        )
    print("-" * len(header))
    for name, label in (
        ("http_vs_zmq_mbps_64mib", "big cache, HTTP / ZeroMQ MB/s"),
        ("http_vs_zmq_rps_small", "small requests, HTTP / ZeroMQ req/s"),
    ):
        met = "met" if figures["targets_met"][name] else "NOT MET"
        print(f"{label:<48}{figures[name]:>10.3f}   target >= {TARGETS[name]}: {met}")
    print(
        f"{'small cache, JSON / binary throughput':<48}{figures['json_vs_binary_4mib']:>10.3f}"
        "   (lower: JSON slower; no target)"
    )
    print(
        f"big cache through HTTP vs the floor: {figures['http_vs_floor_64mib']:.2f}; the floor "
        f"itself is {figures['http_floor_vs_zmq_64mib']:.2f}x ZeroMQ (bare uvicorn + httpx)"
    )
    print(
        f"what HTTP adds per request: big cache {figures['big_http_added_ms']:,.1f} ms, "
        f"generate {figures['small_http_added_ms']:.2f} ms; first big request ZeroMQ "
        f"{figures['big_zmq_first_s']:.2f} s, HTTP {figures['big_http_first_s']:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=512, help="big cache tokens (64 MiB)")
    parser.add_argument("--json-tokens", type=int, default=32, help="small cache tokens (4 MiB)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best is kept")
    parser.add_argument("--kv-requests", type=int, default=2, help="big aligns per round")
    parser.add_argument("--small-requests", type=int, default=200, help="generates per round")
    parser.add_argument("--json-requests", type=int, default=2, help="small aligns per round")
    parser.add_argument("--quick", action="store_true", help="smoke run (small, one round)")
    args = parser.parse_args()
    if args.quick:
        args.tokens, args.json_tokens, args.rounds = 64, 8, 1
        args.kv_requests, args.small_requests, args.json_requests = 1, 20, 1
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="latentmas-bench-gateway-"))
    site = start_site(root)
    try:
        measured, sizes = measure(site, args)
    finally:
        site.http.close()
        site.sdk.close()
        site.mesh.stop()
    figures = summarise(args, measured, sizes)
    figures["seconds"] = round(time.monotonic() - started, 1)
    print_table(args, figures)
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
