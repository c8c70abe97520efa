"""Lease election without a cluster: one holder at a time, expiry judged by our own clock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from learnops_operator import election


class FakeCoordination:
    """An in-memory LeaseStore: one Lease, optimistic concurrency by resourceVersion."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    def read(self) -> dict[str, Any] | None:
        return json.loads(json.dumps(self.lease)) if self.lease is not None else None

    def _store(self, body: dict[str, Any]) -> None:
        self.version += 1
        body = json.loads(json.dumps(body))
        body["metadata"]["resourceVersion"] = str(self.version)
        self.lease = body

    def create(self, body: dict[str, Any]) -> None:
        if self.lease is not None:
            raise ApiException(status=409)
        self._store(body)

    def replace(self, body: dict[str, Any]) -> None:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise ApiException(status=409)
        self._store(body)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("learnops_operator.election.time.monotonic", fake)
    return fake


def _elector(api: FakeCoordination, identity: str) -> election.LeaseElector:
    elector = election.LeaseElector(client.ApiClient(), "ops", "lease", identity, duration=10)
    elector.store = api  # type: ignore[assignment]
    return elector


def test_only_one_replica_holds_the_lease(clock: Clock) -> None:
    api = FakeCoordination()
    a, b = _elector(api, "a"), _elector(api, "b")
    assert a.step()
    assert not b.step()
    clock.now += 5
    assert a.step()  # renewal
    assert not b.step()


def test_a_silent_leader_is_replaced_only_after_the_follower_saw_it_silent_long_enough(
    clock: Clock,
) -> None:
    api = FakeCoordination()
    a, b = _elector(api, "a"), _elector(api, "b")
    assert a.step()
    assert not b.step()  # b starts observing the record now
    clock.now += 9
    assert not b.step()  # 9 s of silence < 10 s lease
    clock.now += 2
    assert b.step()  # 11 s: taken over
    assert api.lease is not None
    assert api.lease["spec"]["holderIdentity"] == "b"
    assert api.lease["spec"]["leaseTransitions"] == 1
    assert not a.step()  # the old leader sees it lost


def test_a_renewing_leader_is_never_replaced(clock: Clock) -> None:
    api = FakeCoordination()
    a, b = _elector(api, "a"), _elector(api, "b")
    assert a.step()
    for _ in range(10):
        clock.now += 4
        assert a.step()
        assert not b.step()


def test_a_released_lease_is_taken_at_once(clock: Clock) -> None:
    api = FakeCoordination()
    a, b = _elector(api, "a"), _elector(api, "b")
    assert a.step()
    assert not b.step()
    a.release()
    assert b.step()


def test_the_leader_gives_up_before_anyone_may_take_over() -> None:
    elector = _elector(FakeCoordination(), "a")
    assert elector.renew_deadline < elector.duration
    assert elector.retry < elector.renew_deadline
