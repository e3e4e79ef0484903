"""Broker benchmark: our MDP broker against a raw zmq.proxy and the majortomo broker, one run."""

# Each stack is a broker process plus 2 echo worker processes; clients are separate processes.
# A fourth stack, the "Python floor", is the leanest MDP relay this benchmark's author could write
# in Python with pyzmq (RFC 18 framing, one service, no validation, heartbeats, limits, metrics or
# requeues; a DEALER worker and client to match): it is not a product, it shows how much of the gap
# to the raw proxy any Python MDP broker pays (MDP's extra frames, one interpreter call per frame).
# Figures: 64-byte echo requests/s and p50/p99 latency with 1 and 4 concurrent clients; MB/s of
# round trips for 1, 16 and 64 MiB payloads (one client; payload bytes over the median round
# trip); the broker process's own CPU time per request (utime+stime from /proc over the run),
# and the workers' and clients' for context. Ratios are against the raw proxy (the floor of what
# ZeroMQ costs) and majortomo 0.2.0, measured in the same run. The last line is JSON.
#
# .venv/bin/python bench/broker_rate.py [--seconds 3] [--repeats 2]

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ECHO_SERVICE = "latentmas.echo"
SMALL_BYTES = 64
PAYLOAD_MIB = (1, 16, 64)
PAYLOAD_REPEATS = {1: 40, 16: 9, 64: 7}
WORKERS = 2
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ----------------------------------------------------------------------------------- processes


def raw_broker(front: str, back: str) -> None:
    import zmq

    context = zmq.Context()
    frontend = context.socket(zmq.ROUTER)
    frontend.bind(front)
    backend = context.socket(zmq.DEALER)
    backend.bind(back)
    zmq.proxy(frontend, backend)


def raw_worker(back: str) -> None:
    import zmq

    context = zmq.Context()
    rep = context.socket(zmq.REP)
    rep.connect(back)
    while True:
        rep.send_multipart(rep.recv_multipart(copy=False), copy=False)


def majortomo_broker(url: str) -> None:
    import logging

    from majortomo.broker import Broker

    logging.disable(logging.INFO)  # its per-request log calls still run; only output is muted
    Broker(bind=url).run()


def majortomo_worker(url: str) -> None:
    import logging

    from majortomo import Worker, WorkerRequestsIterator

    logging.disable(logging.INFO)
    requests = WorkerRequestsIterator(Worker(url, ECHO_SERVICE.encode()))
    for request in requests:
        requests.send_reply_final(request)


def floor_broker(url: str) -> None:
    """The Python floor: route RFC 18 REQUEST/FINAL with nothing else (see the header comment)."""
    from collections import deque

    import zmq
    from zmq.backend import Socket

    recv, send = Socket.recv, Socket.send
    more = int(zmq.SNDMORE)
    router = zmq.Context().socket(zmq.ROUTER)
    router.bind(url)
    idle: deque[bytes] = deque()
    queued: deque[tuple[bytes, list[Any]]] = deque()

    def to_worker(worker: bytes, client: bytes, body: list[Any]) -> None:
        for part in (worker, b"MDPW02", b"\x02", client, b"", *body[:-1]):
            send(router, part, more, False)
        send(router, body[-1], 0, False)

    while True:
        frame = recv(router, 0, False)
        parts: list[Any] = [frame.bytes]
        while frame.more:
            frame = recv(router, 0, False)
            parts.append(frame.bytes if len(parts) < 4 else frame)
        peer, header, command = parts[0], parts[1], parts[2]
        if header == b"MDPC02":
            if idle:
                to_worker(idle.popleft(), peer, parts[4:])
            else:
                queued.append((peer, parts[4:]))
        elif command == b"\x04":
            for part in (parts[3], b"MDPC02", b"\x03", ECHO_SERVICE.encode(), *parts[5:-1]):
                send(router, part, more, False)
            send(router, parts[-1], 0, False)
            if queued:
                to_worker(peer, *queued.popleft())
            else:
                idle.append(peer)
        elif command == b"\x01":
            idle.append(peer)


def floor_worker(url: str) -> None:
    import zmq

    dealer = zmq.Context().socket(zmq.DEALER)
    dealer.connect(url)
    dealer.send_multipart([b"MDPW02", b"\x01", ECHO_SERVICE.encode()])
    while True:
        frames = dealer.recv_multipart(copy=False)
        dealer.send_multipart([b"MDPW02", b"\x04", frames[2], b"", *frames[4:]], copy=False)


def our_broker(url: str) -> None:
    from broker.server import Broker
    from broker.settings import BrokerSettings
    from latentmas_mesh.log import configure_logging

    configure_logging("json", "warning")
    Broker(BrokerSettings(bind=[url], metrics_port=0, log_level="warning")).serve_forever()


def our_worker(url: str) -> None:
    from latentmas_mesh.log import configure_logging
    from workers.echo import create
    from workers.settings import WorkerSettings

    configure_logging("json", "warning")
    create(WorkerSettings(connect=url)).run()


# -------------------------------------------------------------------------------------- clients


def make_caller(stack: str, url: str) -> tuple[Callable[[Any], Any], Callable[[], None]]:
    """A function doing one echo round trip for the stack, and a closer."""
    import zmq

    if stack == "raw":
        context = zmq.Context()
        req = context.socket(zmq.REQ)
        req.connect(url)

        def call(payload: Any) -> Any:
            req.send(payload, copy=False)
            return req.recv(copy=False)

        return call, lambda: context.destroy(linger=0)
    if stack == "floor":
        context = zmq.Context()
        dealer = context.socket(zmq.DEALER)
        dealer.connect(url)
        request = [b"MDPC02", b"\x01", ECHO_SERVICE.encode()]

        def call(payload: Any) -> Any:
            dealer.send_multipart([*request, payload], copy=False)
            return dealer.recv_multipart(copy=False)

        return call, lambda: context.destroy(linger=0)
    if stack == "majortomo":
        from majortomo import Client

        client = Client(url)
        client.connect()
        service = ECHO_SERVICE.encode()

        def call(payload: Any) -> Any:
            client.send(service, payload)
            return client.recv_all_as_list(timeout=30)

        return call, client.close
    from latentmas_mesh.transport import Transport, TransportSettings

    transport = Transport(TransportSettings(broker_url=url, request_timeout_ms=30_000))

    def call(payload: Any) -> Any:
        return transport.request(ECHO_SERVICE, [payload])

    return call, transport.close


@dataclass(frozen=True)
class ClientJob:
    stack: str
    url: str
    size: int
    seconds: float
    count: int = 0


def client_process(job: ClientJob, start: Any, results: Any) -> None:
    """Warm up, wait for the start signal, then run for `seconds` (or `count` calls)."""
    import numpy as np

    size, seconds, count = job.size, job.seconds, job.count
    payload = memoryview(np.random.default_rng(1).integers(0, 255, size, dtype=np.uint8))
    call, close = make_caller(job.stack, job.url)
    for _ in range(20 if size <= SMALL_BYTES else 1):
        call(payload)
    start.wait()
    cpu_began = time.process_time()
    latencies: list[int] = []
    began = time.perf_counter_ns()
    stop_at = began + int(seconds * 1e9)
    while (count and len(latencies) < count) or (not count and time.perf_counter_ns() < stop_at):
        t0 = time.perf_counter_ns()
        call(payload)
        latencies.append(time.perf_counter_ns() - t0)
    elapsed = (time.perf_counter_ns() - began) / 1e9
    cpu = time.process_time() - cpu_began
    close()
    results.put((latencies, elapsed, cpu))


# ------------------------------------------------------------------------------------ the stack


@dataclass
class Stack:
    name: str
    processes: list[Any] = field(default_factory=list)
    client_url: str = ""
    broker_pid: int = 0

    def start(self, context: Any) -> None:
        """Start broker and workers; pick new ports if another process took ours meanwhile."""
        for _ in range(5):
            self._start_once(context)
            if all(process.is_alive() for process in self.processes):
                return
            self.stop()
        raise RuntimeError(f"the {self.name} stack did not start")

    def _start_once(self, context: Any) -> None:
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        if self.name == "raw":
            back = f"tcp://127.0.0.1:{free_port()}"
            broker = context.Process(target=raw_broker, args=(url, back), daemon=True)
            worker_target, worker_url = raw_worker, back
        elif self.name == "majortomo":
            broker = context.Process(target=majortomo_broker, args=(url,), daemon=True)
            worker_target, worker_url = majortomo_worker, url
        elif self.name == "floor":
            broker = context.Process(target=floor_broker, args=(url,), daemon=True)
            worker_target, worker_url = floor_worker, url
        else:
            broker = context.Process(target=our_broker, args=(url,), daemon=True)
            worker_target, worker_url = our_worker, url
        broker.start()
        self.processes = [broker]
        for _ in range(WORKERS):
            worker = context.Process(target=worker_target, args=(worker_url,), daemon=True)
            worker.start()
            self.processes.append(worker)
        self.client_url = url
        self.broker_pid = broker.pid
        time.sleep(2.5)  # interpreters start and workers register

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.join(5)

    def run_clients(
        self, context: Any, clients: int, size: int, seconds: float, count: int = 0
    ) -> dict[str, float]:
        start = context.Event()
        results = context.Queue()
        procs = [
            context.Process(
                target=client_process,
                args=(ClientJob(self.name, self.client_url, size, seconds, count), start, results),
                daemon=True,
            )
            for _ in range(clients)
        ]
        for proc in procs:
            proc.start()
        time.sleep(1.5 + 0.3 * clients)  # clients import and warm up before the clock starts
        workers = [process.pid for process in self.processes[1:]]
        cpu_before = cpu_seconds(self.broker_pid)
        workers_before = sum(cpu_seconds(pid) for pid in workers)
        start.set()
        gathered = [results.get(timeout=seconds + 120) for _ in procs]
        cpu_after = cpu_seconds(self.broker_pid)
        workers_after = sum(cpu_seconds(pid) for pid in workers)
        for proc in procs:
            proc.join(10)
        latencies = sorted(x for lat, _, _ in gathered for x in lat)
        requests = len(latencies)
        wall = max(elapsed for _, elapsed, _ in gathered)
        return {
            "requests": requests,
            "rps": requests / wall,
            "p50_us": latencies[len(latencies) // 2] / 1e3,
            "p99_us": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1e3,
            # payloads: from the median round trip, which one descheduled call cannot skew
            "mbps": size / (latencies[len(latencies) // 2] / 1e9) / 1e6,
            "broker_cpu_us_per_req": (cpu_after - cpu_before) / requests * 1e6,
            "worker_cpu_us_per_req": (workers_after - workers_before) / requests * 1e6,
            "client_cpu_us_per_req": sum(cpu for _, _, cpu in gathered) / requests * 1e6,
        }


def measure(stack_name: str, seconds: float, context: Any) -> dict[str, float]:
    stack = Stack(stack_name)
    stack.start(context)
    figures: dict[str, float] = {}
    try:
        for clients in (1, 4):
            run = stack.run_clients(context, clients, SMALL_BYTES, seconds)
            figures[f"rps_{clients}c"] = run["rps"]
            figures[f"p50_us_{clients}c"] = run["p50_us"]
            figures[f"p99_us_{clients}c"] = run["p99_us"]
            figures[f"cpu_us_per_req_{clients}c"] = run["broker_cpu_us_per_req"]
            figures[f"worker_cpu_us_per_req_{clients}c"] = run["worker_cpu_us_per_req"]
            figures[f"client_cpu_us_per_req_{clients}c"] = run["client_cpu_us_per_req"]
        for mib in PAYLOAD_MIB:
            run = stack.run_clients(context, 1, mib << 20, 0, count=PAYLOAD_REPEATS[mib])
            figures[f"mbps_{mib}mib"] = run["mbps"]
    finally:
        stack.stop()
    return figures


def best_of(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per figure, the best run (highest rate, lowest latency and CPU): the least disturbed."""
    merged: dict[str, float] = {}
    for key in runs[0]:
        values = [run[key] for run in runs]
        lower_is_better = key.startswith(("p50", "p99", "cpu"))
        merged[key] = min(values) if lower_is_better else max(values)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per small-message run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per stack; best is kept")
    args = parser.parse_args()
    from latentmas_mesh import wire

    context = mp.get_context("spawn")
    stacks = ("raw", "floor", "majortomo", "ours")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in stacks}
    started = time.monotonic()
    for _ in range(args.repeats):
        for name in stacks:  # interleaved, so a noisy neighbour hurts every stack alike
            runs[name].append(measure(name, args.seconds, context))
    results = {name: best_of(runs[name]) for name in stacks}
    raw, floor, mt = results["raw"], results["floor"], results["majortomo"]
    ours = results["ours"]

    rows = [
        ("64 B echo req/s, 1 client", "rps_1c", "{:,.0f}"),
        ("64 B echo req/s, 4 clients", "rps_4c", "{:,.0f}"),
        ("p50 latency us, 1 client", "p50_us_1c", "{:,.0f}"),
        ("p99 latency us, 1 client", "p99_us_1c", "{:,.0f}"),
        ("p50 latency us, 4 clients", "p50_us_4c", "{:,.0f}"),
        ("p99 latency us, 4 clients", "p99_us_4c", "{:,.0f}"),
        ("broker CPU us/request, 4 clients", "cpu_us_per_req_4c", "{:,.1f}"),
        ("broker CPU us/request, 1 client", "cpu_us_per_req_1c", "{:,.1f}"),
        ("worker CPU us/request, 4 clients", "worker_cpu_us_per_req_4c", "{:,.1f}"),
        ("client CPU us/request, 4 clients", "client_cpu_us_per_req_4c", "{:,.1f}"),
        ("1 MiB payload MB/s", "mbps_1mib", "{:,.0f}"),
        ("16 MiB payload MB/s", "mbps_16mib", "{:,.0f}"),
        ("64 MiB payload MB/s", "mbps_64mib", "{:,.0f}"),
    ]
    print(
        f"\nbroker benchmark, {WORKERS} echo workers, best of {args.repeats} runs, "
        f"{os.cpu_count()} CPUs, {time.monotonic() - started:.0f} s; our envelope frames in "
        f"{'C' if wire.ENVELOPE_IN_C else 'Python'}"
    )
    header = (
        f"{'figure':<36}{'raw proxy':>11}{'py floor':>10}{'majortomo':>11}{'ours':>10}"
        f"{'vs raw':>8}{'vs floor':>9}{'vs mt':>7}"
    )
    print(header)
    print("-" * len(header))
    for label, key, fmt in rows:
        print(
            f"{label:<36}{fmt.format(raw[key]):>11}{fmt.format(floor[key]):>10}"
            f"{fmt.format(mt[key]):>11}{fmt.format(ours[key]):>10}{ours[key] / raw[key]:>8.2f}"
            f"{ours[key] / floor[key]:>9.2f}{ours[key] / mt[key]:>7.2f}"
        )
    summary = {
        "rps_4c_vs_majortomo": ours["rps_4c"] / mt["rps_4c"],
        "rps_4c_vs_raw": ours["rps_4c"] / raw["rps_4c"],
        "cpu_per_req_vs_majortomo": ours["cpu_us_per_req_4c"] / mt["cpu_us_per_req_4c"],
        "mbps_64mib_vs_raw": ours["mbps_64mib"] / raw["mbps_64mib"],
        "mbps_64mib_majortomo_vs_raw": mt["mbps_64mib"] / raw["mbps_64mib"],
        "rps_4c_floor_vs_raw": floor["rps_4c"] / raw["rps_4c"],
        "rps_4c_vs_floor": ours["rps_4c"] / floor["rps_4c"],
        "cpu_per_req_vs_floor": ours["cpu_us_per_req_4c"] / floor["cpu_us_per_req_4c"],
        "rps_1c_vs_majortomo": ours["rps_1c"] / mt["rps_1c"],
        "rps_1c_vs_raw": ours["rps_1c"] / raw["rps_1c"],
        "targets": {
            "rps_4c_vs_majortomo": ">= 1.3",
            "rps_4c_vs_raw": ">= 0.85",
            "cpu_per_req_vs_majortomo": "<= 0.6",
            "mbps_64mib_vs_raw": ">= 0.9",
        },
        "ours_wire_envelope_in_c": wire.ENVELOPE_IN_C,
        "workers": WORKERS,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        **{
            f"{name}_{key}": round(value, 2)
            for name, figs in results.items()
            for key, value in figs.items()
        },
    }
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()}))


if __name__ == "__main__":
    main()
