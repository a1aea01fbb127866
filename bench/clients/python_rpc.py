"""The slimrpc roles of the benchmark (bench/PROTOCOL.md) on slim-bindings 3.3.8's slim_rpc.

Run as `python python_rpc.py '<config JSON>'`. Roles: rpc-server, rpc-unary, rpc-stream;
the message-level roles and the helpers are python_client.py's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import slim_bindings
from python_client import (
    HEADER,
    REPLY_WAIT,
    Client,
    Commands,
    Config,
    Tally,
    admits,
    elapsed_ms,
    emit,
    encode,
    pace,
    report_progress,
    run,
    unless_stopped,
)

SERVICE = "bench.Bench"


class Echo(slim_bindings.UnaryUnaryHandler):
    async def handle(self, request: bytes, context: Any) -> bytes:
        return request


class Stream(slim_bindings.UnaryStreamHandler):
    """Answers with as many messages as the request's sequence field asks for."""

    def __init__(self, payload: int) -> None:
        self.payload = payload

    async def handle(self, request: bytes, context: Any, sink: Any) -> None:
        answers = HEADER.unpack_from(request)[0] if len(request) >= HEADER.size else 0
        for seq in range(answers):
            await sink.send_async(encode(seq, self.payload))
        await sink.close_async()


async def rpc_server(config: Config, commands: Commands) -> None:
    # Handlers are called back from Rust threads: they run on this loop.
    slim_bindings.uniffi_set_event_loop(asyncio.get_running_loop())
    client = Client(config)
    await client.connect()
    name = slim_bindings.Name.from_string(config["name"])
    server = slim_bindings.Server.new_with_connection(client.app, name, client.conn)
    server.register_unary_unary(SERVICE, "Echo", Echo())
    server.register_unary_stream(SERVICE, "Stream", Stream(config["payload"]))
    serving = asyncio.ensure_future(server.serve_async())
    emit("connected")
    await commands.stop.wait()
    await server.shutdown_async()
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)


async def open_channel(config: Config, commands: Commands) -> Any | None:
    """Connects, opens the channel with a first call, prints `ready`, waits for `go`."""
    client = Client(config)
    await client.connect()
    started = time.perf_counter()
    remote = slim_bindings.Name.from_string(config["members"][0])
    await client.app.set_route_async(remote, client.conn)
    channel = slim_bindings.Channel.new_with_connection(client.app, remote, client.conn)
    await channel.call_unary_async(SERVICE, "Echo", encode(0, HEADER.size), REPLY_WAIT, None)
    emit("ready", appMs=client.app_ms, connectMs=client.connect_ms, sessionMs=elapsed_ms(started))
    return channel if await commands.wait_go() else None


async def rpc_unary(config: Config, commands: Commands) -> None:
    channel = await open_channel(config, commands)
    if channel is None:
        return
    rtt_us: list[float] = []

    async def call_all() -> bool:
        begin = time.monotonic()
        start_ns = seq = 0
        while admits(config, seq, start_ns):
            await pace(config["rate"], begin, seq)
            sent_ns = time.monotonic_ns()
            if seq == config["warmup"]:
                start_ns = sent_ns
            answer = await channel.call_unary_async(SERVICE, "Echo", encode(seq, config["payload"]), REPLY_WAIT, None)
            received_ns = time.monotonic_ns()
            if HEADER.unpack_from(answer)[0] != seq:
                raise RuntimeError(f"the answer to call {seq} carried another number")
            if seq >= config["warmup"]:
                rtt_us.append((received_ns - sent_ns) / 1000)
            seq += 1
        return True

    finished = await unless_stopped(call_all(), commands)
    # Stopped at the cap, the round trips measured so far still count.
    emit("result", received=len(rtt_us), rttUs=rtt_us)
    if finished:
        await commands.stop.wait()


async def rpc_stream(config: Config, commands: Commands) -> None:
    channel = await open_channel(config, commands)
    if channel is None:
        return
    tally = Tally(config)

    async def read_all() -> None:
        request = encode(tally.total, HEADER.size)  # its sequence field: how many answers
        reader = await channel.call_unary_stream_async(SERVICE, "Stream", request, None, None)
        while True:
            message = await reader.next_async()
            if isinstance(message, slim_bindings.StreamMessage.DATA):
                tally.record(message[0])
                if tally.window_over:
                    return
            elif isinstance(message, slim_bindings.StreamMessage.ERROR):
                raise message[0]
            else:
                return

    progress = asyncio.create_task(report_progress("received", lambda: tally.unique))
    await unless_stopped(read_all(), commands)
    progress.cancel()
    emit("progress", received=tally.unique)
    tally.report()
    await commands.stop.wait()


if __name__ == "__main__":
    run({"rpc-server": rpc_server, "rpc-unary": rpc_unary, "rpc-stream": rpc_stream})
