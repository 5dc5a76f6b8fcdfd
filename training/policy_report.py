"""The retrain policy replay's report: what each contender served, its scores, its test against the policy.

``summarise`` turns a ``Replay`` into plain figures (pinball, coverage,
promotions, a Diebold-Mariano test of each contender's daily losses against
the configured policy's); ``write_report`` writes them to a folder as
``report.json``, ``README.md`` and ``served.png`` (the day of the last price
each contender's served version had read, over time).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt
import pandas as pd

from data.files import write_whole
from training.policy_replay import CONTENDERS, Replay, ReplayConfig
from training.significance import diebold_mariano

DESCRIPTIONS = {
    "policy": "the retrain job as configured",
    "never": "the first champion, never retrained",
    "always": "every challenger promoted, as trained",
    "refit": "every challenger refit through the day's price, no test",
}


def promotions(versions: list[str]) -> int:
    """How many times the served version changed after the first retrain day."""
    return sum(a != b for a, b in itertools.pairwise(versions))


def summarise(result: Replay) -> dict[str, Any]:
    """Per contender: daily-loss mean, coverage, promotions, distinct versions, and the DM test against the
    policy (negative statistic: the contender's loss is lower) over the days both served."""
    scores = result.scores
    policy = scores[scores["contender"] == "policy"].set_index("date")["loss"]
    rows: dict[str, Any] = {}
    for name in CONTENDERS:
        own = scores[scores["contender"] == name].set_index("date")
        row: dict[str, Any] = {
            "description": DESCRIPTIONS[name],
            "pinball": float(own["loss"].mean()),
            "coverage": float(own["coverage"].mean()),
            "days": len(own),
            "promotions": promotions(result.served[name]),
            "versions": len(set(result.served[name])),
        }
        if name != "policy":
            both = pd.concat([own["loss"], policy], axis=1, join="inner")
            test = diebold_mariano(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy(), result.horizon)
            row["against_policy"] = {**test.to_dict(), "verdict": test.verdict(name, "policy")}
        rows[name] = row
    rules = pd.Series([job.get("test", {}).get("rule", "first") for job in result.jobs]).value_counts()
    return {"contenders": rows, "rules_fired": {str(k): int(v) for k, v in rules.items()}}


def write_report(
    result: Replay, config: ReplayConfig, folder: Path, command: str, seconds: float | None = None
) -> dict[str, Any]:
    """Write ``report.json``, ``README.md`` and ``served.png`` to ``folder``; returns the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarise(result)
    retrain = config.retrain
    setup = {
        "command": command,
        "mode": config.mode,
        "every": config.every,
        "retrain_days": result.days,
        "level": retrain.level,
        "stale_days": retrain.stale_days,
        "refit": retrain.refit,
        "holdout_days": retrain.holdout_days,
        "history_years": retrain.history_years,
        "tickers": list(retrain.tickers),
        "model": retrain.model.to_dict(),
        "train": retrain.train.to_dict(),
        "trainings": result.trainings,
        "seconds": round(seconds if seconds is not None else result.seconds, 1),
    }
    jobs = [{k: job.get(k) for k in ("day", "challenger", "champion_after", "promoted", "test")} for job in result.jobs]
    report = {"setup": setup, **summary, "served": result.served, "seen_until": result.seen_until, "jobs": jobs}
    write_whole(folder / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    plot_served(result, folder / "served.png")
    write_whole(folder / "README.md", markdown(report))
    return report


def plot_served(result: Replay, path: Path) -> None:
    """A step line per contender: the last day of prices its served version had read, over time."""
    # the last version serves to the last day scored
    days = pd.to_datetime([*result.days, result.scores["date"].max()])
    figure, axis = plt.subplots(figsize=(9, 4.5))
    for offset, name in enumerate(CONTENDERS):
        versions = [*result.served[name], result.served[name][-1]]
        seen = pd.to_datetime([result.seen_until[v] for v in versions])
        # a small vertical shift keeps contenders that served the same version apart
        axis.step(days, seen + pd.Timedelta(days=4 * offset), where="post", label=f"{name}: {DESCRIPTIONS[name]}")
    axis.set_xlabel("retrain day (the version serves from it to the next)")
    axis.set_ylabel("last price the served version read")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(report: dict[str, Any]) -> str:
    """The report's page: setup, the table of contenders, the rules that fired, the figure."""
    setup = report["setup"]
    lines = [
        "# The retrain policy, replayed through history",
        "",
        f"`{setup['command']}` ({setup['seconds']} s): the real retrain job (mode {setup['mode']}) every "
        f"{setup['every']} trading days from {setup['retrain_days'][0]} to {setup['retrain_days'][-1]} "
        f"({len(setup['retrain_days'])} jobs) on the prices known each day, tickers {', '.join(setup['tickers'])}; "
        f"level {setup['level']}, stale after {setup['stale_days']} days, refit {setup['refit']}, holdout "
        f"{setup['holdout_days']} days, {setup['history_years']} years of history. "
        "Each contender's version serves from its retrain day's close to the next retrain day.",
        "",
        "Pinball: mean daily loss (horizons 1..H, every quantile, mean over tickers) of what each served; "
        "coverage: share of outcomes inside the outer band. DM: the contender's daily losses against the "
        "policy's (negative: the contender's loss is lower; two-sided p).",
        "",
        "| contender | pinball | coverage | days | promotions | versions | DM vs policy | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report["contenders"].items():
        test = row.get("against_policy")
        dm = (f"{test['statistic']:.2f}", f"{test['p_value']:.3f}") if test else ("", "")
        lines.append(
            f"| {name}: {row['description']} | {row['pinball']:.6f} | {row['coverage']:.3f} | {row['days']} | "
            f"{row['promotions']} | {row['versions']} | {dm[0]} | {dm[1]} |"
        )
    fired = ", ".join(f"{rule} {count}" for rule, count in report["rules_fired"].items())
    lines += [
        "",
        f"Rules that fired in the policy's jobs: {fired}. Trainings: "
        + ", ".join(f"{k} {v}" for k, v in setup["trainings"].items())
        + ".",
        "",
        "![the last price each contender's served version read](served.png)",
        "",
        "`report.json` holds every job's test (statistic, p-values, rule) and the versions each contender served.",
        "",
    ]
    return "\n".join(lines)
