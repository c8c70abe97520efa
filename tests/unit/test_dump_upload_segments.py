"""How one artifact's stream is laid over objects (objects.Upload), against an in-memory
object map: the real servers' round trips are tests/postgres/test_dump_object_segments.py."""

from __future__ import annotations

from types import TracebackType

import pytest
from learnops_dump import objects
from learnops_dump.errors import StorageFailed
from learnops_dump.objects import Upload


class Bucket:
    """Objects appear only when their writer is closed; every step is recorded."""

    def __init__(self, fail_close: str | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.events: list[str] = []
        self.fail_close = fail_close

    def open(self, key: str) -> Writer:
        self.events.append(f"open {key}")
        return Writer(self, key)


class Writer:
    def __init__(self, bucket: Bucket, key: str) -> None:
        self.bucket, self.key, self.data = bucket, key, b""

    def write(self, buffer: bytes | memoryview, /) -> int:
        self.data += bytes(buffer)
        return len(buffer)

    def close(self) -> None:
        if self.key == self.bucket.fail_close:
            raise OSError("500 Internal Error")
        self.bucket.objects[self.key] = self.data
        self.bucket.events.append(f"complete {self.key}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.bucket.events.append(f"abort {self.key}")


def _upload(bucket: Bucket, segment_bytes: int = 10) -> Upload:
    def delete(key: str) -> None:
        bucket.objects.pop(key, None)
        bucket.events.append(f"delete {key}")

    return Upload(bucket.open, delete, "a.dump", lambda n: f"p/{n}", segment_bytes)


def test_a_stream_beyond_one_object_continues_in_segments_and_its_own_name_comes_last() -> None:
    bucket = Bucket()
    upload = _upload(bucket)
    for _ in range(5):
        upload.write(memoryview(b"0123456"))  # 35 bytes: 10 + 10 + 10 + 5
    assert "p/a.dump" not in bucket.objects
    assert set(bucket.objects) == {"p/a.dump.seg-00002", "p/a.dump.seg-00003"}  # filled ones
    upload.commit()
    assert [bucket.objects[k] for k in sorted(bucket.objects)] == [
        b"0123456012", b"3456012345", b"6012345601", b"23456",
    ]  # fmt: skip
    assert bucket.events[-1] == "complete p/a.dump"  # visible under its name only now
    opened = [e for e in bucket.events if e.startswith("open")]
    completes = [e for e in bucket.events if e.startswith("complete")]
    assert len(opened) == 4
    # never more than two uploads open at once: the artifact's own and the current segment
    assert bucket.events.index(completes[0]) < bucket.events.index(opened[2])


def test_a_failure_aborts_the_open_uploads_and_deletes_the_completed_segments() -> None:
    bucket = Bucket()
    upload = _upload(bucket)
    upload.write(memoryview(b"x" * 25))
    upload.abort()
    assert bucket.objects == {}
    assert {"abort p/a.dump", "abort p/a.dump.seg-00003", "delete p/a.dump.seg-00002"} <= set(
        bucket.events
    )


@pytest.mark.parametrize("failing", ["p/a.dump", "p/a.dump.seg-00002"])
def test_a_failed_completion_leaves_no_object_at_all(failing: str) -> None:
    bucket = Bucket(fail_close=failing)
    upload = _upload(bucket)
    upload.write(memoryview(b"x" * 15))
    with pytest.raises(StorageFailed, match="complete the upload"):
        upload.commit()
    assert bucket.objects == {}


def test_an_artifact_needing_more_segments_than_names_allow_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(objects, "MAX_SEGMENTS", 3)
    bucket = Bucket()
    upload = _upload(bucket, segment_bytes=1)
    upload.write(memoryview(b"abc"))
    with pytest.raises(StorageFailed, match="more than 3 objects"):
        upload.write(memoryview(b"d"))
