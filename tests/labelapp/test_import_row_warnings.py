"""What an import sets aside is said in its report (security review #11, D14): the row is imported, with a warning."""

import json
from pathlib import Path

import pytest

from labelapp.catalogue.models import ImportKind, ImportRowIssue, ImportRun, Product, RowOutcome
from labelapp.catalogue.services.imports.products import products_import
from labelapp.catalogue.services.imports.runs import import_run_create, import_run_report

pytestmark = pytest.mark.django_db


def run_import(tmp_path: Path, *records: dict, images_dir: Path | None = None) -> ImportRun:
    path = tmp_path / "feed.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    run = import_run_create(kind=ImportKind.PRODUCTS, file_name=str(path), source="shop")
    return products_import(import_run=run, path=path, images_dir=images_dir)


def warnings(run: ImportRun) -> list[tuple[int, str]]:
    return list(ImportRowIssue.objects.filter(import_run=run, outcome=RowOutcome.WARNING)
                .order_by("line", "id").values_list("line", "reason"))


def test_a_local_image_path_without_an_images_folder_is_reported(tmp_path):
    run = run_import(tmp_path, {"id": "1", "title": "Red dress", "image": "photos/1.jpg"},
                     {"id": "2", "title": "No image"})

    assert (run.rows_created, run.rows_rejected) == (2, 0)
    ignored = "image path 'photos/1.jpg' ignored: no --images folder given"
    assert warnings(run) == [(1, f"image for '1' not stored: {ignored}")]
    assert ignored in import_run_report(import_run=run)
    product = Product.objects.get(external_id="1")
    assert (product.image.name, product.image_ref) == ("", "photos/1.jpg")


def test_a_title_given_as_a_list_keeps_its_first_value_with_a_warning(tmp_path):
    run = run_import(tmp_path, {"id": "1", "title": ["Red dress", "Robe rouge", "Rotes Kleid"]},
                     {"id": "2", "title": ["Blue shirt"], "brand": ["Acme", "", "Acme Kids"]})

    assert (run.rows_created, run.rows_rejected) == (2, 0)
    assert warnings(run) == [(1, "title was a list of 3 values; the first was kept"),
                             (2, "brand was a list of 2 values; the first was kept")]
    assert Product.objects.get(external_id="1").title == "Red dress"
    assert (Product.objects.get(external_id="2").title, Product.objects.get(external_id="2").brand) == (
        "Blue shirt", "Acme")
    assert "title was a list of 3 values; the first was kept" in import_run_report(import_run=run)
