"""The Redis store's earlier layout, frozen: a writer of records as that store wrote them.

An upgrade must read what it left. Do not change this file when the store's
layout changes: it is the record of what was written before.

    <prefix>:session:<id>          hash: owner, mode, version, ticker, next_seq, state, created, updated,
                                   calibration (absent in records stored before it)
    <prefix>:session:<id>:obs      list: retained observations, oldest first (observation_to_bytes)
    <prefix>:session:<id>:replies  list: recent replies, oldest first (StoredReply.to_bytes)
    <prefix>:sessions              sorted set: session id by expiry time (ms)
    <prefix>:owner:<owner>         sorted set: the owner's session ids by expiry time (ms)
"""

from __future__ import annotations

import redis

from service.stores.records import SessionRecord, observation_to_bytes


def write_legacy(raw: redis.Redis, prefix: str, record: SessionRecord, ttl_ms: int, calibration: bool = True) -> None:
    """Store ``record`` as the earlier store did (``calibration``: with the field it added later)."""
    seconds, micros = raw.time()
    expiry = seconds * 1000 + micros // 1000 + ttl_ms
    base = f"{prefix}:session:{record.session_id}"
    fields: dict[str, bytes | str | int] = {
        "owner": record.owner,
        "mode": record.mode,
        "version": record.version,
        "ticker": record.ticker or "",
        "next_seq": record.next_seq,
        "state": record.state,
        "created": repr(record.created),
        "updated": repr(record.updated),
    }
    if calibration:
        fields["calibration"] = record.calibration
    pipe = raw.pipeline(transaction=True)
    pipe.hset(base, mapping=fields)  # type: ignore[arg-type]
    if record.retained:
        pipe.rpush(f"{base}:obs", *(observation_to_bytes(o) for o in record.retained))
    if record.replies:
        pipe.rpush(f"{base}:replies", *(reply.to_bytes() for reply in record.replies))
    for key in (base, f"{base}:obs", f"{base}:replies"):
        pipe.pexpire(key, ttl_ms)
    pipe.zadd(f"{prefix}:sessions", {record.session_id: expiry})
    pipe.zadd(f"{prefix}:owner:{record.owner}", {record.session_id: expiry})
    pipe.pexpire(f"{prefix}:owner:{record.owner}", ttl_ms)
    pipe.execute()
