"""What clients send to forecast and to stream into sessions: observations and the model they pick."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from models.series import MAX_PRICE, MIN_PRICE, Observation

MAX_LABEL = 64
CLOSES = [101.2, 101.9, 100.7, 102.3, 103.0]

# What the schema promises of every value (``Predictor.validate`` enforces it, naming the
# observation's seq): prices from MIN_PRICE to MAX_PRICE, volumes not negative.
PRICE_BOUNDS: dict[str, Any] = {"minimum": MIN_PRICE, "maximum": MAX_PRICE}
VOLUME_BOUNDS: dict[str, Any] = {"minimum": 0}


def _price() -> Any:
    return Field(default=None, json_schema_extra=PRICE_BOUNDS)


class ObservationIn(BaseModel):
    """One bar; a bare number stands for {"close": number}."""

    model_config = ConfigDict(extra="forbid", strict=True)

    close: float = Field(json_schema_extra=PRICE_BOUNDS)
    open: float | None = _price()
    high: float | None = _price()
    low: float | None = _price()
    volume: float | None = Field(default=None, json_schema_extra=VOLUME_BOUNDS)
    time: str | None = Field(
        default=None, max_length=MAX_LABEL, description="a label, e.g. the date; not used by models"
    )

    @model_validator(mode="before")
    @classmethod
    def _number_is_a_close(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"close": value}
        if not isinstance(value, dict | ObservationIn):
            raise ValueError("an observation is a number (a close price) or an object with a close")
        return value

    def to_observation(self) -> Observation:
        return Observation(self.close, self.open, self.high, self.low, self.volume, self.time)


# in the schema, an observation is what clients may send: a number or an object
ObservationField = Annotated[
    ObservationIn,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "description": "a close price", **PRICE_BOUNDS},
                ObservationIn.model_json_schema(),
            ]
        }
    ),
]


def observations(items: list[ObservationIn]) -> list[Observation]:
    return [item.to_observation() for item in items]


# the schema says what ``_one_of_mode_or_version`` checks: never a mode and a version both
NOT_MODE_AND_VERSION: dict[str, Any] = {
    "not": {
        "required": ["mode", "version"],
        "properties": {"mode": {"type": "string"}, "version": {"type": "string"}},
    }
}


class ModelChoice(BaseModel):
    """Which model: a version, or the champion of a mode (latent when neither is given)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=NOT_MODE_AND_VERSION)

    mode: Literal["ar", "latent"] | None = Field(default=None, description="use this mode's champion")
    version: str | None = Field(default=None, max_length=MAX_LABEL, description="use this exact version")

    @model_validator(mode="after")
    def _one_of_mode_or_version(self) -> ModelChoice:
        if self.mode is not None and self.version is not None:
            raise ValueError("give a mode or a version, not both")
        return self


class ForecastRequest(ModelChoice):
    observations: list[ObservationField] = Field(min_length=1, description="the history, oldest first")


class OpenSessionRequest(ModelChoice):
    history: list[ObservationField] = Field(default_factory=list, description="warm-up observations, seq 0..n-1")
    ticker: str | None = Field(default=None, max_length=MAX_LABEL, description="a label for people; not used by models")
    calibration: Literal["adaptive"] | None = Field(
        default=None,
        description="`adaptive`: as each new price reveals the outcome of earlier forecasts, the session's "
        "quantile offsets move toward nominal coverage (adaptive conformal inference); null: the model's "
        "own (conformal) quantiles",
    )


# a seq is stored as a signed 64-bit integer (Redis counts with them); the schema says so, so that a client
# knows the bound rather than meeting it
MAX_SEQ = 2**63 - 1


class AppendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    # not strict: JSON Schema counts 5.0 as the integer 5, and so does this field
    seq: int = Field(
        ge=0, le=MAX_SEQ, strict=False, description="seq of the first observation: the session's next_seq, or a retry"
    )
    observations: list[ObservationField] = Field(min_length=1, description="new observations, oldest first")

    @field_validator("seq", mode="before")
    @classmethod
    def _seq_is_a_number(cls, value: Any) -> Any:
        # lax integers would also take true and "5", which the schema does not allow
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("seq must be an integer")
        return value


class MigrateRequest(ModelChoice):
    """Migrate to a version, or to a mode's champion (the session's own mode when neither is given)."""
