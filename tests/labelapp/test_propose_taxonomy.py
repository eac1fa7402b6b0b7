"""manage.py propose_taxonomy and its service: a feed's paths read like an import, proposed, written, applied."""

import csv
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from labelapp.catalogue.models import Category, ImportKind, ImportRun, ImportStatus
from labelapp.catalogue.services.imports.mapping import mapping_load
from labelapp.catalogue.services.taxonomy_proposals import (
    feed_paths_read,
    proposal_options_for_catalogue,
    source_paths_read,
    taxonomy_proposal_apply,
)
from labelapp.catalogue.taxonomy_proposal import proposal_summary_lines, taxonomy_propose
from tests.factories import ProductFactory, category

pytestmark = pytest.mark.django_db

SHARED = Path(__file__).resolve().parents[3] / "shared"
MWPD_TRAIN = SHARED / "datasets/mwpd-2020/train.json"
MYNTRA_STYLES = SHARED / "datasets/myntra-fashion/styles.csv"
REPO = Path(__file__).resolve().parents[2]

FEED = """id;title;category
1;Red tee;Apparel > Tops > T-Shirts
2;Blue tee;Apparel >> Tops >> T Shirts
3;Green tee;Apparel/Tops/T-Shirts
4;Polo;Apparel | Tops | Polos
5;Polo 2;["Apparel", "Tops", "Polos"]
6;Jeans;Apparel > Bottoms > Jeans
7;Jeans 2;Apparel > Bottoms > Jeans > Slim
8;Chinos;Apparel > Bottoms > Chinos
9;Boot;Shoes > Boots
10;Boot 2;Shoes > Boots
11;Sandal;Shoes > Sandals
12;Mug;Kitchen > Mugs
13;;Apparel > Tops > T-Shirts
14;No category;
"""


def write(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


def run_command(*args) -> str:
    out = StringIO()
    call_command("propose_taxonomy", *[str(arg) for arg in args], stdout=out, stderr=StringIO())
    return out.getvalue()


def tree() -> dict[str, tuple[bool, bool]]:
    return {node.full_path: (node.is_leaf, node.is_exclusive) for node in Category.objects.all()}


def test_the_feed_is_read_as_the_product_import_reads_it(tmp_path):
    paths = feed_paths_read(path=write(tmp_path, "feed.csv", FEED))

    # Row 13 has no title: the import rejects it, so it is no product here either.
    assert (paths.rows_read, paths.rows_rejected, paths.products) == (14, 1, 13)
    assert paths.path_counts[("Apparel", "Tops", "T-Shirts")] == 2
    assert paths.path_counts[("Apparel", "Tops", "Polos")] == 2
    assert paths.path_counts[()] == 1


def test_the_command_prints_a_summary_and_writes_the_csv_import_taxonomy_reads(tmp_path):
    out_csv = tmp_path / "taxonomy.csv"

    output = run_command(write(tmp_path, "feed.csv", FEED), "--depth", 3, "--min-products", 2, "--out", out_csv)

    assert "Read feed.csv: 14 rows, 1 rejected, 0 repeated ids; 13 products, 12 with a category path" in output
    assert "nodes: 8 (level 1: 2, level 2: 3, level 3: 3); leaves 4, exclusive 4" in output
    assert "covered 11 (84.6 %)" in output
    assert "1 without a path, 1 under 1 dropped top-level names" in output
    assert "merged        1  Apparel > Tops > T Shirts -> Apparel > Tops > T-Shirts" in output
    assert "folded        1  Apparel > Bottoms > Chinos -> Apparel > Bottoms" in output
    assert f"Wrote 8 categories to {out_csv}" in output
    assert out_csv.read_text().splitlines() == [
        "path,exclusive",
        "Apparel,false",
        "Apparel > Bottoms,false",
        "Apparel > Bottoms > Jeans,true",
        "Apparel > Tops,false",
        "Apparel > Tops > Polos,true",
        "Apparel > Tops > T-Shirts,true",
        "Shoes,false",
        "Shoes > Boots,true",
    ]
    assert ImportRun.objects.count() == 0 and Category.objects.count() == 0


def test_the_csv_round_trips_through_import_taxonomy_to_the_proposed_tree(tmp_path):
    feed, out_csv = write(tmp_path, "feed.csv", FEED), tmp_path / "taxonomy.csv"
    run_command(feed, "--min-products", 2, "--out", out_csv)

    call_command("import_taxonomy", str(out_csv), stdout=StringIO(), stderr=StringIO())

    proposal = taxonomy_propose(path_counts=feed_paths_read(path=feed).path_counts,
                                options=proposal_options_for_catalogue(depth=3, min_products=2))
    assert tree() == {node.path: (node.is_leaf, node.is_exclusive) for node in proposal.nodes}


def test_apply_imports_the_proposal_and_a_second_apply_changes_nothing(tmp_path):
    feed = write(tmp_path, "feed.csv", FEED)

    first = run_command(feed, "--min-products", 2, "--exclusive", "level:2", "--apply")
    after_first = tree()
    second = run_command(feed, "--min-products", 2, "--exclusive", "level:2", "--apply")

    runs = list(ImportRun.objects.order_by("id"))
    assert [(run.kind, run.status) for run in runs] == [(ImportKind.TAXONOMY, ImportStatus.SUCCEEDED)] * 2
    assert runs[0].rows_created == len(after_first) > 0 and runs[0].rows_rejected == 0
    assert (runs[1].rows_created, runs[1].rows_updated) == (0, 0)
    assert tree() == after_first
    assert {path for path, (_, exclusive) in after_first.items() if exclusive} == {
        "Apparel > Bottoms", "Apparel > Tops", "Shoes > Boots"}
    assert runs[0].options["proposal"]["exclusive"] == "level:2" and runs[0].source == "proposed from feed.csv"
    assert f"Import {runs[0].id} (taxonomy" in first and f"Import {runs[1].id} (taxonomy" in second


def test_a_jsonl_feed_with_a_path_field(tmp_path):
    feed = write(tmp_path, "offers.jsonl", '{"ID": "1", "Name": "Tee", "Crumb": "Home / Men / Tees"}\n'
                                           '{"ID": "2", "Name": "Tee 2", "Crumb": "Home / Men / Tees"}\n'
                                           '{"ID": "3", "Name": "Dress", "Crumb": ["Home", "Women"]}\n')

    output = run_command(feed, "--path-field", "Crumb", "--min-products", 1, "--strip-leading", "Home",
                         "--out", tmp_path / "t.csv")

    assert "3 products, 3 with a category path" in output
    assert (tmp_path / "t.csv").read_text().splitlines() == [
        "path,exclusive", "Men,false", "Men > Tees,true", "Women,true"]


def test_from_source_uses_the_paths_of_imported_products(tmp_path):
    for path in ["Apparel > Tops"] * 3 + ["Apparel > Bottoms"] * 2 + [""]:
        ProductFactory(source="shop", category_path=path)
    ProductFactory(source="other", category_path="Garden > Tools")

    output = run_command("--from-source", "shop", "--min-products", 2, "--out", tmp_path / "t.csv")

    assert "Read source shop: 6 rows" in output
    assert (tmp_path / "t.csv").read_text().splitlines() == [
        "path,exclusive", "Apparel,false", "Apparel > Bottoms,true", "Apparel > Tops,true"]
    assert source_paths_read(source="shop").path_counts == Counter({("Apparel", "Tops"): 3,
                                                                    ("Apparel", "Bottoms"): 2, (): 1})


@pytest.mark.parametrize(("args", "message"), [
    ((), "give a feed file or --from-source"),
    (("feed.csv", "--from-source", "shop"), "give a feed file or --from-source"),
    (("feed.csv", "--exclusive", "roots"), "exclusive must be 'leaves' or 'level:N'"),
    (("feed.csv", "--min-products", 0), "min_products must be at least 1"),
    (("missing.csv",), "cannot open missing.csv"),
    (("--from-source", "nobody"), "no products from source 'nobody'"),
    (("feed.csv", "--path-field", "nothing"), "no product has a category path"),
])
def test_the_command_refuses_what_it_cannot_do(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "feed.csv", FEED)

    with pytest.raises(CommandError, match=message):
        run_command(*args)


def test_applying_into_an_existing_tree_only_adds(tmp_path):
    category("Apparel > Tops > T-Shirts")
    proposal = taxonomy_propose(path_counts=feed_paths_read(path=write(tmp_path, "feed.csv", FEED)).path_counts,
                                options=proposal_options_for_catalogue(min_products=2))

    run = taxonomy_proposal_apply(proposal=proposal, feed_name="feed.csv")

    assert run.status == ImportStatus.SUCCEEDED
    assert run.rows_created == len(proposal.nodes) - 3
    assert Path(run.file_name).is_file()


@pytest.mark.skipif(not MWPD_TRAIN.exists(), reason="../shared/datasets/mwpd-2020 is not here")
def test_a_proposal_from_mwpd_category_text_is_a_sensible_tree():
    paths = feed_paths_read(path=MWPD_TRAIN, path_field="CategoryText")

    proposal = taxonomy_propose(path_counts=paths.path_counts,
                                options=proposal_options_for_catalogue(depth=3, min_products=20))

    leaves = [node for node in proposal.nodes if node.is_leaf]
    assert paths.products == 10_012
    assert len(leaves) > 20
    assert all(node.products >= 20 for node in leaves)
    assert max(node.depth for node in proposal.nodes) == 3
    assert 0.2 < proposal.products_covered / proposal.products_total < 0.6  # CategoryText is often empty or generic
    assert "covered" in "\n".join(proposal_summary_lines(proposal))


@pytest.mark.skipif(not MYNTRA_STYLES.exists(), reason="../shared/datasets/myntra-fashion is not here")
def test_the_full_myntra_feed_without_folding_gives_back_the_demo_taxonomy():
    paths = feed_paths_read(path=MYNTRA_STYLES, mapping=mapping_load(path=REPO / "demo/mappings/myntra.toml"))

    proposal = taxonomy_propose(path_counts=paths.path_counts,
                                options=proposal_options_for_catalogue(depth=3, min_products=1))

    with open(REPO / "demo/taxonomy.csv", newline="") as handle:
        demo_leaves = {row["path"] for row in csv.DictReader(handle)}
    assert {node.path for node in proposal.nodes if node.is_leaf} == demo_leaves
    assert proposal.products_covered == paths.products == 44_446
