"""The OpenAPI schema says what every endpoint really returns: page envelopes for lists, and each error code."""
from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

PAGINATED_LISTS = {
    ("/api/v1/categories/", "get"), ("/api/v1/labels/", "get"), ("/api/v1/rule-labels/", "get"),
    ("/api/v1/rules/", "get"), ("/api/v1/imports/", "get"), ("/api/v1/model-versions/", "get"),
    ("/api/v1/products/", "get"), ("/api/v1/train-runs/", "get"),
}
# The errors each operation raises besides 401/403 (every operation needs a role), 404 (a bad page, lists) and 503
# (the database is away, anywhere).
RAISED = {
    ("/api/v1/categories/", "get"): {400},
    ("/api/v1/labels/", "get"): {400},
    ("/api/v1/labels/", "post"): {400, 404, 415},
    ("/api/v1/rule-labels/", "get"): {400},
    ("/api/v1/imports/", "post"): {400, 413, 415},
    ("/api/v1/imports/{run_id}/", "get"): {400, 404},
    ("/api/v1/products/", "get"): {400},
    ("/api/v1/products/{product_id}/", "get"): {404},
    ("/api/v1/products/{external_id}/similar/", "get"): {400, 404, 409, 422, 429},
    ("/api/v1/train-runs/", "get"): {400},
    ("/api/v1/train-runs/", "post"): {400, 415},
    ("/api/v1/train-runs/{train_run_id}/", "get"): {404},
    ("/api/v1/train-runs/{train_run_id}/promote/", "post"): {404, 409},
    ("/api/v1/model-versions/{version_id}/activate/", "post"): {404, 409},
}
HEALTH = ("/api/v1/health/", "get")


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield (path, method), operation


def _body(schema: dict, response: dict) -> dict:
    return _resolve(schema, response["content"]["application/json"]["schema"])


def test_the_schema_covers_every_operation_named_here(schema):
    assert {key for key, _ in _operations(schema)} == PAGINATED_LISTS | set(RAISED) | {HEALTH} | {
        ("/api/v1/categories/tree/", "get"), ("/api/v1/rules/", "get"), ("/api/v1/imports/", "get"),
        ("/api/v1/model-versions/", "get")}


def test_every_list_is_described_as_the_page_envelope_it_returns(schema):
    envelopes = {}
    for key, operation in _operations(schema):
        ok = next(response for code, response in operation["responses"].items() if code.startswith("2"))
        body = _body(schema, ok)
        assert body.get("type") != "array", f"{key} is described as a bare array"
        if "results" in body.get("properties", {}):
            envelopes[key] = body

    assert set(envelopes) == PAGINATED_LISTS
    for key, body in envelopes.items():
        assert body["properties"]["results"]["type"] == "array", key
        assert {"next", "previous"} <= set(body["properties"]), key
        assert "results" in body["required"], key
    assert "count" not in envelopes[("/api/v1/products/", "get")]["properties"]  # a cursor page counts nothing
    assert "count" in envelopes[("/api/v1/labels/", "get")]["properties"]


def test_the_page_parameters_are_documented(schema):
    parameters = {key: {parameter["name"] for parameter in operation.get("parameters", [])}
                  for key, operation in _operations(schema)}

    assert {"cursor", "page_size"} <= parameters[("/api/v1/products/", "get")]
    assert {"page", "page_size"} <= parameters[("/api/v1/categories/", "get")]
    assert "page" in parameters[("/api/v1/labels/", "get")]
    assert {"page", "page_size", "outcome"} <= parameters[("/api/v1/imports/{run_id}/", "get")]


def test_every_error_an_operation_raises_is_documented_with_its_body(schema):
    for key, operation in _operations(schema):
        if key == HEALTH:
            continue
        expected = RAISED.get(key, set()) | {401, 403, 503} | ({404} if key in PAGINATED_LISTS else set())
        documented = {int(code) for code in operation["responses"] if int(code) >= 400}
        assert documented == expected, key
        for code in documented:
            body = _body(schema, operation["responses"][str(code)])
            assert "detail" in body["properties"], (key, code)


def test_health_documents_the_degraded_answer_and_bad_credentials(schema):
    responses = dict(_operations(schema))[HEALTH]["responses"]

    assert set(responses) == {"200", "401", "503"}
    assert _body(schema, responses["503"]) == _body(schema, responses["200"])
    assert _resolve(schema, _body(schema, responses["200"])["properties"]["broker"])["enum"] == ["ok", "error"]


def test_a_validation_error_body_is_described_field_by_field(schema):
    body = _body(schema, dict(_operations(schema))[("/api/v1/labels/", "post")]["responses"]["400"])

    assert {"detail", "non_field_errors"} <= set(body["properties"])
    assert body["additionalProperties"]  # one entry per invalid field


def test_labels_take_no_strategy_from_the_client(schema):
    request = dict(_operations(schema))[("/api/v1/labels/", "post")]["requestBody"]
    body = _resolve(schema, request["content"]["application/json"]["schema"])

    assert "strategy" not in body["properties"]
