"""An A2A peer on upstream's Python slima2a (A2A over slimrpc, with a2a-sdk), driven by
slim-node's A2A interop tests. The agent is the tests' echo agent: it answers a message
with a completed task whose artifact is `echo: <text>`, and the message `ask` with a task
that waits for input (so it can be cancelled).

Every stdout line is one JSON event. Roles:
  a2a-server  serves the echo agent under --local until stdin closes
  a2a-client  uses the agent at --remote: its card, a message, a streamed message, a task
              read back, a task cancelled, a missing task; one `result` event per case
"""

import asyncio
import sys

import httpx
import slim_bindings
from a2a.client import minimal_agent_card
from a2a.helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import a2a_pb2
from google.protobuf.json_format import MessageToDict
from peer import connect, emit, peer_parser, run_role, stdin_closed
from slima2a.client_transport import ClientConfig, MultiAgentClientFactory, slimrpc_channel_factory
from slima2a.handler import SRPCHandler
from slima2a.types.v1.a2a_pb2_slimrpc import add_A2AServiceServicer_to_server


class EchoAgent(AgentExecutor):
    async def execute(self, context, event_queue) -> None:
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        text = context.get_user_input()
        if text == "ask":
            await updater.requires_input()
            return
        await updater.add_artifact([new_text_part(f"echo: {text}")], name="echo")
        await updater.complete()

    async def cancel(self, context, event_queue) -> None:
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def agent_card(name: str) -> a2a_pb2.AgentCard:
    return a2a_pb2.AgentCard(
        name="python echo agent",
        description="echoes what it is sent",
        version="1.0.0",
        supported_interfaces=[a2a_pb2.AgentInterface(protocol_binding="slimrpc", url=name, protocol_version="1.0")],
        capabilities=a2a_pb2.AgentCapabilities(streaming=True, extended_agent_card=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[a2a_pb2.AgentSkill(id="echo", name="echo", description="echoes", tags=["echo"])],
    )


async def run_server(args) -> None:
    slim_bindings.uniffi_set_event_loop(asyncio.get_running_loop())
    app, conn = await connect(args)
    card = agent_card(args.local)
    handler = DefaultRequestHandler(EchoAgent(), InMemoryTaskStore(), card, extended_agent_card=card)
    server = slim_bindings.Server.new_with_connection(app, slim_bindings.Name.from_string(args.local), conn)
    add_A2AServiceServicer_to_server(SRPCHandler(card, handler), server)
    serving = asyncio.ensure_future(server.serve_async())
    emit("ready")
    await stdin_closed()
    await server.shutdown_async()
    serving.cancel()


def state_name(task: a2a_pb2.Task) -> str:
    return a2a_pb2.TaskState.Name(task.status.state)


def artifact_texts(task: a2a_pb2.Task) -> list[str]:
    return [part.text for artifact in task.artifacts for part in artifact.parts]


async def run_client(args) -> None:
    app, conn = await connect(args)
    await app.set_route_async(slim_bindings.Name.from_string(args.remote), conn)
    card = minimal_agent_card(args.remote, ["slimrpc"])

    def client(streaming: bool, card):
        config = ClientConfig(
            supported_protocol_bindings=["slimrpc"],
            streaming=streaming,
            httpx_client=httpx.AsyncClient(),
            slimrpc_channel_factory=slimrpc_channel_factory(app, conn),
        )
        return MultiAgentClientFactory(config).create(card=card)

    unary = client(False, card)
    extended = await unary.get_extended_agent_card(a2a_pb2.GetExtendedAgentCardRequest())
    emit("result", case="card", name=extended.name, streaming=extended.capabilities.streaming)
    # The client streams only to an agent whose card says it can: the card it just read.
    streaming = client(True, extended)

    def request(text: str) -> a2a_pb2.SendMessageRequest:
        return a2a_pb2.SendMessageRequest(message=new_text_message(text, role=a2a_pb2.Role.ROLE_USER))

    answers = [answer async for answer in unary.send_message(request("hello"))]
    task = answers[-1].task
    emit("result", case="send", state=state_name(task), texts=artifact_texts(task))

    events = [MessageToDict(event) async for event in streaming.send_message(request("stream me"))]
    emit("result", case="stream", kinds=[next(iter(event)) for event in events], events=events)

    again = await unary.get_task(a2a_pb2.GetTaskRequest(id=task.id))
    emit("result", case="get", state=state_name(again), texts=artifact_texts(again))

    waiting = [answer async for answer in unary.send_message(request("ask"))][-1].task
    cancelled = await unary.cancel_task(a2a_pb2.CancelTaskRequest(id=waiting.id))
    emit("result", case="cancel", before=state_name(waiting), after=state_name(cancelled))

    try:
        await unary.get_task(a2a_pb2.GetTaskRequest(id="no-such-task"))
        emit("result", case="missing", error=None)
    except slim_bindings.RpcError.Rpc as error:  # slima2a's client passes slimrpc's error on
        emit("result", case="missing", code=error.code.name, message=error.message)
    emit("done")


if __name__ == "__main__":
    roles = {"a2a-server": run_server, "a2a-client": run_client}
    sys.exit(run_role(roles, peer_parser(__doc__, "a2a-server", "a2a-client").parse_args()))
