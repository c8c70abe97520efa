"""A minimal OpenAI-compatible chat-completions client over urllib (no SDK to ship).

Retries 429, 5xx and network errors, honouring Retry-After; gives up with ProviderError
(the job is retried later) or PermanentFailure (the request itself is wrong).
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .errors import PermanentFailure, ProviderError
from .settings import Settings

RETRY_AFTER_CAP_SECONDS = 30.0
"""Longer waits are not slept in a worker thread; the job is retried later instead."""
NETWORK_BACKOFF_SECONDS = 0.5
"""First pause after a network error or a 5xx without Retry-After; doubles per retry."""
# 401/403 are usually a rotated key: retry later rather than fail the learner's job for good.
_RETRYABLE = {401, 403, 408, 409, 425, 429}


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None if absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def chat_completion(
    settings: Settings,
    messages: list[dict[str, str]],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """POST {base}/chat/completions and return the decoded JSON answer."""
    url = f"{settings.openai_base_url}/chat/completions"
    if not url.startswith(("http://", "https://")):
        raise PermanentFailure("OPENAI_BASE_URL must be an http(s) URL")
    body = json.dumps(
        {
            "model": settings.openai_model,
            "messages": messages,
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
    ).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if settings.openai_api_key:
        headers["Authorization"] = f"Bearer {settings.openai_api_key.reveal()}"
    last = "no attempt"
    for attempt in range(settings.openai_max_retries + 1):
        pause = NETWORK_BACKOFF_SECONDS * (2**attempt)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 (scheme checked above)
        try:
            with urllib.request.urlopen(request, timeout=settings.openai_timeout_seconds) as resp:  # noqa: S310
                answer: dict[str, Any] = json.load(resp)
                return answer
        except urllib.error.HTTPError as exc:
            exc.close()  # the error carries the open response; do not leak its socket
            last = f"HTTP {exc.code}"
            if exc.code not in _RETRYABLE and exc.code < 500:
                raise PermanentFailure(f"provider rejected the request ({last})") from None
            retry_after = parse_retry_after(exc.headers.get("Retry-After"))
            if retry_after is not None:
                if retry_after > RETRY_AFTER_CAP_SECONDS:
                    raise ProviderError(
                        f"provider asked to wait {retry_after:.0f}s ({last})",
                        delay_seconds=retry_after,
                    ) from None
                pause = retry_after
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = type(exc).__name__
        except (json.JSONDecodeError, UnicodeDecodeError):
            last = "answer is not JSON"
        if attempt < settings.openai_max_retries:
            sleep(pause)
    raise ProviderError(
        f"provider unavailable after {settings.openai_max_retries + 1} tries (last: {last})"
    )
