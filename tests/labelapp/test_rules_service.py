"""Legacy rules against the database: import, bootstrap, apply, the task and the commands."""

import json

import pytest
from django.core.management import CommandError, call_command

from labelapp.catalogue.models import (
    CategorySource,
    ImportRun,
    ImportStatus,
    LegacyRule,
    Product,
    RowOutcome,
    RuleLabel,
)
from labelapp.catalogue.services.imports.runs import import_run_create
from labelapp.catalogue.services.rules import rule_labels_for_product, rules_apply, rules_bootstrap, rules_import
from labelapp.catalogue.tasks import rules_apply_task
from tests.factories import LabelFactory, LegacyRuleFactory, ProductFactory, category

pytestmark = pytest.mark.django_db


def condition(value, field="title", op="contains_word"):
    return {"field": field, "op": op, "value": value}


def import_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return rules_import(import_run=import_run_create(kind="rules", file_name=str(path)), path=path)


def issues(run):
    return [(issue.line, issue.outcome, issue.reason) for issue in run.row_issues.all()]


def labels(product):
    return set(RuleLabel.objects.filter(product=product).values_list("rule__name", "category__name"))


# --- import -----------------------------------------------------------------------------------------------------


def test_import_json_creates_then_upserts_by_name(tmp_path):
    trousers = category("Apparel > Bottomwear > Trousers", exclusive=True)
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    shirts.external_id = "g-212"
    shirts.save()
    rules = [
        {"name": "trousers", "category": "Apparel>Bottomwear >Trousers", "combinator": "or",
         "conditions": [condition("trousers"), condition("trouser")]},
        {"name": "men shirts", "category": "g-212",
         "conditions": [condition("shirt"), condition("men", field="gender", op="equals")]},
    ]

    first = import_file(tmp_path, "rules.json", rules)

    assert (first.status, first.kind, first.rows_total, first.rows_created, first.rows_rejected) == (
        ImportStatus.SUCCEEDED, "rules", 2, 2, 0)
    rule = LegacyRule.objects.get(name="trousers")
    assert (rule.category, rule.combinator, rule.origin, rule.active) == (trousers, "or", "imported", True)
    assert LegacyRule.objects.get(name="men shirts").combinator == "and"

    rules[0]["active"] = False
    second = import_file(tmp_path, "again.json", {"rules": rules})

    assert (second.rows_created, second.rows_updated, second.rows_rejected) == (0, 1, 0)
    assert LegacyRule.objects.get(name="trousers").active is False
    assert LegacyRule.objects.count() == 2


def test_import_json_rejects_each_bad_rule_and_keeps_the_good_ones(tmp_path):
    category("Apparel > Topwear > Shirts", exclusive=True)
    good = {"name": "shirts", "category": "Apparel > Topwear > Shirts", "conditions": [condition("shirt")]}
    rules = [
        good,
        "not an object",
        {**good, "name": ""},
        {**good, "name": "shirts"},
        {**good, "name": "no category", "category": ""},
        {**good, "name": "unknown category", "category": "Apparel > Hats"},
        {**good, "name": "bad field", "conditions": [condition("x", field="colour")]},
        {**good, "name": "bad op", "conditions": [condition("x", op="like")]},
        {**good, "name": "empty value", "conditions": [condition("")]},
        {**good, "name": "blank value", "conditions": [condition("   ")]},
        {**good, "name": "bad regex", "conditions": [condition("(unclosed", op="regex")]},
        {**good, "name": "bad combinator", "combinator": "xor"},
        {**good, "name": "no conditions", "conditions": []},
        {**good, "name": "conditions not a list", "conditions": condition("shirt")},
        {**good, "name": "bad active", "active": "yes"},
        {**good, "name": "x" * 256},
    ]

    run = import_file(tmp_path, "rules.json", rules)

    assert (run.status, run.rows_total, run.rows_created, run.rows_rejected) == (ImportStatus.SUCCEEDED, 16, 1, 15)
    assert list(LegacyRule.objects.values_list("name", flat=True)) == ["shirts"]
    reasons = {line: reason for line, outcome, reason in issues(run) if outcome == RowOutcome.REJECTED}
    assert sorted(reasons) == list(range(2, 17))
    assert reasons[2] == "a rule must be a JSON object"
    assert reasons[3] == "name is required"
    assert reasons[4] == "duplicate rule name 'shirts' (first at index 1)"
    assert reasons[5] == "category is required"
    assert "unknown category 'Apparel > Hats'" in reasons[6]
    assert "unknown field 'colour'" in reasons[7]
    assert "unknown op 'like'" in reasons[8]
    assert "value must be a non-empty string" in reasons[9]
    assert "is only whitespace" in reasons[10]
    assert "invalid regex '(unclosed'" in reasons[11]
    assert "unknown combinator 'xor'" in reasons[12]
    assert "conditions must be a non-empty list" in reasons[13]
    assert "conditions must be a non-empty list" in reasons[14]
    assert "active must be true or false" in reasons[15]
    assert "longer than 255" in reasons[16]
    assert json.loads(run.row_issues.get(line=6).raw)["name"] == "unknown category"


def test_import_csv_groups_lines_by_name_and_reports_line_numbers(tmp_path):
    trousers = category("Apparel > Bottomwear > Trousers", exclusive=True)
    category("Apparel > Topwear > Shirts", exclusive=True)
    content = (
        "name,category,field,op,value,combinator\n"
        "trousers,Apparel > Bottomwear > Trousers,title,contains_word,trousers,or\n"
        "men shirts,Apparel > Topwear > Shirts,title,contains_word,shirt,\n"
        "trousers,Apparel > Bottomwear > Trousers,title,contains_word,trouser,or\n"
        "\n"
        "men shirts,Apparel > Topwear > Shirts,gender,equals,men,\n"
        "broken,Apparel > Topwear > Shirts,title,contains_word,shirt,or\n"
        "broken,Apparel > Topwear > Shirts,colour,contains,blue,or\n"
        "broken,Apparel > Topwear > Shirts,title,regex,\"(a,b\",or\n"
        "split,Apparel > Topwear > Shirts,title,contains,x,and\n"
        "split,Apparel > Bottomwear > Trousers,title,contains,y,or\n"
        "nowhere,Apparel > Hats,title,contains,cap,\n"
        ",Apparel > Hats,title,contains,cap,\n"
        "lonely,Apparel > Topwear > Shirts,title,like,x,\n"
    )

    run = import_file(tmp_path, "rules.csv", content)

    assert (run.rows_total, run.rows_created, run.rows_rejected) == (7, 2, 5)
    rule = LegacyRule.objects.get(name="trousers")
    assert (rule.category, rule.combinator) == (trousers, "or")
    assert [c["value"] for c in rule.conditions] == ["trousers", "trouser"]
    assert LegacyRule.objects.get(name="men shirts").combinator == "and"
    reasons = {line: reason for line, _, reason in issues(run)}
    assert sorted(reasons) == [7, 10, 12, 13, 14]
    assert "line 8: unknown field 'colour'" in reasons[7]
    assert "line 9: invalid regex '(a,b'" in reasons[7]
    assert "line 11: category 'Apparel > Bottomwear > Trousers' differs" in reasons[10]
    assert "line 11: combinator 'or' differs" in reasons[10]
    assert "unknown category 'Apparel > Hats'" in reasons[12]
    assert reasons[13] == "name is required"
    assert reasons[14] == "unknown op 'like' (one of contains, contains_word, equals, regex)"
    assert run.row_issues.get(line=7).raw.count("\n") == 2


@pytest.mark.parametrize(("name", "content", "error"), [
    ("rules.json", "[{", "invalid JSON"),
    ("rules.json", '{"other": 1}', "a JSON rules file holds a list"),
    ("rules.csv", "name,category,field\nx,y,z\n", "lacks column(s) op, value"),
    ("rules.csv", "", "empty"),
])
def test_import_fails_the_run_when_the_file_is_unreadable(tmp_path, name, content, error):
    run = import_file(tmp_path, name, content)

    assert run.status == ImportStatus.FAILED
    assert error in run.error
    assert run.finished_at is not None


def test_import_runs_only_a_queued_run(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text("[]")
    run = import_run_create(kind="rules", file_name=str(path))
    ImportRun.objects.filter(id=run.id).update(status=ImportStatus.SUCCEEDED)

    again = rules_import(import_run=run, path=path)

    assert again.status == ImportStatus.SUCCEEDED and again.started_at is None
    with pytest.raises(ValueError, match="not a rules import"):
        rules_import(import_run=import_run_create(kind="products", file_name=str(path)), path=path)


# --- bootstrap --------------------------------------------------------------------------------------------------


def test_bootstrap_makes_one_keyword_rule_per_exclusive_category():
    trousers = category("Apparel > Bottomwear > Trousers", exclusive=True)
    category("Apparel > Bottomwear > Track Pants", exclusive=True)
    category("Apparel > Topwear > Shirts & Tops", exclusive=True)
    category("Apparel > Dresses", exclusive=True)
    category("Apparel > Accessories", exclusive=True)  # too generic: no rule
    category("Apparel > Bottomwear", exclusive=False)

    written = rules_bootstrap()

    rules = {rule.category.name: rule for rule in LegacyRule.objects.select_related("category")}
    assert written == 4 and set(rules) == {"Trousers", "Track Pants", "Shirts & Tops", "Dresses"}
    values = {name: [c["value"] for c in rule.conditions] for name, rule in rules.items()}
    assert values == {"Trousers": ["trouser", "trousers"], "Track Pants": ["track pant", "track pants"],
                      "Shirts & Tops": ["shirt", "shirts", "top", "tops"], "Dresses": ["dress", "dresses"]}
    rule = rules["Trousers"]
    assert (rule.name, rule.origin, rule.combinator) == (f"bootstrap:title:{trousers.external_id}", "bootstrap", "or")
    assert {(c["field"], c["op"]) for c in rule.conditions} == {("title", "contains_word")}


def test_bootstrap_rerun_keeps_switched_off_rules_and_foreign_rules():
    trousers = category("Apparel > Trousers", exclusive=True)
    jeans = category("Apparel > Jeans", exclusive=True)
    rules_bootstrap()
    LegacyRule.objects.filter(category=trousers).update(active=False)
    LegacyRule.objects.filter(category=jeans).update(origin="manual", conditions=[condition("denim")])

    assert rules_bootstrap() == 0
    assert LegacyRule.objects.get(category=trousers).active is False
    assert LegacyRule.objects.get(category=jeans).conditions == [condition("denim")]
    assert rules_bootstrap(categories=[trousers], field="description") == 1
    assert LegacyRule.objects.get(name=f"bootstrap:description:{trousers.external_id}").conditions[0]["field"] == (
        "description")
    with pytest.raises(ValueError, match="unknown field"):
        rules_bootstrap(field="colour")


# --- apply ------------------------------------------------------------------------------------------------------


@pytest.fixture
def catalogue():
    trousers = category("Apparel > Bottomwear > Trousers", exclusive=True)
    shirts = category("Apparel > Topwear > Shirts", exclusive=True)
    feed = category("Apparel > Bottomwear", exclusive=False)
    rules = {
        "trousers": LegacyRuleFactory(name="trousers", category=trousers, combinator="or",
                                      conditions=[condition("trousers"), condition("trouser")]),
        "shirts": LegacyRuleFactory(name="shirts", category=shirts, conditions=[condition("shirt")]),
        "formal": LegacyRuleFactory(name="formal", category=trousers,
                                    conditions=[condition("formal"), condition("men", field="gender", op="equals")]),
    }
    products = {
        "trousers": ProductFactory(title="Men Formal Trousers", gender="Men", feed_category=feed, category=feed,
                                   category_source=CategorySource.FEED),
        "both": ProductFactory(title="Shirt and Trouser set"),
        "shirt": ProductFactory(title="Blue Shirt"),
        "nothing": ProductFactory(title="Leather Belt"),
    }
    return {"trousers": trousers, "shirts": shirts, "feed": feed, "rules": rules, "products": products}


def test_apply_labels_products_and_is_idempotent(catalogue):
    products = catalogue["products"]

    result = rules_apply(chunk_size=2)

    assert (result.rules_active, result.products_scanned, result.labels_created, result.labels_removed,
            result.products_labelled) == (3, 4, 5, 0, 3)
    assert labels(products["trousers"]) == {("trousers", "Trousers"), ("formal", "Trousers")}
    assert labels(products["both"]) == {("trousers", "Trousers"), ("shirts", "Shirts")}
    assert labels(products["shirt"]) == {("shirts", "Shirts")}
    assert labels(products["nothing"]) == set()
    again = rules_apply(chunk_size=3)
    assert (again.labels_created, again.labels_removed, again.categories_set, again.products_labelled) == (0, 0, 0, 3)
    assert RuleLabel.objects.count() == 5


def test_apply_removes_labels_of_switched_off_and_changed_rules(catalogue):
    products, rules = catalogue["products"], catalogue["rules"]
    rules_apply()

    LegacyRule.objects.filter(pk=rules["formal"].pk).update(active=False)
    LegacyRule.objects.filter(pk=rules["shirts"].pk).update(conditions=[condition("blue")])
    LegacyRule.objects.filter(pk=rules["trousers"].pk).update(category=catalogue["shirts"])
    result = rules_apply()

    # formal: 1 label gone; shirts no longer fires on "both"; trousers' 2 labels move to Shirts (2 out, 2 in).
    assert (result.rules_active, result.labels_removed, result.labels_created) == (2, 4, 2)
    assert labels(products["trousers"]) == {("trousers", "Shirts")}
    assert labels(products["both"]) == {("trousers", "Shirts")}
    assert labels(products["shirt"]) == {("shirts", "Shirts")}


def test_apply_sets_the_effective_category_only_without_label_or_a_more_precise_prediction(catalogue):
    products, trousers, shirts = catalogue["products"], catalogue["trousers"], catalogue["shirts"]
    # A test-split label: the catalogue is measured on those, never trusts from them.
    labelled = ProductFactory(title="Trousers", category=shirts, category_source=CategorySource.LABEL, split="test")
    LabelFactory(product=labelled, category=shirts)
    # Nothing is measured yet, so a model's prediction cannot be shown more precise than a rule: the rule wins
    # (before evidence-based arbitration a prediction always beat the rules; see tests/labelapp/test_arbitration.py).
    predicted = ProductFactory(title="Trousers", category=shirts, category_source=CategorySource.PREDICTION,
                               model_category=shirts)

    result = rules_apply()

    assert result.categories_set == 3
    for product in products.values():
        product.refresh_from_db()
    assert (products["trousers"].category, products["trousers"].category_source) == (trousers, CategorySource.RULE)
    assert (products["trousers"].level2_id, products["trousers"].level3_id) == (trousers.level2_id, trousers.id)
    assert (products["shirt"].category, products["shirt"].category_source) == (shirts, CategorySource.RULE)
    assert (products["both"].category, products["both"].category_source) == (None, CategorySource.NONE)  # ambiguous
    assert (products["nothing"].category, products["nothing"].category_source) == (None, CategorySource.NONE)
    labelled.refresh_from_db()
    predicted.refresh_from_db()
    assert (labelled.category, labelled.category_source) == (shirts, CategorySource.LABEL)
    assert (predicted.category, predicted.category_source) == (trousers, CategorySource.RULE)
    for product in (labelled, predicted):
        assert labels(product) == {("trousers", "Trousers")}


def test_apply_keeps_a_human_label_that_lands_while_the_chunk_is_processed(catalogue, monkeypatch):
    from labelapp.catalogue.services import rules as rules_service

    product, shirts = catalogue["products"]["shirt"], catalogue["shirts"]
    replace = rules_service._chunk_labels_replace

    def replace_then_label(**kwargs):
        replace(**kwargs)
        LabelFactory(product=product, category=catalogue["trousers"])
        Product.objects.filter(pk=product.pk).update(category=catalogue["trousers"],
                                                     category_source=CategorySource.LABEL)

    monkeypatch.setattr(rules_service, "_chunk_labels_replace", replace_then_label)
    rules_apply()

    product.refresh_from_db()
    assert (product.category, product.category_source) == (catalogue["trousers"], CategorySource.LABEL)
    assert labels(product) == {("shirts", shirts.name)}


def test_apply_reverts_a_rule_category_to_the_feed_when_the_rules_stop_agreeing(catalogue):
    products, rules = catalogue["products"], catalogue["rules"]
    rules_apply()
    LegacyRule.objects.filter(pk__in=[rules["trousers"].pk, rules["formal"].pk]).update(active=False)
    LegacyRule.objects.filter(pk=rules["shirts"].pk).update(conditions=[condition("shirt"), condition("trouser")],
                                                          combinator="or")

    result = rules_apply()

    assert result.categories_reverted == 1
    reverted, shirt = products["trousers"], products["shirt"]
    reverted.refresh_from_db()
    shirt.refresh_from_db()
    assert (reverted.category, reverted.category_source) == (catalogue["feed"], CategorySource.FEED)
    assert (reverted.level2_id, reverted.level3_id) == (catalogue["feed"].id, None)
    assert shirt.category_source == CategorySource.RULE


def test_apply_to_some_products_with_progress(catalogue):
    products = catalogue["products"]
    calls = []

    result = rules_apply(product_ids=[products["shirt"].id, products["both"].id, products["shirt"].id, 10**9],
                         chunk_size=1, progress=lambda done, total: calls.append((done, total)))

    assert (result.products_scanned, result.labels_created) == (2, 3)
    assert calls == [(1, 3), (2, 3)]
    assert labels(products["trousers"]) == set()
    assert [label.rule.name for label in rule_labels_for_product(product_id=products["both"].id)] == [
        "trousers", "shirts"]  # by category path: Bottomwear before Topwear


def test_apply_skips_a_stored_rule_the_engine_cannot_compile(catalogue):
    LegacyRule.objects.filter(pk=catalogue["rules"]["shirts"].pk).update(conditions=[condition("  ")])

    result = rules_apply()

    assert (result.rules_active, result.rules_skipped) == (3, 1)
    assert not RuleLabel.objects.filter(rule=catalogue["rules"]["shirts"]).exists()


def test_apply_task_called_directly(catalogue):
    product = catalogue["products"]["shirt"]

    result = rules_apply_task(product_ids=[product.id])

    assert result["products_scanned"] == 1 and result["labels_created"] == 1
    assert labels(product) == {("shirts", "Shirts")}


# --- commands ---------------------------------------------------------------------------------------------------


def test_commands_import_bootstrap_and_apply(tmp_path, capsys):
    category("Apparel > Bottomwear > Trousers", exclusive=True)
    category("Apparel > Topwear > Shirts", exclusive=True)
    path = tmp_path / "rules.json"
    path.write_text(json.dumps([
        {"name": "chinos", "category": "Apparel > Bottomwear > Trousers", "conditions": [condition("chinos")]},
        {"name": "bad", "category": "Nowhere", "conditions": [condition("x")]},
    ]))
    product = ProductFactory(title="Slim Chinos Trousers")

    call_command("import_rules", str(path))
    call_command("bootstrap_rules", "--field", "title")
    call_command("apply_rules", "--chunk-size", "10", verbosity=0)

    out = capsys.readouterr().out
    assert "rows: 2 read, 1 created, 0 updated, 1 rejected" in out
    assert "line       2  rejected  unknown category 'Nowhere'" in out
    assert "2 bootstrap rules created or updated on title." in out
    assert "3 rules to 1 products: 2 labels created" in out
    product.refresh_from_db()
    assert product.category.name == "Trousers" and product.category_source == CategorySource.RULE
    assert Product.objects.count() == 1
    with pytest.raises(CommandError, match="invalid JSON"):
        path.write_text("[")
        call_command("import_rules", str(path))
