"""Per-mode hyperparameter search with Optuna, on a validation span only.

Each mode gets its own learning rate and hidden size, and ar its window or
latent its TBPTT length, from a small seeded TPE search (Optuna's default
sampler, as NeuralForecast's Auto models use it). A search trial trains one
model on the prices before the first fold's test block and is scored by its
best validation loss there: the search reads no price of any test block, so
no block the backtest scores has touched a choice. The trials run as the
backtest's do (``training.trials``): ``jobs`` at a time (on this host's
processes or a Ray cluster's), a failed one told
to Optuna as failed. A search is written to ``search.json`` and can be
reused by later backtests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from latentcast.errors import ConfigError
from models.config import MODES, ModelConfig
from training.config import TrainConfig
from training.fanout import run_trials
from training.report import write_json_report
from training.trials import Trial

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchConfig:
    """How many trials per mode, and where they look."""

    trials: int = 8
    seed: int = 0
    lr: tuple[float, float] = (1e-3, 1e-2)  # log-uniform
    hidden: tuple[int, ...] = (16, 32)
    window: tuple[int, ...] = (20, 40, 60)  # ar
    bptt: tuple[int, ...] = (25, 50, 100)  # latent

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"a search needs at least one trial per mode, got {self.trials}")


@dataclass
class Search:
    """Each mode's choice and every trial that led to it, with the span that chose them."""

    validation_start: str
    test_start: str  # the first day no search trial read
    choices: dict[str, dict[str, Any]]
    trials: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, path: Path) -> Search:
        """A search written by ``write``; ``ConfigError`` naming the file if it is not one."""
        try:
            raw = json.loads(path.read_text())
            search = cls(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: not a search written by latentcast backtest ({exc})") from exc
        unknown = sorted(set(search.choices) - set(MODES))
        if unknown or not search.choices:
            raise ConfigError(
                f"{path}: choices must be given per mode ({', '.join(MODES)}), got {sorted(search.choices)}"
            )
        return search

    def write(self, path: Path) -> Path:
        """``search.json`` whole or not at all."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_json_report(self.to_json(), path)


def with_choice(
    choice: dict[str, Any], model_config: ModelConfig, train_config: TrainConfig
) -> tuple[ModelConfig, TrainConfig]:
    """``model_config`` and ``train_config`` with a search's choice for their mode."""
    model: dict[str, Any] = {k: choice[k] for k in ("hidden_size", "window") if k in choice}
    train: dict[str, Any] = {k: choice[k] for k in ("lr", "bptt") if k in choice}
    return ModelConfig.from_dict({**model_config.to_dict(), **model}), replace(train_config, **train)


def _suggest(trial: optuna.Trial, mode: str, config: SearchConfig) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "lr": trial.suggest_float("lr", *config.lr, log=True),
        "hidden_size": trial.suggest_categorical("hidden_size", list(config.hidden)),
    }
    if mode == "ar":
        choice["window"] = trial.suggest_categorical("window", list(config.window))
    else:
        choice["bptt"] = trial.suggest_categorical("bptt", list(config.bptt))
    return choice


def search(
    prices: pd.DataFrame,
    features: Sequence[str],
    model_config: ModelConfig,
    train_config: TrainConfig,
    validation_start: np.datetime64,
    test_start: np.datetime64,
    config: SearchConfig,
    jobs: int = 1,
    ray_address: str | None = None,
) -> Search:
    """Each mode's search, on prices before ``test_start``, scored on the validation span from ``validation_start``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log says what each trial did
    known = prices[prices["date"] < test_start]
    choices: dict[str, dict[str, Any]] = {}
    trials: dict[str, list[dict[str, Any]]] = {}
    for mode in MODES:
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=config.seed))
        trials[mode] = []
        while len(trials[mode]) < config.trials:
            asked = [study.ask() for _ in range(min(jobs, config.trials - len(trials[mode])))]
            runs = []
            for t in asked:
                choice = _suggest(t, mode, config)
                mode_config = ModelConfig.from_dict({**model_config.to_dict(), "mode": mode})
                model, train = with_choice(choice, mode_config, train_config)
                runs.append(
                    Trial(-1, mode, train.seed, validation_start, test_start, None, model, train, forecast=False)
                )
            for t, result in zip(asked, run_trials(known, features, runs, jobs, ray_address), strict=True):
                loss = None if result.training is None else float(result.training["val_loss"])
                if loss is None:
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(t, loss)
                trials[mode].append({"number": t.number, "params": t.params, "val_loss": loss, "error": result.error})
        if all(t["val_loss"] is None for t in trials[mode]):
            raise ConfigError(f"every {mode} search trial failed; the first: {trials[mode][0]['error']}")
        choices[mode] = dict(study.best_params)
        logger.info("search, %s: %s (validation loss %.4f)", mode, choices[mode], study.best_value)
    return Search(_day(validation_start), _day(test_start), choices, trials, asdict(config))


def _day(day: np.datetime64) -> str:
    return str(np.datetime_as_string(day, unit="D"))
