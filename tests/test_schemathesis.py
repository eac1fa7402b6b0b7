"""Schemathesis over the whole OpenAPI schema: no 5xx, and every answer is one the schema documents.

Every operation (POSTs included) gets generated requests, valid and invalid, each sent with a reviewer's, a
labeller's and an API client's token, straight into the WSGI application (no server), against the real test
database. The POSTs that queue work (a training run, an import) send their tasks to the test session's queue that
no worker consumes (tests/conftest.py): nothing expensive runs.
"""
from __future__ import annotations

import json

import pytest
import schemathesis
from django.contrib.auth.models import Group, User
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from classifier.models import ModelVersion
from config.wsgi import application
from labelapp.catalogue.models import ImportKind, ImportRowIssue, ImportRun, ImportStatus, RowOutcome, RuleLabel
from labelapp.common.roles import API_CLIENT, LABELLER, REVIEWER
from tests.factories import (
    LabelFactory,
    LegacyRuleFactory,
    ModelVersionFactory,
    PredictionFactory,
    ProductFactory,
    category,
)

# Transactional: each request commits (and runs its on-commit hooks) as in production; the WSGI handler also closes
# a connection left inside a transaction, which the rolled-back kind of test database is.
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Examples per operation (Hypothesis's fuzzing phase); the examples and coverage phases add their own.
MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _user(username: str, role: str) -> User:
    user = User.objects.create(username=username)  # no password: hashing one costs more than a whole operation
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def role_tokens() -> dict[str, str]:
    return {role: Token.objects.create(user=_user(f"schemathesis-{role}", role)).key
            for role in (REVIEWER, LABELLER, API_CLIENT)}


@pytest.fixture
def catalogue():
    """A little of everything the API reads, so the answers have bodies to check."""
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    jeans = category("Apparel > Bottomwear > Jeans", exclusive=True)
    products = [ProductFactory(category=shirts, level2=shirts.level2), ProductFactory(category=jeans),
                ProductFactory(external_id="a/b c")]
    labeller = _user("someone", LABELLER)
    LabelFactory(product=products[0], category=shirts, labeller=labeller)
    LabelFactory(product=products[1], category=None, labeller=None)
    rule = LegacyRuleFactory(category=jeans)
    RuleLabel.objects.create(product=products[1], category=jeans, rule=rule)
    run = ImportRun.objects.create(kind=ImportKind.PRODUCTS, status=ImportStatus.SUCCEEDED, file_name="/srv/feed.csv",
                                   rows_total=3, rows_rejected=1)
    ImportRowIssue.objects.create(import_run=run, line=2, outcome=RowOutcome.REJECTED, reason="no title", raw="x;;")
    version = ModelVersionFactory(is_active=True)
    PredictionFactory(model_version=version, product=products[0], category=shirts)
    ModelVersion.objects.filter(pk=version.pk).update(predictions_count=1)
    return products


def _api_schema():
    """The schema /api/v1/schema/ serves, built the same way in-process (collection has no database to log in with;
    `schemathesis.pytest.from_fixture`, which would allow it, does not run under pytest 9)."""
    served = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
    schema = schemathesis.openapi.from_dict(served)
    schema.app = application
    schema.config.generation.update(max_examples=MAX_EXAMPLES)
    return schema


schema = _api_schema()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_every_operation_answers_as_its_schema_says_for_every_role(case, role_tokens, catalogue):
    for token in role_tokens.values():
        case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)
