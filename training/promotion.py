"""When a retrain promotes: a one-sided paired Diebold-Mariano test on the holdout's per-day losses.

Both forecasters are scored on the same holdout days, which neither has read;
each day's loss is the pinball loss averaged over horizons 1..H, quantile
levels and the tickers of that day (``training.scoring.day_losses``). The
test of the challenger's losses against the champion's (``a`` the
challenger) gives two one-sided p-values: that the challenger is better, and
that it is worse. The rules, in order:

- **better**: the challenger is better at ``level`` (p of "better" below it);
- **stale**: the challenger is not significantly worse at ``level`` and the
  champion's data is stale, i.e. the challenger has read at least
  ``stale_days`` more trading days than the champion (the days from the first
  one the champion never read to the holdout's start). Wall-clock age does not
  count: a champion is stale only by the prices it has not seen;
- **kept**: otherwise the champion stays.

The decision is pure (no I/O): ``decide`` takes the losses and the day count
and returns a ``Verdict`` that the job report records whole; ``scored_from``
says from which holdout day both are scored (a champion that has read part of
the holdout, a refit, is scored on the rest).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from latentcast.errors import ConfigError
from training.significance import diebold_mariano

Rule = Literal["better", "stale", "kept"]


@dataclass(frozen=True)
class Verdict:
    """The test of challenger against champion, the rule that fired and why."""

    promote: bool
    rule: Rule
    statistic: float  # HLN-corrected DM statistic of challenger - champion: negative favours the challenger
    p_better: float  # one-sided p-value of "the challenger's loss is lower"
    p_worse: float  # one-sided p-value of "the challenger's loss is higher"
    mean_difference: float  # mean daily loss of challenger - champion
    days: int  # holdout days compared
    level: float
    stale_days: int
    newer_days: int  # trading days the challenger read that the champion never did
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_rule(level: float, stale_days: int) -> None:
    """A clear error for a level outside (0, 1) or a negative day count."""
    if not 0 < level < 1:
        raise ConfigError(f"the promotion level must lie strictly between 0 and 1, got {level!r}")
    if stale_days < 0:
        raise ConfigError(f"stale_days must not be negative, got {stale_days!r}")


def decide(
    challenger: pd.Series, champion: pd.Series, horizon: int, level: float, stale_days: int, newer_days: int
) -> Verdict:
    """Promote or keep, from the per-day losses (indexed by day) of both on the same holdout.

    ``horizon``: the longest horizon in the daily losses (their overlap is ``horizon - 1`` days).
    """
    check_rule(level, stale_days)
    both = pd.concat([challenger, champion], axis=1, join="inner").dropna()
    test = diebold_mariano(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy(), horizon)
    p_better, p_worse = test.p_lower, test.p_higher
    facts = (
        f"DM statistic {test.statistic:.3f} over {test.n} days, p(challenger better) = {p_better:.4f}, "
        f"p(challenger worse) = {p_worse:.4f}"
    )
    rule: Rule
    if p_better < level:
        rule, reason = "better", f"the challenger is better at level {level}: {facts}"
    elif p_worse >= level and newer_days >= stale_days:
        rule = "stale"
        reason = (
            f"the challenger is not significantly worse at level {level} and has read {newer_days} trading days "
            f"the champion never did (stale after {stale_days}): {facts}"
        )
    else:
        rule = "kept"
        worse = "is worse" if p_worse < level else f"has read only {newer_days} newer days (stale after {stale_days})"
        reason = f"the challenger is not better at level {level} and {worse}: {facts}"
    return Verdict(
        promote=rule != "kept",
        rule=rule,
        statistic=test.statistic,
        p_better=p_better,
        p_worse=p_worse,
        mean_difference=test.mean_difference,
        days=test.n,
        level=level,
        stale_days=stale_days,
        newer_days=newer_days,
        reason=reason,
    )


def newer_days(prices: pd.DataFrame, champion_unseen: np.datetime64, holdout_start: np.datetime64) -> int:
    """Trading days of ``prices`` from the first day the champion never read to the holdout's start (excluded)."""
    days = np.unique(prices["date"].to_numpy().astype("datetime64[D]"))
    return int(((days >= champion_unseen) & (days < holdout_start)).sum())


def scored_from(
    champion: str, unseen: np.datetime64, prices: pd.DataFrame, holdout: np.datetime64, horizon: int
) -> tuple[np.datetime64 | None, str]:
    """The first day both are scored from: the holdout's start, or the first trading day of it that the champion
    never read (``unseen``: a refit has read up to its own day); None with the reason when too few are left."""
    days = np.unique(prices["date"].to_numpy().astype("datetime64[D]"))
    unread = int((days >= max(holdout, unseen)).sum())
    if unread - 1 < 2 * horizon + 1:  # the last day has no outcome; the test needs 2h + 1 origins
        return None, (
            f"champion {champion} has read prices up to {_day(unseen - np.timedelta64(1, 'D'))}: {unread} holdout "
            f"days left unread from {_day(holdout)}, too few for a test at horizon {horizon}"
        )
    start = days[-unread]
    if start == holdout:
        return start, "the champion, on the whole holdout"
    return start, f"the champion, on the {unread} holdout days from {_day(start)} that it never read"


def _day(day: np.datetime64) -> str:
    return str(np.datetime_as_string(day, unit="D"))
