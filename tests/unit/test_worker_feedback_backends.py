"""The feedback handler's local backend, and the OpenAI-compatible client against a fake server."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from learnops_worker import feedback
from learnops_worker.errors import PermanentFailure, ProviderError
from learnops_worker.handlers import JobContext
from learnops_worker.models import Job
from learnops_worker.openai_client import chat_completion, parse_retry_after
from learnops_worker.settings import Secret, Settings

from tests.support.worker import FakeProvider

RUBRIC = [
    {"criterion": "storage", "keywords": ["index", "b-tree"], "points": 4},
    {"criterion": "safety", "keywords": ["transaction", "isolation level"], "points": 6},
]


def ctx(payload: Any, settings: Settings | None = None) -> JobContext:
    job = Job(1, "feedback", "{}", 0, 1, uuid.uuid4(), datetime.now(UTC))
    events = threading.Event(), threading.Event(), threading.Event()
    return JobContext(job, payload, settings or Settings(), NoCache(), *events)


class NoCache:
    def get_or_compute(self, *, compute: Any, **_: Any) -> Any:
        return compute()


def test_local_feedback_scores_by_rubric_keywords_deterministically() -> None:
    payload = {
        "task_prompt": "Why use indexes?",
        "rubric": RUBRIC,
        "answer": "Indexes (a B-tree) help; the ISOLATION   level of a transaction matters.",
    }
    first = feedback.handle(ctx(payload))
    assert first == feedback.handle(ctx(payload))
    assert first["score"] == 10.0
    assert first["max_score"] == 10.0
    assert first["summary"] == "All key ideas are covered."
    partial = feedback.handle(ctx({**payload, "answer": "an index"}))
    assert partial["score"] == 2.0
    assert partial["criteria"][1]["missing"] == ["transaction", "isolation level"]
    assert "missing: b-tree, transaction, isolation level" in partial["summary"]


def test_the_sample_data_rubric_shape_is_accepted() -> None:
    result = feedback.handle(
        ctx(
            {"task_prompt": "p", "rubric": {"keywords": ["lock"], "points": 10}, "answer": "Locks!"}
        )
    )
    assert result["score"] == 10.0


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"task_prompt": "p", "answer": 3, "rubric": RUBRIC},
        {"task_prompt": "p", "answer": "a", "rubric": []},
        {"task_prompt": "p", "answer": "a", "rubric": [{"keywords": "index"}]},
        {"task_prompt": "p", "answer": "a", "rubric": [{"points": -1}]},
    ],
)
def test_malformed_payloads_fail_permanently(payload: Any) -> None:
    with pytest.raises(PermanentFailure):
        feedback.handle(ctx(payload))


def provider_settings(fake: FakeProvider, **kw: Any) -> Settings:
    return replace(
        Settings(),
        feedback_backend="openai",
        openai_base_url=fake.base_url,
        openai_api_key=Secret(fake.api_key),
        openai_timeout_seconds=5,
        **kw,
    )


def test_openai_backend_sends_model_key_and_rubric(fake_provider: FakeProvider) -> None:
    settings = provider_settings(fake_provider, openai_model="m-1")
    result = feedback.handle(ctx({"task_prompt": "p", "rubric": RUBRIC, "answer": "a"}, settings))
    assert result["backend"] == "openai"
    assert result["score"] == 7
    assert fake_provider.bad_auth == 0
    body = fake_provider.bodies[0]
    assert body["model"] == "m-1"
    assert "isolation level" in body["messages"][1]["content"]


def test_429_and_5xx_are_retried_honouring_retry_after(fake_provider: FakeProvider) -> None:
    fake_provider.script = [(429, {"Retry-After": "1"}), (502, {})]
    began = time.monotonic()
    answer = chat_completion(provider_settings(fake_provider, openai_max_retries=3), [])
    assert "choices" in answer
    assert fake_provider.calls == 3
    assert time.monotonic() - began >= 1.0


def test_exhausted_retries_ask_for_a_later_job_retry(fake_provider: FakeProvider) -> None:
    fake_provider.script = [(503, {"Retry-After": "0"})] * 3
    with pytest.raises(ProviderError, match="after 3 tries"):
        chat_completion(provider_settings(fake_provider, openai_max_retries=2), [])


def test_a_long_retry_after_becomes_the_job_retry_delay(fake_provider: FakeProvider) -> None:
    fake_provider.script = [(429, {"Retry-After": "120"})]
    with pytest.raises(ProviderError) as info:
        chat_completion(provider_settings(fake_provider), [])
    assert info.value.delay_seconds == 120
    assert fake_provider.calls == 1


def test_a_bad_request_fails_permanently_and_never_echoes_the_key(
    fake_provider: FakeProvider,
) -> None:
    fake_provider.script = [(400, {})]
    with pytest.raises(PermanentFailure) as info:
        chat_completion(provider_settings(fake_provider), [])
    assert fake_provider.api_key not in str(info.value)
    assert fake_provider.calls == 1


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("3") == 3
    assert parse_retry_after(format_datetime(now + timedelta(seconds=5), usegmt=True), now=now) == 5
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
