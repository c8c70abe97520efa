"""The built-in `feedback` handler: task prompt + rubric + learner answer -> structured feedback.

Payload: {"task_prompt": str, "answer": str, "rubric": RUBRIC} where RUBRIC is either
{"keywords": [str], "points": n} or a list of {"criterion": str, "keywords": [str], "points": n}.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from . import openai_client
from .errors import PermanentFailure
from .handlers import JobContext
from .models import JsonValue
from .settings import Settings

MAX_POINTS = 1e9
"""Points of one criterion at most: sums of larger ones overflow to Infinity, which no
result may hold."""

SYSTEM_PROMPT = (
    "You are a precise tutor. Grade the learner's answer against the rubric. Reply with one "
    'JSON object: {"score": number, "max_score": number, "summary": string, "criteria": '
    '[{"criterion": string, "awarded": number, "points": number, "comment": string}]}.'
)


@dataclass(frozen=True)
class Criterion:
    name: str
    keywords: tuple[str, ...]
    points: float


@dataclass(frozen=True)
class Submission:
    task_prompt: str
    answer: str
    criteria: tuple[Criterion, ...]

    @classmethod
    def from_payload(cls, payload: JsonValue) -> Submission:
        """Validate the payload; a malformed one can never succeed, so it fails permanently."""
        if not isinstance(payload, dict):
            raise PermanentFailure("feedback payload must be an object")
        prompt, answer, rubric = (payload.get(k) for k in ("task_prompt", "answer", "rubric"))
        if not isinstance(prompt, str) or not isinstance(answer, str):
            raise PermanentFailure("feedback payload needs string task_prompt and answer")
        items = [rubric] if isinstance(rubric, dict) else rubric
        if not isinstance(items, list) or not items:
            raise PermanentFailure("feedback rubric must be an object or a non-empty list")
        criteria = []
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict):
                raise PermanentFailure(f"rubric criterion {i} must be an object")
            keywords = item.get("keywords", [])
            points = item.get("points", 1)
            if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
                raise PermanentFailure(f"rubric criterion {i}: keywords must be strings")
            if (
                isinstance(points, bool)
                or not isinstance(points, int | float)
                or not 0 <= points <= MAX_POINTS
            ):
                raise PermanentFailure(
                    f"rubric criterion {i}: points must be a number from 0 to {MAX_POINTS:g}"
                )
            name = str(item.get("criterion") or f"criterion {i}")
            criteria.append(Criterion(name, tuple(keywords), float(points)))
        return cls(prompt, answer, tuple(criteria))

    def as_inputs(self) -> dict[str, Any]:
        return {
            "task_prompt": self.task_prompt,
            "answer": self.answer,
            "rubric": [
                {"criterion": c.name, "keywords": list(c.keywords), "points": c.points}
                for c in self.criteria
            ],
        }


def _words(text: str) -> set[str]:
    return set(re.findall(r"[\w-]+", text.casefold()))


def _mentions(answer_words: set[str], answer: str, keyword: str) -> bool:
    key = keyword.casefold().strip()
    if " " in key:  # phrases match as substrings of the normalised answer
        return key in " ".join(answer.casefold().split())
    # a keyword also matches its simple plural/inflected forms ("index" in "indexes")
    return any(w == key or (w.startswith(key) and len(w) - len(key) <= 2) for w in answer_words)


def local_feedback(sub: Submission) -> dict[str, Any]:
    """Deterministic rubric/keyword grading; no network, same input -> same output."""
    words = _words(sub.answer)
    criteria: list[dict[str, Any]] = []
    matched_all: list[str] = []
    missing_all: list[str] = []
    score = max_score = 0.0
    for c in sub.criteria:
        matched = [k for k in c.keywords if _mentions(words, sub.answer, k)]
        missing = [k for k in c.keywords if k not in matched]
        # a criterion without keywords only asks for an answer at all
        answered = 1.0 if sub.answer.strip() else 0.0
        share = len(matched) / len(c.keywords) if c.keywords else answered
        awarded = round(c.points * share, 2)
        score += awarded
        max_score += c.points
        matched_all += matched
        missing_all += missing
        criteria.append(
            {
                "criterion": c.name,
                "points": c.points,
                "awarded": awarded,
                "matched": matched,
                "missing": missing,
            }
        )
    if missing_all:
        total = len(matched_all) + len(missing_all)
        summary = (
            f"Covered {len(matched_all)} of {total} key ideas; missing: {', '.join(missing_all)}."
        )
    else:
        summary = "All key ideas are covered."
    return {
        "backend": "local",
        "score": round(score, 2),
        "max_score": max_score,
        "criteria": criteria,
        "summary": summary,
    }


def openai_feedback(settings: Settings, sub: Submission) -> dict[str, Any]:
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": json.dumps(sub.as_inputs(), ensure_ascii=False)},
    ]
    answer = openai_client.chat_completion(settings, messages)
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise PermanentFailure("provider answer has no choices[0].message.content") from None
    try:
        parsed = json.loads(content, parse_constant=_no_constant)
    except (TypeError, ValueError, RecursionError):
        parsed = {"summary": str(content)}
    if not isinstance(parsed, dict):
        parsed = {"summary": str(parsed)}
    return {"backend": "openai", "model": settings.openai_model, **parsed}


def _no_constant(name: str) -> float:
    """NaN and Infinity are not JSON and no jsonb column takes them."""
    raise ValueError(f"{name} is not a JSON number")


def handle(ctx: JobContext) -> JsonValue:
    sub = Submission.from_payload(ctx.payload)
    if ctx.settings.feedback_backend == "local":
        # Cheap and deterministic: caching would cost more than recomputing.
        return local_feedback(sub)
    return ctx.cache.get_or_compute(
        handler="feedback",
        backend="openai",
        model=ctx.settings.openai_model,
        inputs=sub.as_inputs(),
        compute=lambda: openai_feedback(ctx.settings, sub),
    )
