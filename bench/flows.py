"""The flow engine's speed: one flow step with one JSON extraction, closed model, one core.

    python -m bench.flows URL_ORIGIN [--users 32] [--seconds 5] [--insecure] [--http2 auto|off|h2c]
                                     [--flow one|three] [--think S]

``--flow three`` is the issue-17 flow against ``bench.nginx.FlowNginx``: each virtual user
logs in once (POST /login, a JSON body, the token extracted by JSONPath), then loops
GET /api/me with ``Authorization: Bearer {{token}}`` and POST /api/orders with a
templated JSON body and a JSONPath check.

Runs ``services.generator.engine.Engine`` with virtual users in this process exactly as the generator
service does (intervals bucketed and encoded every second) against the demo target's
``/api/products`` (a small JSON document), each response checked (status) and a value
extracted by JSONPath. Prints one JSON object: requests/s and requests per CPU-second
(requests/s per core), and the protocol the run spoke (an https origin that offers
``h2`` by ALPN gets HTTP/2 unless ``--http2 off``; ``--http2 h2c`` speaks HTTP/2 without TLS
to an http origin, by prior knowledge). Figures, never pass/fail;
``make bench`` runs it against the demo target. ``--think S`` puts S seconds of think time after every flow step
and reports the closed model's law beside the rate reached: with N users each waiting
think + latency between requests, the rate is N / (think + mean latency) (Little's law
over one user's cycle). ``--canned`` (with ``--flow three``)
swaps the sockets for nginx's canned answers (``bench/canned.py``): the engine's own
cost per request, without the kernel's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time

from schemas.control import Assignment
from services.plan import profile
from services.plan import loader
from services.generator.engine import Engine
from services.generator.pacing import Schedule


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


FLOWS = {
    "one": {"what": "flow engine, 1 step + 1 JSONPath extraction",
            "flows": [{"name": "f", "steps": [{
                "name": "products", "path": "/api/products",
                "extract": {"sku": {"jsonpath": "$.products[0].sku"}}, "check": {"status": 200},
            }]}]},
    "three": {"what": "flow engine, 3 steps: login once per user (JSON body, token by JSONPath); "
                      "GET with Bearer {{token}}; POST with a templated JSON body + JSONPath check",
              "setup": {"scope": "user", "steps": [{
                  "name": "login", "method": "POST", "path": "/login",
                  "json": {"user": "ann-{{__user}}", "password": "pw"},
                  "extract": {"token": {"jsonpath": "$.token"}}}]},
              "flows": [{"name": "shop", "steps": [
                  {"name": "me", "path": "/api/me",
                   "headers": {"Authorization": "Bearer {{token}}"}},
                  {"name": "order", "method": "POST", "path": "/api/orders",
                   "headers": {"Authorization": "Bearer {{token}}"},
                   "json": {"sku": "{{$uuid}}", "qty": 1, "user": "{{__user}}"},
                   "check": {"status": 201,
                             "jsonpath": [{"path": "$.status", "equals": "accepted"}]}},
              ]}]},
}


async def measure(origin: str, users: int, seconds: float, insecure: bool = False,
                  http2: str = "auto", flow: str = "one", think: float = 0.0) -> dict:
    spec = {k: v for k, v in FLOWS[flow].items() if k != "what"}
    if think:
        spec["flows"] = [{**f, "steps": [{**st, "think": think} for st in f["steps"]]}
                         for f in spec["flows"]]
    plan = loader.from_obj({
        "name": "bench-flow", "target": origin, "users": users, "duration": seconds + 1,
        "insecure": insecure, "http2": http2, **spec,
    })
    prof = profile.from_plan(plan)
    now = time.time()
    a = Assignment(run_id="bench", epoch=1, share=1.0, start_at=now, end_at=now + seconds + 1,
                   profile=prof, plan=plan)
    engine = Engine.of(a, asyncio.get_running_loop(), per_user=True)
    t0 = time.monotonic()
    engine.start(Schedule(prof, 1.0), t0)
    await asyncio.sleep(1.0)  # warm-up: connections, users
    engine.take_interval()
    cpu0, w0, done, errors = _cpu(), time.monotonic(), 0, 0
    latency_s = 0.0  # the flow steps' latencies, summed (the mean's numerator)
    for k in range(int(seconds)):
        await asyncio.sleep(max(t0 + 2 + k - time.monotonic(), 0))
        iv = engine.take_interval()
        iv.to_stats(engine.names, run_id="bench", generator_id="b", epoch=1, seq=k, target=0, in_flight=0)
        done += iv.completed()
        latency_s += sum(sum(lat) for lat in iv.latency)
        errors += sum(sum(e.values()) for e in iv.errors)
    cpu, wall = _cpu() - cpu0, time.monotonic() - w0
    transport = engine.users.transport
    protocol = transport.protocol if transport is not None else None
    await engine.drain(1.0)
    out = {"what": FLOWS[flow]["what"], "users": users,
           "protocol": protocol,
           "rps": round(done / wall, 1), "rps_per_cpu_s": round(done / max(cpu, 1e-9), 1),
           "cpu_percent": round(100 * cpu / wall, 1), "errors": errors}
    if think:
        mean = latency_s / max(done, 1)
        law = users / (think + mean)
        out.update(think_s=think, mean_latency_ms=round(mean * 1e3, 3), law_rps=round(law, 1),
                   rps_vs_law=round(done / wall / law, 4))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("origin")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--insecure", action="store_true", help="accept any TLS certificate")
    p.add_argument("--http2", choices=["auto", "off", "h2c"], default="auto")
    p.add_argument("--flow", choices=sorted(FLOWS), default="one")
    p.add_argument("--think", type=float, default=0.0,
                   help="think time after every flow step, seconds (prints the closed model's law)")
    p.add_argument("--canned", action="store_true",
                   help="no sockets: FlowNginx's answers, canned (bench/canned.py; --flow three)")
    args = p.parse_args()
    if args.canned:
        if args.flow != "three":
            p.error("--canned answers the 3-step flow only (--flow three)")
        from bench import canned

        canned.install()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(measure(args.origin, args.users, args.seconds, args.insecure,
                                         args.http2, args.flow, args.think))))


if __name__ == "__main__":
    main()
