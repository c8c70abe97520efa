"""The multipart part size, chosen from the expected size so the upload fits the part limit.

S3 allows at most 10,000 parts of 5 MiB..5 GiB (the last may be smaller); Azure
50,000 blocks; GCS has no part count. We plan for the strictest (S3) and leave
room for a dump twice as large as expected: the estimate is the database's
on-disk size or the previous backup's, and a dump can outgrow both.
"""

from __future__ import annotations

MiB = 1 << 20
MIN_PART = 8 * MiB
"""Floor: above S3's 5 MiB minimum, few enough requests for small dumps."""
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
HEADROOM = 2
"""The plan covers HEADROOM x the expected size."""


def part_size(expected_bytes: int) -> int:
    """Bytes per part: a whole MiB, >= MIN_PART, so HEADROOM x expected fits in MAX_PARTS."""
    needed = -(-max(0, expected_bytes) * HEADROOM // MAX_PARTS)
    size = max(MIN_PART, -(-needed // MiB) * MiB)
    return min(size, MAX_PART)


def capacity(part: int) -> int:
    """The largest object a multipart upload with this part size can hold."""
    return part * MAX_PARTS
