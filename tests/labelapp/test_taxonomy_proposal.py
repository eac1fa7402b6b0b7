"""labelapp.catalogue.taxonomy_proposal: a category tree proposed from feed paths — pure, no database."""

import csv
import io
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from labelapp.catalogue.normalise import category_path_split
from labelapp.catalogue.taxonomy_proposal import (
    FOLD_PARENT,
    ProposalOptions,
    exclusive_rule_parse,
    name_key,
    path_counts_collect,
    proposal_csv_text,
    proposal_summary_lines,
    taxonomy_propose,
)

REPO = Path(__file__).resolve().parents[2]


def propose(values, **options):
    return taxonomy_propose(path_counts=path_counts_collect(values), options=ProposalOptions(**options))


def tree(proposal) -> dict[str, tuple[int, int, bool, bool]]:
    """path -> (products, own products, leaf, exclusive)."""
    return {node.path: (node.products, node.own_products, node.is_leaf, node.is_exclusive) for node in proposal.nodes}


def test_mixed_delimiters_and_lists_give_one_path():
    values = ["Apparel > Tops", "Apparel >> Tops", "Apparel / Tops", "Apparel | Tops", '["Apparel", "Tops"]',
              ["Apparel", "Tops"], "Apparel › Tops"]

    proposal = propose(values)

    assert tree(proposal) == {"Apparel": (7, 0, False, False), "Apparel > Tops": (7, 7, True, True)}


def test_paths_are_cut_to_the_depth_and_the_cut_is_counted():
    proposal = propose(["A > B > C > D"] * 3 + ["A > B"] + ["A > E > F"] * 2, depth=2)

    assert tree(proposal) == {"A": (6, 0, False, False), "A > B": (4, 4, True, True), "A > E": (2, 2, True, True)}
    assert proposal.products_cut_to_depth == 5


def test_a_node_below_the_minimum_is_folded_into_its_parent_whose_products_it_becomes():
    values = ["A > B"] * 5 + ["A > C"] * 2 + ["A > D"] + ["A > B > X"]

    proposal = propose(values, min_products=3, fold=FOLD_PARENT)

    # A > B > X (1) folds into A > B; A > C (2) and A > D (1) fold into A, which keeps them itself.
    assert tree(proposal) == {"A": (9, 3, False, False), "A > B": (6, 6, True, True)}
    folded = {(change.path, change.into, change.products) for change in proposal.changes if change.kind == "folded"}
    assert folded == {("A > C", "A", 2), ("A > D", "A", 1), ("A > B > X", "A > B", 1)}
    assert proposal.products_on_inner_nodes == 3
    assert proposal.products_on_exclusive == 6


def test_folded_products_go_to_an_other_leaf_when_there_are_enough_of_them():
    values = ["A > B"] * 5 + ["A > C"] * 2 + ["A > D"] + ["A"]

    proposal = propose(values, min_products=3)

    assert tree(proposal) == {"A": (9, 0, False, False), "A > B": (5, 5, True, True),
                              "A > Other": (4, 4, True, True)}
    assert [node.path for node in proposal.nodes if node.is_catch_all] == ["A > Other"]
    assert proposal.products_on_exclusive == proposal.products_covered == 9


def test_too_few_folded_products_for_an_other_leaf_stay_on_the_parent():
    proposal = propose(["A > B"] * 5 + ["A > C"] * 2, min_products=3)

    assert tree(proposal) == {"A": (7, 2, False, False), "A > B": (5, 5, True, True)}


def test_a_parent_whose_children_all_fold_becomes_a_leaf():
    proposal = propose(["A > B", "A > C", "A > D"], min_products=2)

    assert tree(proposal) == {"A": (3, 3, True, True)}


def test_a_top_level_name_below_the_minimum_is_dropped_and_not_covered():
    proposal = propose(["A > B"] * 4 + ["Z > Y"] + ["", None, []], min_products=2)

    assert [node.path for node in proposal.nodes] == ["A", "A > B"]
    assert (proposal.products_total, proposal.products_covered, proposal.products_dropped,
            proposal.products_without_path) == (8, 4, 1, 3)
    dropped = [change for change in proposal.changes if change.kind == "dropped"]
    assert [(change.path, change.products) for change in dropped] == [("Z", 1)]


def test_the_leaves_are_exclusive_by_default():
    proposal = propose(["A > B > C", "A > B > D", "A > E", "F"])

    assert {node.path for node in proposal.nodes if node.is_exclusive} == {"A > B > C", "A > B > D", "A > E", "F"}


def test_exclusive_at_a_level_takes_that_level_and_the_leaves_above_it():
    proposal = propose(["A > B > C", "A > B > D", "A > E", "F"], exclusive_level=2)

    assert {node.path for node in proposal.nodes if node.is_exclusive} == {"A > B", "A > E", "F"}
    assert proposal.products_on_exclusive == 4


def test_sibling_spellings_merge_under_the_most_common_one():
    values = ["Apparel > T-Shirts"] * 3 + ["Apparel > T Shirts"] * 2 + ["apparel > t-shirts", "Apparel > TShirts",
                                                                         "Apparel > Men's", "Apparel > Mens"]

    proposal = propose(values)

    assert tree(proposal) == {"Apparel": (9, 0, False, False), "Apparel > Men's": (2, 2, True, True),
                              "Apparel > T-Shirts": (7, 7, True, True)}
    merged = {(change.path, change.into, change.products) for change in proposal.changes if change.kind == "merged"}
    assert merged == {("apparel", "Apparel", 1), ("Apparel > T Shirts", "Apparel > T-Shirts", 2),
                      ("Apparel > t-shirts", "Apparel > T-Shirts", 1), ("Apparel > TShirts", "Apparel > T-Shirts", 1),
                      ("Apparel > Mens", "Apparel > Men's", 1)}


def test_merging_stays_conservative():
    values = ["Home & Garden", "Home and Garden", "Shirt", "Shirts", "Men > Shirts", "Women > Shirts"]

    proposal = propose(values)

    assert [node.path for node in proposal.nodes] == ["Home & Garden", "Home and Garden", "Men", "Men > Shirts",
                                                      "Shirt", "Shirts", "Women", "Women > Shirts"]
    assert name_key("T-Shirts") == name_key("t shirts") == name_key("TShirts")
    assert name_key("C++") != name_key("C")


def test_the_proposal_does_not_depend_on_the_order_of_the_paths():
    values = (["Apparel > T-Shirts"] * 2 + ["Apparel > T Shirts"] * 2 + ["Apparel > Dresses"] * 4
              + ["Shoes > Boots"] * 3 + ["Shoes"] + ["Bags"] * 2 + ["Apparel"])
    shuffled = list(values)
    random.Random(7).shuffle(shuffled)

    first = propose(values, min_products=2, depth=2)
    second = propose(shuffled, min_products=2, depth=2)

    assert first == second
    # A tie between spellings goes to the alphabetically first one.
    assert "Apparel > T Shirts" in tree(first)
    assert proposal_csv_text(first) == proposal_csv_text(second)


def test_breadcrumb_names_are_stripped_from_the_start_of_paths():
    proposal = propose(["Home > Shop > Tools > Saws", "home > Tools", "Home", "Tools > Home"],
                       strip_leading=("Home", "Shop"))

    assert tree(proposal) == {"Tools": (3, 0, False, False), "Tools > Home": (1, 1, True, True),
                              "Tools > Saws": (1, 1, True, True), "Tools > Other": (1, 1, True, True)}
    assert proposal.products_without_path == 1


def test_the_csv_lists_every_node_parents_first_and_reads_back_as_the_same_paths():
    proposal = propose(["Apparel > Tops/T-shirts", "Apparel > Tops/T-shirts", "Shoes, Boots & More > Boots",
                        'Sale "50%" > Hats'])

    text = proposal_csv_text(proposal)

    assert text.splitlines()[:3] == ["path,exclusive", "Apparel,false", "Apparel > Tops/T-shirts,true"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(tuple(category_path_split(row["path"])), row["exclusive"]) for row in rows] == [
        (node.names, "true" if node.is_exclusive else "false") for node in proposal.nodes]


def test_a_name_the_csv_would_split_again_has_its_delimiter_rewritten():
    paths = {("Tops/T-shirts",): 1, ("Tops/T-shirts", "Polo"): 1}  # names as a list-valued feed field gives them

    proposal = taxonomy_propose(path_counts=paths, options=ProposalOptions(min_products=1, fold=FOLD_PARENT))

    assert [node.path for node in proposal.nodes] == ["Tops - T-shirts", "Tops - T-shirts > Polo"]
    assert proposal.names_rewritten == 2


def test_a_name_longer_than_a_category_name_cuts_the_path_before_it():
    proposal = propose(["A > " + "x" * 30 + " > C", "y" * 30], max_name_length=20)

    assert tree(proposal) == {"A": (1, 1, True, True)}
    assert (proposal.products_cut_at_long_name, proposal.products_without_path) == (2, 1)


def test_the_summary_reports_levels_leaves_coverage_and_changes():
    proposal = propose(["A > B"] * 4 + ["A > C"] + ["Z"] + [""], min_products=2, depth=3)

    text = "\n".join(proposal_summary_lines(proposal))

    assert "nodes: 2 (level 1: 1, level 2: 1); leaves 1, exclusive 1" in text
    assert "covered 5 (71.4 %)" in text
    assert "1 without a path, 1 under 1 dropped top-level names" in text
    assert "folded        1  A > C -> A  (fewer than 2 products)" in text


@pytest.mark.parametrize(("text", "level"), [("leaves", None), ("level:2", 2), (" LEVEL:1 ", 1)])
def test_exclusive_rule_parse(text, level):
    assert exclusive_rule_parse(text) == level


@pytest.mark.parametrize("text", ["level:0", "level:x", "level", "roots", ""])
def test_exclusive_rule_parse_refuses_other_rules(text):
    with pytest.raises(ValueError, match="leaves"):
        exclusive_rule_parse(text)


@pytest.mark.parametrize("options", [{"min_products": 0}, {"depth": 0}, {"fold": "sideways"},
                                     {"exclusive_level": 0}, {"other_name": " "}])
def test_options_are_checked(options):
    with pytest.raises(ValueError):
        ProposalOptions(**options)


def test_path_counts_count_equal_paths_once_whatever_their_spelling_as_a_value():
    counts = path_counts_collect(["A > B", ["A", "B"], "A/B", None, ""])

    assert counts == Counter({("A", "B"): 3, (): 2})


def test_the_core_imports_no_django():
    code = ("import sys; import labelapp.catalogue.taxonomy_proposal; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework')))")

    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
