"""The benchmark client (bench/PROTOCOL.md) on upstream's Python slim-bindings 3.3.8.

Roles pub, sub, requester and responder; the harness serves Python from a slim-node
node (same SLIM core), so there is no node role here.
"""

import asyncio
import datetime
import json
import struct
import sys
import time

import slim_bindings

RECEIVE_WAIT = datetime.timedelta(seconds=1)
PROGRESS_EVERY = 0.2
HEADER = struct.Struct("<QQ")


def emit(event: str, **fields) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def encode(seq: int, size: int) -> bytes:
    return HEADER.pack(seq, time.monotonic_ns()) + bytes(max(0, size - HEADER.size))


class Commands:
    """`go` and `stop` from stdin; end of input counts as `stop`."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.stop = asyncio.Event()

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if line.strip() == "go":
                self.go.set()
            if not line or line.strip() == "stop":
                self.stop.set()
                self.go.set()
                return


def service():
    slim_bindings.initialize_with_configs(
        # Upstream logs to stdout, which carries the events: keep it to errors.
        tracing_config=slim_bindings.new_tracing_config_with("error", False, False, []),
        runtime_config=slim_bindings.new_runtime_config(),
        service_config=[slim_bindings.new_service_config()],
    )
    return slim_bindings.get_global_service()


async def connect(config: dict):
    started = time.perf_counter()
    svc = service()
    name = slim_bindings.Name.from_string(config["name"])
    app = svc.create_app_with_secret(name, config["secret"])
    app_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    conn = await svc.connect_async(slim_bindings.new_insecure_client_config(config["endpoint"]))
    await app.subscribe_async(name, conn)
    return app, conn, app_ms, (time.perf_counter() - started) * 1000


def session_config(config: dict, kind) -> "slim_bindings.SessionConfig":
    reliable = config["reliable"]
    return slim_bindings.SessionConfig(
        session_type=kind,
        max_retries=config["maxRetries"] if reliable else None,
        interval=datetime.timedelta(milliseconds=config["intervalMs"]) if reliable else None,
        metadata={},
        mls_settings=slim_bindings.MlsSettings(
            header_integrity_validation_percent=100, max_seen_control_message_ids_size=None
        )
        if config["mls"]
        else None,
    )


async def start(config: dict, commands: Commands):
    """Creates the session, invites the members and waits for `go`."""
    app, conn, app_ms, connect_ms = await connect(config)
    started = time.perf_counter()
    if config["session"] == "p2p":
        peer = slim_bindings.Name.from_string(config["members"][0])
        await app.set_route_async(peer, conn)
        kind, destination = slim_bindings.SessionType.POINT_TO_POINT, peer
    else:
        kind, destination = slim_bindings.SessionType.GROUP, slim_bindings.Name.from_string(config["channel"])
    created = await app.create_session_async(session_config(config, kind), destination)
    await created.completion.wait_async()
    session = created.session
    if config["session"] == "group":
        for member in config["members"]:
            name = slim_bindings.Name.from_string(member)
            await app.set_route_async(name, conn)
            await (await session.invite_async(name)).wait_async()
    emit("ready", appMs=app_ms, connectMs=connect_ms, sessionMs=(time.perf_counter() - started) * 1000)
    await commands.go.wait()
    return app, session


async def close(app, session) -> None:
    try:
        await asyncio.wait_for((await app.delete_session_async(session)).wait_async(), 5)
    except Exception:  # noqa: BLE001 - the peer may have ended it first
        pass


async def publisher(config: dict, commands: Commands) -> None:
    app, session = await start(config, commands)
    if commands.stop.is_set():
        return
    total = config["warmup"] + config["count"]
    window = asyncio.Semaphore(config["window"])
    failed = 0
    pending: set[asyncio.Task] = set()

    async def publish_one(seq: int) -> None:
        nonlocal failed
        try:
            handle = await session.publish_async(encode(seq, config["payload"]), None, None)
            await handle.wait_async()  # the window covers the acknowledgement
        except Exception:  # noqa: BLE001 - counted, like the other clients do
            failed += 1
        finally:
            window.release()

    start_ns = time.monotonic_ns()
    begin = time.perf_counter()
    last_progress = begin
    for seq in range(total):
        if config["rate"] > 0:
            await asyncio.sleep(max(0.0, begin + seq / config["rate"] - time.perf_counter()))
        await window.acquire()
        if seq == config["warmup"]:
            start_ns = time.monotonic_ns()
        task = asyncio.create_task(publish_one(seq))
        pending.add(task)
        task.add_done_callback(pending.discard)
        if time.perf_counter() - last_progress >= PROGRESS_EVERY:
            last_progress = time.perf_counter()
            emit("progress", sent=seq + 1)
    if pending:
        await asyncio.wait(pending)
    emit("progress", sent=total)
    emit("sent", sent=total, failed=failed, startNs=start_ns, endNs=time.monotonic_ns())
    await commands.stop.wait()
    await close(app, session)


async def accept(app, commands: Commands):
    while not commands.stop.is_set():
        try:
            return await app.listen_for_session_async(RECEIVE_WAIT)
        except Exception:  # noqa: BLE001 - a timeout: look at the commands again
            continue
    return None


async def subscriber(config: dict, commands: Commands) -> None:
    app, _, _, _ = await connect(config)
    emit("connected")
    total = config["warmup"] + config["count"]
    seen = bytearray(total)
    unique = measured = duplicates = reordered = 0
    highest, first_ns, last_ns = -1, 0, 0
    latency_us: list[float] = []
    session = await accept(app, commands)
    last_progress = time.perf_counter()
    while session is not None and unique < total and not commands.stop.is_set():
        try:
            received = await session.get_message_async(RECEIVE_WAIT)
        except Exception:  # noqa: BLE001 - a timeout: look at the commands again
            continue
        now = time.monotonic_ns()
        seq, sent_ns = HEADER.unpack_from(received.payload)
        if seq >= total or seen[seq]:
            duplicates += seq < total
            continue
        seen[seq] = 1
        unique += 1
        if seq >= config["warmup"]:
            reordered += seq < highest
            highest = max(highest, seq)
            first_ns = first_ns or now
            last_ns = now
            measured += 1
            if config["latency"]:
                latency_us.append((now - sent_ns) / 1000)
        if time.perf_counter() - last_progress >= PROGRESS_EVERY:
            last_progress = time.perf_counter()
            emit("progress", received=unique)
    emit("progress", received=unique)
    emit(
        "result",
        received=measured,
        duplicates=duplicates,
        reordered=reordered,
        firstNs=first_ns,
        lastNs=last_ns,
        latencyUs=latency_us,
    )
    await commands.stop.wait()


async def requester(config: dict, commands: Commands) -> None:
    app, session = await start(config, commands)
    if commands.stop.is_set():
        return
    rtt_us: list[float] = []
    begin = time.perf_counter()
    for seq in range(config["warmup"] + config["count"]):
        if config["rate"] > 0:
            await asyncio.sleep(max(0.0, begin + seq / config["rate"] - time.perf_counter()))
        sent = time.monotonic_ns()
        await session.publish_async(encode(seq, config["payload"]), None, None)
        reply = await session.get_message_async(datetime.timedelta(seconds=10))
        if HEADER.unpack_from(reply.payload)[0] != seq:
            raise RuntimeError(f"the reply to request {seq} carried another number")
        if seq >= config["warmup"]:
            rtt_us.append((time.monotonic_ns() - sent) / 1000)
    emit("result", received=len(rtt_us), rttUs=rtt_us)
    await commands.stop.wait()
    await close(app, session)


async def responder(config: dict, commands: Commands) -> None:
    app, _, _, _ = await connect(config)
    emit("connected")
    session = await accept(app, commands)
    while session is not None and not commands.stop.is_set():
        try:
            received = await session.get_message_async(RECEIVE_WAIT)
        except Exception:  # noqa: BLE001 - a timeout or the end of the session
            continue
        await session.publish_to_async(received.context, received.payload, None, None)


ROLES = {"pub": publisher, "sub": subscriber, "requester": requester, "responder": responder}


async def main(config: dict) -> None:
    role = ROLES.get(config["role"])
    if role is None:
        raise RuntimeError(f"the Python client has no {config['role']} role; the harness uses slim-node's node")
    commands = Commands()
    reader = asyncio.ensure_future(commands.read())
    await role(config, commands)
    reader.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main(json.loads(sys.argv[-1])))
    except Exception as error:  # noqa: BLE001 - reported to the harness as an event
        emit("error", message=f"{type(error).__name__}: {error}")
        sys.exit(1)
    sys.exit(0)
