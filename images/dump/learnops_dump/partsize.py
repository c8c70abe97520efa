"""The multipart part size, and how many objects an artifact of a given size needs.

S3 allows at most 10,000 parts of 5 MiB..5 GiB per object (the last may be smaller); Azure
50,000 blocks; GCS's XML API 10,000 parts. We plan for the strictest (S3). Each part is
buffered in memory before it is sent (S3 needs a part's length before its body, and the
client library takes whole parts), so the part size is capped at MAX_PART: memory stays
bounded whatever the database size. An artifact larger than one object's capacity
(MAX_PART x 10,000 = 97.7 GiB) continues in segment objects (objects.py), as many as needed.
Below the cap, the part grows with the expected size so that twice that size still fits
in one object (the estimate is the database's on-disk size or the previous backup's, and a
dump can outgrow both): fewer, larger requests for mid-sized dumps, one object for them.
"""

from __future__ import annotations

MiB = 1 << 20
MIN_PART = 8 * MiB
"""Floor: above S3's 5 MiB minimum, few enough requests for small dumps."""
MAX_PART = 10 * MiB
"""Ceiling: the runner holds one part being filled and one in flight, about 30 MiB + 2 x
the part plus ~10 MiB once segmented (measured, docs/dump.md): inside 64 MiB with room."""
MAX_PARTS = 10_000
"""Parts per object (S3's limit; BACKUP_OBJECT_SEGMENT_PARTS may lower it)."""
HEADROOM = 2
"""The plan covers HEADROOM x the expected size in one object while the cap allows."""


def part_size(expected_bytes: int, parts: int = MAX_PARTS) -> int:
    """Bytes per part: a whole MiB in [MIN_PART, MAX_PART], so that HEADROOM x expected fits
    in one object of `parts` parts if the cap allows (beyond it: several objects)."""
    needed = -(-max(0, expected_bytes) * HEADROOM // parts)
    size = max(MIN_PART, -(-needed // MiB) * MiB)
    return min(size, MAX_PART)


def capacity(part: int, parts: int = MAX_PARTS) -> int:
    """The largest object a multipart upload with this part size can hold."""
    return part * parts


def objects_for(size: int, part: int, parts: int = MAX_PARTS) -> int:
    """How many objects (the artifact's first one plus its segments) `size` bytes take."""
    return max(1, -(-size // capacity(part, parts)))
