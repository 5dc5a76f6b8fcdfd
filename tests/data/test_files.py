from __future__ import annotations

import os
import stat

import pytest

from data.files import fsync_folder, replaced_whole, write_whole


def test_write_whole_replaces_the_file_and_leaves_nothing_beside_it(tmp_path):
    target = tmp_path / "pointer.json"
    target.write_text("old")
    write_whole(target, '{"version": "ünïcode"}')
    assert target.read_text(encoding="utf-8") == '{"version": "ünïcode"}'
    write_whole(target, b"\x00bytes", sync_folder=True)
    assert target.read_bytes() == b"\x00bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pointer.json"]


def test_a_write_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"the old checkpoint")
    with pytest.raises(RuntimeError, match="disk full"), replaced_whole(target) as handle:
        handle.write(b"half of the new one")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"the old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_content_that_cannot_be_written_leaves_no_file_at_all(tmp_path):
    target = tmp_path / "job.json"
    with pytest.raises(UnicodeEncodeError):
        write_whole(target, "\ud800")  # a lone surrogate has no UTF-8 form
    assert list(tmp_path.iterdir()) == []


def test_the_content_is_visible_only_once_the_block_ends(tmp_path):
    target = tmp_path / "entry.npz"
    target.write_bytes(b"old")
    with replaced_whole(target) as handle:
        handle.write(b"new")
        handle.flush()
        assert target.read_bytes() == b"old"
        (temp,) = (p for p in tmp_path.iterdir() if p != target)
        assert temp.name.startswith(".entry.npz.") and temp.name.endswith(".tmp")
    assert target.read_bytes() == b"new"


def test_a_missing_folder_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent"):
        write_whole(tmp_path / "absent" / "lease.json", "{}")
    with pytest.raises(FileNotFoundError):
        fsync_folder(tmp_path / "absent")
    fsync_folder(tmp_path)
    assert os.listdir(tmp_path) == []


def test_a_new_file_is_readable_by_all_and_a_replaced_one_keeps_its_mode(tmp_path):
    new = tmp_path / "report.json"
    write_whole(new, "{}")
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    private = tmp_path / "key"
    private.write_text("old")
    private.chmod(0o600)
    write_whole(private, "new")
    assert (private.read_text(), stat.S_IMODE(private.stat().st_mode)) == ("new", 0o600)
