"""A bare FastAPI endpoint with the session route's body and reply shapes, and no model behind it.

``bench/http.py`` and ``bench/http_latency.py`` serve it with uvicorn beside
the real service, so that the difference between the two is what sessions and
the model add.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

HORIZON, QUANTILES = 5, (0.1, 0.5, 0.9)

app = FastAPI()


class Batch(BaseModel):
    seq: int
    observations: list[float | dict[str, Any]]


@app.post("/v1/sessions/{session_id}/observations")
async def observations(session_id: str, batch: Batch) -> dict[str, Any]:
    next_seq = batch.seq + len(batch.observations)
    rows = [[0.01 * q for q in QUANTILES] for _ in range(HORIZON)]
    return {
        "session_id": session_id,
        "model": {"mode": "latent", "version": "bare"},
        "next_seq": next_seq,
        "forecast": {
            "as_of_seq": next_seq - 1,
            "horizons": list(range(1, HORIZON + 1)),
            "quantiles": list(QUANTILES),
            "log_return": rows,
            "price": rows,
        },
    }


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
