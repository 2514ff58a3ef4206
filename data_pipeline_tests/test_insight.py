from data_pipeline.parallel.insight import conclusion, load_imbalance, pool_insight
from data_pipeline.parallel.stats import PoolStats


def stats(busy: dict[int, float], startup: float = 0.1, map_seconds: float = 2.0) -> PoolStats:
    pool = PoolStats(workers=len(busy), start_method="forkserver")
    pool.busy_seconds_by_worker = busy
    pool.chunks_by_worker = {pid: 10 for pid in busy}
    pool.items_by_worker = {pid: 1000 for pid in busy}
    pool.startup_seconds, pool.map_seconds = startup, map_seconds
    pool.wall_seconds = startup + map_seconds
    return pool


def test_a_pool_that_mostly_computes_pays():
    text = conclusion(stats({11: 1.9, 12: 1.9}))
    assert text.startswith("compute 90%, start-up 5%")
    assert text.endswith("parallelism pays")


def test_a_pool_that_mostly_starts_up_does_not():
    assert "overheads weigh too much" in conclusion(stats({11: 0.1, 12: 0.1}, startup=1.0))


def test_load_imbalance_is_slowest_over_fastest():
    assert load_imbalance(stats({11: 3.0, 12: 1.5})) == 2.0
    assert load_imbalance(stats({11: 3.0})) == 1.0


def test_workers_are_numbered_in_pid_order_with_stable_keys():
    metadata = pool_insight(stats({30: 1.0, 20: 2.0}))
    assert metadata["worker_0_busy_seconds"] == 2.0  # pid 20
    assert metadata["worker_1_busy_seconds"] == 1.0
    assert metadata["worker_0_items"] + metadata["worker_1_items"] == 2000
