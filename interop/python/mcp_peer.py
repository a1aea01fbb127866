"""An MCP peer on upstream's Python packages (`mcp` and slim-bindings), driven by
slim-node's MCP interop tests, with upstream slim-mcp's framing: one point-to-point
session per client, each JSON-RPC message one publish of UTF-8 JSON.

Every stdout line is one JSON event. Roles:
  mcp-server  serves the tools `add` and `whoami` and the resource notes://today to every
              session that invites it, until stdin closes
  mcp-client  opens a session to --remote, lists and calls its tools, reads the resource,
              prints one `result` event per case, then `done`
"""

import asyncio
import datetime
import sys
from contextlib import asynccontextmanager

import anyio
import mcp.types as types
import slim_bindings
from mcp import ClientSession
from mcp.server.lowlevel import Server
from mcp.shared.message import SessionMessage
from peer import connect, emit, peer_parser, run_role, stdin_closed

NOTE = "notes://today"


@asynccontextmanager
async def mcp_streams(session):
    """The MCP library's read and write streams over one SLIM session."""
    incoming_writer, incoming = anyio.create_memory_object_stream(16)
    outgoing, outgoing_reader = anyio.create_memory_object_stream(16)

    async def receive() -> None:
        async with incoming_writer:
            while True:
                try:
                    received = await session.get_message_async(None)
                except slim_bindings.SlimError:
                    return  # the other side ended the session
                try:
                    message = types.JSONRPCMessage.model_validate_json(received.payload.decode())
                except ValueError as error:
                    await incoming_writer.send(error)
                    continue
                await incoming_writer.send(SessionMessage(message=message))

    async def send() -> None:
        async with outgoing_reader:
            async for item in outgoing_reader:
                body = item.message.model_dump_json(by_alias=True, exclude_none=True)
                completion = await session.publish_async(body.encode(), None, None)
                await completion.wait_async()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(receive)
        tasks.start_soon(send)
        try:
            yield incoming, outgoing
        finally:
            tasks.cancel_scope.cancel()


def tool_server() -> Server:
    server = Server("py-tools")

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        numbers = {"a": {"type": "number"}, "b": {"type": "number"}}
        return [
            types.Tool(
                name="add",
                description="adds two numbers",
                inputSchema={"type": "object", "properties": numbers, "required": ["a", "b"]},
            ),
            types.Tool(name="whoami", description="the peer's language", inputSchema={"type": "object"}),
        ]

    @server.call_tool()
    async def call_tool(name: str, arguments: dict) -> list[types.TextContent]:
        if name == "add":
            total = arguments["a"] + arguments["b"]
            text = str(int(total) if float(total).is_integer() else total)
        else:
            text = "python"
        return [types.TextContent(type="text", text=text)]

    @server.list_resources()
    async def list_resources() -> list[types.Resource]:
        return [types.Resource(uri=NOTE, name="today", mimeType="text/plain")]

    @server.read_resource()
    async def read_resource(uri) -> str:
        return "buy milk"

    return server


async def run_server(args) -> None:
    app, _ = await connect(args)
    server = tool_server()

    async def serve(session) -> None:
        async with mcp_streams(session) as (incoming, outgoing):
            await server.run(incoming, outgoing, server.create_initialization_options())

    async def accept() -> None:
        async with anyio.create_task_group() as sessions:
            while True:
                session = await app.listen_for_session_async(None)
                sessions.start_soon(serve, session)

    accepting = asyncio.ensure_future(accept())
    emit("ready")
    await stdin_closed()
    accepting.cancel()


async def run_client(args) -> None:
    app, conn = await connect(args)
    remote = slim_bindings.Name.from_string(args.remote)
    await app.set_route_async(remote, conn)
    config = slim_bindings.SessionConfig(
        session_type=slim_bindings.SessionType.POINT_TO_POINT,
        max_retries=5,
        interval=datetime.timedelta(seconds=1),
        metadata={},
        mls_settings=slim_bindings.MlsSettings(
            header_integrity_validation_percent=100, max_seen_control_message_ids_size=None
        )
        if args.mls
        else None,
    )
    created = await app.create_session_async(config, remote)
    await created.completion.wait_async()
    async with mcp_streams(created.session) as (incoming, outgoing), ClientSession(incoming, outgoing) as client:
        initialized = await client.initialize()
        emit("result", case="initialize", server=initialized.serverInfo.name)
        tools = await client.list_tools()
        emit("result", case="tools", names=sorted(tool.name for tool in tools.tools))
        added = await client.call_tool("add", {"a": 20, "b": 22})
        emit("result", case="add", text=added.content[0].text)
        who = await client.call_tool("whoami", {})
        emit("result", case="whoami", text=who.content[0].text)
        note = await client.read_resource(NOTE)
        emit("result", case="resource", text=note.contents[0].text)
    deleted = await app.delete_session_async(created.session)
    await deleted.wait_async()
    emit("done")


if __name__ == "__main__":
    roles = {"mcp-server": run_server, "mcp-client": run_client}
    sys.exit(run_role(roles, peer_parser(__doc__, "mcp-server", "mcp-client", ("--mls",)).parse_args()))
