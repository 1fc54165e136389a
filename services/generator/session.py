"""A plan compiled for virtual users (``flows.Users``), and one virtual user's session running its steps.

``Program`` compiles every template, extractor and check once per run. A
``VirtualUser`` has its own variables and cookie jar (a client of the engine's
transport, ``transport.py``: the engine's own keep-alive pool for HTTP/1.1 (``pool.py``),
HTTP/2 streams on shared connections, ``h2pool.py``) and runs steps, recording each one into the
engine's current interval under the step's name.

A step's outcome: a transport failure (connect, timeout, reset, other) or a failed
extraction ends the iteration (later steps would lack what they need); a failed
status or check is recorded and the flow goes on, as JMeter and k6 do.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from schemas.plan import Flow, Plan, RequestSpec, Step, StepCheck, Think
from services.plan.extract import Checker, Extractor, Response
from services.plan.templating import JsonTemplate, MissingVariable, Splice, Template, render_vars
from services.generator.encode import BODY_METHODS, base_headers, merge_headers, quote_path, request_head
from services.plan.names import as_step, step_name

if TYPE_CHECKING:
    from services.generator.flows import Users

_now = time.monotonic


class Encoded:
    """A step's request compiled for one pool: ``head`` renders the request line and
    every header but Cookie and Content-Length on HTTP/1.1 (``client.Client.send_encoded``
    adds those), the fields on HTTP/2 (``h2frames.H2Fields``); ``body`` gives the body
    bytes or None."""

    __slots__ = ("pool", "head", "body", "head_only")

    def __init__(self, pool: Any, head: Splice, body: Callable[[dict], bytes] | None,
                 head_only: bool) -> None:
        self.pool, self.head, self.body, self.head_only = pool, head, body, head_only


class CompiledStep:
    __slots__ = ("index", "name", "method", "path", "headers", "body", "json", "extractors",
                 "checker", "think", "wants_cookies", "redirects", "encoded", "fields")

    def __init__(self, step: Step, index: int, name: str, rng: random.Random,
                 redirects: int = 0) -> None:
        self.index = index
        self.name = name
        self.method = step.method
        self.path = Template(step.path, rng)
        self.headers = [(k, Template(v, rng)) for k, v in step.headers.items()]
        self.body = Template(step.body, rng) if step.body is not None else None
        self.json = JsonTemplate(step.json, rng) if step.json is not None else None
        self.extractors = [Extractor(var, rule) for var, rule in step.extract.items()]
        self.checker = Checker(step.check)
        self.think = step.think
        self.wants_cookies = any(e.kind == "cookie" for e in self.extractors)
        self.redirects = step.follow_redirects if step.follow_redirects is not None else redirects
        self.encoded: Encoded | None = None
        self.fields: tuple[list, list] | None = None  # (common, the merged fields): render

    def encoder(self, pool: Any, common: list[tuple[str, Template]]) -> Encoded | None:
        """This step's request as ``render`` gives it, encoded the way ``client.Client.send``
        encodes it, with the constant parts joined once (cached for the pool): HTTP/1.1
        bytes, or HTTP/2 fields (``h2pool.H2Pool.compile``). None when it goes the
        general way: redirects to follow."""
        enc = self.encoded
        if enc is not None and enc.pool is pool:
            return enc
        if self.redirects:
            return None
        if pool.protocol == "http/1.1":
            head, body = self.compile(pool.host_header, common, pool.target_prefix)
        else:
            head, body = pool.compile(self, common)
        self.encoded = enc = Encoded(pool, head, body, self.method == "HEAD")
        return enc

    def compile(self, host_header: str, common: list[tuple[str, Template]],
                target_prefix: str = "") -> tuple[Splice, Callable[[dict], bytes] | None]:
        """The one HTTP/1.1 encoding (``encode.request_head``, the fast engine's too) of this
        step: its head, less Cookie and Content-Length, with the constant parts joined
        once, and its body (None: no body, no Content-Length)."""
        fields = merge_headers(base_headers(host_header), common, self.headers,
                               json=self.json is not None)
        return request_head(self.method, self.path, fields, target_prefix), self.body_encoder()

    def body_encoder(self) -> Callable[[dict], bytes] | None:
        """The body's bytes for the variables (None: no body, no Content-Length)."""
        body: Callable[[dict], bytes] | None = None
        if self.json is not None:
            body = self.json.encoder()
        elif self.body is not None:
            text = self.body
            body = (lambda v, data=text.render({}).encode(): data) if text.static else (
                lambda v: text.render(v).encode())
        elif self.method in BODY_METHODS:
            body = lambda v: b""  # noqa: E731 -- "Content-Length: 0", after any Cookie
        return body

    def render(self, base_url: str, common: list[tuple[str, Template]],
               v: dict[str, Any]) -> tuple[str, dict[str, str], bytes | None]:
        """The request this step sends for the variables ``v``: (URL, headers, body bytes).

        ``common`` are the plan's headers, merged with the step's by the one rule
        (``encode.merge_headers``: a step's own win, names compared case-insensitively);
        a ``json`` body sets ``Content-Type: application/json`` unless a header says
        otherwise. The URL's path is %-encoded as ``encode.quote_path`` says.
        Raises ``MissingVariable`` when a template names a variable not in ``v``.
        """
        url = base_url + quote_path(self.path.render(v))
        fields = self.fields
        if fields is None or fields[0] is not common:  # merged once per plan's headers
            self.fields = fields = (common, merge_headers(common, self.headers, json=self.json is not None))
        headers = {k: t if t.__class__ is str else t.render(v) for k, t in fields[1]}
        data = None
        if self.json is not None:
            data = msgspec.json.encode(self.json.render(v))
        elif self.body is not None:
            data = self.body.render(v).encode()
        return url, headers, data


class Program:
    """Everything virtual users need from a plan, compiled once."""

    def __init__(self, plan: Plan, rng: random.Random) -> None:
        self.redirects = plan.follow_redirects
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        flows = list(plan.flows) or [
            Flow(name=r.name, weight=r.weight, steps=[as_step(r)]) for r in plan.requests
        ]
        self.setup_scope = plan.setup.scope if plan.setup else "user"
        self.setup = [
            self._compile(s, step_name(s, "setup", j), rng) for j, s in enumerate(plan.setup.steps)
        ] if plan.setup else []
        self.flows = [
            [self._compile(s, step_name(s, f.name, j), rng) for j, s in enumerate(f.steps)]
            for f in flows
        ]
        self.weights = [f.weight for f in flows]  # flows.Users picks by a weighted table
        self.headers = [(k, Template(v, rng)) for k, v in plan.headers.items()]
        self.vars = render_vars(plan.vars, rng)

    def _compile(self, step: Step, name: str, rng: random.Random) -> CompiledStep:
        if name not in self._index:
            self._index[name] = len(self.names)
            self.names.append(name)
        return CompiledStep(step, self._index[name], name, rng, self.redirects)


def think_s(think: float | Think | None, rng: random.Random) -> float:
    if think is None:
        return 0.0
    if isinstance(think, (int, float)):
        return float(think)
    return rng.uniform(think.min, think.max)


class VirtualUser:
    """One user's variables, cookie jar and HTTP session."""

    def __init__(self, engine: Users, uid: int) -> None:
        self.engine = engine
        self.uid = uid
        self.client = engine.transport.client()
        self.vars: dict[str, Any] = {}
        self.iteration = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything: a fresh user (the open model reuses the object)."""
        e = self.engine
        self.client.clear_cookies()
        if e.shared_cookies:
            self.client.set_cookies(e.shared_cookies, e.base_url)
        self.vars = {**e.program.vars, **e.shared_vars, "__user": self.uid,
                     "__generator": e.index, "__iteration": 0}
        self.iteration = 0

    async def close(self) -> None:
        await self.client.close()

    def cookies(self) -> dict[str, str]:
        return self.client.cookies()

    async def run_steps(self, steps: list[CompiledStep], intended: float | None = None) -> bool:
        """Run steps in order; False when the iteration had to end early.

        With a free connection (HTTP/1.1), or one that takes another stream (HTTP/2),
        steps go as a ``_Chain``: each next step is sent from the previous response's
        callback, one task wake-up for the steps between two think times rather than
        one per request. Anything else (redirects, no free connection: a dial) takes
        ``request``, a coroutine."""
        engine = self.engine
        k, n = 0, len(steps)
        while k < n:
            if k and not engine.running:
                return False
            step = steps[k]
            enc = step.encoder(engine.transport, engine.program.headers)
            if enc is not None and engine.transport.has_idle():
                _, k, ok, pause = await _Chain(self, steps, None).run(k, enc, intended)
            else:
                ok = await self.request(step, intended)
                pause = think_s(step.think, engine.rng) if ok else 0.0
                k += 1
            if not ok:
                return False
            intended = None  # the next step is due when this one ends, or its think time does
            if pause > 0 and (intended := await engine.pause(pause)) is None:
                return False
        return True

    async def loop(self, again: Callable[[], list[CompiledStep] | None]) -> None:
        """The closed model's iterations, while ``again()`` gives one's steps (None: the
        user stops). A step that fails ends its iteration, not the loop. Steps go as a
        ``_Chain`` across iterations too, so a user between think times costs no task
        wake-up at all; otherwise as ``run_steps``."""
        engine = self.engine
        steps, k = again(), 0
        intended: float | None = None  # after a think time: when it ended (``pause``)
        while steps is not None:
            if k >= len(steps) or (k and not engine.running):
                steps, k = again(), 0
                continue
            step = steps[k]
            enc = step.encoder(engine.transport, engine.program.headers)
            if enc is not None and engine.transport.has_idle():
                steps, k, ok, pause = await _Chain(self, steps, again).run(k, enc, intended)
                if steps is None:
                    return
            else:
                ok = await self.request(step, intended)
                pause = think_s(step.think, engine.rng) if ok else 0.0
                k += 1
            intended = None
            if not ok:
                steps, k = again(), 0
            elif pause > 0 and (intended := await engine.pause(pause)) is None:
                return

    def render(self, step: CompiledStep, enc: Encoded | None) -> tuple | None:
        """The step's request for this user's variables; None (recorded) when one is missing."""
        v = self.vars
        try:
            if enc is not None:  # the step's request, constant parts encoded once
                return enc.head.render(v), (enc.body(v) if enc.body is not None else None)
            engine = self.engine
            return step.render(engine.base_url, engine.program.headers, v)
        except MissingVariable:
            self.engine.cur_record(step.index, 0.0, 0.0, "other")
            return None

    async def request(self, step: CompiledStep, intended: float | None) -> bool:
        engine = self.engine
        enc = step.encoder(engine.transport, engine.program.headers)
        req = self.render(step, enc)
        if req is None:
            return False
        sent = _now()
        if intended is None:
            intended = sent
        engine.requests_in_flight += 1
        try:
            if enc is not None:
                head, data = req
                status, resp_headers, body = await self.client.send_encoded(head, data, enc.head_only)
            else:
                url, headers, data = req
                status, resp_headers, body = await self.client.send(step.method, url, headers, data,
                                                                      step.redirects)
        except asyncio.CancelledError:
            done = _now()
            engine.cur_record(step.index, done - intended, done - sent, "timeout")
            raise
        except Exception as exc:  # every client failure is an outcome, never a crash
            done = _now()
            engine.cur_record(step.index, done - intended, done - sent, engine.transport.classify(exc), exc)
            return False
        finally:
            engine.requests_in_flight -= 1
        return self.outcome(step, intended, sent, status, resp_headers, body)

    def outcome(self, step: CompiledStep, intended: float, sent: float, status: int,
                headers: Any, body: bytes) -> bool:
        """A response's checks and extractions, recorded; False when the iteration ends."""
        engine = self.engine
        done = _now()
        if status == 101:  # Switching Protocols, never asked for: not an HTTP response
            engine.cur_record(step.index, done - intended, done - sent, "other")
            return False
        v = self.vars
        r = Response(status, headers, body, self.cookies() if step.wants_cookies else None, done - sent)
        error = step.checker(r, v)
        ok = True
        for ex in step.extractors:
            try:
                v[ex.var] = ex(r, v)
            except LookupError:
                error, ok = "check", False
                break
        engine.cur_record(step.index, done - intended, done - sent, error)
        return ok


class _Chain:
    """A user's steps sent one from the other's response callback, as the fast engine
    sends a closed loop's next request: no future and no task wake-up per request.

    It is the waiter a pool connection completes (``done``/``set_result``/
    ``set_exception``, called in the connection's stack, the connection already free
    again). ``run`` resolves to (steps, next step, ok, think time) when the chain stops:
    a step failed (with ``again``, the closed loop's next iteration: that one goes on
    instead), a think time or a step that must go the general way (no free connection,
    redirects) comes, the steps ran out, or the run stops (``again()`` gave None:
    steps None). Same outcomes and records as ``VirtualUser.request``, step for step.
    """

    __slots__ = ("user", "steps", "again", "fut", "k", "step", "intended", "sent", "over")

    def __init__(self, user: VirtualUser, steps: list[CompiledStep],
                 again: Callable[[], list[CompiledStep] | None] | None) -> None:
        self.user, self.steps, self.again = user, steps, again
        self.fut: asyncio.Future | None = None
        self.k, self.step, self.intended, self.sent = 0, steps[0], 0.0, 0.0
        self.over = False

    async def run(self, k: int, enc: Encoded, intended: float | None) -> tuple:
        self.fut = self.user.engine.loop.create_future()
        self._send(k, enc, intended)
        try:
            return await self.fut
        except asyncio.CancelledError:
            self._cancel()
            raise

    def _send(self, k: int, enc: Encoded, intended: float | None) -> None:
        """Step ``k`` on a free connection (the caller saw one). A failure before
        sending ends the chain, never loops here: the task takes over."""
        user = self.user
        step = self.steps[k]
        self.k, self.step = k, step
        req = user.render(step, enc)
        if req is None:
            return self._end(self.steps, k + 1, False)
        engine = user.engine
        self.sent = sent = _now()
        self.intended = sent if intended is None else intended
        try:
            user.client.start_encoded(req[0], req[1], enc.head_only, self)
        except Exception as exc:  # not sent: encoding (a header beyond latin-1)
            engine.cur_record(step.index, 0.0, 0.0, engine.transport.classify(exc), exc)
            return self._end(self.steps, k + 1, False)
        engine.requests_in_flight += 1

    # --- the connection's side ------------------------------------------------------------
    def done(self) -> bool:
        return self.over

    def set_result(self, result: tuple) -> None:
        try:
            self._responded(*result)
        except BaseException as exc:  # a bug of ours: the user's task shows it
            self._fail(exc)

    def set_exception(self, exc: BaseException) -> None:
        try:
            engine = self.user.engine
            engine.requests_in_flight -= 1
            done = _now()
            engine.cur_record(self.step.index, done - self.intended, done - self.sent,
                              engine.transport.classify(exc), exc)
            self._next(False)
        except BaseException as err:
            self._fail(err)

    # ---------------------------------------------------------------------------------------
    def _responded(self, status: int, headers: Any, body: bytes) -> None:
        user, step = self.user, self.step
        engine = user.engine
        engine.requests_in_flight -= 1
        body = user.client.received(headers, body)
        if not user.outcome(step, self.intended, self.sent, status, headers, body):
            return self._next(False)
        pause = think_s(step.think, engine.rng)
        if pause > 0:
            return self._end(self.steps, self.k + 1, True, pause)
        self._next(True)

    def _next(self, ok: bool) -> None:
        """After step k: the next step, or the next iteration's first (``again``)."""
        engine = self.user.engine
        steps, k = self.steps, self.k + 1
        if not ok or k >= len(steps):
            if self.again is None:
                return self._end(steps, k, ok)
            steps, k = self.again(), 0
            if steps is None:
                return self._end(None, 0, True)
            self.steps = steps
        elif not engine.running:
            return self._end(steps, k, ok)
        enc = steps[k].encoder(engine.transport, engine.program.headers)
        if enc is None or not engine.transport.has_idle():
            return self._end(steps, k, True)
        self._send(k, enc, None)

    def _end(self, steps: list[CompiledStep] | None, k: int, ok: bool, pause: float = 0.0) -> None:
        self.over = True
        if self.fut is not None and not self.fut.done():
            self.fut.set_result((steps, k, ok, pause))

    def _fail(self, exc: BaseException) -> None:
        self.over = True
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(exc)

    def _cancel(self) -> None:
        """The user's task was cancelled (drain): a request in flight counts as a timeout."""
        if self.over:
            return
        self.over = True
        engine = self.user.engine
        engine.requests_in_flight -= 1
        done = _now()
        engine.cur_record(self.step.index, done - self.intended, done - self.sent, "timeout")
