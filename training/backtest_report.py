"""The backtest report as people read it: the verdict, the confidence sets, the tests, the tables, a plot.

The sentences are written from the figures: a difference is called only where
the Holm-adjusted Diebold-Mariano p-value is below the significance level and
the sign holds in most seeds, and the report says so when the random walk's
loss is the lower one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt
import numpy as np

from data.files import write_whole
from models.config import MODES
from training.backtest import Backtest, label
from training.report import write_json_report

BASELINES = ("random_walk", "garch_t", "riskmetrics_normal", "riskmetrics_t", "har_range", "linear_ar")
POINT_ONLY = ("linear_ar",)  # forecasts a point only: no pinball loss to plot


def methods(report: dict[str, Any]) -> list[str]:
    """The models (those of other scalings after them), then the baselines shown, as the report orders them."""
    models = [m for m in report["pooled"] if m.partition("_")[0] in MODES]
    return sorted(models, key=lambda m: (m.count("_"), not m.startswith("latent"), m)) + [
        m for m in BASELINES if m in report["pooled"]
    ]


def _spread(values: list[float | None], scale: float = 100.0, fmt: str = ".4f") -> str:
    """Mean over runs, with the range when there are several: ``0.1234 (0.1200-0.1260)``."""
    known = [v for v in values if v is not None]
    if not known:
        return "n/a"
    mean = format(np.mean(known) * scale, fmt)
    if len(known) == 1:
        return mean
    return f"{mean} ({min(known) * scale:{fmt}}-{max(known) * scale:{fmt}})"


def pooled_table(report: dict[str, Any], horizon: str) -> list[str]:
    lines = ["| method | pinball (%) | MAE / RW | outer-band coverage (%) |", "|---|---|---|---|"]
    for method in methods(report):
        row = report["pooled"][method][horizon]
        lines.append(
            f"| {label(method)} | {_spread(row['pinball'])} | {_spread(row['mae_ratio'], 1.0, '.3f')} "
            f"| {_spread(row['coverage'], 100.0, '.1f')} |"
        )
    return lines


def fold_table(report: dict[str, Any], horizon: str) -> list[str]:
    shown = methods(report)
    header = "| fold | test days | " + " | ".join(label(m) for m in shown) + " |"
    lines = [header, "|---" * (len(shown) + 2) + "|"]
    for fold in report["folds"]:
        end = fold["test_end"] or "the end"
        cells = [_spread(fold["scores"][m][horizon]["pinball"]) if m in fold["scores"] else "failed" for m in shown]
        lines.append(f"| {fold['fold']} | {fold['test_start']} to before {end} | " + " | ".join(cells) + " |")
    return lines


def _p(value: float) -> str:
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def test_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| horizon | a | b | DM statistic | p-value | Holm-adjusted | a - b per seed (%) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for test in report["diebold_mariano"]:
        seeds = test["seeds"]
        spread = f"{min(seeds) * 100:.4f} to {max(seeds) * 100:.4f}" if len(seeds) > 1 else f"{seeds[0] * 100:.4f}"
        weights = "" if test["weights"] == "equal" else " (Bartlett weights)"
        lines.append(
            f"| {test['horizon']} | {label(test['a'])} | {label(test['b'])} | {test['statistic']:.3f}{weights} "
            f"| {_p(test['p_value'])} | {_p(test['adjusted_p'])} | {spread} | {test['verdict']} |"
        )
    return lines


def confidence_sentence(mcs: dict[str, Any]) -> str:
    kept = ", ".join(label(m) for m in mcs["included"])
    return f"Horizon {mcs['horizon']}: the {1 - mcs['size']:.0%} model confidence set is {{{kept}}}."


def confidence_table(report: dict[str, Any]) -> list[str]:
    lines = ["| horizon | method | MCS p-value | in the set |", "|---|---|---|---|"]
    for mcs in report["confidence_sets"]:
        for method, p in sorted(mcs["p_values"].items(), key=lambda item: -item[1]):
            kept = "yes" if method in mcs["included"] else "no"
            lines.append(f"| {mcs['horizon']} | {label(method)} | {p:.3f} | {kept} |")
    return lines


def coverage_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| method | misses (%) | Kupiec p | Christoffersen independence p | conditional coverage p |",
        "|---|---|---|---|---|",
    ]

    def cell(values: list[float], fmt: str = ".3f") -> str:
        low, high = format(min(values), fmt), format(max(values), fmt)
        return low if low == high else f"{low}-{high}"

    for method in methods(report):
        runs = report["coverage_tests"].get(method)
        if not runs:
            continue
        rate = [r["misses"] / r["n"] * 100 for r in runs]
        lines.append(
            f"| {label(method)} | {cell(rate, '.1f')} (of {runs[0]['expected'] * 100:.0f}) "
            f"| {cell([r['kupiec_p'] for r in runs])} | {cell([r['independence_p'] for r in runs])} "
            f"| {cell([r['conditional_p'] for r in runs])} |"
        )
    return lines


def training_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| model | trainings | optimiser steps (mean) | best epoch was the last | seconds (mean) |",
        "|---|---|---|---|---|",
    ]
    for method, runs in report["trainings"].items():
        last = sum(1 for r in runs if r["best_epoch"] == r["epochs_run"])
        pretrained = np.mean([r.get("pretrain_steps", 0) for r in runs])
        steps = f"{np.mean([r['steps'] for r in runs]):.0f}" + (
            f" (+{pretrained:.0f} pretraining)" if pretrained else ""
        )
        lines.append(
            f"| {label(method)} | {len(runs)} | {steps} | {last} of {len(runs)} "
            f"| {np.mean([r['seconds'] for r in runs]):.1f} |"
        )
    return lines


def search_lines(report: dict[str, Any]) -> list[str]:
    """Which span chose what: the search's choices and trials, or that the configuration came as given."""
    search = report.get("search")
    if search is None:
        return [
            "No search: both modes train with the configuration above, as given on the command line. Its "
            "defaults were set before this report on spans that overlap its test blocks, so no block here is "
            "untouched by a choice."
        ]
    config = search["config"]
    lines = [
        f"Chosen per mode by Optuna (TPE sampler, seed {config['seed']}, {config['trials']} trials per mode) on the "
        f"validation loss of the span from {search['validation_start']} to before {search['test_start']}, each trial "
        f"learning from every earlier day on the budget above. No search trial read a price from "
        f"{search['test_start']} on, where the first test block starts: no test block of this report touched a "
        f"choice. Searched: learning rate {config['lr'][0]:g} to {config['lr'][1]:g} (log scale), hidden size "
        f"{config['hidden']}, ar's window {config['window']}, latent's bptt {config['bptt']}.",
        "",
        *[
            f"- **{mode}**: {', '.join(f'{k} {v:.4g}' for k, v in choice.items())}"
            for mode, choice in search["choices"].items()
        ],
        "",
        "| mode | trial | learning rate | hidden size | window or bptt | validation loss |",
        "|---|---|---|---|---|---|",
    ]
    for mode, trials in search["trials"].items():
        for t in trials:
            p = t["params"]
            loss = "failed" if t["val_loss"] is None else f"{t['val_loss']:.4f}"
            lines.append(
                f"| {mode} | {t['number']} | {p['lr']:.4g} | {p['hidden_size']} | {p.get('window', p.get('bptt'))} "
                f"| {loss} |"
            )
    return lines


def headline(report: dict[str, Any]) -> list[str]:
    """The ar against latent verdict at each horizon, with the confidence set beside it."""
    sets = {m["horizon"]: m for m in report["confidence_sets"]}
    out = []
    for test in report["diebold_mariano"]:
        if {test["a"], test["b"]} == {"latent", "ar"}:
            line = f"Horizon {test['horizon']}: {test['verdict']}."
            if test["horizon"] in sets:
                line += " The " + confidence_sentence(sets[test["horizon"]]).partition(": the ")[2]
            out.append(line)
    return out


def random_walk_sentences(report: dict[str, Any]) -> list[str]:
    """Say plainly where the random walk's pooled pinball loss is below the latent model's."""
    out = []
    for horizon, latent in report["pooled"]["latent"].items():
        rw = report["pooled"]["random_walk"][horizon]["pinball"][0]
        mean = float(np.mean([v for v in latent["pinball"] if v is not None]))
        if rw is not None and rw < mean:
            out.append(
                f"At horizon {horizon[1:]} the random walk with rolling volatility has the lower pooled pinball "
                f"loss ({rw * 100:.4f}% against latent's {mean * 100:.4f}%, mean over seeds)."
            )
    return out


def _fan_out(config: dict[str, Any]) -> str:
    """Where the trainings ran: so many local processes, or tasks on a Ray cluster."""
    if config.get("ray_address"):
        return f"tasks on the Ray cluster at {config['ray_address']}"
    return f"{config.get('jobs', 1)} processes"


def write_markdown(report: dict[str, Any], plot: Path, out: Path) -> Path:
    config, data = report["config"], report["config"]["data"]
    back, model, train = config["backtest"], config["model"], config["train"]
    horizons = sorted(report["pooled"]["latent"], key=lambda h: int(h[1:]))
    others = back.get("scalings", [])
    beside = f" Beside them, ar and latent with {' and '.join(others)} scaling, same data and seeds." if others else ""
    if train.get("pretrain_paths"):
        beside += (
            f" Both modes are first trained for {train['pretrain_steps']} optimiser steps on {train['pretrain_paths']} "
            f"synthetic paths of {train['pretrain_days']} days, then as above; beside them, each mode without "
            "that pretraining, same data and seeds."
        )
    if back.get("closes_only"):
        beside += " Each model also read with every range removed, and beside them models of closes, same seeds."
    steps = back.get("epoch_steps")
    budget = (
        f"at most {train['epochs']} epochs of {steps} optimiser steps each in both modes (equal budgets: "
        f"{train['epochs'] * steps} steps), validated after each (patience {train['patience']})"
        if steps
        else f"at most {train['epochs']} epochs, each one pass over the data (patience {train['patience']})"
    )
    failed = [f"- fold {f['fold']}, {label(f['method'])}, seed {f['seed']}: {f['error']}" for f in report["failures"]]
    lines = [
        "# Walk-forward backtest",
        "",
        f"Made by `latentcast backtest` on {report['created']} in {report['seconds'] / 60:.1f} minutes "
        f"({_fan_out(config)}).",
        "",
        f"**Data**: {data['source']} prices of {', '.join(data['tickers'])}, {data['first']} to {data['last']}, "
        f"features {', '.join(config['features'])}.",
        "",
        f"**Protocol**: {back['folds']} expanding-window folds; each tests {back['test_days']} trading days after "
        f"learning from every earlier day ({back['validation_days']} of them validate). Each fold trains ar and "
        f"latent anew for each of the seeds {back['seeds']} and fits the baselines on its training and validation "
        "spans; forecasts are rolled over the test block without refitting. Model"
        f"{' (before the per-mode choices under Hyperparameters)' if report.get('search') else ''}: "
        f"{model['cell']} of {model['hidden_size']} units, {model['num_layers']} layer(s), window {model['window']}, "
        f"quantiles {model['quantiles']}, {model.get('scaling', 'global')} scaling, learning rate {train['lr']}, "
        f"bptt {train['bptt']}; {budget}.{beside}",
        "",
        "Figures of the models are the mean over seeds, with the lowest and highest seed in brackets. The "
        "Diebold-Mariano tests (equal weights on lags 1..h-1, HLN correction) compare per-day pinball losses "
        f"(mean over seeds and tickers) over {report['diebold_mariano'][0]['n']} days ({report['forecasts']} "
        f"forecasts per method); their p-values are Holm-adjusted across the {len(report['diebold_mariano'])} "
        f"tests of this report, and a difference is called only where the adjusted p < "
        f"{report['significance_level']} and the sign holds in most seeds. The model confidence set "
        f"(Hansen, Lunde and Nason, `arch.bootstrap.MCS`, size {report['mcs_size']}) holds the methods that "
        "cannot be told from the best on the same per-day losses.",
        "",
        "## Verdict: ar against latent",
        "",
        *[f"- {line}" for line in headline(report)],
        "",
        "## Model confidence sets",
        "",
        *[f"- {confidence_sentence(m)}" for m in report["confidence_sets"]],
        "",
        *confidence_table(report),
        "",
        "## Every verdict",
        "",
        *[f"- Horizon {t['horizon']}: {t['verdict']}." for t in report["diebold_mariano"]],
        *[f"- {line}" for line in random_walk_sentences(report)],
        "",
        "## Diebold-Mariano tests (negative: a's loss is lower)",
        "",
        *test_table(report),
        "",
        "## The 10-90% band, one day ahead: Kupiec and Christoffersen (range over seeds)",
        "",
        *coverage_table(report),
        "",
        "## Hyperparameters",
        "",
        *search_lines(report),
        "",
        "## Training",
        "",
        *training_table(report),
        "",
        "Failed trials: none." if not failed else "Failed trials (left out of everything above):",
        *failed,
    ]
    for horizon in horizons:
        lines += ["", f"## Pooled over folds, {horizon[1:]} day(s) ahead", "", *pooled_table(report, horizon)]
        lines += ["", f"## Pinball loss (%) per fold, {horizon[1:]} day(s) ahead", "", *fold_table(report, horizon)]
    lines += ["", "## Plot", "", f"![{plot.stem}]({plot.name})", ""]
    path = out / "backtest.md"
    write_whole(path, "\n".join(lines))
    return path


def fold_plot(report: dict[str, Any], path: Path) -> Path:
    """Pinball loss per fold and method, one panel per horizon; bars span the seeds."""
    horizons = sorted(report["pooled"]["latent"], key=lambda h: int(h[1:]))
    fig, axes = plt.subplots(1, len(horizons), figsize=(6 * len(horizons), 4.5), squeeze=False)
    folds = [f["fold"] for f in report["folds"]]
    for ax, horizon in zip(axes[0], horizons, strict=True):
        shown = [m for m in methods(report) if m not in POINT_ONLY and all(m in f["scores"] for f in report["folds"])]
        for offset, method in enumerate(shown):
            values = [[v * 100 for v in f["scores"][method][horizon]["pinball"]] for f in report["folds"]]
            mean = np.array([np.mean(v) for v in values])
            low, high = mean - np.array([min(v) for v in values]), np.array([max(v) for v in values]) - mean
            x = np.array(folds) + (offset - len(shown) / 2) * 0.08
            ax.errorbar(x, mean, yerr=[low, high], fmt="o", capsize=3, label=label(method))
        ax.set_xticks(folds)
        ax.set_xlabel("fold (test block, oldest first)")
        ax.set_ylabel("pinball loss (% log return)")
        ax.set_title(f"{horizon[1:]} day(s) ahead: per fold, range over seeds")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(backtest: Backtest, out: Path) -> list[Path]:
    """``backtest.json``, ``backtest.md`` and the fold plot in ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    payload = backtest.to_json()
    json_path = write_json_report(payload, out / "backtest.json")
    plot = fold_plot(payload, out / "backtest_folds.png")
    return [json_path, write_markdown(payload, plot, out), plot]
