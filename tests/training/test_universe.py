"""Training on a folder of many ticker files: it works, in bounded memory, and a bad file is named."""

from __future__ import annotations

import logging
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from data import sources
from latentcast.errors import DataError
from service.cli import main
from training.registry import Registry

MIB = 1024 * 1024
COPIES = 100
# Budget for what 100 tickers add over 4 (96 more tickers of about 3,300 rows each, some 320,000 rows):
# the tidy frame (~100 bytes a row), features and targets in float64 and their scaled float32 copies
# (~100 bytes), the padded stream arrays of an epoch (~70 bytes) and the windows' index lists: under
# 400 bytes a row, about 120 MiB; twice that leaves room for the allocator without hiding a copy per window.
GROWTH_BUDGET_MIB = 256


def write_copies(folder: Path, count: int) -> Path:
    """``count`` files of real prices, one per ticker (``T000.csv`` ...), copies of the bundled four."""
    folder.mkdir()
    bundled = sources.bundled()
    names = sorted(bundled["ticker"].unique())
    for k in range(count):
        rows = bundled[bundled["ticker"] == names[k % len(names)]].drop(columns="ticker")
        rows.assign(date=rows["date"].dt.strftime("%Y-%m-%d")).to_csv(folder / f"T{k:03d}.csv", index=False)
    return folder


def peak_of_training(folder: Path, artifacts: Path) -> int:
    """Peak resident memory of the largest child so far after ``latentcast train`` on ``folder`` (bytes)."""
    command = [sys.executable, "-m", "service.cli", "train", "--artifacts", str(artifacts), "--source", "csv"]
    command += ["--path", str(folder), "--mode", "latent", "--epochs", "1", "--hidden", "8", "--threads", "1"]
    subprocess.run([*command, "--no-progress"], check=True, capture_output=True, timeout=600)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kilobytes on Linux


@pytest.mark.slow
def test_a_hundred_tickers_from_files_train_in_bounded_memory(tmp_path):
    few = peak_of_training(write_copies(tmp_path / "few", 4), tmp_path / "few-artifacts")
    many = peak_of_training(write_copies(tmp_path / "many", COPIES), tmp_path / "many-artifacts")
    version = Registry(tmp_path / "many-artifacts").champion("latent")
    assert version is not None
    span = Registry(tmp_path / "many-artifacts").load(version)["data_span"]
    assert len(span["tickers"]) == COPIES
    assert many - few < GROWTH_BUDGET_MIB * MIB, f"{(many - few) / MIB:.0f} MiB more for {COPIES} tickers than for 4"


def test_a_bad_file_among_many_is_named_with_its_line(tmp_path):
    folder = write_copies(tmp_path / "prices", 12)
    bad = folder / "T007.csv"
    lines = bad.read_text().splitlines()
    fields = lines[9].split(",")
    fields[4] = "-1.0"  # the close of line 10
    lines[9] = ",".join(fields)
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        sources.load("csv", path=folder)
    assert str(err.value).startswith(f"{bad}: T007 line 10 (")
    assert str(err.value).endswith("close is -1.0; prices must be positive")


def test_a_second_train_on_the_same_files_reads_every_ticker_from_the_feature_cache(tmp_path, caplog):
    folder = tmp_path / "prices"
    folder.mkdir()
    for ticker in ("IBM", "MSFT", "AAPL"):
        sources.bundled([ticker]).head(400).drop(columns="ticker").to_parquet(folder / f"{ticker}.parquet")
    command = ["train", "--artifacts", str(tmp_path / "artifacts"), "--source", "parquet", "--path", str(folder)]
    command += ["--mode", "ar", "--epochs", "1", "--hidden", "4", "--window", "10", "--threads", "1", "--no-progress"]
    caplog.set_level(logging.INFO, logger="data.universe")
    assert main(command) == 0
    assert main(command) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "data.universe"]
    cache = tmp_path / "artifacts" / "cache" / "features"
    assert lines == [
        f"feature cache {cache}: 0 parts read from it, 3 computed (0 of them replacing unreadable entries)",
        f"feature cache {cache}: 3 parts read from it, 0 computed (0 of them replacing unreadable entries)",
    ]
    assert len(Registry(tmp_path / "artifacts").versions("ar")) == 2
