"""The built-in feedback handler end to end, and the provider result cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.harness.postgres import Conn
from tests.harness.wait import wait_for
from tests.support.worker import FakeProvider, WorkerProc, connect, enqueue, scalar

SUBMISSION = {
    "task_prompt": "Explain what an index is for.",
    "rubric": {"keywords": ["index", "transaction", "lock"], "points": 10},
    "answer": "An index speeds up reads; a transaction groups writes.",
}


def all_done(db: Conn, n: int) -> Callable[[], bool]:
    return lambda: scalar(db, "SELECT count(*) FROM learnops_jobs WHERE status = 'succeeded'") == n


def test_local_feedback_grades_a_sample_submission(
    worker_db: Conn, workers: Callable[..., WorkerProc]
) -> None:
    # the sample data's own tasks and submissions, as an application would enqueue them
    with connect(worker_db) as c:
        c.execute(
            "INSERT INTO learnops_jobs (kind, payload) "
            "SELECT 'feedback', jsonb_build_object('task_prompt', t.prompt, 'rubric', t.rubric, "
            "'answer', s.answer) FROM submissions s JOIN tasks t ON t.id = s.task_id LIMIT 20"
        )
    workers(WORKER_CONCURRENCY="2")
    wait_for(all_done(worker_db, 20), 20, "feedback for 20 submissions", every=0.05)
    result = scalar(worker_db, "SELECT result FROM learnops_jobs LIMIT 1")
    assert result["backend"] == "local"
    assert result["score"] == 6.67
    assert result["criteria"][0]["missing"] == ["lock"]


def test_duplicate_submissions_call_the_provider_once(
    worker_db: Conn,
    workers: Callable[..., WorkerProc],
    fake_provider: FakeProvider,
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(fake_provider.api_key + "\n")
    env = {
        "FEEDBACK_BACKEND": "openai",
        "OPENAI_BASE_URL": fake_provider.base_url,
        "OPENAI_MODEL": "tutor-1",
        "OPENAI_API_KEY_FILE": str(key_file),
        "WORKER_CONCURRENCY": "4",
    }
    # the same submission four times at once, key order shuffled in one copy
    shuffled = dict(reversed(list(SUBMISSION.items())))
    enqueue(worker_db, "feedback", [SUBMISSION, SUBMISSION, SUBMISSION, shuffled])
    w = workers(**env)
    wait_for(all_done(worker_db, 4), 20, "four feedback jobs", every=0.05)
    assert fake_provider.calls == 1
    assert fake_provider.bad_auth == 0
    assert fake_provider.bodies[0]["model"] == "tutor-1"
    assert scalar(worker_db, "SELECT count(DISTINCT result) FROM learnops_jobs") == 1
    first = scalar(worker_db, "SELECT result FROM learnops_jobs LIMIT 1")
    assert first == {
        "backend": "openai",
        "model": "tutor-1",
        "score": 7,
        "max_score": 10,
        "summary": "good",
        "criteria": [],
    }
    # a retried submission (retry-failed or a re-enqueue) hits the cache as well
    enqueue(worker_db, "feedback", [SUBMISSION])
    wait_for(all_done(worker_db, 5), 20, "the fifth job", every=0.05)
    assert fake_provider.calls == 1
    assert scalar(worker_db, "SELECT count(*) FROM learnops_result_cache") == 1
    assert fake_provider.api_key not in w.logs()


def test_a_provider_outage_retries_the_job_later_and_then_caches(
    worker_db: Conn,
    workers: Callable[..., WorkerProc],
    fake_provider: FakeProvider,
) -> None:
    fake_provider.script = [(503, {}), (503, {})]  # both tries of the first attempt fail
    enqueue(worker_db, "feedback", [SUBMISSION])
    workers(
        FEEDBACK_BACKEND="openai",
        OPENAI_BASE_URL=fake_provider.base_url,
        OPENAI_API_KEY=fake_provider.api_key,
        OPENAI_MAX_RETRIES="1",
        WORKER_POLL_SECONDS="0.05",
    )
    wait_for(all_done(worker_db, 1), 20, "the job to succeed on its second attempt", every=0.05)
    assert fake_provider.calls == 3
    row = scalar(
        worker_db, "SELECT json_build_object('a', attempts, 'e', errors) FROM learnops_jobs"
    )
    assert row["a"] == 2
    assert "ProviderError" in row["e"][0]["error"]
