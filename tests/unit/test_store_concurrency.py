"""Readers and writers together: searches never fail, never leave their filter, and the end state is right."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from lookalike.store import LiteStore
from lookalike.store.partitions import partition_for
from lookalike.store.window import Window
from tests.store_model import DIM, JAN_2024, SOURCES, Model, make_item, milvus_rows, vector

DAY = 86_400
SECONDS = 6.0


def test_searches_stay_inside_their_filter_while_others_index_delete_and_drop(tmp_path: Path) -> None:
    store = LiteStore(str(tmp_path / "c.db"), "images")
    store.create(DIM, index="HNSW")
    model = Model()
    seed = [make_item(i, month=i % 4, source=i % 2) for i in range(1, 301)]
    store.insert(seed)
    model.upsert(seed)
    write_lock = threading.Lock()  # the model follows the store's (serialised) order of writes
    stop = time.monotonic() + SECONDS
    errors: list[BaseException] = []
    searches = [0]

    def guarded(work: object) -> object:
        def run() -> None:
            try:
                work()  # type: ignore[operator]
            except BaseException as exc:  # noqa: BLE001 - any exception fails the test
                errors.append(exc)

        return run

    def reader(seed_: int) -> None:
        rng = random.Random(seed_)
        while time.monotonic() < stop:
            source = SOURCES[rng.randrange(2)]
            since = JAN_2024 + rng.randrange(0, 100) * DAY
            until = since + rng.randrange(1, 60) * DAY
            window = Window.of(sources=[source], since=since, until=until)
            hits = store.search(vector(rng.randrange(10_000))[None], k=rng.randrange(1, 40), window=window)[0]
            assert len({h.item.id for h in hits}) == len(hits)
            for hit in hits:
                assert hit.item.source == source and since <= hit.item.created_at < until
            searches[0] += 1

    def writer(seed_: int) -> None:
        rng = random.Random(seed_)
        next_id = 1000 * (seed_ + 1)
        while time.monotonic() < stop:
            action = rng.random()
            with write_lock:
                if action < 0.5:
                    batch = [
                        make_item(next_id + i, month=rng.randrange(4), source=rng.randrange(2))
                        for i in range(20)
                    ]
                    next_id += 20
                    store.insert(batch)
                    model.upsert(batch)
                elif action < 0.85 and model.rows:
                    doomed = rng.sample(sorted(model.rows), min(10, len(model.rows)))
                    store.delete(doomed)
                    model.delete(doomed)
                else:
                    name = partition_for(JAN_2024 + rng.randrange(4) * 31 * DAY + 1)
                    if name in store.partitions():
                        store.drop_partitions([name])
                    model.drop(name)

    threads = [threading.Thread(target=guarded(lambda s=s: reader(s))) for s in range(3)]
    threads += [threading.Thread(target=guarded(lambda s=s: writer(s))) for s in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SECONDS + 120)
    assert not errors, errors[:3]
    assert searches[0] > 20
    assert store.count() == len(model.rows)
    assert sorted(i.id for b in store.iter_items(with_vector=False) for i in b) == sorted(model.rows)
    assert set(milvus_rows(tmp_path / "c.db", "images")) == set(model.rows)
    query = vector(1)
    assert [h.item.id for h in store.search(query[None], k=10)[0]] == model.top(query, 10)
