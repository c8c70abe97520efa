"""Smoke test: rendered manifests validate offline against the pinned version's schemas."""

from __future__ import annotations

from tests.harness.validate import load_all, pinned_version, validation_errors

GOOD = """
apiVersion: batch/v1
kind: CronJob
metadata: {name: ok}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: c, image: img}]
"""


def test_the_pinned_version_is_the_one_the_ground_builds() -> None:
    assert pinned_version().startswith("1.3")


def test_a_valid_cronjob_passes_offline_validation() -> None:
    assert validation_errors(load_all(GOOD)) == []


def test_a_misspelt_field_and_a_wrong_type_are_rejected() -> None:
    bad = GOOD.replace("restartPolicy: Never", "restartPolicy: Never\n          restartPolcy: x")
    assert validation_errors(load_all(bad))
    wrong_type = GOOD.replace('schedule: "0 3 * * *"', "schedule: 5")
    assert validation_errors(load_all(wrong_type))
