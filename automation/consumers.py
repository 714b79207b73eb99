"""The live-updates socket (``/ws/live/``): one per page, authenticated with the session.

A socket joins only its own user's group and, when ``may_see_runs``, ``staff.runs``; it
never subscribes to an object, so what it receives is decided where the message is published
(``automation.live``). An anonymous or inactive user is refused (close code 4401).
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from automation.live import (
    EMBEDDED_POLL_SECONDS,
    STAFF_RUNS_GROUP,
    layer_is_shared,
    may_see_runs,
    user_group,
)

UNAUTHENTICATED = 4401


class LiveConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=UNAUTHENTICATED)
            return
        groups = [user_group(user.pk)]
        if await database_sync_to_async(may_see_runs)(user):
            groups.append(STAFF_RUNS_GROUP)
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined = groups
        await self.accept()
        shared = layer_is_shared()
        await self.send_json(
            {
                "topic": "hello",
                "shared": shared,
                "poll_seconds": 0 if shared else EMBEDDED_POLL_SECONDS,
            }
        )

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def live_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event["message"])
