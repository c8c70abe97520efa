"""Plain JSON requests over the client's configured ApiClient (auth, TLS, connection pool).

The client's generated API classes (CoreV1Api, BatchV1Api, ...) are avoided on purpose: loading
them costs the operator about 90 MiB of RSS, more than everything else it does, and their model
classes cost more CPU than the request when hundreds of objects are reconciled at once. Errors
are the client's own ApiException, so callers handle them as before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.exceptions import ApiException

JSON = "application/json"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
# the client's generated methods authenticate with the same setting
AUTH = ["BearerToken"]


def path(*segments: str) -> str:
    """An API path from segments, each quoted so a name can never add a segment."""
    return "/" + "/".join(quote(s, safe="") for s in segments)


def request(
    api: client.ApiClient,
    method: str,
    url_path: str,
    *,
    query: Sequence[tuple[str, str]] = (),
    body: Mapping[str, Any] | None = None,
    content_type: str = JSON,
) -> Any:
    """One request; the decoded JSON answer, or ApiException for any non-2xx status."""
    headers = {"Accept": JSON}
    if body is not None:
        headers["Content-Type"] = content_type
    serialized = api.param_serialize(
        method,
        url_path,
        query_params=list(query),
        header_params=headers,
        body=dict(body) if body is not None else None,
        auth_settings=AUTH,
    )
    response = api.call_api(*serialized)
    data = response.read()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(
            http_resp=response, body=data.decode("utf-8", "replace"), data=None
        )
    return json.loads(data) if data else {}
