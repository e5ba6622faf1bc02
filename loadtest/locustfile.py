"""A locust user that speaks the gateway's protocol: `make locust`, or

    locust -f loadtest/locustfile.py --host ws://gw-a:8080/ws,ws://gw-b:8080/ws \\
        --redis-url redis://redis:6379/0 --jwt-secret-file secret.txt --population 5000

Each simulated user holds one real WebSocket (websocket-client, cooperative under locust's
gevent), authenticates with a bearer token, heartbeats at the interval its `hello` advertises,
watches 20-200 contacts, types before it sends, sends and reads at chat-like rates, and
reconnects with jittered exponential backoff when its connection ends (a drain, a restart).

What locust's statistics show (web UI and `--csv`):
- request type `WS`, named by frame type (`connect`, `heartbeat`, `message.send`, ...): the time
  from sending a frame to its `ack` (`connect`: TCP connect to `hello`). An `error` frame, a
  timeout or a lost connection is a failure named after it.
- request type `DELIVERY`, name `message.new`: from the sender's `message.send` to this member's
  receipt of the event. The send time travels in the message content, so it is measured on the
  load generator's clock alone, across users, instances and worker processes of one machine.

Tokens for the whole population are minted in one step at test start, in each locust process
(sessions written to the gateway's Redis, tokens signed with its HS256 secret): users of one
process share the population, which is split into conversations of `--room-size` members.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import orjson
import websocket
from gevent.event import AsyncResult
from locust import User, between, events, task
from locust.env import Environment
from locust.runners import MasterRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `locust -f` adds only loadtest/

from loadtest.bench_fanout import mint_tokens

ACK_TIMEOUT = 10.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
# Closes that are part of normal life: the client's own, a drain's, a server going away.
EXPECTED_CLOSES = {1000, 1001, 1012}


class Population:
    """Who the simulated users are: ids and tokens, minted once per locust process."""

    users: list[str] = []
    tokens: list[str] = []
    room_size = 5
    next_index = itertools.count()


def _options(parser: Any) -> None:
    parser.add_argument(
        "--redis-url", env_var="GATEWAY_REDIS_URL", default="", help="the gateways' Redis"
    )
    parser.add_argument("--jwt-secret", env_var="GATEWAY_JWT_SECRET", default="")
    parser.add_argument("--jwt-secret-file", env_var="GATEWAY_JWT_SECRET_FILE", default="")
    parser.add_argument("--population", type=int, default=1000, help="distinct users")
    parser.add_argument("--room-size", type=int, default=5, help="members per conversation")


def _mint_population(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner) or Population.users:
        return  # the master runs no users; a restarted test keeps its population
    options = environment.parsed_options
    assert options is not None
    secret = options.jwt_secret
    if options.jwt_secret_file:
        secret = Path(options.jwt_secret_file).read_text().splitlines()[0].strip()
    if not (options.redis_url and secret):
        raise SystemExit("--redis-url and --jwt-secret (or --jwt-secret-file) are required")
    users = [uuid.uuid4() for _ in range(options.population)]
    started = time.perf_counter()
    Population.tokens = asyncio.run(mint_tokens(options.redis_url, users, secret, ttl=86_400))
    Population.users = [str(u) for u in users]
    Population.room_size = max(2, options.room_size)
    print(f"minted {len(users)} tokens in {time.perf_counter() - started:.2f}s", flush=True)


events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_mint_population)  # type: ignore[no-untyped-call]


class GatewayFailure(Exception):
    """An `error` frame, a timeout or a lost connection, as locust records it."""


class ChatUser(User):
    """One person on one device."""

    wait_time = between(2.0, 6.0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        hosts = [h.strip() for h in (self.host or "").split(",") if h.strip()]
        if not hosts:
            raise SystemExit("--host: one or more ws:// URLs of gateways, comma-separated")
        index = next(Population.next_index)
        count = len(Population.users)
        self.url = hosts[index % len(hosts)]
        self.user_id = Population.users[index % count]
        self.token = Population.tokens[index % count]
        room = (index % count) // Population.room_size
        first = room * Population.room_size
        self.room_members = Population.users[first : first + Population.room_size]
        self.leads_room = index % count == first and len(self.room_members) > 1
        wanted = min(count, random.randint(20, 200) + 1)
        self.contacts = [u for u in random.sample(Population.users, wanted) if u != self.user_id]
        self.conversations: list[str] = []
        self.unread: dict[str, str] = {}  # conversation -> newest message id not yet read
        self.heartbeat_interval = 20.0
        self.ws: websocket.WebSocket | None = None
        self.stopping = False
        self.ids = itertools.count()
        self.pending: dict[str, AsyncResult] = {}
        self.reconnecting = False

    # Connection life

    def on_start(self) -> None:
        if not self._connect(first=True):
            gevent.spawn(self._reconnect)

    def on_stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            self.ws.close()

    def _connect(self, first: bool = False) -> bool:
        started = time.perf_counter()
        try:
            ws = websocket.create_connection(
                self.url,
                header=[f"Authorization: Bearer {self.token}"],
                timeout=ACK_TIMEOUT,
                enable_multithread=True,
                suppress_origin=True,  # an app or a server, not a browser page
            )
            hello = orjson.loads(ws.recv())
            if hello.get("type") != "hello":
                ws.close()
                raise GatewayFailure(f"expected hello, got {hello.get('type')}")
            ws.settimeout(None)
        except (OSError, websocket.WebSocketException, GatewayFailure, ValueError) as exc:
            self._report("connect", started, exc=GatewayFailure(f"connect: {exc}"))
            return False
        self._report("connect", started)
        self.heartbeat_interval = hello.get("heartbeat_interval_ms", 20_000) / 1000
        self.ws = ws
        gevent.spawn(self._receive, ws)
        gevent.spawn(self._heartbeats, ws)
        self._join_conversations(first)
        self.request("presence.subscribe", user_ids=self.contacts[:1000])
        return True

    def _join_conversations(self, first: bool) -> None:
        listed = self.request("conversations.list", limit=100)
        if listed is not None:
            for item in listed.get("conversations", []):
                self._know(item["id"])
        if first and self.leads_room and not self.conversations:
            others = [u for u in self.room_members if u != self.user_id]
            created = self.request(
                "conversation.create", kind="group", member_ids=others, name="locust room"
            )
            if created is not None:
                self._know(created["conversation"]["id"])

    def _know(self, conversation_id: str) -> None:
        if conversation_id not in self.conversations:
            self.conversations.append(conversation_id)

    def _lost(self, ws: websocket.WebSocket, code: int | None) -> None:
        """The connection ended: report an unexpected close, then reconnect with full-jitter
        exponential backoff until it works or the user stops."""
        if self.stopping or self.ws is not ws or self.reconnecting:
            return
        self.ws = None
        for result in self.pending.values():
            result.set_exception(GatewayFailure("connection lost"))
        self.pending.clear()
        if code not in EXPECTED_CLOSES:
            self._report("connection", time.perf_counter(), exc=GatewayFailure(f"closed {code}"))
        self._reconnect()

    def _reconnect(self) -> None:
        self.reconnecting = True
        try:
            attempt = 0
            while not self.stopping:
                gevent.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
                if self._connect():
                    return
                attempt += 1
        finally:
            self.reconnecting = False

    def _receive(self, ws: websocket.WebSocket) -> None:
        code: int | None = None
        try:
            while True:
                opcode, data = ws.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                    break
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    self._dispatch(orjson.loads(data))
        except (OSError, websocket.WebSocketException):
            code = None if self.stopping else 1006
        self._lost(ws, code)

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        waiter = self.pending.pop(frame.get("id") or "", None)
        if waiter is not None:
            waiter.set(frame)
        elif kind == "message.new":
            message = frame["message"]
            sent = _sent_at(message.get("content", ""))
            if sent is not None:
                self._report("message.new", sent, kind="DELIVERY", clock=time.time)
            if message.get("sender_id") != self.user_id:
                self.unread[message["conversation_id"]] = message["id"]
        elif kind == "conversation.added":
            self._know(frame["conversation"]["id"])

    def _heartbeats(self, ws: websocket.WebSocket) -> None:
        """At the interval `hello` advertised, while this connection is the user's."""
        while True:
            gevent.sleep(self.heartbeat_interval)
            if self.stopping or self.ws is not ws:
                return
            self.request("heartbeat")

    # Requests

    def request(self, frame_type: str, **fields: Any) -> dict[str, Any] | None:
        """Send a frame and wait for its answer; reported under its type. None on failure."""
        ws = self.ws
        if ws is None:
            return None
        kind = frame_type
        frame_id = f"{kind}:{next(self.ids)}"
        waiter = AsyncResult()
        self.pending[frame_id] = waiter
        started = time.perf_counter()
        try:
            ws.send(orjson.dumps({"type": kind, "id": frame_id, **fields}).decode())
            answer: dict[str, Any] = waiter.get(timeout=ACK_TIMEOUT)
        except gevent.Timeout:
            self.pending.pop(frame_id, None)
            self._report(kind, started, exc=GatewayFailure("no answer within the timeout"))
            return None
        except (OSError, websocket.WebSocketException, GatewayFailure) as exc:
            self.pending.pop(frame_id, None)
            if not self.stopping:
                self._report(kind, started, exc=GatewayFailure(str(exc) or type(exc).__name__))
            return None
        if answer.get("type") == "error":
            self._report(kind, started, exc=GatewayFailure(answer.get("code", "error")))
            return None
        self._report(kind, started, length=len(answer))
        return answer

    def _report(
        self,
        name: str,
        started: float,
        *,
        exc: Exception | None = None,
        kind: str = "WS",
        length: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=max(0.0, (clock() - started) * 1000),
            response_length=length,
            exception=exc,
            context={},
        )

    # What a person does

    @task(4)
    def chat(self) -> None:
        """A typing burst, then a message."""
        if not self.conversations:
            return
        conversation = random.choice(self.conversations)
        for _ in range(random.randint(1, 2)):
            self.request("typing.start", conversation_id=conversation)
            gevent.sleep(random.uniform(0.3, 1.5))
        self.request(
            "message.send",
            conversation_id=conversation,
            client_msg_id=uuid.uuid4().hex,
            content=f"t={time.time():.6f} " + "lorem ipsum " * random.randint(1, 8),
        )

    @task(3)
    def read(self) -> None:
        if not self.unread:
            return
        conversation, message = self.unread.popitem()
        self.request("message.read", conversation_id=conversation, message_id=message)

    @task(1)
    def look_at_contacts(self) -> None:
        some = random.sample(self.contacts, min(20, len(self.contacts)))
        self.request("presence.query", user_ids=some)

    @task(1)
    def history(self) -> None:
        if self.conversations:
            conversation = random.choice(self.conversations)
            self.request("messages.list", conversation_id=conversation, limit=20)


def _sent_at(content: str) -> float | None:
    """The sender's wall-clock send time, from content written by `chat`."""
    if not content.startswith("t="):
        return None
    try:
        return float(content[2:].split(" ", 1)[0])
    except ValueError:
        return None
