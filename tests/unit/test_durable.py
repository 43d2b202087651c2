"""Durable writes and the crash points: a kill leaves the old file or the new one, never a torn one."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lookalike import durable
from lookalike.store import LiteStore
from tests.helpers import captured_logs
from tests.store_model import make_item


def _child(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_replaced_file_is_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    durable.write_text(target, "old")
    durable.write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "export.parquet"
    durable.write_bytes(target, b"old")
    with pytest.raises(RuntimeError), durable.replacing_file(target, "wb") as handle:
        handle.write(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.parquet"]


@pytest.mark.parametrize("step", ["file.written", "file.renamed"])
def test_a_kill_at_either_step_leaves_the_old_file_or_the_new(tmp_path: Path, step: str) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    env = {"LOOKALIKE_CRASH_AT": step, "PATH": "/usr/bin:/bin"}
    ran = _child(
        f"""
        from lookalike import durable
        durable.write_text({str(target)!r}, "new")
        print("not killed")
        """,
        env,
    )
    assert ran.returncode == -9, ran.stderr
    assert target.read_text() == ("old" if step == "file.written" else "new")
    assert durable.sweep_temporary(tmp_path) == (1 if step == "file.written" else 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_crash_point_kills_at_its_nth_occurrence_and_lists_every_step(tmp_path: Path) -> None:
    code = """
        from lookalike.durable import crash_point
        for i in range(5):
            crash_point("step.a")
            print(i, flush=True)
        crash_point("step.b")
        """
    ran = _child(code, {"LOOKALIKE_CRASH_AT": "step.a:3"})
    assert ran.returncode == -9
    assert ran.stdout.split() == ["0", "1"]
    log = tmp_path / "steps.log"
    ran = _child(code, {"LOOKALIKE_CRASH_AT": "list", "LOOKALIKE_CRASH_LOG": str(log)})
    assert ran.returncode == 0
    assert log.read_text().split() == ["step.a"] * 5 + ["step.b"]


def _store(tmp_path: Path) -> LiteStore:
    store = LiteStore(str(tmp_path / "t.db"), "images")
    store.create(16)
    return store


def test_a_damaged_saved_purge_is_set_aside_with_one_line_and_the_month_is_intact(tmp_path: Path) -> None:
    """The issue's brick: a truncated purge file used to make every command exit 70."""
    store = _store(tmp_path)
    store.insert([make_item(i, month=1) for i in range(1, 9)])
    store.flush()
    folder = store._folder()
    month = store.get([1])[0]
    store.close()
    name = "purge-m2024_02.parquet"  # make_item(month=1) lies in February 2024
    (folder / name).write_bytes(b"PAR1 torn")
    with captured_logs("lookalike.store.lite") as logs:
        store = LiteStore(str(tmp_path / "t.db"), "images")
        assert store.count() == 8
        assert store.get([1])[0].name == month.name
    store.close()
    assert any("could not be read" in r.getMessage() and "intact" in r.getMessage() for r in logs)
    assert (folder / (name + ".damaged")).exists()
    assert not (folder / name).exists()


def test_a_torn_read_index_state_is_rebuilt_from_milvus(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _store(tmp_path)
    store.insert([make_item(i) for i in range(1, 6)])
    store.flush()
    folder = store._folder()
    store.close()
    (folder / "state.json").write_text('{"version": 4, "dim"')
    for path in folder.glob("*.arrow"):
        path.write_bytes(path.read_bytes()[:40])
    with caplog.at_level(logging.WARNING, logger="lookalike.store.lite"):
        store = LiteStore(str(tmp_path / "t.db"), "images")
        assert sorted(i.id for b in store.iter_items(with_vector=False) for i in b) == [1, 2, 3, 4, 5]
    store.close()
    assert [r.getMessage() for r in caplog.records if "rebuilt" in r.getMessage()]


def test_an_erasure_killed_before_it_began_is_finished_on_the_next_open(tmp_path: Path) -> None:
    """The plan is written before Milvus sees the delete: the next open rewrites the partition."""
    store = _store(tmp_path)
    victim = make_item(3, name="VICTIM-BYTES")
    store.insert([victim, *(make_item(i) for i in (1, 2, 4))])
    store.flush()
    from lookalike.store import erasure

    store.delete([victim.id])
    store.flush()
    erasure.plan(
        store._folder(), [store.read_index().locate([1])[1]], store.partitions
    )  # as delete(erase=True) does
    # the old store is abandoned, as a killed process leaves it: nothing of it is closed
    reopened = LiteStore(str(tmp_path / "t.db"), "images")
    assert reopened.count() == 3
    assert not (reopened._folder() / erasure.PLAN).exists()
    reopened.close()
    leftovers = [
        p for p in (tmp_path / "t.db").rglob("*") if p.is_file() and b"VICTIM-BYTES" in p.read_bytes()
    ]
    assert leftovers == []


def test_segment_files_are_synced_before_the_state_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = durable.fsync_file
    monkeypatch.setattr(durable, "fsync_file", lambda path: (synced.append(Path(path).name), real(path))[1])
    store = _store(tmp_path)
    store.insert([make_item(i) for i in range(1, 4)])
    store.flush()
    store.close()
    arrows = [name for name in synced if name.endswith(".arrow")]
    assert arrows, synced
    assert synced.index(arrows[0]) < max(i for i, name in enumerate(synced) if "state.json" in name)
