"""A slimrpc peer on upstream's Python slim-bindings, driven by slim-node's interop tests.

Every stdout line is one JSON event. Roles:
  rpc-server  serves the test service `interop.Echo` (all four shapes, a failing and a
              slow method, and one that reports the caller's context) until stdin closes
  rpc-client  calls it on --remote and prints one `result` event per case, then `done`
"""

import asyncio
import datetime
import json
import sys

import slim_bindings
from peer import connect, emit, peer_parser, run_role, stdin_closed

SERVICE = "interop.Echo"


class Echo(slim_bindings.UnaryUnaryHandler):
    async def handle(self, request, context):
        return b"echo:" + request


class Count(slim_bindings.UnaryStreamHandler):
    async def handle(self, request, context, sink):
        for i in range(int(request.decode())):
            await sink.send_async(str(i).encode())
        await sink.close_async()


async def drain(stream):
    """The requests of a streaming call."""
    items = []
    while True:
        message = await stream.next_async()
        if isinstance(message, slim_bindings.StreamMessage.DATA):
            items.append(message[0])
        elif isinstance(message, slim_bindings.StreamMessage.ERROR):
            raise message[0]
        else:
            return items


class Sum(slim_bindings.StreamUnaryHandler):
    async def handle(self, stream, context):
        return str(sum(int(item.decode()) for item in await drain(stream))).encode()


class Chat(slim_bindings.StreamStreamHandler):
    async def handle(self, stream, context, sink):
        for item in await drain(stream):
            await sink.send_async(b"chat:" + item)
        await sink.close_async()


class Fail(slim_bindings.UnaryUnaryHandler):
    async def handle(self, request, context):
        code = getattr(slim_bindings.RpcCode, request.decode())
        raise slim_bindings.RpcError.Rpc(code=code, message="failed as asked", details=None)


class Slow(slim_bindings.UnaryUnaryHandler):
    async def handle(self, request, context):
        await asyncio.sleep(int(request.decode()) / 1000)
        return b"late"


class Whoami(slim_bindings.UnaryUnaryHandler):
    async def handle(self, request, context):
        report = {
            "subject": context.peer_subject(),
            "issuer": context.peer_issuer(),
            "metadata": dict(context.metadata()),
            "sessionId": context.session_id(),
        }
        return json.dumps(report).encode()


async def run_server(args) -> None:
    # Handlers are called back from Rust threads: they run on this loop.
    slim_bindings.uniffi_set_event_loop(asyncio.get_running_loop())
    app, conn = await connect(args)
    server = slim_bindings.Server.new_with_connection(app, slim_bindings.Name.from_string(args.local), conn)
    server.register_unary_unary(SERVICE, "Echo", Echo())
    server.register_unary_stream(SERVICE, "Count", Count())
    server.register_stream_unary(SERVICE, "Sum", Sum())
    server.register_stream_stream(SERVICE, "Chat", Chat())
    server.register_unary_unary(SERVICE, "Fail", Fail())
    server.register_unary_unary(SERVICE, "Slow", Slow())
    server.register_unary_unary(SERVICE, "Whoami", Whoami())
    serving = asyncio.ensure_future(server.serve_async())
    emit("ready")
    await stdin_closed()
    await server.shutdown_async()
    serving.cancel()


def status_of(error) -> str:
    return error.code.name if hasattr(error, "code") else type(error).__name__


async def read_all(reader) -> list:
    values = []
    while True:
        message = await reader.next_async()
        if isinstance(message, slim_bindings.StreamMessage.DATA):
            values.append(message[0].decode())
        elif isinstance(message, slim_bindings.StreamMessage.ERROR):
            raise message[0]
        else:
            return values


async def run_client(args) -> None:
    app, conn = await connect(args)
    remote = slim_bindings.Name.from_string(args.remote)
    await app.set_route_async(remote, conn)
    channel = slim_bindings.Channel.new_with_connection(app, remote, conn)
    wait = datetime.timedelta(seconds=20)

    value = await channel.call_unary_async(SERVICE, "Echo", b"hi", wait, None)
    emit("result", case="unary", value=value.decode())
    reader = await channel.call_unary_stream_async(SERVICE, "Count", b"3", wait, None)
    emit("result", case="unary-stream", values=await read_all(reader))
    writer = channel.call_stream_unary(SERVICE, "Sum", wait, None)
    for n in (b"1", b"2", b"3"):
        await writer.send_async(n)
    emit("result", case="stream-unary", value=(await writer.finalize_stream_async()).decode())
    bidi = channel.call_stream_stream(SERVICE, "Chat", wait, None)
    for line in (b"a", b"b"):
        await bidi.send_async(line)
    await bidi.close_send_async()
    values = []
    while True:
        message = await bidi.recv_async()
        if not isinstance(message, slim_bindings.StreamMessage.DATA):
            break
        values.append(message[0].decode())
    emit("result", case="stream-stream", values=values)
    try:
        await channel.call_unary_async(SERVICE, "Fail", b"PERMISSION_DENIED", wait, None)
    except slim_bindings.RpcError.Rpc as error:
        emit("result", case="error", code=status_of(error), message=error.message)
    try:
        await channel.call_unary_async(SERVICE, "Slow", b"3000", datetime.timedelta(milliseconds=300), None)
    except slim_bindings.RpcError.Rpc as error:
        emit("result", case="deadline", code=status_of(error))
    who = await channel.call_unary_async(SERVICE, "Whoami", b"", wait, {"trace": "py"})
    emit("result", case="metadata", **json.loads(who.decode()))
    emit("done")


if __name__ == "__main__":
    roles = {"rpc-server": run_server, "rpc-client": run_client}
    sys.exit(run_role(roles, peer_parser(__doc__, "rpc-server", "rpc-client").parse_args()))
