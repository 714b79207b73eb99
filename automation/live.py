"""Live updates: short messages to the pages' WebSockets after a change commits.

A service that changes state calls ``publish_after_commit(topic, payload, audience)``. The
message leaves only when the transaction commits (``transaction.on_commit``; a rollback
drops it), and publishing never raises to the caller: a failed publish is logged and the
pages catch up on their next re-fetch.

Who receives it. Every socket joins its user's group (``user.<id>``) and, for staff allowed
to see runs, ``staff.runs`` (``automation.consumers``). A message goes to the groups of its
``Audience``, computed after the commit by a rule that reads the committed rows:

- runs and steps (``run``): ``staff.runs`` only;
- a host app's topics register their rule with ``register_topic`` (``tasks_inbox`` registers
  ``task``, ``queue`` and ``notification`` from its ``ready()``, with the inbox's visibility
  rule), and ``publish_after_commit(topic, payload)`` with no audience uses it.

A message carries ids and states, never content: on receipt a page re-fetches its regions
(``static/js/live.js``), so what a user sees is always what the page itself lets them see.

Channel layers. With Redis (``channels_redis``) every process publishes into the same
layer. The embedded default's in-memory layer does not cross processes: messages published by
the web process reach its sockets, those of the worker and beat reach nobody, so the consumer
tells the page to also re-fetch its regions every ``EMBEDDED_POLL_SECONDS``
(``layer_is_shared``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

STAFF_RUNS_GROUP = "staff.runs"
RUNS_PERMISSION = "automation.view_run"
EMBEDDED_POLL_SECONDS = 10
MESSAGE_TYPE = "live.message"  # the consumer's handler: ``live_message``


def user_group(user_id: int) -> str:
    """The group every socket of user ``user_id`` joins."""
    return f"user.{int(user_id)}"


@dataclass(frozen=True)
class Audience:
    """Who may receive a message: these users, and the staff allowed to see runs."""

    user_ids: frozenset[int] = field(default_factory=frozenset)
    staff_runs: bool = False

    @classmethod
    def users(cls, ids: Iterable[int]) -> Audience:
        return cls(user_ids=frozenset(int(pk) for pk in ids))

    def groups(self) -> list[str]:
        groups = [user_group(pk) for pk in sorted(self.user_ids)]
        if self.staff_runs:
            groups.append(STAFF_RUNS_GROUP)
        return groups


RUN_AUDIENCE = Audience(staff_runs=True)

AudienceRule = Callable[[dict[str, Any]], Audience]
_topics: dict[str, AudienceRule] = {"run": lambda payload: RUN_AUDIENCE}


def register_topic(topic: str, rule: AudienceRule) -> None:
    """Register the audience rule of ``topic``: it gets the payload, after the commit."""
    _topics[topic] = rule


def may_see_runs(user: Any) -> bool:
    """Whether ``user``'s sockets join ``staff.runs`` (the run pages' audience)."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm(RUNS_PERMISSION)
    )


def layer_is_shared() -> bool:
    """Whether every process publishes into the same channel layer (not the in-memory one)."""
    layer = get_channel_layer()
    return layer is not None and not isinstance(layer, InMemoryChannelLayer)


def publish_after_commit(
    topic: str, payload: dict[str, Any], audience: Audience | Callable[[], Audience] | None = None
) -> None:
    """Send ``{"topic": topic, **payload}`` to ``audience`` once the current transaction
    commits (at once outside one). ``audience`` is an ``Audience``, a callable computing
    one after the commit, or ``None`` for the topic's registered rule. Never raises.

    The messages a transaction publishes leave together after its commit, in one pass of
    the publishing loop (``publish_many_now``: a batch of runs sends its updates at the
    cost of about one, and none to groups nobody listens on)."""
    try:
        connection = transaction.get_connection()
        if not connection.in_atomic_block:
            publish_now(topic, payload, audience)
            return
        # Joined to the transaction's last hook if it was registered under the same
        # savepoints (so a rollback to one of them drops these messages with it).
        hooks = connection.run_on_commit
        last = hooks[-1] if hooks else None
        if (
            last
            and isinstance(last[1], _CommitMessages)
            and last[0] == set(connection.savepoint_ids)
        ):
            last[1].messages.append((topic, payload, audience))
            return
        transaction.on_commit(_CommitMessages((topic, payload, audience)))
    except Exception:  # a publish must never break the change it reports
        logger.exception("live update %s could not be scheduled", topic)


Message = tuple[str, dict[str, Any], "Audience | Callable[[], Audience] | None"]


class _CommitMessages:
    """The live updates a transaction publishes, sent after its commit."""

    __slots__ = ("messages",)

    def __init__(self, first: Message) -> None:
        self.messages = [first]

    def __call__(self) -> None:
        if len(self.messages) == 1:
            publish_now(*self.messages[0])
            return
        resolved = []
        for topic, payload, audience in self.messages:
            found = _audience(topic, payload, audience)
            if found is not None:
                resolved.append((topic, payload, found))
        publish_many_now(resolved, ordered=True)


def _audience(
    topic: str, payload: dict[str, Any], audience: Audience | Callable[[], Audience] | None
) -> Audience | None:
    """The message's audience, computed now; None (logged) when it cannot be."""
    try:
        if audience is None:
            rule = _topics.get(topic)
            if rule is None:
                logger.error("live update %s has no audience rule; not sent", topic)
                return None
            return rule(payload)
        return audience() if callable(audience) else audience
    except Exception:
        logger.exception("live update %s could not be published", topic)
        return None


def publish_now(
    topic: str, payload: dict[str, Any], audience: Audience | Callable[[], Audience] | None = None
) -> int:
    """Compute the audience and send the message to its groups; returns how many groups got
    it. Never raises (failures are logged)."""
    try:
        if audience is None:
            rule = _topics.get(topic)
            if rule is None:
                logger.error("live update %s has no audience rule; not sent", topic)
                return 0
            audience = rule(payload)
        elif callable(audience):
            audience = audience()
        groups = audience.groups()
        layer = get_channel_layer()
        if layer is None or not groups:
            return 0
        listened = _listened_now(layer, groups)
        if listened is not None:
            groups = [group for group in groups if group in listened]
            if not groups:
                return 0
        message = {"type": MESSAGE_TYPE, "message": {"topic": topic, **payload}}
        if isinstance(layer, InMemoryChannelLayer):
            async_to_sync(_send)(layer, groups, message)  # the caller's loop, if any
        else:
            future = asyncio.run_coroutine_threadsafe(_send(layer, groups, message), _loop())
            future.result(SEND_TIMEOUT_SECONDS)
        return len(groups)
    except Exception:
        logger.exception("live update %s could not be published", topic)
        return 0


# Publishing to a shared (Redis) layer goes through one event loop per process, on a thread
# of its own, so the layer's connections are kept from one message to the next (a new loop
# per message, as ``async_to_sync`` makes outside an async context, means a new thread and
# a new connection each time).
SEND_TIMEOUT_SECONDS = 5.0
_loop_lock = threading.Lock()
_loop_owner: tuple[int, asyncio.AbstractEventLoop] | None = None


def _loop() -> asyncio.AbstractEventLoop:
    """This process's publishing loop (started on first use, and again after a fork)."""
    global _loop_owner
    with _loop_lock:
        if _loop_owner is None or _loop_owner[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="flowdesk-live", daemon=True).start()
            _loop_owner = (os.getpid(), loop)
        return _loop_owner[1]


async def _send(layer: Any, groups: list[str], message: dict[str, Any]) -> None:
    for group in groups:
        await layer.group_send(group, message)


# (process, server as the layer has it) -> a plain redis-py client on that server.
_sync_clients: dict[tuple[int, str], redis.Redis] = {}


def _sync_client(host: object) -> redis.Redis | None:
    """A blocking client on the channel layer's server ``host`` (as ``channels_redis``
    decodes it: a URL and the pool's options), or None when it is given otherwise
    (sentinels)."""
    if not isinstance(host, dict) or "address" not in host:
        return None
    key = (os.getpid(), repr(sorted(host.items())))
    client = _sync_clients.get(key)
    if client is None:
        options = {
            "socket_timeout": SEND_TIMEOUT_SECONDS,
            "socket_connect_timeout": SEND_TIMEOUT_SECONDS,
            **{name: value for name, value in host.items() if name != "address"},
        }
        client = redis.Redis.from_url(str(host["address"]), **options)
        _sync_clients[key] = client
    return client


def _listened_now(layer: object, groups: Iterable[str]) -> set[str] | None:
    """Which of ``groups`` have a socket in them now, asked from this thread (a pipelined
    ``EXISTS`` per group, as ``_groups_with_members`` does), so that updates nobody listens
    to cost no pass of the publishing loop; None when the layer cannot be asked that way
    (not Redis, or a server not given by its URL)."""
    group_key = getattr(layer, "_group_key", None)
    hosts = getattr(layer, "hosts", None)
    if group_key is None or not hosts or not hasattr(layer, "consistent_hash"):
        return None
    by_server: dict[int, list[str]] = {}
    for group in sorted(set(groups)):
        by_server.setdefault(layer.consistent_hash(group), []).append(group)
    found: set[str] = set()
    for index, names in by_server.items():
        client = _sync_client(hosts[index])
        if client is None:
            return None
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.exists(group_key(name))
        found |= {name for name, count in zip(names, pipe.execute(), strict=True) if count}
    return found


async def _groups_with_members(layer: Any, groups: set[str]) -> set[str]:
    """Which of ``groups`` have a socket in them now: with Redis, one pipelined ``EXISTS``
    per group (a group is a sorted set there, gone once its last socket left), so that a
    batch sends nothing to the many groups nobody listens on; other layers: all of them."""
    group_key = getattr(layer, "_group_key", None)
    if group_key is None or not hasattr(layer, "consistent_hash"):
        return groups
    by_connection: dict[int, list[str]] = {}
    for group in sorted(groups):
        by_connection.setdefault(layer.consistent_hash(group), []).append(group)
    found: set[str] = set()
    for index, names in by_connection.items():
        pipe = layer.connection(index).pipeline()
        for name in names:
            pipe.exists(group_key(name))
        found |= {name for name, count in zip(names, await pipe.execute(), strict=True) if count}
    return found


def users_listening(user_ids: Iterable[int]) -> set[int]:
    """Which of these users have a live socket open now (their group has one), so that a
    batch works out audiences only for them; with a layer that cannot tell (not Redis),
    all of them; with none configured, nobody."""
    wanted = {int(pk) for pk in user_ids}
    layer = get_channel_layer()
    if layer is None or not wanted:
        return set()
    if isinstance(layer, InMemoryChannelLayer):
        return wanted
    groups = {user_group(pk): pk for pk in wanted}
    try:
        found = _listened_now(layer, groups)
        if found is None:  # asked through the publishing loop instead
            future = asyncio.run_coroutine_threadsafe(
                _groups_with_members(layer, set(groups)), _loop()
            )
            found = future.result(SEND_TIMEOUT_SECONDS)
        return {groups[name] for name in found}
    except Exception:  # unknown: everyone may be listening
        logger.exception("live sockets could not be looked up")
        return wanted


def publish_many_now(
    messages: Iterable[tuple[str, dict[str, Any], Audience]], *, ordered: bool = False
) -> int:
    """Send many ``(topic, payload, audience)`` messages in one pass of the publishing loop
    (a batch's updates, already past its commit); returns how many group messages were
    sent. Groups without a socket are skipped (one check per group, not per message).
    ``ordered``: one after the other, in order (a run's steps, then its end), instead of
    side by side. Never raises (failures are logged)."""
    try:
        sends = [
            (group, {"type": MESSAGE_TYPE, "message": {"topic": topic, **payload}})
            for topic, payload, audience in messages
            for group in audience.groups()
        ]
        layer = get_channel_layer()
        if layer is None or not sends:
            return 0
        listened = _listened_now(layer, {group for group, _ in sends})
        if listened is not None:
            sends[:] = [(group, message) for group, message in sends if group in listened]
            if not sends:
                return 0

        async def send_all() -> None:
            if listened is None:
                found = await _groups_with_members(layer, {group for group, _ in sends})
                sends[:] = [(group, message) for group, message in sends if group in found]
            if ordered:
                for group, message in sends:
                    await layer.group_send(group, message)
                return
            for start in range(0, len(sends), 100):
                await asyncio.gather(
                    *(
                        layer.group_send(group, message)
                        for group, message in sends[start : start + 100]
                    )
                )

        if isinstance(layer, InMemoryChannelLayer):
            async_to_sync(send_all)()
        else:
            future = asyncio.run_coroutine_threadsafe(send_all(), _loop())
            future.result(SEND_TIMEOUT_SECONDS + len(sends) / 100)
        return len(sends)  # after the skip
    except Exception:
        logger.exception("live updates of a batch could not be published")
        return 0


def run_changed(run_id: int, status: str, *, step: str | None = None) -> None:
    """A run's status (or one of its steps', ``step``) changed: tell the run pages."""
    payload: dict[str, Any] = {"id": int(run_id), "status": str(status)}
    if step is not None:
        payload["step"] = step
    publish_after_commit("run", payload, RUN_AUDIENCE)
