"""The embedded broker: kombu's filesystem transport, with messages written atomically.

kombu's filesystem channel creates a message's file under its final name and then writes
into it, so a worker polling the folder can take the file while it is still empty: the
worker stops with ``JSONDecodeError`` and the message is lost (celery/kombu#1551). Here a
message is written under a name no queue reads, then renamed into place, so a reader only
ever sees complete messages. ``config.celery`` makes this the ``filesystem://`` transport.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(  # type: ignore[override]  # kombu's filesystem Channel renames message to payload
        self, queue: str, payload: object, **kwargs: object
    ) -> None:
        """Put a message on ``queue``: write ``<name>.tmp``, then rename it to ``<name>``."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.tmp"  # "<id>.<queue>.msg.tmp": no queue's name, never read
        try:
            with open(partial, "wb") as file:
                file.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
