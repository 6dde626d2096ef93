"""The two-tier object store: fills, Vary, purge, disk restart, budgets under concurrent fills."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seedcast.edge.store import OBJECT_OVERHEAD, CacheStore, FillSlot, object_key
from seedcast.http11.semantics import http_date
from seedcast.units import KiB

NOW = 1_700_000_000.0


def headers(*extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Cache-Control", "max-age=60"), ("Date", http_date(NOW)), *extra]


def put(
    store: CacheStore,
    primary: str,
    body: bytes,
    *,
    response_headers: list[tuple[str, str]] | None = None,
    vary: tuple[str, ...] = (),
    chunk: int = 1000,
    announce: bool = True,
) -> object:
    key = object_key(primary, vary)
    slot = store.begin_fill(key, len(body) if announce else None)
    for start in range(0, len(body), chunk):
        slot.append(body[start : start + chunk])
    return slot.commit(
        primary=primary,
        vary=vary,
        status=200,
        headers=response_headers or headers(),
        request_time=NOW,
        response_time=NOW,
        body=body,
        request_headers=[],
    )


def test_fill_then_lookup_hits_memory() -> None:
    store = CacheStore(1024 * KiB, policy="lru")
    obj = put(store, "/v/a.m4s", b"x" * 5000)
    found = store.lookup("/v/a.m4s", [])
    assert found is obj
    assert found is not None
    assert found.memory == b"x" * 5000
    assert store.lookup("/v/b.m4s", []) is None


def test_vary_selects_the_matching_variant() -> None:
    store = CacheStore(1024 * KiB)
    vary_headers = headers(("Vary", "Accept-Encoding"))
    put(store, "/m", b"gzip-body", response_headers=vary_headers, vary=("gzip",))
    put(store, "/m", b"plain-body", response_headers=vary_headers, vary=("",))
    gzip = store.lookup("/m", [("Accept-Encoding", "gzip")])
    plain = store.lookup("/m", [])
    assert gzip is not None
    assert gzip.memory == b"gzip-body"
    assert plain is not None
    assert plain.memory == b"plain-body"
    assert store.lookup("/m", [("Accept-Encoding", "br")]) is None
    assert store.vary_names("/m") == ("accept-encoding",)


def test_refill_replaces_and_budget_accounts_once() -> None:
    store = CacheStore(1024 * KiB)
    put(store, "/a", b"1" * 1000)
    put(store, "/a", b"2" * 3000)
    found = store.lookup("/a", [])
    assert found is not None
    assert found.memory == b"2" * 3000
    assert store.memory.used == found.accounted_size
    assert len(store.objects) == 1


def test_unknown_length_body_grows_its_reservation() -> None:
    store = CacheStore(4096 * KiB)
    obj = put(store, "/big", b"z" * (700 * KiB), announce=False, chunk=64 * KiB)
    assert obj is not None
    assert store.memory.reserved == 0


def test_too_large_object_is_not_stored_and_frees_everything() -> None:
    store = CacheStore(100 * KiB)
    assert put(store, "/huge", b"z" * (200 * KiB), announce=False) is None
    assert store.memory.used == 0
    assert store.memory.reserved == 0
    assert store.lookup("/huge", []) is None


def test_purge_by_prefix() -> None:
    store = CacheStore(1024 * KiB)
    for name in ("/a/1", "/a/2", "/ab/1", "/b/1"):
        put(store, name, b"x")
    assert store.purge("/a/") == 2
    assert sorted(store.variants) == ["/ab/1", "/b/1"]
    assert store.memory.used == sum(obj.accounted_size for obj in store.objects.values())


def test_disk_tier_survives_restart_and_discards_debris(tmp_path: Path) -> None:
    store = CacheStore(64 * KiB, disk_directory=tmp_path, disk_capacity=1024 * KiB)
    body = bytes(range(256)) * 200
    put(store, "/v/seg-1.m4s", body, response_headers=headers(("ETag", '"e1"')))
    put(store, "/v/seg-2.m4s", b"second")
    # A fill cut short by a crash leaves a partial file behind.
    assert store.disk is not None
    body_path, _ = store.disk.paths("/v/seg-3.m4s")
    body_path.parent.mkdir(parents=True, exist_ok=True)
    body_path.with_name(body_path.stem + ".7.partial").write_bytes(b"12345")
    # A body whose metadata never got written, and garbage metadata.
    (tmp_path / "ff").mkdir(exist_ok=True)
    (tmp_path / "ff" / ("f" * 64 + ".body")).write_bytes(b"orphan")
    (tmp_path / "ee").mkdir(exist_ok=True)
    (tmp_path / "ee" / ("e" * 64 + ".meta")).write_bytes(b"\xc1garbage")

    restarted = CacheStore(64 * KiB, disk_directory=tmp_path, disk_capacity=1024 * KiB)
    assert restarted.load_disk() == 2
    assert not list(tmp_path.rglob("*.partial"))
    assert not (tmp_path / "ff" / ("f" * 64 + ".body")).exists()
    assert not (tmp_path / "ee" / ("e" * 64 + ".meta")).exists()
    found = restarted.lookup("/v/seg-1.m4s", [])
    assert found is not None
    assert found.disk_path is not None
    assert found.disk_path.read_bytes() == body
    assert dict(found.headers)["ETag"] == '"e1"'
    assert found.policy.etag == '"e1"'
    assert restarted.disk_index is not None
    assert restarted.disk_index.used == sum(
        obj.accounted_size for obj in restarted.objects.values()
    )


def test_truncated_body_on_disk_is_discarded(tmp_path: Path) -> None:
    store = CacheStore(64 * KiB, disk_directory=tmp_path, disk_capacity=1024 * KiB)
    put(store, "/v/a", b"a" * 1000)
    (body_path,) = list(tmp_path.rglob("*.body"))
    body_path.write_bytes(b"a" * 10)
    restarted = CacheStore(64 * KiB, disk_directory=tmp_path, disk_capacity=1024 * KiB)
    assert restarted.load_disk() == 0
    assert not list(tmp_path.rglob("*.body"))
    assert not list(tmp_path.rglob("*.meta"))


def test_restart_with_a_smaller_disk_budget_keeps_the_newest(tmp_path: Path) -> None:
    store = CacheStore(8 * KiB, disk_directory=tmp_path, disk_capacity=1024 * KiB)
    for number in range(10):
        slot = store.begin_fill(f"/o/{number}", 10 * KiB)
        slot.append(b"x" * (10 * KiB))
        slot.commit(
            primary=f"/o/{number}",
            vary=(),
            status=200,
            headers=headers(),
            request_time=NOW + number,
            response_time=NOW + number,
            body=b"x" * (10 * KiB),
            request_headers=[],
        )
    smaller = CacheStore(8 * KiB, disk_directory=tmp_path, disk_capacity=40 * KiB)
    kept = smaller.load_disk()
    assert 0 < kept < 10
    assert smaller.disk_index is not None
    assert smaller.disk_index.used <= 40 * KiB
    assert "/o/9" in smaller.variants
    assert len(list(tmp_path.rglob("*.body"))) == kept


def test_refresh_rewrites_headers_on_disk(tmp_path: Path) -> None:
    store = CacheStore(64 * KiB, disk_directory=tmp_path, disk_capacity=1024 * KiB)
    obj = put(store, "/r", b"body", response_headers=headers(("ETag", '"1"')))
    assert obj is not None
    store.refresh(
        obj,  # type: ignore[arg-type]
        [("Cache-Control", "max-age=99"), ("ETag", '"1"')],
        request_time=NOW + 5,
        response_time=NOW + 5,
    )
    restarted = CacheStore(64 * KiB, disk_directory=tmp_path, disk_capacity=1024 * KiB)
    restarted.load_disk()
    found = restarted.lookup("/r", [])
    assert found is not None
    assert found.policy.freshness_lifetime == 99
    assert found.response_time == NOW + 5


fill_plans = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=12),  # which object
        st.integers(min_value=0, max_value=60 * KiB),  # body size
        st.booleans(),  # Content-Length announced?
        st.sampled_from(["commit", "abort", "interleave"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fill_plans, st.sampled_from(["lru", "s3-fifo"]), st.randoms(use_true_random=False))
def test_budgets_hold_under_random_concurrent_fill_orders(
    tmp_path: Path, plan: list[tuple[int, int, bool, str]], policy: str, rng: object
) -> None:
    """Fills start together, receive chunks in a random interleaving, then end in any order."""
    import random

    assert isinstance(rng, random.Random)
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    store = CacheStore(96 * KiB, disk_directory=directory, disk_capacity=160 * KiB, policy=policy)
    active: list[tuple[FillSlot, str, bytes, str, int]] = []
    for number, size, announce, ending in plan:
        primary = f"/o/{number}"
        body = bytes([number]) * size
        slot = store.begin_fill(primary, size if announce else None)
        active.append((slot, primary, body, ending, 0))

    def check() -> None:
        assert store.memory.used + store.memory.reserved <= store.memory.capacity
        assert store.disk_index is not None
        assert store.disk_index.used + store.disk_index.reserved <= store.disk_index.capacity
        on_disk = (
            sum(path.stat().st_size for path in directory.rglob("*.body"))
            if directory.exists()
            else 0
        )
        assert on_disk <= store.disk_index.capacity

    try:
        while active:
            index = rng.randrange(len(active))
            slot, primary, body, ending, offset = active[index]
            step = rng.choice([1000, 8 * KiB, 32 * KiB])
            if offset < len(body) and not (ending == "abort" and rng.random() < 0.2):
                slot.append(body[offset : offset + step])
                active[index] = (slot, primary, body, ending, offset + step)
            else:
                active.pop(index)
                if ending == "abort":
                    slot.abort()
                else:
                    obj = slot.commit(
                        primary=primary,
                        vary=(),
                        status=200,
                        headers=headers(),
                        request_time=NOW,
                        response_time=NOW,
                        body=body,
                        request_headers=[],
                    )
                    if obj is not None:
                        assert obj.memory in (None, body)
                        if obj.disk_path is not None:
                            assert obj.disk_path.read_bytes() == body
            check()
    finally:
        # Hypothesis may stop an example part-way; never leave files open.
        for slot, *_ in active:
            slot.abort()
    assert store.memory.reserved == 0
    assert store.disk_index is not None
    assert store.disk_index.reserved == 0
    assert store.memory.used == sum(
        obj.accounted_size for obj in store.objects.values() if obj.memory is not None
    )
    assert not list(directory.rglob("*.partial"))
    for obj in store.objects.values():
        assert obj.memory is not None or obj.disk_path is not None
        assert obj.accounted_size >= obj.length + OBJECT_OVERHEAD


@given(st.binary(max_size=300))
def test_disk_metadata_parser_rejects_garbage_with_value_error(data: bytes) -> None:
    from seedcast.edge.disk import DiskMeta

    try:
        DiskMeta.unpack(data)
    except ValueError:
        pass


def test_disk_metadata_round_trip_and_wrong_types() -> None:
    import msgpack
    import pytest
    from seedcast.edge.disk import DiskMeta

    meta = DiskMeta("k", "/p", ("a",), 200, (("ETag", '"x"'),), 1.0, 2.0, 3)
    assert DiskMeta.unpack(meta.pack()) == meta
    for broken in (
        {"v": 1},
        {"v": 2, "key": "k"},
        {**msgpack.unpackb(meta.pack()), "headers": 5},
        {**msgpack.unpackb(meta.pack()), "length": -1},
        [1, 2, 3],
    ):
        with pytest.raises(ValueError):
            DiskMeta.unpack(msgpack.packb(broken))
