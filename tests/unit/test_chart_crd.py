"""The chart ships exactly the CRD in manifests/crds/, its single source."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.ship import CHART, CRD_CHART_COPY, CRD_SOURCE, MANIFESTS, normalized, render

RESTORE_CRD = "learnops.io_databaserestores.yaml"
SOURCES = [CRD_SOURCE, MANIFESTS / "crds" / RESTORE_CRD]


def test_the_chart_copy_of_the_crd_is_byte_identical_to_the_single_source() -> None:
    assert CRD_CHART_COPY.read_bytes() == CRD_SOURCE.read_bytes(), (
        "charts/learnops/files/crds/ drifted from manifests/crds/; refresh it with `make crds`"
    )
    restore_copy = CHART / "files" / "crds" / RESTORE_CRD
    assert restore_copy.read_bytes() == (MANIFESTS / "crds" / RESTORE_CRD).read_bytes(), (
        "charts/learnops/files/crds/ drifted from manifests/crds/; refresh it with `make crds`"
    )


@pytest.mark.parametrize("source_path", SOURCES, ids=lambda p: p.name)
def test_the_rendered_crd_equals_the_source_apart_from_helm_metadata(source_path: Path) -> None:
    source = yaml.safe_load(source_path.read_text())
    (rendered,) = [
        d
        for d in render()
        if d["kind"] == "CustomResourceDefinition"
        and d["metadata"]["name"] == source["metadata"]["name"]
    ]
    assert normalized(rendered["spec"]) == normalized(source["spec"])
    assert rendered["metadata"]["name"] == source["metadata"]["name"]
    # The chart only adds metadata: its labels and the keep policy, never a changed source label.
    assert source["metadata"].get("labels", {}).items() <= rendered["metadata"]["labels"].items()
    added = set(rendered["metadata"]["annotations"]) - set(
        source["metadata"].get("annotations", {})
    )
    assert added == {"helm.sh/resource-policy"}
