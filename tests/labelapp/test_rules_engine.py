"""The rule engine on plain dicts: no database."""

import random
import subprocess
import sys
from pathlib import Path

import pytest

from labelapp.catalogue.rules_engine import (
    Condition,
    RuleDefinition,
    category_name_keywords,
    rule_definition_errors,
    rules_compile,
    rules_match_naive,
    text_fold,
    word_forms,
)


def rule(rule_id, *conditions, combinator="and", category_id=None):
    return RuleDefinition(rule_id=rule_id, category_id=category_id or rule_id * 10, combinator=combinator,
                          conditions=tuple(Condition(*condition) for condition in conditions))


def fired_ids(rules, product):
    """Return the ids of the rules that fire, checking the engine against the reference on the way."""
    engine = rules_compile(rules).match(product)
    assert engine == rules_match_naive(rules, product)
    return {rule_id for rule_id, _ in engine}


def test_contains_is_a_case_insensitive_substring():
    rules = [rule(1, ("title", "contains", "PANT"))]

    assert fired_ids(rules, {"title": "Nike Sweatpants"}) == {1}
    assert fired_ids(rules, {"title": "Pantaloons Shirt"}) == {1}
    assert fired_ids(rules, {"title": "Nike Shorts"}) == set()


def test_contains_word_needs_whole_words():
    rules = [rule(1, ("title", "contains_word", "Trouser")), rule(2, ("title", "contains_word", "t-shirt"))]

    assert fired_ids(rules, {"title": "Men TROUSER, slim"}) == {1}
    assert fired_ids(rules, {"title": "Men Trousers"}) == set()
    assert fired_ids(rules, {"title": "Blue T-Shirt"}) == {2}
    assert fired_ids(rules, {"title": "Blue T Shirt"}) == set()
    assert fired_ids(rules, {"title": "Blue tshirt"}) == set()
    assert fired_ids(rules, {"title": "Blue T-Shirts"}) == set()
    assert fired_ids(rules, {"title": "Blue_T-Shirt"}) == set()  # "_" is a word character


def test_contains_word_phrase_folds_whitespace_and_case():
    rules = [rule(1, ("title", "contains_word", "Track  Pants"))]

    assert fired_ids(rules, {"title": "Puma Men TRACK\tpants"}) == {1}
    assert fired_ids(rules, {"title": "Puma Men track-pants"}) == set()
    assert fired_ids(rules, {"title": "Puma Men racetrack pants"}) == set()


def test_contains_word_without_word_characters():
    rules = [rule(1, ("title", "contains_word", "&"))]

    assert fired_ids(rules, {"title": "Shirts & Tops"}) == {1}
    assert fired_ids(rules, {"title": "Shirts&Tops"}) == set()


def test_equals_compares_the_whole_folded_field():
    rules = [rule(1, ("gender", "equals", "Men"))]

    assert fired_ids(rules, {"gender": " MEN "}) == {1}
    assert fired_ids(rules, {"gender": "Women"}) == set()
    assert fired_ids(rules, {"gender": None}) == set()
    assert fired_ids(rules, {}) == set()


def test_regex_is_case_sensitive_unless_inline_flag():
    rules = [rule(1, ("title", "regex", r"\bKurta\b")), rule(2, ("title", "regex", r"(?i)^nike\s+air")),
             rule(3, ("size", "regex", r"^\d{2}$"))]

    assert fired_ids(rules, {"title": "Kurta set", "size": "42"}) == {1, 3}
    assert fired_ids(rules, {"title": "kurta set", "size": "42L"}) == set()
    assert fired_ids(rules, {"title": "NIKE  Air Max"}) == {2}


def test_and_needs_every_condition_or_needs_one():
    both = rule(1, ("title", "contains_word", "shirt"), ("gender", "equals", "men"))
    either = rule(2, ("title", "contains_word", "shirt"), ("title", "contains_word", "top"), combinator="or")
    mixed = rule(3, ("title", "regex", "Polo"), ("brand", "contains", "lacoste"), combinator="or")
    regex_only = rule(4, ("title", "regex", "^Polo"), ("title", "regex", "Shirt$"))
    rules = [both, either, mixed, regex_only]

    assert fired_ids(rules, {"title": "Polo Shirt", "gender": "Men"}) == {1, 2, 3, 4}
    assert fired_ids(rules, {"title": "Polo Shirt", "gender": "Women"}) == {2, 3, 4}
    assert fired_ids(rules, {"title": "Crop Top", "gender": "Men"}) == {2}
    assert fired_ids(rules, {"title": "Jeans", "brand": "Lacoste"}) == {3}


def test_a_sample_picks_the_rarer_anchor_without_changing_results():
    kurta_for_men = rule(1, ("gender", "equals", "men"), ("title", "contains_word", "kurta"))
    sample = [{"title": "Shirt", "gender": "Men"}] * 9 + [{"title": "Kurta", "gender": "Women"}]

    static, sampled = rules_compile([kurta_for_men]), rules_compile([kurta_for_men], sample=sample)

    assert list(static._indexes) == ["title"]  # the longer value
    assert list(sampled._indexes) == ["title"]
    assert list(rules_compile([kurta_for_men], sample=[{"title": "Kurta", "gender": "Women"}] * 5)._indexes) == [
        "gender"]
    for product in [{"title": "Kurta", "gender": "Men"}, {"title": "Kurta", "gender": "Women"}]:
        assert static.match(product) == sampled.match(product) == rules_match_naive([kurta_for_men], product)


def test_results_carry_the_category_and_several_rules_can_fire():
    rules = [rule(1, ("title", "contains_word", "jeans"), category_id=7),
             rule(2, ("title", "contains", "jean"), category_id=7),
             rule(3, ("title", "contains_word", "denim"), category_id=8)]

    assert rules_compile(rules).match({"title": "Denim Jeans"}) == {(1, 7), (2, 7), (3, 8)}


def test_compile_rejects_what_it_cannot_evaluate():
    with pytest.raises(ValueError, match="rule 1"):
        rules_compile([rule(1, ("title", "regex", "(unclosed"))])
    assert rule_definition_errors(conditions=[{"op": "contains", "value": "  "}], combinator="xor") == [
        "unknown combinator 'xor' (one of and, or)", "condition 1: value '  ' is only whitespace"]
    assert rule_definition_errors(conditions=[{"op": "like", "value": "x"}], combinator="and") == [
        "condition 1: unknown op 'like' (one of contains, contains_word, equals, regex)"]


def test_engine_module_imports_no_django():
    code = ("import sys, labelapp.catalogue.rules_engine; "
            "sys.exit(any(m.split('.')[0] in ('django', 'celery', 'rest_framework') for m in sys.modules))")

    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2]).returncode == 0


def test_text_fold():
    assert text_fold("  Blue\u00a0 T-SHIRT\n") == "blue t-shirt"
    assert text_fold(None) == ""


@pytest.mark.parametrize(("word", "forms"), [
    ("trousers", ["trousers", "trouser"]), ("trouser", ["trouser", "trousers"]),
    ("dresses", ["dresses", "dress"]), ("dress", ["dress", "dresses"]),
    ("accessories", ["accessories", "accessory"]), ("toy", ["toy", "toys"]),
    ("watches", ["watches", "watch"]), ("shoes", ["shoes", "shoe"]), ("jeans", ["jeans"]), ("shorts", ["shorts"]),
    ("knives", ["knives", "knife"]), ("women", ["women", "woman"]), ("box", ["box", "boxes"]),
])
def test_word_forms(word, forms):
    assert word_forms(word) == forms


@pytest.mark.parametrize(("name", "keywords"), [
    ("Trousers", ["trouser", "trousers"]),
    ("Track Pants", ["track pant", "track pants"]),
    ("T-Shirts", ["t shirt", "t shirts", "t-shirt", "t-shirts", "tshirt", "tshirts"]),
    ("Shirts & Tops", ["shirt", "shirts", "top", "tops"]),
    ("Pet Bells & Charms", ["pet bell", "pet bells", "pet charm", "pet charms"]),
    ("Baby & Toddler Food", ["baby food", "baby foods", "toddler food", "toddler foods"]),
    ("Printers, Copiers & Fax Machines",
     ["copier", "copiers", "fax machine", "fax machines", "printer", "printers"]),
    ("Perfume and Body Mist", ["body mist", "body mists", "perfume", "perfumes"]),
    ("Parts & Accessories", []),
])
def test_category_name_keywords(name, keywords):
    assert category_name_keywords(name) == keywords


# --- the randomized equivalence test ---------------------------------------------------------------------------

WORDS = ["pant", "pants", "sweatpants", "t", "shirt", "t-shirt", "tshirt", "track", "men", "women", "man",
         "blue", "navy", "kurta", "kurtas", "top", "tops", "crop", "a", "an", "ab", "abc", "bca", "é", "ÉTÉ",
         "x_y", "42", "4", "&", "i", "İ", "straße", "co-ord", "set"]
SEPARATORS = [" ", " ", " ", "  ", "-", ", ", "/", "_", "\t", "", "&", " & ", "."]
FIELDS = ["title", "description", "brand", "gender"]


def random_text(rng, max_words=8):
    words = [rng.choice(WORDS) for _ in range(rng.randint(0, max_words))]
    words = [word.upper() if rng.random() < 0.15 else word.title() if rng.random() < 0.2 else word
             for word in words]
    text = ""
    for position, word in enumerate(words):
        text += (rng.choice(SEPARATORS) if position else rng.choice(["", " "])) + word
    return text + rng.choice(["", "", " ", "."])


def random_value(rng, op):
    if op == "equals":
        value = random_text(rng, 2)
        return value if value.strip() else "men"
    if op == "regex":
        return rng.choice([r"(?i)\bpants?\b", r"^T", r"\d+", r"(?i)t[- ]?shirt", r"Men$", r"[A-Z]{2,}", r"é"])
    value = random_text(rng, 3).strip() or rng.choice(WORDS)
    if op == "contains" and rng.random() < 0.4:
        start = rng.randrange(len(value))
        value = value[start:start + rng.randint(1, 4)]
    return value if value.strip() else rng.choice(WORDS)


def random_rule(rng, rule_id):
    conditions = []
    for _ in range(rng.choice([1, 1, 2, 2, 3])):
        op = rng.choices(["contains", "contains_word", "equals", "regex"], weights=[4, 6, 2, 1])[0]
        conditions.append(Condition(rng.choice(FIELDS), op, random_value(rng, op)))
    return RuleDefinition(rule_id=rule_id, category_id=rng.randint(1, 40), conditions=tuple(conditions),
                          combinator=rng.choice(["and", "or"]))


def test_engine_matches_the_naive_evaluator_on_random_rules_and_products():
    rng = random.Random(20240601)
    rules = [random_rule(rng, rule_id) for rule_id in range(1, 301)]
    products = [{name: random_text(rng) if rng.random() < 0.9 else None for name in FIELDS}
                for _ in range(3000)]
    matcher = rules_compile(rules)
    sampled = rules_compile(rules, sample=products[:300])  # other anchors for "and" rules, same results

    mismatches = []
    for product in products:
        expected = rules_match_naive(rules, product)
        if not matcher.match(product) == sampled.match(product) == expected:
            mismatches.append((product, matcher.match(product), sampled.match(product), expected))

    assert mismatches == []
    fired_counts = [len(matcher.match(product)) for product in products]
    assert sum(1 for count in fired_counts if count) > len(products) // 2  # the test exercises real matches
    assert sum(fired_counts) > 3 * len(products)
