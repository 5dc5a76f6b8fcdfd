"""The commands that keep the registry fresh: retrain, retrain-backtest, registry prune, schedule."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time

from latentcast.errors import ConfigError
from models.config import MODES
from service.cli.arguments import model_config, train_config
from service.config import Settings, get_settings
from service.jobs.pruning import prune_all
from training import distributed
from training.jobs import JobReport, JobStore, new_job_id
from training.policy_replay import ReplayConfig, replay
from training.policy_report import write_report
from training.retrain import RetrainConfig
from training.retrain_ranks import run_retrain_rank


def retrain_config(args: argparse.Namespace, settings: Settings, modes: tuple[str, ...]) -> RetrainConfig:
    """The retrain job the arguments describe, each unset one from ``settings``."""
    if args.epochs is None:
        args.epochs = settings.retrain_epochs
    return RetrainConfig(
        artifacts=args.artifacts,
        tickers=tuple(t.upper() for t in args.tickers or settings.retrain_tickers),
        source=args.source or settings.retrain_source,
        path=args.path or settings.retrain_path,
        modes=modes,
        level=settings.retrain_level if args.level is None else args.level,
        stale_days=settings.retrain_stale_days if args.stale_days is None else args.stale_days,
        holdout_days=args.holdout_days or settings.retrain_holdout_days,
        history_years=args.history_years or settings.retrain_history_years,
        refit=settings.retrain_refit if args.refit is None else args.refit,
        features=tuple(args.features.split(",")),
        model=model_config(args, "latent"),
        train=train_config(args),
        as_of=vars(args).get("as_of"),  # retrain's own option; a replay sets its days itself
    )


def run_retrain_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    config = retrain_config(args, settings, tuple(MODES) if args.mode == "both" else (args.mode,))
    job_id = args.job_id or new_job_id()
    if args.nproc > 1 and not distributed.launched():
        distributed.spawn(args.nproc, retrain_rank, config, job_id, args.device)
        job: JobReport | None = JobStore(config.artifacts / "jobs").get(job_id)
    else:
        job = run_retrain_rank(config, job_id, args.device)
    if job is None:  # a process other than the main one, under torchrun: the main one reports
        return 0
    print(json.dumps(job.to_dict(), indent=2))
    if job.status != "skipped":  # a skipped job ran beside another, whose own prune follows it
        for removal in prune_all(settings, args.artifacts):
            logging.getLogger(__name__).info("retention removed %s (%s)", removal.what, removal.reason)
    return 0 if job.status in ("succeeded", "skipped") else 1


def run_retrain_backtest(args: argparse.Namespace) -> int:
    """Replay the retrain policy through history (bundled prices unless told) and write its report."""
    settings = get_settings()
    args.source = args.source or "bundled"
    retrain = retrain_config(args, settings, (args.mode,))
    config = ReplayConfig(retrain=retrain, start=args.start, every=args.every, mode=args.mode)
    work = args.work or args.artifacts / "retrain-backtest"
    if work.exists() and any(work.iterdir()):
        raise ConfigError(f"{work}: the replay's folder must be empty or new (it holds the replay's registry)")
    out = args.out or args.artifacts / "reports" / "retraining"
    started = time.perf_counter()
    result = replay(config, work, progress=logging.getLogger(__name__).info, jobs=args.jobs)
    report = write_report(result, config, out, "latentcast " + " ".join(sys.argv[1:]), time.perf_counter() - started)
    print(json.dumps(report["contenders"], indent=2))
    print(f"report written to {out}")
    return 0


def retrain_rank(config: RetrainConfig, job_id: str, device: str) -> None:
    """One spawned retrain process: logs as the parent does, then runs or follows the job."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_retrain_rank(config, job_id, device)


def run_prune(args: argparse.Namespace) -> int:
    removals = prune_all(get_settings(), args.artifacts, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for removal in removals:
        print(f"{verb} {removal.what}: {removal.reason}")
    if not removals:
        print("nothing to remove")
    return 0


def run_schedule(args: argparse.Namespace) -> int:
    from service.jobs.scheduler import heartbeat_is_fresh, run_scheduler  # APScheduler only for this command

    settings = get_settings()
    if args.check:
        fresh, why = heartbeat_is_fresh(settings)
        print(why)
        return 0 if fresh else 1
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # containers stop with SIGTERM
    run_scheduler(settings)
    return 0
