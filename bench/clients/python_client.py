"""The benchmark client (bench/PROTOCOL.md) on upstream's Python package slim-bindings 3.3.8.

Run as `python python_client.py '<config JSON>'`. Roles: node, pub, sub, requester, responder.
stdout carries one JSON event per line; stdin carries `go` and `stop`.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import slim_bindings

Config = dict[str, Any]
T = TypeVar("T")

HEADER = struct.Struct("<QQ")  # sequence number, send time (CLOCK_MONOTONIC ns)
PROGRESS_EVERY_S = 0.2
REPLY_WAIT = datetime.timedelta(seconds=10)
CONNECT_WAIT_S = 30.0  # upstream keeps retrying an unreachable node
CLOSE_WAIT_S = 3.0


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def encode(seq: int, size: int) -> bytes:
    return HEADER.pack(seq, time.monotonic_ns()) + bytes(max(0, size - HEADER.size))


def admits(config: Config, seq: int, start_ns: int) -> bool:
    """Whether message (or call) `seq` still belongs to the run: within `warmup + count`
    and, with `seconds`, begun less than that long after the first measured one."""
    if seq >= config["warmup"] + config["count"]:
        return False
    seconds = config.get("seconds", 0)
    return seq <= config["warmup"] or seconds <= 0 or time.monotonic_ns() - start_ns < seconds * 1e9


def elapsed_ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


class Commands:
    """`go` and `stop` from stdin; end of input counts as `stop`."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        # A daemon thread, not run_in_executor: a reader blocked on stdin must not hold up exit.
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            if line.strip() == "go":
                self._loop.call_soon_threadsafe(self.go.set)
            elif line.strip() == "stop":
                break
        self._loop.call_soon_threadsafe(self._end)

    def _end(self) -> None:
        self.stop.set()
        self.go.set()  # wakes a role still waiting for `go`; it checks `stop` next

    async def wait_go(self) -> bool:
        """True on `go`, False when the input ended first."""
        await self.go.wait()
        return not self.stop.is_set()


async def unless_stopped(work: Awaitable[T], commands: Commands) -> T | None:
    """`work`'s result, or None once `stop` arrives first (`work` is then cancelled).

    Why not a receive timeout loop: upstream reports a timed-out get_message or
    listen_for_session with the same error types as a closed session (SessionError,
    ReceiveError), so only the message text would tell them apart. Cancelling is safe:
    the binding drops the pending Rust future and ignores its late wake-up.
    """
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(commands.stop.wait())
    await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


async def report_progress(field: str, value: Callable[[], int]) -> None:
    """Prints `progress` every PROGRESS_EVERY_S until cancelled."""
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        emit("progress", **{field: value()})


async def pace(rate: float, begin: float, seq: int) -> None:
    """Sleeps until message `seq` is due when sending `rate` per second from `begin`."""
    if rate > 0:
        wait = begin + seq / rate - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


def service() -> slim_bindings.Service:
    slim_bindings.initialize_with_configs(
        # Upstream logs to stdout, which carries the events: keep it to errors.
        tracing_config=slim_bindings.new_tracing_config_with("error", False, False, []),
        runtime_config=slim_bindings.new_runtime_config(),
        service_config=[slim_bindings.new_service_config()],
    )
    return slim_bindings.get_global_service()


class Client:
    """An app connected to the node, with the timings `ready` reports."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.app_ms = 0.0
        self.connect_ms = 0.0

    async def connect(self) -> None:
        started = time.perf_counter()
        svc = service()
        name = slim_bindings.Name.from_string(self.config["name"])
        self.app = svc.create_app_with_secret(name, self.config["secret"])
        self.app_ms = elapsed_ms(started)
        started = time.perf_counter()
        endpoint = self.config["endpoint"]
        connecting = svc.connect_async(slim_bindings.new_insecure_client_config(endpoint))
        try:
            self.conn = await asyncio.wait_for(connecting, CONNECT_WAIT_S)
        except TimeoutError:
            raise RuntimeError(f"no connection to {endpoint} within {CONNECT_WAIT_S:.0f} s") from None
        await self.app.subscribe_async(name, self.conn)
        self.connect_ms = elapsed_ms(started)

    def session_config(self, kind: slim_bindings.SessionType) -> slim_bindings.SessionConfig:
        reliable = self.config["reliable"]
        mls = slim_bindings.MlsSettings(
            header_integrity_validation_percent=100, max_seen_control_message_ids_size=None
        )
        return slim_bindings.SessionConfig(
            session_type=kind,
            # No retries and no interval make the session unreliable.
            max_retries=self.config["maxRetries"] if reliable else None,
            interval=datetime.timedelta(milliseconds=self.config["intervalMs"]) if reliable else None,
            metadata={},
            mls_settings=mls if self.config["mls"] else None,
        )

    async def create_session(self) -> slim_bindings.Session:
        """A p2p session with members[0], or a group on `channel` with every member joined."""
        members = [slim_bindings.Name.from_string(m) for m in self.config["members"]]
        for member in members:  # the node forwards to a member through this connection
            await self.app.set_route_async(member, self.conn)
        if self.config["session"] == "p2p":
            kind, destination = slim_bindings.SessionType.POINT_TO_POINT, members[0]
        else:
            kind = slim_bindings.SessionType.GROUP
            destination = slim_bindings.Name.from_string(self.config["channel"])
        created = await self.app.create_session_async(self.session_config(kind), destination)
        await created.completion.wait_async()
        if self.config["session"] == "group":
            for member in members:
                await (await created.session.invite_async(member)).wait_async()
        return created.session

    async def accept(self, commands: Commands) -> slim_bindings.Session | None:
        """The session the publisher invites this app to, or None on `stop`."""
        return await unless_stopped(self.app.listen_for_session_async(None), commands)

    async def delete(self, session: slim_bindings.Session | None) -> None:
        if session is None:
            return
        try:
            deleted = await self.app.delete_session_async(session)
            await asyncio.wait_for(deleted.wait_async(), CLOSE_WAIT_S)
        except (TimeoutError, slim_bindings.SlimError) as error:
            # The other side may have ended the session first.
            print(f"deleting the session: {error!r}", file=sys.stderr)


async def start(client: Client, commands: Commands) -> slim_bindings.Session | None:
    """pub and requester: connect, create the session, print `ready`, wait for `go`."""
    await client.connect()
    started = time.perf_counter()
    session = await client.create_session()
    emit("ready", appMs=client.app_ms, connectMs=client.connect_ms, sessionMs=elapsed_ms(started))
    if await commands.wait_go():
        return session
    await client.delete(session)
    return None


async def node(config: Config, commands: Commands) -> None:
    host, port = config["endpoint"].rsplit(":", 1)
    if port == "0":  # the server API does not report the port it bound: pick a free one
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = str(probe.getsockname()[1])
    endpoint = f"{host}:{port}"
    svc = service()
    await svc.run_server_async(slim_bindings.new_insecure_server_config(endpoint))
    emit("listening", url=f"http://{endpoint}")
    await commands.stop.wait()
    svc.stop_server(endpoint)


async def pub(config: Config, commands: Commands) -> None:
    client = Client(config)
    session = await start(client, commands)
    if session is None:
        return
    warmup, rate = config["warmup"], config["rate"]
    reliable = config["reliable"]
    window = asyncio.Semaphore(config["window"])
    waiting: set[asyncio.Task[None]] = set()
    sent = failed = 0

    async def acknowledged(handle: slim_bindings.CompletionHandle) -> None:
        nonlocal failed
        try:
            await handle.wait_async()
        except slim_bindings.SlimError:
            failed += 1
        finally:
            window.release()

    async def send_all() -> tuple[int, int]:
        nonlocal sent, failed
        start_ns = time.monotonic_ns()
        begin = time.monotonic()
        seq = 0
        while admits(config, seq, start_ns):
            await pace(rate, begin, seq)
            if reliable:
                await window.acquire()  # a slot covers the publish and its acknowledgement
            if seq == warmup:
                start_ns = time.monotonic_ns()
            try:
                # Awaited in order, so messages leave in sequence; only acknowledgements overlap.
                handle = await session.publish_async(encode(seq, config["payload"]), None, None)
            except slim_bindings.SlimError:
                failed += 1
                if reliable:
                    window.release()
            else:
                if reliable:
                    task = asyncio.create_task(acknowledged(handle))
                    waiting.add(task)
                    task.add_done_callback(waiting.discard)
            sent += 1
            seq += 1
        if waiting:
            await asyncio.wait(waiting)
        return start_ns, time.monotonic_ns()

    progress = asyncio.create_task(report_progress("sent", lambda: sent))
    span = await unless_stopped(send_all(), commands)
    progress.cancel()
    for task in list(waiting):  # stopped early: nobody waits for these acknowledgements
        task.cancel()
    if span is None:
        await client.delete(session)
        return
    start_ns, end_ns = span
    emit("progress", sent=sent)
    emit("sent", sent=sent, failed=failed, startNs=start_ns, endNs=end_ns)
    await commands.stop.wait()
    await client.delete(session)


class Tally:
    """What a subscriber counts: unique, duplicates, order and latency."""

    def __init__(self, config: Config) -> None:
        self.warmup: int = config["warmup"]
        self.total: int = config["warmup"] + config["count"]
        self.latency: bool = config["latency"]
        self.seconds: float = config.get("seconds", 0)
        self.seen = bytearray(self.total)
        self.unique = self.measured = self.duplicates = self.reordered = 0
        self.highest = -1
        self.first_ns = self.last_ns = 0
        self.latency_us: list[float] = []

    @property
    def complete(self) -> bool:
        return self.unique >= self.total

    @property
    def window_over(self) -> bool:
        """Whether `seconds` have passed since the first measured message (never, without)."""
        return self.measured > 0 and 0 < self.seconds <= (time.monotonic_ns() - self.first_ns) / 1e9

    def record(self, payload: bytes) -> None:
        now = time.monotonic_ns()
        if len(payload) < HEADER.size:
            return
        seq, sent_ns = HEADER.unpack_from(payload)
        if seq >= self.total:
            return
        if self.seen[seq]:
            self.duplicates += 1
            return
        self.seen[seq] = 1
        self.unique += 1
        if seq < self.warmup:
            return
        if seq < self.highest:
            self.reordered += 1
        self.highest = max(self.highest, seq)
        if self.measured == 0:
            self.first_ns = now
        self.measured += 1
        self.last_ns = now
        if self.latency:
            self.latency_us.append((now - sent_ns) / 1000)

    def report(self) -> None:
        emit(
            "result",
            received=self.measured,
            duplicates=self.duplicates,
            reordered=self.reordered,
            firstNs=self.first_ns,
            lastNs=self.last_ns,
            latencyUs=self.latency_us,
        )


async def receive_all(
    session: slim_bindings.Session,
    handle: Callable[[slim_bindings.ReceivedMessage], Awaitable[Any]],
    done: Callable[[], bool],
) -> None:
    """Passes every message to `handle` until `done()` or the session ends."""
    while not done():
        try:
            message = await session.get_message_async(None)
        except slim_bindings.SlimError as error:  # the publisher ended the session
            print(f"receiving: {error!r}", file=sys.stderr)
            return
        await handle(message)


async def sub(config: Config, commands: Commands) -> None:
    client = Client(config)
    await client.connect()
    emit("connected")
    tally = Tally(config)
    session = await client.accept(commands)
    if session is not None:
        progress = asyncio.create_task(report_progress("received", lambda: tally.unique))

        async def record(message: slim_bindings.ReceivedMessage) -> None:
            tally.record(message.payload)

        await unless_stopped(receive_all(session, record, lambda: tally.complete), commands)
        progress.cancel()
    emit("progress", received=tally.unique)
    tally.report()
    await commands.stop.wait()
    await client.delete(session)


async def requester(config: Config, commands: Commands) -> None:
    client = Client(config)
    session = await start(client, commands)
    if session is None:
        return
    rtt_us: list[float] = []

    async def ask_all() -> bool:
        begin = time.monotonic()
        start_ns = seq = 0
        while admits(config, seq, start_ns):
            await pace(config["rate"], begin, seq)
            sent_ns = time.monotonic_ns()
            if seq == config["warmup"]:
                start_ns = sent_ns
            handle = await session.publish_async(encode(seq, config["payload"]), None, None)
            reply = await session.get_message_async(REPLY_WAIT)
            received_ns = time.monotonic_ns()
            if HEADER.unpack_from(reply.payload)[0] != seq:
                raise RuntimeError(f"the reply to request {seq} carried another number")
            if seq >= config["warmup"]:
                rtt_us.append((received_ns - sent_ns) / 1000)
            await handle.wait_async()  # the reply came, so this is done; surfaces a failed send
            seq += 1
        return True

    finished = await unless_stopped(ask_all(), commands)
    # Stopped at the cap, the round trips measured so far still count.
    emit("result", received=len(rtt_us), rttUs=rtt_us)
    if finished:
        await commands.stop.wait()
    await client.delete(session)


async def responder(config: Config, commands: Commands) -> None:
    client = Client(config)
    await client.connect()
    emit("connected")
    session = await client.accept(commands)
    if session is not None:

        async def answer(message: slim_bindings.ReceivedMessage) -> None:
            # Not waiting for the reply's acknowledgement: the requester checks every reply.
            await session.publish_to_async(message.context, message.payload, None, None)

        await unless_stopped(receive_all(session, answer, lambda: False), commands)
    await commands.stop.wait()
    await client.delete(session)


Role = Callable[[Config, Commands], Awaitable[None]]
ROLES: dict[str, Role] = {"node": node, "pub": pub, "sub": sub, "requester": requester, "responder": responder}


def run(roles: dict[str, Role]) -> None:
    """Runs the role the config (the last argument) names; a failure is an `error` event."""
    try:
        config = json.loads(sys.argv[-1])

        async def play() -> None:
            await roles[config["role"]](config, Commands())

        asyncio.run(play())
    except Exception as error:  # noqa: BLE001 - reported to the harness as an event
        emit("error", message=f"{type(error).__name__}: {error}")
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    run(ROLES)
