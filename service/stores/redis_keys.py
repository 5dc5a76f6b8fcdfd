"""The Redis store's key names: one hash slot per session, one for the index of all sessions.

    <prefix>:{<id>}              hash: one session (see ``service/stores/redis_scripts.py``)
    {<prefix>}:sessions          sorted set: every session id, scored by when it expires at the earliest (ms)
    {<prefix>}:owners            hash: session id -> owner
    {<prefix>}:owner:<owner>     sorted set: the owner's session ids, scored as in the index

The braces are Redis Cluster hash tags: a session's key hashes by its id alone,
so sessions spread over the cluster's slots, while the index keys share the
slot of ``{<prefix>}`` and one script can change them together. A script never
touches two sessions, nor a session and the index.

``LegacyKeys`` names the keys of the layout before this one (one server only:
its scripts built key names and spanned slots), read once to move its
sessions into this layout (``service/stores/redis_upgrade.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key names under ``prefix``."""

    prefix: str

    def session(self, session_id: str) -> str:
        return f"{self.prefix}:{{{session_id}}}"

    @property
    def index(self) -> str:
        return f"{{{self.prefix}}}:sessions"

    @property
    def owners(self) -> str:
        return f"{{{self.prefix}}}:owners"

    def owner(self, owner: str) -> str:
        return f"{{{self.prefix}}}:owner:{owner}"

    def bookkeeping(self, owner: str) -> list[str]:
        """The index keys a change to one of ``owner``'s sessions touches: index, owners, the owner's set."""
        return [self.index, self.owners, self.owner(owner)]


@dataclass(frozen=True)
class LegacyKeys:
    """Key names of the earlier layout: ``<prefix>:session:<id>`` with ``:obs`` and ``:replies`` lists."""

    prefix: str

    def session(self, session_id: str) -> list[str]:
        base = f"{self.prefix}:session:{session_id}"
        return [base, f"{base}:obs", f"{base}:replies"]

    @property
    def index(self) -> str:
        return f"{self.prefix}:sessions"

    def owner(self, owner: str) -> str:
        return f"{self.prefix}:owner:{owner}"
