"""The crash-injection harness: kill a write path with SIGKILL, reopen, check the invariants.

A *scenario* is one write path (``index``, ``delete --purge``, ``POST /index``, ...) run as a
real process on a copy of a small database made once (the *base*: a catalog of three months and
two sources, indexed with the tiny model, with open flags). A *round* runs the scenario and
kills it, either at a durable step (``LOOKALIKE_CRASH_AT=STEP:N``, see ``lookalike.durable``) or
at a random instant, then checks, against a model of what may be there:

- the database opens, and ``stats``, an export and a search over everything agree on the count;
- the read index holds exactly what Milvus holds (ids, fields, vectors);
- nothing committed before the kill is lost and nothing is duplicated: the ids lie between the
  scenario's lower and upper bounds (what it keeps, and what it may add);
- no open flag points at a missing item;
- the scenario then runs again to completion and the result is exactly what a run without a
  kill gives; an erasure holds (the victim's marker bytes are in no file under the database).

``tests/crash/test_crash.py`` runs a bounded slice in CI; ``scripts/crash_harness.py`` runs
hundreds of rounds and prints the tally.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MARK = "ERASEMARK"
"""Prefix of every item's name: a victim's ``MARK + item_id`` must leave every file once erased."""
MONTHS = (1_696_118_400, 1_698_796_800, 1_701_388_800)  # 2023-10-01, 2023-11-01, 2023-12-01 (UTC)
BASE_ROWS = 18
EXTRA_ROWS = 6


@dataclass
class Base:
    """A small database, made once, that every round starts from (copied)."""

    folder: Path
    env: dict[str, str]
    ids: dict[str, int]  # catalog item id -> stored id
    flags: dict[int, int]  # stored id -> open flag id

    @property
    def db(self) -> Path:
        return self.folder / "base.db"


@dataclass
class Round:
    """One kill: where (a step and occurrence, or a random delay), and what was found after."""

    scenario: str
    step: str
    outcome: str = ""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def environment(tmp: Path, model: tuple[Path, Path]) -> dict[str, str]:
    config, checkpoint = model
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env.update(
        {
            "LOOKALIKE_MODEL": str(config),
            "LOOKALIKE_PRETRAINED": str(checkpoint),
            "LOOKALIKE_RUNTIME": "torch",
            "LOOKALIKE_CACHE_DIR": str(tmp / "cache"),
            "LOOKALIKE_DATA_DIR": str(tmp / "data"),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _catalog(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "item_id", "name", "source", "created_at"])
        writer.writeheader()
        writer.writerows(rows)


def _row(photos: Path, i: int) -> dict[str, Any]:
    from tests.helpers import make_image

    path = photos / f"p{i:03d}.png"
    if not path.exists():
        make_image(i, size=(72, 64)).save(path)
    return {
        "image": str(path),
        "item_id": f"SKU{i}",
        "name": f"{MARK}{i}X",
        "source": "shop-a" if i % 2 else "shop-b",
        "created_at": MONTHS[i % 3] + 3600 * i,
    }


def build_base(folder: Path, model: tuple[Path, Path]) -> Base:
    """Index the base catalog with the real CLI, then flag a few items (what a policy would do)."""
    from lookalike.store import open_store
    from lookalike.workflow import Workflow
    from lookalike.workflow.db import NewFlag

    folder.mkdir(parents=True, exist_ok=True)
    photos = folder / "photos"
    photos.mkdir(exist_ok=True)
    env = environment(folder, model)
    _catalog(folder / "catalog.csv", [_row(photos, i) for i in range(BASE_ROWS)])
    # the inputs the scenarios use: more rows, a changed catalog for --sync, a folder for POST /index
    _catalog(folder / "more.csv", [_row(photos, i) for i in range(BASE_ROWS, BASE_ROWS + EXTRA_ROWS)])
    synced = [_row(photos, i) for i in range(BASE_ROWS) if i not in (1, 2)]
    synced += [_row(photos, i) for i in range(BASE_ROWS, BASE_ROWS + 2)]
    synced[0]["name"] = f"{MARK}0X renamed"
    _catalog(folder / "synced.csv", synced)
    upload = folder / "upload"
    upload.mkdir(exist_ok=True)
    for i in range(100, 100 + EXTRA_ROWS):
        _row(upload, i)
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "lookalike",
            "index",
            str(folder / "catalog.csv"),
            "--db",
            str(folder / "base.db"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stderr
    store = open_store(str(folder / "base.db"), "images")
    try:
        ids = {item.item_id: item.id for batch in store.iter_items(with_vector=False) for item in batch}
        _export(store, folder / "extra.parquet", EXTRA_ROWS)
    finally:
        store.close()
    workflow = Workflow(f"{folder / 'base.db'}.images.workflow.sqlite")
    try:
        flagged = [ids[f"SKU{i}"] for i in (3, 4, 5)]
        workflow.add_flags([NewFlag(item, "banned", "weapon", 0.9) for item in flagged])
        flags = {flag.item: flag.id for flag in workflow.flags()}
    finally:
        workflow.close()
    return Base(folder, env, ids, flags)


def _export(store: Any, path: Path, count: int) -> None:
    """A Parquet export of ``count`` new items (vectors copied from stored ones) for ``import``."""
    import dataclasses

    from lookalike.store.backup import export_parquet

    stored = [item for batch in store.iter_items(with_vector=True) for item in batch][:count]
    fresh = [
        dataclasses.replace(item, id=item.id ^ 0x5A5A5A5A, item_id=f"IMP{n}", name=f"{MARK}IMP{n}X")
        for n, item in enumerate(stored)
    ]

    class Rows:  # the export reads a store's items; these are the items to write
        def dim(self) -> int:
            return store.dim()

        def index(self) -> Any:
            return store.index()

        def model(self) -> str:
            return store.model()

        def iter_items(self, **_: Any) -> Iterator[list[Any]]:
            yield fresh

    export_parquet(Rows(), str(path))  # type: ignore[arg-type]


# -- scenarios ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A write path: how to run it and which ids may be there after a kill."""

    name: str
    argv: Callable[[Base, Path], list[str]] | None = None  # CLI arguments (after `lookalike`)
    request: Callable[[Base, Path], tuple[str, str, Any]] | None = None  # (method, path, json)
    keeps: Callable[[Base], set[str]] = lambda base: set(base.ids)  # catalog ids never lost
    final: Callable[[Base], set[str]] = lambda base: set(base.ids)  # catalog ids after a whole run
    erases: tuple[str, ...] = ()  # catalog ids whose marker must leave every file
    prepare: Callable[[Base, Path], None] | None = None  # run on the copy before the kill
    also_done: tuple[int, ...] = ()  # HTTP answers that mean "already done" when run again

    def may_hold(self, base: Base) -> set[str]:
        """What a killed run may leave: the base, and whatever a whole run ends with."""
        return set(base.ids) | self.final(base)


def _without(*gone: str) -> Callable[[Base], set[str]]:
    return lambda base: set(base.ids) - set(gone)


def _with_extra(prefix: str, count: int) -> Callable[[Base], set[str]]:
    return lambda base: set(base.ids) | {f"{prefix}{i}" for i in range(count)}


def _sync_final(base: Base) -> set[str]:
    return (set(base.ids) - {"SKU1", "SKU2"}) | {f"SKU{BASE_ROWS}", f"SKU{BASE_ROWS + 1}"}


def _delete_earlier(base: Base, db: Path) -> None:
    """A delete without erasure, made before the kill: `compact` then has a partition to rewrite."""
    from lookalike.store import open_store

    store = open_store(str(db), "images")
    try:
        store.delete([base.ids["SKU7"]])
        store.flush()
    finally:
        store.close()


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "index",
            argv=lambda base, db: ["index", str(base.folder / "more.csv")],
            final=lambda base: set(base.ids) | {f"SKU{i}" for i in range(BASE_ROWS, BASE_ROWS + EXTRA_ROWS)},
        ),
        Scenario(
            "index --sync",
            argv=lambda base, db: ["index", str(base.folder / "synced.csv"), "--sync"],
            keeps=lambda base: set(base.ids) - {"SKU1", "SKU2"},
            final=_sync_final,
        ),
        Scenario(
            "import",
            argv=lambda base, db: ["import", str(base.folder / "extra.parquet")],
            final=lambda base: set(base.ids) | {f"IMP{i}" for i in range(EXTRA_ROWS)},
        ),
        Scenario(
            "delete",
            argv=lambda base, db: ["delete", "--item-id", "SKU6", "--yes"],
            keeps=_without("SKU6"),
            final=_without("SKU6"),
        ),
        Scenario(
            "delete --purge",
            argv=lambda base, db: ["delete", "--item-id", "SKU9", "--purge", "--yes"],
            keeps=_without("SKU9"),
            final=_without("SKU9"),
            erases=("SKU9",),
        ),
        Scenario(
            "compact",
            argv=lambda base, db: ["compact"],
            keeps=_without("SKU7"),
            final=_without("SKU7"),
            erases=("SKU7",),
            prepare=_delete_earlier,
        ),
        Scenario(
            "partitions drop",
            argv=lambda base, db: ["partitions", "drop", "--before", "2023-11-01", "--yes"],
            keeps=lambda base: {f"SKU{i}" for i in range(BASE_ROWS) if i % 3},
            final=lambda base: {f"SKU{i}" for i in range(BASE_ROWS) if i % 3},
        ),
        Scenario(
            "review --take-down",
            argv=lambda base, db: [
                "review",
                str(base.flags[base.ids["SKU4"]]),
                "--confirm",
                "--take-down",
                "--by",
                "crash",
            ],
            keeps=_without("SKU4"),
            final=_without("SKU4"),
            erases=("SKU4",),
        ),
        Scenario(
            "POST /index",
            request=lambda base, db: (
                "POST",
                "/index",
                {"inputs": [str(base.folder / "upload")], "source": "up"},
            ),
            final=lambda base: set(base.ids) | {f"p{i:03d}" for i in range(100, 100 + EXTRA_ROWS)},
        ),
        Scenario(
            "DELETE /items",
            request=lambda base, db: ("DELETE", f"/items/{base.ids['SKU5']}?purge=true", None),
            keeps=_without("SKU5"),
            final=_without("SKU5"),
            erases=("SKU5",),
            also_done=(404,),  # run again after a kill that came after the delete: it is gone
        ),
    ]
}


# -- running -------------------------------------------------------------------------------------


def copy_base(base: Base, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    db = into / "crash.db"
    shutil.copytree(base.db, db, symlinks=True)
    shutil.copy2(f"{base.db}.images.workflow.sqlite", f"{db}.images.workflow.sqlite")
    return db


def _env(base: Base, db: Path, crash: str | None, log: Path | None = None) -> dict[str, str]:
    env = dict(base.env)
    env["LOOKALIKE_DB"] = str(db)
    env["LOOKALIKE_INDEX_ROOTS"] = str(base.folder)
    if crash:
        env["LOOKALIKE_CRASH_AT"] = crash
    if log is not None:
        env["LOOKALIKE_CRASH_LOG"] = str(log)
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(
    scenario: Scenario,
    base: Base,
    db: Path,
    *,
    crash: str | None = None,
    kill_after: float | None = None,
    log: Path | None = None,
    timeout: float = 300.0,
) -> tuple[int, str]:
    """Run the scenario once as a real process; returns (exit code, its output). -9: killed."""
    env = _env(base, db, crash, log)
    if scenario.argv is not None:
        return _run_cli(scenario.argv(base, db), env, kill_after, timeout)
    return _run_api(scenario, base, db, env, kill_after, timeout, crash)


def _run_cli(
    args: list[str], env: dict[str, str], kill_after: float | None, timeout: float
) -> tuple[int, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    if kill_after is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(kill_after)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        return -999, out
    return process.returncode, out


def _run_api(
    scenario: Scenario,
    base: Base,
    db: Path,
    env: dict[str, str],
    kill_after: float | None,
    timeout: float,
    crash: str | None = None,
) -> tuple[int, str]:
    """Start `lookalike serve`, make the request (and wait for its job), then stop the server."""
    import httpx

    assert scenario.request is not None
    port = _free_port()
    logfile = db.parent / "serve.log"
    with logfile.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lookalike", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()  # a random kill counts from the process' start: its open recovers too
    deadline = started + timeout
    try:
        while True:
            if process.poll() is not None:
                return process.returncode, logfile.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                return -999, logfile.read_text()
            if kill_after is not None and time.monotonic() - started > kill_after:
                process.send_signal(signal.SIGKILL)
                process.wait(60)
                return -9, logfile.read_text()
            time.sleep(0.1)
        method, path, body = scenario.request(base, db)
        answer = ""  # what went wrong with the request or its job, if anything
        try:
            response = httpx.request(method, url + path, json=body, timeout=timeout)
            job = response.json().get("id") if response.status_code == 202 else None
            if response.status_code >= 300 and response.status_code not in scenario.also_done:
                answer = f"{method} {path} answered {response.status_code}: {response.text[:500]}"
            while job is not None and process.poll() is None:
                if kill_after is not None and time.monotonic() - started > kill_after:
                    break
                state = httpx.get(f"{url}/jobs/{job}", timeout=10).json()
                if state.get("status") not in ("queued", "running"):
                    if state.get("status") != "done":
                        answer = f"the job ended {state.get('status')}: {state.get('error')}"
                    break
                time.sleep(0.05)
        except httpx.HTTPError as exc:
            answer = f"{method} {path}: {exc!r}"  # the server died under the request
            if crash:  # killed at its crash point: let the kill be seen before anything is decided
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(30)
        if kill_after is not None:
            left = kill_after - (time.monotonic() - started)
            if left > 0:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(left)
        if process.poll() is not None:  # killed at a crash point (or it died by itself)
            return process.returncode, logfile.read_text() + answer
        if kill_after is not None:
            process.send_signal(signal.SIGKILL)
            process.wait(60)
            return -9, logfile.read_text()
        process.send_signal(signal.SIGTERM)  # a whole run: the server is stopped as a user would
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(60)
        return (1 if answer else 0), logfile.read_text() + answer
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def steps_of(scenario: Scenario, base: Base, scratch: Path) -> tuple[list[tuple[str, int]], float]:
    """The durable steps a whole run passes, each with how often, and how long the run took."""
    folder = Path(tempfile.mkdtemp(prefix="listing-", dir=scratch))
    db = copy_base(base, folder)
    if scenario.prepare:
        scenario.prepare(base, db)
    log = folder / "steps.log"
    started = time.monotonic()
    code, out = run(scenario, base, db, crash="list", log=log)
    took = time.monotonic() - started
    assert code in (0, -15), f"{scenario.name} failed without a kill ({code}):\n{out[-3000:]}"
    counts: dict[str, int] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        counts[line] = counts.get(line, 0) + 1
    return sorted(counts.items()), took


# -- checking ------------------------------------------------------------------------------------


def check(scenario: Scenario, base: Base, db: Path, *, finished: bool) -> list[str]:
    """Every invariant of a database after a kill (``finished``: after the scenario ran again whole)."""
    from tests.cli import lookalike

    problems: list[str] = []
    env = _env(base, db, None)
    stats = lookalike(env, "stats", "--json")
    if stats.returncode != 0:
        return [f"stats exits {stats.returncode}: {(stats.stderr or stats.stdout)[-500:]}"]
    info = json.loads(stats.stdout)
    export = db.parent / "check.parquet"
    exported = lookalike(env, "export", str(export))
    if exported.returncode != 0:
        return [f"export exits {exported.returncode}: {exported.stderr[-500:]}"]
    import pyarrow.parquet as pq

    table = pq.read_table(export, columns=["id", "item_id"]).to_pydict()
    export.unlink()
    keys = table["item_id"]
    by_source = sum(int(n) for n in info["sources"].values())
    if not (info["rows"] == by_source == len(keys)):
        problems.append(
            f"counts disagree: stats rows {info['rows']}, sources {by_source}, export {len(keys)}"
        )
    if len(set(table["id"])) != len(table["id"]) or len(set(keys)) != len(keys):
        problems.append(f"duplicates: {sorted(k for k in keys if keys.count(k) > 1)}")
    problems += _store_checks(db, len(keys))
    held = set(keys)
    lost = scenario.keeps(base) - held
    if lost:
        problems.append(f"lost committed items: {sorted(lost)}")
    unexpected = held - scenario.may_hold(base)
    if unexpected:
        problems.append(f"items nothing wrote: {sorted(unexpected)}")
    if finished and held != scenario.final(base):
        problems.append(
            f"after a whole run: missing {sorted(scenario.final(base) - held)}, extra {sorted(held - scenario.final(base))}"
        )
    problems += _flag_checks(env, set(table["id"]))
    if finished:
        for key in scenario.erases:
            found = _files_holding(db, f"{MARK}{key[3:]}X".encode())
            if found:
                problems.append(f"{key} not erased: its bytes are in {found}")
    return problems


def _store_checks(db: Path, expected: int) -> list[str]:
    """The read index equals Milvus (ids, fields, vectors); a search over everything finds every row."""
    from lookalike.store import open_store

    problems: list[str] = []
    store = open_store(str(db), "images")
    try:
        indexed = {item.id: item for batch in store.iter_items(with_vector=True) for item in batch}
        truth: dict[int, Any] = {}
        for _, batch in store._milvus_items(batch_size=1000, with_vector=True):  # type: ignore[attr-defined]
            truth.update((item.id, item) for item in batch)
        if set(indexed) != set(truth):
            problems.append(
                f"read index differs from Milvus: only indexed {sorted(set(indexed) - set(truth))[:5]}, "
                f"only in Milvus {sorted(set(truth) - set(indexed))[:5]}"
            )
        for key in set(indexed) & set(truth):
            a, b = indexed[key], truth[key]
            if (a.item_id, a.name, a.source, a.created_at, a.sha256) != (
                b.item_id,
                b.name,
                b.source,
                b.created_at,
                b.sha256,
            ):
                problems.append(f"fields of {key} differ between the read index and Milvus")
            elif not np.allclose(a.vector, b.vector, atol=1e-6):
                problems.append(f"vector of {key} differs between the read index and Milvus")
        if expected:
            query = np.ones((1, store.dim()), dtype=np.float32) / np.sqrt(store.dim())
            hits = store.search(query, k=expected)[0]
            if len({hit.item.id for hit in hits}) != expected:
                problems.append(f"a search over everything found {len(hits)} of {expected}")
        if store.count() != expected:
            problems.append(f"count() says {store.count()}, the export {expected}")
    finally:
        store.close()
    return problems


def _flag_checks(env: dict[str, str], ids: set[int]) -> list[str]:
    """The review queue, as a reviewer sees it, shows no open flag of an item that is gone."""
    from tests.cli import lookalike

    listed = lookalike(env, "flags", "--status", "open", "--json", "--limit", "1000")
    if listed.returncode != 0:
        return [f"flags exits {listed.returncode}: {listed.stderr[-500:]}"]
    dangling = [f["id"] for f in json.loads(listed.stdout)["flags"] if int(f["item"]) not in ids]
    return [f"open flags point at missing items: {dangling}"] if dangling else []


def _files_holding(db: Path, marker: bytes) -> list[str]:
    found = []
    for path in db.rglob("*"):
        if path.is_file() and marker in path.read_bytes():
            found.append(str(path.relative_to(db)))
    return found


# -- rounds --------------------------------------------------------------------------------------


def play(
    scenario: Scenario, base: Base, scratch: Path, *, step: str | None = None, delay: float | None = None
) -> Round:
    """One round: copy the base, run the scenario to a kill, check; run it again whole, check."""
    label = step if step is not None else f"random {delay:.2f}s"
    result = Round(scenario.name, label)
    folder = Path(tempfile.mkdtemp(prefix="round-", dir=scratch))
    try:
        db = copy_base(base, folder)
        if scenario.prepare:
            scenario.prepare(base, db)
        started = time.monotonic()
        code, out = run(scenario, base, db, crash=step, kill_after=delay)
        result.seconds = time.monotonic() - started
        result.outcome = "killed" if code == -9 else f"exit {code}"
        if code not in (-9, 0):
            result.problems.append(f"the run exited {code} before the kill:\n{out[-2000:]}")
        result.problems += check(scenario, base, db, finished=False)
        code, out = run(scenario, base, db)
        if code != 0:
            result.problems.append(f"the run after the kill exited {code}:\n{out[-2000:]}")
        result.problems += check(scenario, base, db, finished=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def instants(took: float) -> tuple[float, float]:
    """Where random kills fall: past the interpreter's start (nothing is written before it), to the end."""
    return 0.35 * took, 1.05 * took


def plan_rounds(
    steps: dict[str, tuple[list[tuple[str, int]], float]], rounds: int, rng: random.Random
) -> list[tuple[str, str | None, float | None]]:
    """(scenario, step or None, delay or None) for ``rounds`` rounds: every step first, then random.

    Each scenario's steps are visited in turn (the first and the last time each is reached,
    then a random occurrence); the other half of the rounds kill at a random instant.
    """
    deterministic: list[tuple[str, str | None, float | None]] = []
    for name, (counts, _) in steps.items():
        for step, count in counts:
            deterministic.append((name, f"{step}:1", None))
            if count > 1:
                deterministic.append((name, f"{step}:{count}", None))
            if count > 2:
                deterministic.append((name, f"{step}:{rng.randint(2, count - 1)}", None))
    rng.shuffle(deterministic)
    names = list(steps)
    plan: list[tuple[str, str | None, float | None]] = []
    while len(plan) < rounds:
        if deterministic and len(plan) % 2 == 0:
            plan.append(deterministic.pop())
        else:
            name = names[len(plan) % len(names)]
            plan.append((name, None, rng.uniform(*instants(steps[name][1]))))
    return plan
