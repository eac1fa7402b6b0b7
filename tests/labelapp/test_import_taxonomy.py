"""Taxonomy import: Google taxonomy and CSV files into the category tree."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Max

from labelapp.catalogue.models import Category, ImportKind, ImportRowIssue, ImportStatus, RowOutcome
from labelapp.catalogue.services.imports.runs import import_run_create
from labelapp.catalogue.services.taxonomy import taxonomy_import
from tests.factories import LabelFactory, category

pytestmark = pytest.mark.django_db

SHARED = Path(__file__).resolve().parents[3] / "shared"
GOOGLE_TAXONOMY = SHARED / "datasets/google-product-taxonomy/taxonomy-with-ids.en-US.txt"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def run_import(path: Path, **options):
    run = import_run_create(kind=ImportKind.TAXONOMY, file_name=str(path), source="test")
    return taxonomy_import(import_run=run, path=path, **options)


def node(path: str) -> Category:
    return Category.objects.get(full_path=path)


def issues(run, outcome=RowOutcome.REJECTED) -> list[tuple[int, str]]:
    return list(ImportRowIssue.objects.filter(import_run=run, outcome=outcome).values_list("line", "reason"))


SMALL_GOOGLE = (
    "# Google_Product_Taxonomy_Version: 2021-09-21\n"
    "1 - Apparel & Accessories\n"
    "2 - Apparel & Accessories > Clothing\n"
    "3 - Apparel & Accessories > Clothing > Shirts & Tops\n"
    "4 - Apparel & Accessories > Shoes\n"
    "5 - Home & Garden"  # no final newline
)


def test_google_file_builds_the_tree_with_ids_leaves_and_exclusive_leaves(tmp_path):
    run = run_import(write(tmp_path, "taxonomy.txt", SMALL_GOOGLE))

    assert run.status == ImportStatus.SUCCEEDED
    assert (run.rows_total, run.rows_created, run.rows_updated, run.rows_rejected) == (5, 5, 0, 0)
    shirts = node("Apparel & Accessories > Clothing > Shirts & Tops")
    assert shirts.external_id == "3" and shirts.depth == 3
    assert shirts.lineage == [node("Apparel & Accessories").id, node("Apparel & Accessories > Clothing").id, shirts.id]
    leaves = set(Category.objects.filter(is_leaf=True).values_list("external_id", flat=True))
    exclusive = set(Category.objects.filter(is_exclusive=True).values_list("external_id", flat=True))
    assert leaves == exclusive == {"3", "4", "5"}


def test_importing_twice_changes_nothing(tmp_path):
    path = write(tmp_path, "taxonomy.txt", SMALL_GOOGLE)
    run_import(path)
    before = list(Category.objects.values_list("id", "external_id", "is_leaf", "is_exclusive", "lineage"))

    again = run_import(path)

    assert (again.rows_total, again.rows_created, again.rows_updated) == (5, 0, 0)
    assert list(Category.objects.values_list("id", "external_id", "is_leaf", "is_exclusive", "lineage")) == before


def test_a_node_that_gains_a_child_is_no_longer_a_leaf_nor_exclusive(tmp_path):
    run_import(write(tmp_path, "v1.txt", SMALL_GOOGLE))
    assert node("Apparel & Accessories > Shoes").is_exclusive

    run = run_import(write(tmp_path, "v2.txt", "6 - Apparel & Accessories > Shoes > Boots\n"))

    shoes, boots = node("Apparel & Accessories > Shoes"), node("Apparel & Accessories > Shoes > Boots")
    assert (shoes.is_leaf, shoes.is_exclusive) == (False, False)
    assert (boots.is_leaf, boots.is_exclusive, boots.external_id) == (True, True, "6")
    assert (run.rows_created, run.rows_updated) == (1, 1)


def test_a_category_losing_exclusivity_under_human_labels_is_reported(tmp_path):
    run_import(write(tmp_path, "v1.txt", SMALL_GOOGLE))
    LabelFactory(category=node("Apparel & Accessories > Shoes"))

    run = run_import(write(tmp_path, "v2.txt", "6 - Apparel & Accessories > Shoes > Boots\n"))

    [(line, reason)] = issues(run, RowOutcome.WARNING)
    assert line == 0 and reason.startswith("1 human labels point at 1 categories that are no longer exclusive")


def test_bad_google_lines_are_rejected_with_line_and_reason_and_the_rest_imported(tmp_path):
    category("Legacy > Thing")
    Category.objects.filter(full_path="Legacy > Thing").update(external_id="99")
    content = (
        b"# Google_Product_Taxonomy_Version: 2021-09-21\n"
        b"1 - Apparel\n"
        b"Apparel > Shirts without id\n"          # 3
        b"2 - \n"                                 # 4
        b"3 - Apparel >  > Shoes\n"               # 5
        b"4 - Apparel > Bags\n"
        b"4 - Apparel > Belts\n"                  # 7: id already used on line 6
        b"99 - Apparel > Hats\n"                  # 8: id of an existing category
        b"5 - Apparel > Caf\xe9\n"                # 9: not UTF-8
        b"6 - Apparel > Sc\x00arves\n"            # 10: NUL byte
        b"\n"
        b"7 - Apparel > " + b"x" * 300 + b"\n"    # 12: name too long
        b"8 - Apparel > Socks"
    )

    run = run_import(write(tmp_path, "taxonomy.txt", content))

    assert run.status == ImportStatus.SUCCEEDED
    rejected = dict(issues(run))
    assert set(rejected) == {3, 4, 5, 7, 8, 9, 10, 12}
    assert "expected 'ID - Level 1 > Level 2" in rejected[3]
    assert "empty category name" in rejected[5]
    assert rejected[7] == "id 4 is also on line 6 for 'Apparel > Bags'"
    assert rejected[8] == "id 99 already names 'Legacy > Thing'"
    assert "undecodable bytes" in rejected[9] and "NUL" in rejected[10]
    assert "longer than 255" in rejected[12]
    assert ImportRowIssue.objects.get(import_run=run, line=9).raw.startswith("5 - Apparel > Caf")
    assert set(Category.objects.filter(full_path__startswith="Apparel").values_list("full_path", flat=True)) == {
        "Apparel", "Apparel > Bags", "Apparel > Socks"}
    assert (run.rows_total, run.rows_rejected, run.rows_created) == (11, 8, 3)


def test_csv_taxonomy_with_mixed_delimiters_and_an_exclusive_column(tmp_path):
    content = (
        "path,exclusive\n"
        "Apparel > Tops > T-shirts,\n"
        "Apparel / Tops / Shirts,yes\n"
        "Apparel|Tops,1\n"            # exclusive although not a leaf: the column wins
        "Apparel >> Shoes,no\n"       # a leaf the column says is not exclusive
        '"Home & Garden > Tops/Lids",TRUE\n'
        "Apparel > Bags,maybe\n"      # 7: rejected
        ",true\n"                     # 8: rejected
    )

    run = run_import(write(tmp_path, "taxonomy.csv", content))

    exclusive = dict(Category.objects.values_list("full_path", "is_exclusive"))
    assert exclusive == {
        "Apparel": False,
        "Apparel > Tops": True,
        "Apparel > Tops > T-shirts": True,
        "Apparel > Tops > Shirts": True,
        "Apparel > Shoes": False,
        "Home & Garden": False,
        "Home & Garden > Tops/Lids": True,
    }
    assert node("Apparel > Tops > Shirts").external_id == "Apparel > Tops > Shirts"
    assert dict(issues(run)) == {7: "not a yes/no value: 'maybe'", 8: "empty category path"}


def test_exclusive_file_lists_the_exclusive_nodes_by_path_or_id(tmp_path):
    taxonomy = write(tmp_path, "taxonomy.txt", SMALL_GOOGLE)
    exclusive = write(tmp_path, "exclusive.txt",
                      "# exclusive classes\nApparel & Accessories / Clothing\n\n4\nNo > Such\n")

    run = run_import(taxonomy, exclusive_path=exclusive)

    assert set(Category.objects.filter(is_exclusive=True).values_list("external_id", flat=True)) == {"2", "4"}
    assert issues(run, RowOutcome.WARNING) == [(5, "exclusive file: 'No > Such' names no category")]


def test_csv_exclusive_column_wins_over_the_exclusive_file(tmp_path):
    taxonomy = write(tmp_path, "taxonomy.csv", "path;exclusive\nA > B;false\nA > C;\n")
    exclusive = write(tmp_path, "exclusive.txt", "A > B\n")

    run_import(taxonomy, exclusive_path=exclusive)

    assert dict(Category.objects.values_list("full_path", "is_exclusive")) == {"A": False, "A > B": False,
                                                                                "A > C": False}


def test_csv_without_a_path_column_fails_the_run(tmp_path):
    run = run_import(write(tmp_path, "taxonomy.csv", "name,exclusive\nA,true\n"))

    assert run.status == ImportStatus.FAILED
    assert "needs a path column" in run.error and run.finished_at is not None


def test_unreadable_file_fails_the_run(tmp_path):
    run = run_import(tmp_path / "missing.txt")

    assert run.status == ImportStatus.FAILED and "cannot open" in run.error


def test_a_run_already_taken_is_not_imported_again(tmp_path):
    path = write(tmp_path, "taxonomy.txt", SMALL_GOOGLE)
    run = import_run_create(kind=ImportKind.TAXONOMY, file_name=str(path))
    run.status = ImportStatus.RUNNING
    run.save()

    taxonomy_import(import_run=run, path=path)

    assert not Category.objects.exists()


def test_command_prints_a_summary_and_fails_loudly(tmp_path):
    out = StringIO()
    call_command("import_taxonomy", str(write(tmp_path, "t.txt", SMALL_GOOGLE + "\nbad line")), stdout=out,
                 stderr=StringIO())
    assert "5 created" in out.getvalue() and "line       7  rejected" in out.getvalue()
    assert "/admin/labelapp/importrowissue/?import_run__id__exact=" in out.getvalue()

    with pytest.raises(CommandError, match="failed: cannot open"):
        call_command("import_taxonomy", str(tmp_path / "missing.txt"), stdout=StringIO(), stderr=StringIO())


@pytest.mark.slow
@pytest.mark.skipif(not GOOGLE_TAXONOMY.exists(), reason="../shared datasets absent")
def test_the_real_google_taxonomy_imports_whole():
    run = run_import(GOOGLE_TAXONOMY, file_format="google")

    assert run.status == ImportStatus.SUCCEEDED
    assert (run.rows_total, run.rows_created, run.rows_rejected) == (5595, 5595, 0)
    assert Category.objects.count() == 5595
    assert Category.objects.filter(is_leaf=True).count() == 4719
    assert Category.objects.filter(is_exclusive=True).count() == 4719
    assert Category.objects.aggregate(depth=Max("depth"))["depth"] == 7
    assert Category.objects.filter(depth=1).count() == 21
    assert node("Animals & Pet Supplies > Live Animals").external_id == "3237"
