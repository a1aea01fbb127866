"""A SLIM peer built on upstream's Python slim-bindings, driven by slim-node's interop tests.

Every stdout line is one JSON event; diagnostics go to stderr. Roles:
  node        a SLIM node hosted by the Python package
  moderator   creates a group, invites members, publishes and receives
  participant joins a group when invited, publishes and receives
  responder   answers point-to-point requests
  requester   sends point-to-point requests and prints the replies
  member      joins a group (or restores it from its store), prints every message, and
              obeys `offline` / `rejoin` lines on stdin (soft close and rejoin)
"""

import argparse
import asyncio
import datetime
import json
import signal
import socket
import sys

import slim_bindings

WAIT = datetime.timedelta(seconds=30)
PAYLOAD_TYPE = "text/interop"


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def plain(name) -> str:
    """org/ns/app, without the numeric id upstream appends when printing a name."""
    return "/".join(name.components()[:3])


def message_event(received) -> dict:
    ctx = received.context
    return {
        "source": plain(ctx.source_name),
        "payload": received.payload.decode(),
        "payloadType": ctx.payload_type,
        "metadata": dict(ctx.metadata),
    }


def service():
    slim_bindings.initialize_with_configs(
        # Upstream logs to stdout, which carries our events: keep it to errors.
        tracing_config=slim_bindings.new_tracing_config_with("error", False, False, []),
        runtime_config=slim_bindings.new_runtime_config(),
        service_config=[slim_bindings.new_service_config()],
    )
    return slim_bindings.get_global_service()


def basic_auth(args):
    user = getattr(args, "auth_user", None)
    if not user:
        return None
    return slim_bindings.BasicAuth(username=user, password=args.auth_password)


async def connect(args):
    svc = service()
    config = slim_bindings.new_insecure_client_config(args.slim)
    auth = basic_auth(args)
    if auth is not None:
        config.auth = slim_bindings.ClientAuthenticationConfig.BASIC(auth)
    conn = await svc.connect_async(config)
    name = slim_bindings.Name.from_string(args.local)
    store = getattr(args, "persist", None)
    if store:
        identity = slim_bindings.IdentityProviderConfig.SHARED_SECRET(id=args.local, data=args.secret)
        verifier = slim_bindings.IdentityVerifierConfig.SHARED_SECRET(id=args.local, data=args.secret)
        persistence = slim_bindings.PersistenceConfig(path=store, passphrase=args.passphrase)
        app = await svc.create_app_with_persistence_async(
            name, identity, verifier, slim_bindings.Direction.BIDIRECTIONAL, persistence
        )
    else:
        app = svc.create_app_with_secret(name, args.secret)
    await app.subscribe_async(name, conn)
    return app, conn


def session_config(kind, mls: bool):
    return slim_bindings.SessionConfig(
        session_type=kind,
        max_retries=5,
        interval=datetime.timedelta(milliseconds=500),
        metadata={},
        mls_settings=slim_bindings.MlsSettings(
            header_integrity_validation_percent=100, max_seen_control_message_ids_size=None
        )
        if mls
        else None,
    )


async def stdin_closed() -> None:
    """Resolves on a `close` line or end of input: the test's way to end a role."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == "close":
            return


async def publish_all(session, local: str, count: int) -> None:
    for i in range(1, count + 1):
        handle = await session.publish_async(
            f"{local} #{i}".encode(), PAYLOAD_TYPE, {"sender": local}
        )
        await handle.wait_async()


async def receive(session, count: int) -> None:
    for _ in range(count):
        emit("message", **message_event(await session.get_message_async(WAIT)))


async def run_node(args) -> None:
    host, port = args.endpoint.rsplit(":", 1)
    if port == "0":  # the Python server API does not report the port it bound
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = str(probe.getsockname()[1])
    svc = service()
    endpoint = f"{host}:{port}"
    config = slim_bindings.new_insecure_server_config(endpoint)
    auth = basic_auth(args)
    if auth is not None:
        config.auth = slim_bindings.ServerAuthenticationConfig.BASIC(auth)
    await svc.run_server_async(config)
    emit("listening", url=f"http://{endpoint}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ended = asyncio.ensure_future(stdin_closed())
    await asyncio.wait([ended, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    svc.stop_server(endpoint)


async def run_moderator(args) -> None:
    app, conn = await connect(args)
    channel = slim_bindings.Name.from_string(args.channel)
    created = await app.create_session_async(
        session_config(slim_bindings.SessionType.GROUP, args.mls), channel
    )
    await created.completion.wait_async()
    session = created.session
    for invite in args.invite:
        name = slim_bindings.Name.from_string(invite)
        await app.set_route_async(name, conn)
        await (await session.invite_async(name)).wait_async()
    emit("ready")
    await asyncio.gather(publish_all(session, args.local, args.count), receive(session, args.expect))
    emit("done")
    await stdin_closed()
    await (await app.delete_session_async(session)).wait_async()


async def run_participant(args) -> None:
    app, _ = await connect(args)
    emit("connected")  # invitable from now on
    session = await app.listen_for_session_async(WAIT)
    emit("joined", channel=plain(session.destination()))
    await asyncio.gather(publish_all(session, args.local, args.count), receive(session, args.expect))
    emit("done")
    await stdin_closed()


async def run_responder(args) -> None:
    app, _ = await connect(args)
    emit("connected")  # invitable from now on
    session = await app.listen_for_session_async(WAIT)
    for _ in range(args.count):
        received = await session.get_message_async(WAIT)
        emit("message", **message_event(received))
        ctx = received.context
        reply = f"reply:{received.payload.decode()}".encode()
        metadata = {**ctx.metadata, "replied-by": args.local}
        await (await session.publish_to_async(ctx, reply, ctx.payload_type, metadata)).wait_async()
    emit("done")
    await stdin_closed()


async def run_requester(args) -> None:
    app, conn = await connect(args)
    peer = slim_bindings.Name.from_string(args.peer)
    await app.set_route_async(peer, conn)
    created = await app.create_session_async(
        session_config(slim_bindings.SessionType.POINT_TO_POINT, args.mls), peer
    )
    await created.completion.wait_async()
    session = created.session
    for i in range(1, args.count + 1):
        handle = await session.publish_async(
            f"request #{i}".encode(), PAYLOAD_TYPE, {"sender": args.local}
        )
        await handle.wait_async()
        emit("message", **message_event(await session.get_message_async(WAIT)))
    emit("done")
    await (await app.delete_session_async(session)).wait_async()


async def print_messages(session) -> None:
    while True:
        try:
            received = await session.get_message_async(WAIT)
        except Exception:  # noqa: BLE001 - a quiet spell; the test decides when to stop
            continue
        emit("message", **message_event(received))


async def run_member(args) -> None:
    app, conn = await connect(args)
    if args.restore:
        sessions = await app.restore_sessions_async(conn)
        emit("restored", channels=[plain(s.destination()) for s in sessions])
        session = sessions[0]
    else:
        emit("connected")  # invitable from now on
        session = await app.listen_for_session_async(WAIT)
        emit("joined", channel=plain(session.destination()))
    printing = asyncio.ensure_future(print_messages(session))
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "offline":
            await session.close_with_mode_and_wait_async(slim_bindings.CloseMode.SOFT)
            emit("offline")
        elif line == "rejoin":
            await session.rejoin_and_wait_async()
            emit("online")
        elif line.startswith("publish "):
            await (await session.publish_async(line[8:].encode(), PAYLOAD_TYPE, {})).wait_async()
            emit("published", payload=line[8:])
        else:  # `close` or the end of input
            printing.cancel()
            return


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__)
    roles = top.add_subparsers(dest="role", required=True)
    node = roles.add_parser("node")
    node.add_argument("--endpoint", default="127.0.0.1:0")
    node.add_argument("--auth-user")
    node.add_argument("--auth-password")
    for role in ("moderator", "participant", "responder", "requester", "member"):
        sub = roles.add_parser(role)
        sub.add_argument("--slim", required=True)
        sub.add_argument("--local", required=True)
        sub.add_argument("--secret", required=True)
        sub.add_argument("--count", type=int, default=1)
        sub.add_argument("--auth-user")
        sub.add_argument("--auth-password")
        if role == "member":
            sub.add_argument("--persist")
            sub.add_argument("--passphrase")
            sub.add_argument("--restore", action="store_true")
        if role in ("moderator", "participant"):
            sub.add_argument("--expect", type=int, default=0)
        if role in ("moderator", "requester"):
            sub.add_argument("--mls", action="store_true")
        if role == "moderator":
            sub.add_argument("--channel", required=True)
            sub.add_argument("--invite", action="append", default=[])
        if role == "requester":
            sub.add_argument("--peer", required=True)
    return top


ROLES = {
    "node": run_node,
    "moderator": run_moderator,
    "participant": run_participant,
    "responder": run_responder,
    "requester": run_requester,
    "member": run_member,
}


def run_role(roles: dict, args) -> int:
    """Runs the role `args` names; a failure is an `error` event and exit status 1."""
    try:
        # Bounded: a role that cannot finish fails instead of hanging the test.
        asyncio.run(asyncio.wait_for(roles[args.role](args), timeout=120))
    except Exception as error:  # noqa: BLE001 - reported to the test as an event
        emit("error", message=f"{type(error).__name__}: {error}")
        return 1
    return 0


def peer_parser(description: str, server: str, client: str, switches=()) -> argparse.ArgumentParser:
    """A server role and a client role (with --remote and `switches`), both on --slim as --local."""
    top = argparse.ArgumentParser(description=description)
    roles = top.add_subparsers(dest="role", required=True)
    for role in (server, client):
        sub = roles.add_parser(role)
        sub.add_argument("--slim", required=True)
        sub.add_argument("--local", required=True)
        sub.add_argument("--secret", required=True)
        if role == client:
            sub.add_argument("--remote", required=True)
            for switch in switches:
                sub.add_argument(switch, action="store_true")
    return top


if __name__ == "__main__":
    sys.exit(run_role(ROLES, parser().parse_args()))
