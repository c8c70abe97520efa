"""The chart ships exactly the CRD in manifests/crds/, its single source."""

from __future__ import annotations

import yaml

from tests.fixtures_ship import CRD_CHART_COPY, CRD_SOURCE, normalized, render


def test_the_chart_copy_of_the_crd_is_byte_identical_to_the_single_source() -> None:
    assert CRD_CHART_COPY.read_bytes() == CRD_SOURCE.read_bytes(), (
        "charts/learnops/files/crds/ drifted from manifests/crds/; refresh it with "
        "cp manifests/crds/learnops.io_databasebackups.yaml charts/learnops/files/crds/"
    )


def test_the_rendered_crd_equals_the_source_apart_from_helm_metadata() -> None:
    (rendered,) = [d for d in render() if d["kind"] == "CustomResourceDefinition"]
    source = yaml.safe_load(CRD_SOURCE.read_text())
    assert normalized(rendered["spec"]) == normalized(source["spec"])
    assert rendered["metadata"]["name"] == source["metadata"]["name"]
    # The chart only adds metadata: its labels and the keep policy, never a changed source label.
    assert source["metadata"].get("labels", {}).items() <= rendered["metadata"]["labels"].items()
    added = set(rendered["metadata"]["annotations"]) - set(
        source["metadata"].get("annotations", {})
    )
    assert added == {"helm.sh/resource-policy"}
