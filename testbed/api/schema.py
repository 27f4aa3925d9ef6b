"""OpenAPI schema post-processing: every operation documents its problem+json error responses.

drf-spectacular documents the success responses it can see; the refusals come from the
exception handler (testbed/api/errors.py) and the body middleware (testbed/api/parsers.py), so
they are added here, once, for every operation: 400 (bad input), 401, 403, 404, 429, plus 409
for writes and 413/415 for operations that take a body. Each is `application/problem+json`
with the `Problem` component below. tests/test_schemathesis.py holds the schema to what is sent.
"""

from __future__ import annotations

from typing import Any

from testbed.api.errors import API_CODES, PROBLEM_CONTENT_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Problem details (RFC 9457) with a stable machine-readable `code`.",
    "properties": {
        "type": {"type": "string", "description": "A URI naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What was wrong and what to do instead."},
        "code": {
            "type": "string",
            "description": "Stable and machine-readable; one of: " + ", ".join(sorted(API_CODES)),
        },
        "errors": {
            "type": "object",
            "description": "Messages per input field (dotted paths for nested fields; `body` "
            "for the request body as a whole).",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
    "required": ["type", "title", "status", "detail", "code", "errors"],
    "additionalProperties": True,  # some refusals add context, e.g. `alternatives`
}

ERROR_DESCRIPTIONS = {
    "400": "The input is not valid (problem+json naming the field, `code` says why).",
    "401": "Not signed in: send `Authorization: Bearer <token>`.",
    "403": "Signed in, but not allowed to do this.",
    "404": "No such object, or not one you may see.",
    "409": "Conflicts with the current state (a unique value taken, a protected reference, a state change).",
    "413": "The request body is over the size limit.",
    "415": "The body is not JSON (send `Content-Type: application/json`).",
    "429": "Too many requests: wait for `Retry-After` seconds.",
    "503": "The database is restarting or unreachable: retry after `Retry-After` seconds.",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}
BODY_METHODS = {"post", "put", "patch"}


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def postprocess_problem_responses(result: dict, generator, request, public) -> dict:
    """drf-spectacular POSTPROCESSING_HOOKS entry: add the Problem component and error responses."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete", "head", "options"}:
                continue
            statuses = ["400", "401", "403", "404", "429", "503"]
            if method in WRITE_METHODS:
                statuses.append("409")
            if method in BODY_METHODS:
                statuses += ["413", "415"]
            responses = operation.setdefault("responses", {})
            for code in statuses:
                # Replace any loosely typed error response (e.g. a bare object) with the real one.
                responses[code] = _problem_response(
                    responses.get(code, {}).get("description") or ERROR_DESCRIPTIONS[code]
                )
    return result
