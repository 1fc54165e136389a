"""What a template (or TLS) costs per request: the same GET, closed loop, one core.

    python -m bench.templated [--seconds 3] [--conns 64] [--core 1] [--nginx-core 0]
                              [--origin http://… --tls-origin https://…]

``make bench`` passes the origins of its own ``FlowNginx`` (``templated`` in its JSON);
alone, the module starts one.

Runs one nginx (``bench.nginx.FlowNginx``, ``/api/me``, plain and TLS) and, one after the
other in this process, the closed loop of each row against it; CPU is this process's
over the measured seconds:

* ``static``: no template (pre-encoded bytes, the fast engine as ever);
* ``vars``: ``Authorization: Bearer {{token}}`` from the plan's ``vars`` (fast engine:
  rendered once, so the same bytes as ``static``);
* ``render``: that header plus ``X-Request-Id: {{$uuid}}`` (fast engine: the head
  compiled once, ``CompiledStep.compile``, its references rendered per request, no
  virtual user);
* ``render_flow``: the same plan on the flow engine (a virtual user per arrival,
  ``pool.py``), as every templated plan ran before issue 17;
* ``tls``: ``static`` over https (``http2: off``, self-signed, ``insecure``) on the fast
  engine (stdlib ``ssl`` under its ``BufferedProtocol``), and ``tls_flow`` the same plan
  on the flow engine, where every https plan ran before.

Figures, never pass/fail; a shared machine moves them by tens of percent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from schemas.control import Assignment
from bench.nginx import FlowNginx
from services.generator.engine import Engine
from services.generator.pacing import Schedule
from services.plan import loader, profile

TLS = {"insecure": True, "http2": "off"}
ROWS = {
    "static": {},
    "vars": {"vars": {"token": "abc.def.ghi"}, "headers": {"Authorization": "Bearer {{token}}"}},
    "render": {"vars": {"token": "abc.def.ghi"},
               "headers": {"Authorization": "Bearer {{token}}", "X-Request-Id": "{{$uuid}}"}},
}


def plan_of(url: str, row: str, conns: int, **fields):
    scheme, _, rest = url.partition("://")
    origin, _, path = rest.partition("/")
    return loader.from_obj({
        "name": f"bench-{row}", "target": f"{scheme}://{origin}", "connections": conns, "timeout": 5,
        "requests": [{"name": "get", "path": "/" + path}], **ROWS[row], **fields})


async def flow_engine(plan, seconds: float) -> Engine:
    prof = profile.from_plan(plan)
    now = time.time()
    a = Assignment(run_id="bench", epoch=1, share=1.0, start_at=now, end_at=now + seconds + 5,
                   profile=prof, plan=plan)
    flow = Engine.of(a, asyncio.get_running_loop(), per_user=True)  # a virtual user per arrival
    flow.start(Schedule(prof, 1.0), time.monotonic())
    return flow


async def measure(engine, seconds: float) -> dict:
    await asyncio.sleep(min(1.0, seconds / 2))  # warm-up: connections open
    await engine.gather()
    engine.take_interval()
    t0, cpu0 = time.monotonic(), time.process_time()
    await asyncio.sleep(seconds)
    iv = engine.take_interval()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    done = iv.completed()
    errors = sum(sum(e.values()) for e in iv.errors)
    await engine.drain(1.0)
    return {"engine": "request" if engine.users is None else "users", "rps": round(done / wall),
            "cpu_us_per_req": round(cpu / max(done, 1) * 1e6, 2), "errors": errors}


async def run(url: str, tls_url: str, seconds: float, conns: int) -> dict:
    loop = asyncio.get_running_loop()
    out = {}
    for row in ROWS:
        engine = Engine(plan_of(url, row, conns, rate=1, duration=1), loop)
        engine.start_closed(conns)
        out[row] = await measure(engine, seconds)
    closed = {"users": conns, "duration": int(seconds) + 5}
    out["render_flow"] = await measure(await flow_engine(plan_of(url, "render", conns, **closed), seconds),
                                       seconds)
    engine = Engine(plan_of(tls_url, "static", conns, rate=1, duration=1, **TLS), loop)
    engine.start_closed(conns)
    out["tls"] = await measure(engine, seconds)
    out["tls_flow"] = await measure(
        await flow_engine(plan_of(tls_url, "static", conns, **closed, **TLS), seconds), seconds)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--core", type=int, default=None)
    p.add_argument("--nginx-core", type=int, default=0)
    p.add_argument("--origin", default=None, help="a running FlowNginx's http origin")
    p.add_argument("--tls-origin", default=None, help="... and its https origin")
    args = p.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    import uvloop

    if args.origin and args.tls_origin:
        print(json.dumps(uvloop.run(run(args.origin + "/api/me", args.tls_origin + "/api/me",
                                        args.seconds, args.conns))))
        return
    with FlowNginx(core=args.nginx_core) as nginx:
        print(json.dumps(uvloop.run(run(nginx.origin + "/api/me", nginx.tls_origin + "/api/me",
                                        args.seconds, args.conns))))


if __name__ == "__main__":
    main()
