"""``SURGE_WORKERS=N``: N engine processes under one generator identity.

The service process runs engine 0 itself (a ``PooledEngine``) and keeps N-1 worker
processes, spawned once at start and reused by every run. Each engine is given the
same schedule and sends only the arrivals ``i ≡ w (mod N)``, so the union is
exactly the schedule; in the closed model each engine runs its own part of the users
(``closed.ClosedLoop``, the same code as in a single engine: ``profile.users_of``). Every second the
service asks the workers for their interval over a socketpair; each answers with its raw
latencies as float64 arrays, which are bucketed together with engine 0's, so the
merged histograms are exactly those one engine would have recorded.

Messages are length-prefixed msgspec msgpack frames (never pickle) over a socketpair per
worker, read and written through asyncio streams: ``Command``s down (a tagged union, one
Struct per verb), a ``Hello`` then ``Part``s up. They are this generator's own, not the bus.
The service takes no run before every worker has said hello (``WorkerPool.ready``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import socket
import struct
import time

import msgspec
import numpy as np
import structlog

from schemas.control import Segment
from schemas.errors import Unavailable
from schemas.plan import Plan
from services.generator.arrivals import owned, tally
from services.generator.engine import Engine
from services.generator.pacing import Schedule, from_params
from services.generator.recorder import Interval

log = structlog.get_logger(__name__)

REPLY_S = 0.5  # a worker slower than this to hand over its second gives it in the next one
RESTARTS_PER_MIN = 5  # a worker that dies more often than this is not started again
READY_S = 60.0  # a spawned worker imports numpy, uvloop, the engine: seconds on a busy host


class SpecPart(msgspec.Struct, array_like=True):
    latency: bytes  # float64 seconds, native byte order
    service: bytes
    errors: dict[str, int]
    late: int
    dropped: int


class Hello(msgspec.Struct, array_like=True, tag="hello"):
    """A worker's first frame: imported, its loop running, ready for commands."""

    worker: int


class Part(msgspec.Struct, array_like=True, tag="part"):
    """One worker's interval."""

    worker: int
    seq: int
    sent: int
    in_flight: int
    specs: list[SpecPart]


# --- the service's commands to a worker: a tagged union, one Struct per verb ------------


class Start(msgspec.Struct, array_like=True, tag="start"):
    """Run the open-model schedule ``Schedule(profile, share, from_s, n0)`` from ``t0``."""

    plan: bytes  # Plan JSON
    seed: int
    t0: float  # CLOCK_MONOTONIC is one clock for every process of the host
    profile: list[Segment]
    share: float
    from_s: float
    n0: float
    skip: float = 0.0  # arrivals before this count are not this start's (a restart)
    arrivals: str = "uniform"  # the schedule's kind, seed and args (pacing.from_params)
    arrival_seed: int = 0
    arrival_args: list[float] = []
    index: int = 0  # the generator's position among the run's (the closed model's users)
    count: int = 1


class Closed(msgspec.Struct, array_like=True, tag="closed"):
    """Run a closed loop of ``users`` users (the generator's; each engine takes its part)."""

    plan: bytes
    seed: int
    users: int
    think_s: float
    t0: float | None = None  # None: now


class Reassign(msgspec.Struct, array_like=True, tag="reassign"):
    """The generator is ``index`` of ``count`` now (a rebalance: its part of the users)."""

    index: int
    count: int


class Rebase(msgspec.Struct, array_like=True, tag="rebase"):
    """Go on with ``Schedule(profile, share, from_s, n0)`` (a rate change)."""

    profile: list[Segment]
    share: float
    from_s: float
    n0: float
    arrivals: str = "uniform"
    arrival_seed: int = 0
    arrival_args: list[float] = []


class Stop(msgspec.Struct, array_like=True, tag="stop"):
    """Stop sending; what is in flight goes on."""


class Take(msgspec.Struct, array_like=True, tag="take"):
    """Answer with the interval so far (a ``Part`` with this ``seq``)."""

    seq: int


class Drain(msgspec.Struct, array_like=True, tag="drain"):
    """Stop, wait up to ``limit_s`` for what is in flight, answer with the last ``Part``."""

    seq: int
    limit_s: float


class Exit(msgspec.Struct, array_like=True, tag="exit"):
    """The service is closing: end the process."""


Command = Start | Closed | Rebase | Reassign | Stop | Take | Drain | Exit

_enc = msgspec.msgpack.Encoder()
_part = msgspec.msgpack.Decoder(Part)
_up = msgspec.msgpack.Decoder(Hello | Part)  # what a worker sends: a hello, then its parts
_command = msgspec.msgpack.Decoder(Command)
_plan = msgspec.json.Decoder(Plan)


def to_part(iv: Interval, worker: int, seq: int, in_flight: int) -> Part:
    specs = [
        SpecPart(iv.latency[i].tobytes(), iv.service[i].tobytes(),
                 iv.errors[i], iv.late[i], iv.dropped[i])
        for i in range(len(iv.latency))
    ]
    return Part(worker, seq, iv.sent, in_flight, specs)


def add_part(iv: Interval, part: Part) -> None:
    iv.sent += part.sent
    for i, s in enumerate(part.specs[: len(iv.latency)]):
        iv.add_batch(i, np.frombuffer(s.latency, dtype=np.float64),
                     np.frombuffer(s.service, dtype=np.float64), s.errors, s.late, s.dropped)


class Channel:
    """Length-prefixed msgpack frames over one end of a socketpair, through asyncio.

    Non-blocking both ways: a worker's second of raw latencies (hundreds of KB) is
    buffered by the transport, never a blocking write that would stall a loop.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def over(cls, sock: socket.socket) -> Channel:
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=1 << 20)
        return cls(reader, writer)

    def send(self, msg: msgspec.Struct) -> None:
        data = _enc.encode(msg)
        self.writer.write(struct.pack("!I", len(data)))
        self.writer.write(data)

    async def recv(self) -> bytes:
        (n,) = struct.unpack("!I", await self.reader.readexactly(4))
        return await self.reader.readexactly(n)

    def close(self) -> None:
        self.writer.close()


class WorkerPool:
    """N-1 worker processes, started once with the service and restarted if one dies.

    A worker that dies (killed, out of memory) is replaced at the same index; a run in
    progress hands the new one its part from the moment of replacement (it sends what
    fell due while it was starting, late, with that lateness in the latencies). The
    arrivals the dead worker owed between its last report and the replacement are
    counted ``dropped``: its share of the load is never silently missing.
    """

    def __init__(self, workers: int) -> None:
        self.workers = max(int(workers), 1)
        self.channels: list[Channel] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self.engine_now: PooledEngine | None = None  # the run whose engine hears the replies
        self._readers: list[asyncio.Task] = []
        self._restarts: list[list[float]] = []  # per worker: loop times of its restarts
        self.restarts = 0  # workers replaced since start (status, tests)
        self.closing = False
        self._hello: list[asyncio.Event] = []  # per worker: its current process said hello
        self._gave_up: set[int] = set()  # workers that kept dying and are not restarted

    async def start(self) -> None:
        for w in range(1, self.workers):
            channel, proc = await self._spawn(w)
            self.channels.append(channel)
            self.procs.append(proc)
            self._readers.append(asyncio.create_task(self._read(w, channel), name=f"engine-worker-{w}"))
            self._restarts.append([])
            self._hello.append(asyncio.Event())
        log.info("engine workers started", workers=self.workers)

    async def ready(self, limit_s: float = READY_S) -> None:
        """Until every worker's current process has said hello (spawned, imported, its loop
        running): a run started after this is sent on time by every engine. Raises
        ``Unavailable`` after ``limit_s``, or at once for a worker that is not restarted."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + limit_s
        for w, hello in enumerate(self._hello, start=1):
            while not hello.is_set():
                if w in self._gave_up:
                    raise Unavailable(f"engine worker {w} keeps dying")
                try:  # a worker that dies meanwhile is replaced: its new process says hello
                    await asyncio.wait_for(hello.wait(), min(max(deadline - loop.time(), 0), 0.5))
                except TimeoutError:
                    if loop.time() >= deadline:
                        raise Unavailable(f"engine worker {w} not ready in {limit_s:g}s") from None
        log.info("engine workers ready", workers=self.workers, took_s=round(loop.time() - began, 3))

    async def _spawn(self, w: int) -> tuple[Channel, multiprocessing.process.BaseProcess]:
        ctx = multiprocessing.get_context("spawn")  # no fork of a loop with live sockets
        mine, theirs = socket.socketpair()
        proc = ctx.Process(target=worker_main, args=(theirs, w, self.workers),
                           name=f"surge-engine-{w}", daemon=True)
        proc.start()  # the child gets its own copy of ``theirs``
        theirs.close()
        return await Channel.over(mine), proc

    async def _read(self, w: int, channel: Channel) -> None:
        while True:
            try:
                msg = _up.decode(await channel.recv())
            except (asyncio.IncompleteReadError, ConnectionError):
                if not self.closing:
                    await self._replace(w)
                return
            except msgspec.DecodeError as exc:
                log.error("bad message from an engine worker", error=str(exc))
                continue
            if isinstance(msg, Hello):
                self._hello[w - 1].set()
            elif self.engine_now is not None:
                self.engine_now.on_part(msg)

    async def _replace(self, w: int) -> None:
        """Worker ``w`` is gone: start another in its place and give it its part of the run."""
        loop = asyncio.get_running_loop()
        died_at = loop.time()
        old = self.procs[w - 1]
        self._hello[w - 1].clear()  # not ready until its replacement says hello
        await loop.run_in_executor(None, old.join, 2.0)
        log.error("engine worker exited", worker=w, exitcode=old.exitcode)
        recent = [t for t in self._restarts[w - 1] if died_at - t < 60.0]
        if len(recent) >= RESTARTS_PER_MIN:
            log.error("engine worker keeps dying: not restarted", worker=w, restarts=len(recent))
            self._gave_up.add(w)
            return
        self.channels[w - 1].close()
        channel, proc = await self._spawn(w)
        if self.closing:
            proc.kill()
            return
        self._restarts[w - 1] = [*recent, died_at]
        self.restarts += 1
        self.channels[w - 1], self.procs[w - 1] = channel, proc
        self._readers[w - 1] = asyncio.create_task(self._read(w, channel), name=f"engine-worker-{w}")
        if self.engine_now is not None:
            self.engine_now.worker_replaced(w, channel)
        log.info("engine worker restarted", worker=w, after_s=round(loop.time() - died_at, 3))

    def engine(self, plan: Plan, loop: asyncio.AbstractEventLoop, seed: int = 0,
               index: int = 0, count: int = 1) -> PooledEngine:
        engine = PooledEngine(self, plan, loop, seed, index, count)
        self.engine_now = engine
        return engine

    def send(self, cmd: Command) -> None:
        for channel in self.channels:
            self.send_to(channel, cmd)

    def send_to(self, channel: Channel, cmd: Command) -> None:
        try:
            channel.send(cmd)
        except (OSError, RuntimeError) as exc:
            log.error("engine worker unreachable", error=str(exc))

    async def close(self) -> None:
        self.closing = True
        self.send(Exit())
        loop = asyncio.get_running_loop()
        for proc in self.procs:
            await loop.run_in_executor(None, proc.join, 2.0)
            if proc.is_alive():
                proc.kill()
        for task in self._readers:
            task.cancel()
        for channel in self.channels:
            channel.close()
        self.channels, self.procs, self._readers, self._hello = [], [], [], []


class PooledEngine(Engine):
    """Engine 0 of the pool, in the service process; drives and merges the workers."""

    def __init__(self, pool: WorkerPool, plan: Plan, loop: asyncio.AbstractEventLoop, seed: int,
                 index: int = 0, count: int = 1) -> None:
        super().__init__(plan, loop, seed=seed, worker=0, workers=pool.workers, index=index, count=count)
        self.pool = pool
        self.seq = 0
        self.worker_in_flight = [0] * len(pool.channels)
        self.replies: asyncio.Queue[Part] = asyncio.Queue()
        self._plan = msgspec.json.encode(plan)
        self._seed = seed
        self._lost_at: dict[int, float] = {}  # worker -> arrivals count when it was last heard

    def worker_replaced(self, w: int, channel: Channel) -> None:
        """A new process stands in for worker ``w``: it takes over its part from now."""
        self.worker_in_flight[w - 1] = 0
        if not self.pacing:
            return
        closed = self.closed
        if closed is not None and closed.fixed is not None:
            self.pool.send_to(channel, Closed(self._plan, self._seed, closed.fixed, closed.think_s, self.t0))
            return
        sched = self.schedule
        assert sched is not None
        n_now = sched.count_at(self.now_s())
        # what the dead worker owed since its last interval reached us: dropped, not hidden
        n_lost = self._lost_at.get(w, n_now)
        tally(owned(n_lost, n_now, w, self.stride), self.table, self._table_array, self.cur.dropped)
        self.pool.send_to(channel, Start(self._plan, self._seed, self.t0, *sched.params(), skip=n_now,
                                         arrivals=sched.arrivals, arrival_seed=sched.seed,
                                         arrival_args=list(sched.args), index=self.index, count=self.count))

    def on_part(self, part: Part) -> None:
        if 0 < part.worker <= len(self.worker_in_flight):
            self.worker_in_flight[part.worker - 1] = part.in_flight
            if self.schedule is not None and not self.closed_loop:
                # the arrivals it has answered for so far (a restart drops what follows)
                self._lost_at[part.worker] = self.schedule.count_at(self.now_s())
        if part.seq == self.seq:
            self.replies.put_nowait(part)
        else:  # late: its counts go into the interval now being recorded
            add_part(self.cur, part)

    def start(self, schedule: Schedule, t0: float) -> None:
        self.pool.send(Start(self._plan, self._seed, t0, *schedule.params(),
                             arrivals=schedule.arrivals, arrival_seed=schedule.seed,
                             arrival_args=list(schedule.args), index=self.index, count=self.count))
        super().start(schedule, t0)

    def start_closed(self, users: int | None = None, think_s: float = 0.0, t0: float | None = None) -> None:
        users = self.plan.connections if users is None else users
        t0 = time.monotonic() if t0 is None else t0  # one clock for every process of the host
        self.pool.send(Closed(self._plan, self._seed, users, think_s, t0))
        super().start_closed(users, think_s, t0)

    def move(self, index: int, count: int) -> None:
        if (index, count) != (self.index, self.count):
            self.pool.send(Reassign(index, count))
        super().move(index, count)

    def rebase(self, schedule: Schedule) -> None:
        self.pool.send(Rebase(*schedule.params(), arrivals=schedule.arrivals, arrival_seed=schedule.seed,
                              arrival_args=list(schedule.args)))
        super().rebase(schedule)

    def stop_pacing(self) -> None:
        if self.pacing:
            self.pool.send(Stop())
        super().stop_pacing()

    def in_flight(self) -> int:
        return super().in_flight() + sum(self.worker_in_flight)

    async def gather(self) -> None:
        """Fold the workers' current second into this engine's interval."""
        self.seq += 1
        seq = self.seq
        self.pool.send(Take(seq))
        await self._collect(seq, REPLY_S)

    async def _collect(self, seq: int, limit_s: float) -> None:
        got, deadline = 0, self.loop.time() + limit_s
        while got < len(self.pool.channels):
            try:
                part = await asyncio.wait_for(self.replies.get(), max(deadline - self.loop.time(), 0))
            except TimeoutError:
                log.warning("engine worker late with its interval", seq=seq)
                return
            if part.seq == seq:
                add_part(self.cur, part)
                got += 1

    async def drain(self, limit_s: float) -> None:
        self.stop_pacing()
        self.seq += 1
        seq = self.seq
        self.pool.send(Drain(seq, limit_s))
        await asyncio.gather(super().drain(limit_s), self._collect(seq, limit_s + 2.0))
        if self.pool.engine_now is self:
            self.pool.engine_now = None


def worker_main(sock: socket.socket, worker: int, workers: int) -> None:
    """A worker process: one engine at a time, driven by the service over ``sock``."""
    # signals are the service's to handle: it drains this worker, or its exit ends the socket
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import uvloop

    uvloop.run(_serve(sock, worker, workers))


def _schedule(cmd: Start | Rebase) -> Schedule:
    return from_params(cmd.profile, cmd.share, cmd.from_s, cmd.n0, cmd.arrivals, cmd.arrival_seed,
                     cmd.arrival_args)


async def _serve(sock: socket.socket, worker: int, workers: int) -> None:
    loop = asyncio.get_running_loop()
    channel = await Channel.over(sock)
    channel.send(Hello(worker))  # WorkerPool.ready(): this engine can take a run now
    engine: Engine | None = None

    def reply(eng: Engine, seq: int) -> None:
        channel.send(to_part(eng.take_interval(), worker, seq, eng.in_flight()))

    async def drain(eng: Engine, cmd: Drain) -> None:
        await eng.drain(cmd.limit_s)
        reply(eng, cmd.seq)

    while True:
        try:
            cmd = _command.decode(await channel.recv())
        except (asyncio.IncompleteReadError, ConnectionError):  # the service is gone
            return
        match cmd:
            case Exit():
                return
            case Start():
                engine = Engine(_plan.decode(cmd.plan), loop, seed=cmd.seed, worker=worker, workers=workers,
                                index=cmd.index, count=cmd.count)
                engine.start(_schedule(cmd), cmd.t0, skip=cmd.skip)
            case Closed():
                engine = Engine(_plan.decode(cmd.plan), loop, seed=cmd.seed, worker=worker, workers=workers)
                engine.start_closed(cmd.users, cmd.think_s, cmd.t0)
            case Take() | Drain() if engine is None:  # nothing running: an empty answer keeps the count
                channel.send(Part(worker, cmd.seq, 0, 0, []))
            case _ if engine is None:
                pass
            case Rebase():
                engine.rebase(_schedule(cmd))
            case Reassign():
                engine.move(cmd.index, cmd.count)
            case Stop():
                engine.stop_pacing()
            case Take():
                reply(engine, cmd.seq)
            case Drain():
                loop.create_task(drain(engine, cmd))
                engine = None
