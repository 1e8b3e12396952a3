"""Session uids: every session container runs its work under a uid of its own.

Containers share the host's per-uid kernel accounting (inotify instances and
watches, message-queue bytes, the user keyring): with one uid for all, a
session could use up another's share or read its keys. So each session
container gets a uid from `SESSION_UIDS` (`sandbox.agent.identity` explains
the range and how the images name it) that no other live container of this
server holds. The server decides it, passes it in the container's environment
and records it in a label; nothing the container says changes it.

Uids are handed out round-robin, so a uid just freed is the last to be reused.
After a restart the labels of the adopted containers say which are taken.
Other servers on the same engine pick from the same range without knowing
ours: two sessions of different servers may then share a uid's accounting
(never its files or processes, which stay in their containers).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..agent.identity import SESSION_UIDS
from ..errors import SessionError
from ..runtime.docker import LABEL_UID, ContainerRecord


class SessionUids:
    """The session uids of this server's live containers.

    Args:
        uids: The range to hand out (`SESSION_UIDS`; smaller in tests).
    """

    def __init__(self, uids: range = SESSION_UIDS) -> None:
        self._uids = uids
        self._next = 0
        self._taken: set[int] = set()
        self._by_container: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._taken)

    def take(self) -> int:
        """A uid no live container holds, reserved until `bind` or `release`.

        Raises:
            SessionError: Every uid of the range is taken (1003).
        """
        count = len(self._uids)
        for step in range(count):
            uid = self._uids[(self._next + step) % count]
            if uid not in self._taken:
                self._next = (self._next + step + 1) % count
                self._taken.add(uid)
                return uid
        raise SessionError(
            f"all {count} session uids are taken by live containers: destroy sessions "
            "or shrink the warm pools"
        )

    def bind(self, container_id: str, uid: int) -> None:
        """Record that `container_id` runs under `uid` (released with it)."""
        self._by_container[container_id] = uid

    def release(self, uid: int) -> None:
        """Free a uid that `take` reserved for a container that never started."""
        self._taken.discard(uid)

    def release_container(self, container_id: str) -> None:
        """Free the uid of a removed container (none for a shared service)."""
        uid = self._by_container.pop(container_id, None)
        if uid is not None:
            self._taken.discard(uid)

    def adopt(self, records: Iterable[ContainerRecord]) -> None:
        """Mark the uids of an earlier run's containers taken, from their labels.

        A label outside the range (a container of an older server, or none) is
        left alone: that container runs under its image's uid.
        """
        for record in records:
            label = record.labels.get(LABEL_UID, "")
            if label.isdigit() and int(label) in self._uids:
                self._taken.add(int(label))
                self._by_container[record.id] = int(label)
