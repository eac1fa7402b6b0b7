"""Product import: formats, normalisation, bad rows, upserts, images, the Myntra files."""

import contextlib
import csv
import dataclasses
import gzip
import io
import json
import threading
import time
import tracemalloc
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from labelapp.catalogue.models import (
    CategorySource,
    ImportKind,
    ImportRowIssue,
    ImportRun,
    ImportStatus,
    Product,
    RowOutcome,
    split_for,
)
from labelapp.catalogue.services.imports import drafts, execute, products
from labelapp.catalogue.services.imports.mapping import ImportMapping, mapping_load
from labelapp.catalogue.services.imports.products import products_import
from labelapp.catalogue.services.imports.runs import import_run_create
from tests.factories import LabelFactory, ProductFactory, category

pytestmark = pytest.mark.django_db

PROJECT = Path(__file__).resolve().parents[2]
MYNTRA = PROJECT.parent / "shared/datasets/myntra-fashion"
MYNTRA_MAPPING = PROJECT / "demo/mappings/myntra.toml"
needs_myntra = pytest.mark.skipif(not (MYNTRA / "styles.csv").exists(), reason="../shared datasets absent")


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def run_import(path: Path, *, source: str = "shop", mapping: ImportMapping | dict | None = None,
               **options) -> ImportRun:
    if isinstance(mapping, dict):
        mapping = ImportMapping.from_dict(mapping)
    run = import_run_create(kind=ImportKind.PRODUCTS, file_name=str(path), source=source)
    return products_import(import_run=run, path=path, mapping=mapping, **options)


def issues(run: ImportRun, outcome: str = RowOutcome.REJECTED) -> dict[int, str]:
    return dict(ImportRowIssue.objects.filter(import_run=run, outcome=outcome).values_list("line", "reason"))


def product(external_id: str, source: str = "shop") -> Product:
    return Product.objects.get(source=source, external_id=external_id)


# ---------------------------------------------------------------------------------------------------------------
# Formats and normalisation


def test_jsonl_rows_are_normalised_and_keep_their_raw_record(tmp_path):
    record = {
        "sku": "A-1",
        "name": "  <b>Slim</b>   Fit &amp; Flex Jeans ",
        "description": "<p>Stretch&nbsp;denim.</p><ul><li>5 pockets</li></ul>",
        "brand": "Levi&#39;s",
        "product_type": "Apparel // Bottomwear/Jeans",
        "price": "1.299,00 EUR",
        "gender": "Men",
        "size": "32/34",
    }
    path = write(tmp_path, "feed.jsonl", jsonl(record))

    run = run_import(path)

    assert (run.status, run.rows_total, run.rows_created, run.rows_rejected) == (ImportStatus.SUCCEEDED, 1, 1, 0)
    item = product("A-1")
    assert item.title == "Slim Fit & Flex Jeans"
    assert item.description == "Stretch denim. 5 pockets"
    assert item.brand == "Levi's"
    assert item.category_path == "Apparel > Bottomwear/Jeans"
    assert (item.price, item.currency) == (Decimal("1299.00"), "EUR")
    assert (item.gender, item.size) == ("Men", "32/34")
    assert item.raw == record
    assert item.split == split_for(source="shop", external_id="A-1")
    assert item.import_run_id == run.id
    assert run.started_at <= run.finished_at


def test_category_paths_from_lists_json_strings_and_any_delimiter(tmp_path):
    rows = [
        {"id": "1", "title": "a", "category": ["Apparel", " Tops ", "T-shirts"]},
        {"id": "2", "title": "b", "category": '["Apparel", "Tops", "T-shirts"]'},
        {"id": "3", "title": "c", "category": "Apparel >> Tops >> T-shirts"},
        {"id": "4", "title": "d", "category": "Apparel | Tops | T-shirts"},
        {"id": "5", "title": "e", "category": "Apparel › Tops › T-shirts"},
        {"id": "6", "title": "f", "category": "Apparel/Tops/T-shirts"},
    ]
    run_import(write(tmp_path, "feed.jsonl", jsonl(*rows)))

    assert set(Product.objects.values_list("category_path", flat=True)) == {"Apparel > Tops > T-shirts"}


def test_csv_with_sniffed_delimiter_quoted_newlines_bom_and_crlf(tmp_path):
    content = (
        "\ufeffSKU;Title;Description;Price;Category\r\n"
        '1;"Shirt; blue";"Line one\r\nline two";12,99 €;Apparel > Tops\r\n'
        "2;Jeans;;$30;Apparel > Bottoms\r\n"
    )
    run = run_import(write(tmp_path, "feed.csv", content))

    assert (run.rows_total, run.rows_created, run.rows_rejected) == (2, 2, 0)
    shirt = product("1")
    assert (shirt.title, shirt.description, shirt.price, shirt.currency) == (
        "Shirt; blue", "Line one line two", Decimal("12.99"), "EUR")
    assert shirt.raw == {"SKU": "1", "Title": "Shirt; blue", "Description": "Line one\r\nline two",
                         "Price": "12,99 €", "Category": "Apparel > Tops"}
    assert (product("2").price, product("2").currency) == (Decimal("30.00"), "USD")


@pytest.mark.parametrize(("name", "content"), [
    ("feed.tsv", "id\ttitle\tprice\n1\tShirt, blue\t12.5\n"),
    ("feed.psv", "id|title|price\n1|Shirt, blue|12.5\n"),
])
def test_tab_and_pipe_delimited_files(tmp_path, name, content):
    run_import(write(tmp_path, name, content))

    assert (product("1").title, product("1").price) == ("Shirt, blue", Decimal("12.50"))


def test_gzipped_feed_is_streamed(tmp_path):
    path = tmp_path / "feed.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(jsonl({"id": "1", "title": "Zipped"}))

    run = run_import(path)

    assert run.rows_created == 1 and product("1").title == "Zipped"


def test_unparsable_price_is_null_with_a_warning_and_the_currency_column_wins(tmp_path):
    rows = [
        {"id": "1", "title": "a", "price": "call us"},
        {"id": "2", "title": "b", "price": "12.99", "currency": "eur"},
        {"id": "3", "title": "c", "price": "$5", "currency": "Euro"},
        {"id": "4", "title": "d", "price": "5", "currency": "Dollars"},
    ]
    run = run_import(write(tmp_path, "feed.jsonl", jsonl(*rows)))

    assert run.rows_created == 4 and run.rows_rejected == 0
    assert product("1").price is None
    assert (product("2").price, product("2").currency) == (Decimal("12.99"), "EUR")
    assert product("3").currency == "EUR"
    assert (product("4").price, product("4").currency) == (Decimal("5.00"), "")
    assert issues(run, RowOutcome.WARNING) == {
        1: "unreadable price 'call us': price left empty",
        4: "unknown currency 'Dollars': currency left empty",
    }


def test_mapping_candidates_category_columns_attributes_and_nested_fields(tmp_path):
    mapping = {
        "fields": {
            "external_id": ["offerId", "id"],
            "title": ["productDisplayName", "name", "title"],
            "price": "offer.price",
            "currency": "offer.currency",
            "brand": "Brand",
            "attributes": {"colour": ["baseColour", "color"], "year": "year", "tags": "tags"},
        },
        "category": {"columns": ["master", "sub", "article"]},
    }
    rows = [
        {"offerId": "1", "productDisplayName": "", "name": "Moved title", "master": "Apparel", "sub": "Topwear",
         "article": "Tops/T-shirts", "offer": {"price": "9.5", "currency": "GBP"}, "BRAND": "Puma",
         "color": "Red", "year": 2012, "tags": ["<b>new</b>", "sale"]},
        {"id": "2", "title": "Fallback title", "master": "Apparel", "sub": "", "article": "Socks"},
    ]
    run_import(write(tmp_path, "feed.jsonl", jsonl(*rows)), mapping=mapping)

    first, second = product("1"), product("2")
    assert (first.title, first.brand, first.price, first.currency) == ("Moved title", "Puma", Decimal("9.50"), "GBP")
    assert first.category_path == "Apparel > Topwear > Tops/T-shirts"
    assert first.attributes == {"colour": "Red", "year": 2012, "tags": ["new", "sale"]}
    assert (second.title, second.category_path, second.attributes) == ("Fallback title", "Apparel > Socks", {})


def test_mapping_file_errors_are_clear(tmp_path):
    bad = write(tmp_path, "bad.toml", '[fields]\nexternal_id = "id"\ntitel = "name"\n')
    with pytest.raises(ValueError, match=r"unknown product fields \['titel'\]"):
        mapping_load(path=bad)
    both = write(tmp_path, "both.toml", '[fields]\nexternal_id="id"\ntitle="t"\n[category]\ncolumns=["a"]\npath="c"\n')
    with pytest.raises(ValueError, match="either columns"):
        mapping_load(path=both)
    assert mapping_load(path=MYNTRA_MAPPING).overflow_into == "productDisplayName"


# ---------------------------------------------------------------------------------------------------------------
# Bad rows


def test_every_kind_of_bad_jsonl_row_is_rejected_with_line_reason_and_raw(tmp_path):
    long_id = "x" * 256
    content = b"".join([
        b'{"id": "ok-1", "title": "Fine"}\n',                      # 1
        b'{"id": "2", "title": "Broken"\n',                         # 2 malformed
        b'["id", "title"]\n',                                       # 3 array
        b'"just a string"\n',                                       # 4 string
        b'{"title": "No id"}\n',                                    # 5 missing id
        b'{"id": "6", "title": "  "}\n',                            # 6 missing title
        b'{"id": "' + long_id.encode() + b'", "title": "Long"}\n',  # 7 id too long
        b'{"id": "8", "title": "Nul\x00byte"}\n',                   # 8 NUL byte
        b'{"id": "9", "title": "Nul \\u0000 escape"}\n',            # 9 escaped NUL
        b'{"id": "10", "title": "Caf\xe9"}\n',                      # 10 undecodable
        b'{"id": "11", "title": "Bad", "price": NaN}\n',            # 11 NaN
        b'{"id": "12", "title": "Lone \\ud800 surrogate"}\n',       # 12 lone surrogate
        b'\n   \n',                                                 # 13-14 blank: skipped
        b'{"id": {"nested": 1}, "title": "Object id"}\n',           # 15 id not a scalar
        b'{"id": 16, "title": "Numeric id \\ud83d\\ude00"}\n',      # 16 fine (numeric id, emoji pair)
        b'{"id": "17", "title": "Last, no newline", "w": 1e400}',  # 17 infinite number
        b'\n{"id": "19", "title": "Last"}',                        # 19 fine, no final newline
    ])
    run = run_import(write(tmp_path, "feed.jsonl", content))

    assert run.status == ImportStatus.SUCCEEDED
    rejected = issues(run)
    assert set(rejected) == {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 17}
    assert rejected[2].startswith("malformed JSON: Expecting ',' delimiter")
    assert rejected[3] == "expected a JSON object, found an array"
    assert rejected[4] == "expected a JSON object, found a string"
    assert rejected[5].startswith("missing external id (looked in id, sku")
    assert rejected[6].startswith("missing title (looked in title, name")
    assert rejected[7] == "external id longer than 255 characters (256)"
    assert rejected[8] == "NUL bytes in the line"
    assert rejected[9] == "NUL character (\\u0000) in the record"
    assert rejected[10].startswith("undecodable bytes for utf-8")
    assert "NaN is not valid JSON" in rejected[11]
    assert "lone surrogate" in rejected[12]
    assert rejected[15].startswith("missing external id")
    assert rejected[17] == "malformed JSON: number 1e400 out of range"
    assert ImportRowIssue.objects.get(import_run=run, line=2).raw == '{"id": "2", "title": "Broken"'
    assert sorted(Product.objects.values_list("external_id", flat=True)) == ["16", "19", "ok-1"]
    assert product("16").title == "Numeric id 😀"
    assert (run.rows_total, run.rows_created, run.rows_rejected) == (16, 3, 13)


CSV_HEADER = "id,title,category,name\n"


def test_csv_rows_with_the_wrong_field_count_are_rejected_without_overflow_setting(tmp_path):
    content = CSV_HEADER + "1,Shirt,Tops,Shirt A\n2,Tie, Cufflink,Acc,Set\n3,Too,few\n4,Trailing,Tops,T,,\n"

    run = run_import(write(tmp_path, "feed.csv", content))

    assert issues(run) == {3: "expected 4 fields, found 5", 4: "expected 4 fields, found 3"}
    assert issues(run, RowOutcome.REPAIRED) == {5: "expected 4 fields, found 6: dropped 2 empty trailing fields"}
    assert ImportRowIssue.objects.get(import_run=run, line=3).raw == "2,Tie, Cufflink,Acc,Set"
    assert set(Product.objects.values_list("external_id", flat=True)) == {"1", "4"}


def test_csv_overflow_is_joined_back_into_the_configured_column(tmp_path):
    mapping = {"fields": {"external_id": "id", "title": "name"}, "category": {"columns": ["category"]},
               "csv": {"overflow_into": "name"}}
    content = "id,category,name\n1,Acc,Tie, Cufflink and Pocket Square\n2,Flip Flops,Liv,Laugh,Love Flip-flops\n"

    run = run_import(write(tmp_path, "feed.csv", content), mapping=mapping)

    assert (run.rows_created, run.rows_repaired, run.rows_rejected) == (2, 2, 0)
    assert product("1").title == "Tie, Cufflink and Pocket Square"
    assert product("2").title == "Liv,Laugh,Love Flip-flops"
    assert product("2").raw == {"id": "2", "category": "Flip Flops", "name": "Liv,Laugh,Love Flip-flops",
                                "_raw_line": "2,Flip Flops,Liv,Laugh,Love Flip-flops"}
    assert issues(run, RowOutcome.REPAIRED)[3] == "expected 3 fields, found 5: joined 3 fields back into 'name'"


def test_an_unbalanced_quote_costs_one_line_not_the_rest_of_the_file(tmp_path):
    content = 'id,title\n1,"Unclosed quote\n2,Fine\n3,"Quoted, ok"\n4,Also fine\n'

    run = run_import(write(tmp_path, "feed.csv", content))

    assert issues(run) == {2: "expected 2 fields, found 3 in a record spanning 3 lines (unbalanced quote?)"}
    assert sorted(Product.objects.values_list("external_id", "title")) == [
        ("2", "Fine"), ("3", "Quoted, ok"), ("4", "Also fine")]


def test_bad_bytes_in_csv_rows_reject_only_those_rows(tmp_path):
    content = b"id,title\n1,Caf\xe9\n2,Nul\x00byte\n3,Fine\n"

    run = run_import(write(tmp_path, "feed.csv", content))

    rejected = issues(run)
    assert rejected[2].startswith("undecodable bytes") and rejected[3] == "NUL bytes in the line"
    assert list(Product.objects.values_list("external_id", flat=True)) == ["3"]


@pytest.mark.parametrize(("name", "content", "error"), [
    ("feed.xml", "<feed/>", "cannot tell the format of feed.xml"),
    ("feed.csv", "", "the file is empty"),
    ("feed.csv", "sku_code,label\n1,a\n", "no external_id column: looked for id, sku"),
    ("feed.csv", b"\xff\xfei\x00d\x00", "UTF-16"),
])
def test_files_that_cannot_be_imported_fail_the_run(tmp_path, name, content, error):
    run = run_import(write(tmp_path, name, content))

    assert run.status == ImportStatus.FAILED and error in run.error and run.finished_at


def test_missing_file_fails_the_run(tmp_path):
    run = run_import(tmp_path / "nope.jsonl")

    assert run.status == ImportStatus.FAILED and run.error.startswith("cannot open")


# ---------------------------------------------------------------------------------------------------------------
# Upserts, feed categories, batches


def test_second_import_updates_counts_exactly_and_keeps_the_split(tmp_path):
    run_import(write(tmp_path, "v1.jsonl", jsonl({"id": "1", "title": "Old"}, {"id": "2", "title": "Two"})))
    Product.objects.filter(external_id="1").update(split="test")  # set at creation, never by an update
    created_at = product("1").created_at

    run = run_import(write(tmp_path, "v2.jsonl", jsonl({"id": "1", "title": "New"}, {"id": "2", "title": "Two"},
                                                       {"id": "3", "title": "Three"})))

    assert (run.rows_total, run.rows_created, run.rows_updated) == (3, 1, 2)
    first = product("1")
    assert (first.title, first.split, first.created_at) == ("New", "test", created_at)
    assert first.raw == {"id": "1", "title": "New"} and first.import_run_id == run.id
    assert Product.objects.count() == 3


def test_same_ids_in_another_source_are_other_products(tmp_path):
    path = write(tmp_path, "feed.jsonl", jsonl({"id": "1", "title": "x"}))
    run_import(path, source="a")
    run = run_import(path, source="b")

    assert run.rows_created == 1 and Product.objects.count() == 2


def test_duplicate_ids_in_a_batch_the_later_row_wins_counted_once(tmp_path):
    rows = [{"id": "1", "title": "first"}, {"id": "2", "title": "two"}, {"id": "1", "title": "second"}]

    run = run_import(write(tmp_path, "feed.jsonl", jsonl(*rows)))

    assert (run.rows_total, run.rows_created, run.rows_updated) == (3, 2, 0)
    assert product("1").title == "second"
    assert issues(run, RowOutcome.WARNING) == {3: "duplicate external id '1' (also on line 1): this later row wins"}


def test_feed_category_matches_case_insensitively_and_never_overrides_a_stronger_source(tmp_path):
    tops = category("Apparel > Topwear > Tops")
    labelled = ProductFactory(source="shop", external_id="2", category=category("Apparel > Footwear"),
                              category_source=CategorySource.LABEL)
    LabelFactory(product=labelled, category=labelled.category)
    rows = [
        {"id": "1", "title": "a", "category": "apparel / topwear / TOPS"},
        {"id": "2", "title": "b", "category": "Apparel > Topwear > Tops"},
        {"id": "3", "title": "c", "category": "Nowhere > Else"},
    ]
    run_import(write(tmp_path, "feed.jsonl", jsonl(*rows)))

    first = product("1")
    assert (first.feed_category_id, first.category_id, first.category_source) == (tops.id, tops.id, "feed")
    assert (first.level2_id, first.level3_id) == (tops.level2_id, tops.id)
    second = product("2")
    assert second.feed_category_id == tops.id
    assert (second.category_id, second.category_source) == (labelled.category_id, CategorySource.LABEL)
    third = product("3")
    assert (third.feed_category_id, third.category_id, third.category_source) == (None, None, "none")


def test_a_feed_category_that_disappears_from_the_feed_is_cleared(tmp_path):
    category("Shoes")
    run_import(write(tmp_path, "v1.jsonl", jsonl({"id": "1", "title": "a", "category": "Shoes"})))
    run_import(write(tmp_path, "v2.jsonl", jsonl({"id": "1", "title": "a", "category": ""})))

    item = product("1")
    assert (item.category_id, item.category_source, item.feed_category_id) == (None, "none", None)


def test_a_crash_mid_import_keeps_committed_batches_and_marks_the_run_failed(tmp_path, monkeypatch):
    rows = [{"id": str(n), "title": f"t{n}"} for n in range(1, 8)] + ['{"broken']
    path = write(tmp_path, "feed.jsonl", jsonl(*rows))
    real_build = drafts.product_draft_build

    def build_then_crash(*, record, line, **kwargs):
        if line == 6:
            raise RuntimeError("database went away")
        return real_build(record=record, line=line, **kwargs)

    monkeypatch.setattr(products, "product_draft_build", build_then_crash)  # the name _row_take reads
    with pytest.raises(RuntimeError):
        run_import(path, batch_size=2)

    run = ImportRun.objects.get()
    assert run.status == ImportStatus.FAILED and run.error == "RuntimeError: database went away"
    assert sorted(Product.objects.values_list("external_id", flat=True)) == ["1", "2", "3", "4"]
    assert (run.rows_created, run.rows_updated) == (4, 0)


def test_a_row_the_database_refuses_is_isolated_and_rejected_alone(tmp_path, monkeypatch):
    monkeypatch.setitem(drafts._FIELD_LIMITS, "brand", 10_000)  # let an over-long brand reach Postgres
    rows = [{"id": str(n), "title": f"t{n}", "brand": "b" * (300 if n == 5 else 5)} for n in range(1, 9)]

    run = run_import(write(tmp_path, "feed.jsonl", jsonl(*rows)), batch_size=8)

    assert run.status == ImportStatus.SUCCEEDED
    assert (run.rows_total, run.rows_created, run.rows_rejected) == (8, 7, 1)
    assert issues(run)[5].startswith("the database refused the row: value too long")
    assert ImportRowIssue.objects.get(import_run=run, line=5).raw.startswith('{"id": "5"')
    assert Product.objects.count() == 7


def test_import_run_execute_reads_the_run_options(tmp_path):
    path = write(tmp_path, "feed.txt", "SKU|Name\n1|Piped\n")
    run = import_run_create(kind=ImportKind.PRODUCTS, file_name=str(path), source="shop",
                            options={"format": "csv", "batch_size": 1})

    run = execute.import_run_execute(import_run_id=run.id)

    assert run.status == ImportStatus.SUCCEEDED and product("1").title == "Piped"


def test_memory_stays_flat_as_the_file_grows(tmp_path):
    def peak_for(rows: int) -> tuple[int, int]:
        path = tmp_path / f"feed-{rows}.jsonl"
        with open(path, "w") as handle:
            for n in range(rows):
                handle.write(json.dumps({"id": f"{rows}-{n}", "title": f"Product {n}",
                                         "description": "<p>" + "lorem ipsum " * 300 + "</p>"}) + "\n")
        tracemalloc.start()
        run_import(path, source=f"mem{rows}", batch_size=100)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak, path.stat().st_size

    peak_for(100)  # warm-up: first-use caches are not the import's working set
    (small, small_file), (large, large_file) = peak_for(300), peak_for(1200)

    # Holding the rows would cost more than the file's bytes; streaming costs a batch, whatever the file.
    assert large - small < (large_file - small_file) / 4, (small, large, large_file - small_file)


# ---------------------------------------------------------------------------------------------------------------
# Images


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (8, 8), colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def images_dir(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    (folder / "1.jpg").write_bytes(image_bytes("JPEG"))
    (folder / "sub" / "two.png").write_bytes(image_bytes("PNG"))
    (folder / "3.webp").write_bytes(image_bytes("WEBP"))
    (folder / "notes.jpg").write_text("not an image")
    return folder


def test_images_from_a_folder_by_id_or_by_relative_path(tmp_path, images_dir):
    rows = [
        {"id": "1", "title": "by id"},
        {"id": "2", "title": "by column", "image": "sub/two.png"},
        {"id": "3", "title": "webp by id"},
        {"id": "4", "title": "no image at all"},
        {"id": "5", "title": "missing file", "image": "sub/gone.jpg"},
        {"id": "6", "title": "not an image", "image": "notes.jpg"},
        {"id": "7", "title": "escape attempt", "image": "../../etc/passwd"},
    ]
    run = run_import(write(tmp_path, "feed.jsonl", jsonl(*rows)), images_dir=images_dir)

    assert (run.rows_created, run.rows_rejected, run.images_stored, run.images_failed) == (7, 0, 3, 3)
    assert product("1").image.name == "products/shop/1.jpg"
    assert product("2").image.name == "products/shop/2.png" and product("2").image_ref == "sub/two.png"
    assert product("3").image.name == "products/shop/3.webp"
    assert product("1").image_ref == str(images_dir.resolve() / "1.jpg")
    assert default_storage.size("products/shop/2.png") == (images_dir / "sub" / "two.png").stat().st_size
    assert (product("4").image.name, product("4").image_error) == ("", "")
    assert product("5").image_error == "image file not found: sub/gone.jpg"
    assert product("6").image_error == "not an image (UnidentifiedImageError)"
    assert product("7").image_error == "image path '../../etc/passwd' is outside the images folder"
    assert issues(run, RowOutcome.WARNING)[5] == "image for '5' not stored: image file not found: sub/gone.jpg"


def test_an_unchanged_image_is_not_copied_again_and_a_changed_one_is(tmp_path, images_dir):
    path = write(tmp_path, "feed.jsonl", jsonl({"id": "1", "title": "a"}, {"id": "2", "title": "b",
                                                                          "image": "sub/two.png"}))
    run_import(path, images_dir=images_dir)

    again = run_import(path, images_dir=images_dir)
    assert (again.images_stored, again.images_failed) == (0, 0)
    assert product("1").image.name == "products/shop/1.jpg"

    (images_dir / "1.jpg").write_bytes(image_bytes("JPEG", size=(64, 64), colour="blue"))
    changed = run_import(path, images_dir=images_dir)
    assert changed.images_stored == 1
    assert default_storage.size("products/shop/1.jpg") == (images_dir / "1.jpg").stat().st_size


def test_a_stale_image_is_recorded_and_the_product_kept(tmp_path, images_dir):
    path = write(tmp_path, "feed.jsonl", jsonl({"id": "2", "title": "Old title", "image": "sub/two.png"}))
    run_import(path, images_dir=images_dir)
    (images_dir / "sub" / "two.png").unlink()

    run = run_import(write(tmp_path, "v2.jsonl", jsonl({"id": "2", "title": "New title", "image": "sub/two.png"})),
                     images_dir=images_dir)

    item = product("2")
    assert (run.rows_updated, run.rows_rejected, run.images_failed) == (1, 0, 1)
    assert item.title == "New title"
    assert item.image_error == "image file not found: sub/two.png"
    assert item.image.name == "products/shop/2.png"  # the last good copy stays


class _ImageServer(BaseHTTPRequestHandler):
    routes: dict = {}
    hits: dict = {}

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        status, headers, body, delay = self.routes.get(self.path, (404, {}, b"not found", 0))
        time.sleep(delay)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout, too big)
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def image_server():
    png = image_bytes("PNG")
    _ImageServer.routes = {
        "/ok.png": (200, {"Content-Type": "image/png", "Content-Length": str(len(png))}, png, 0),
        "/big.png": (200, {"Content-Length": "5000"}, b"\x89PNG" + b"0" * 4996, 0),
        "/big-no-length.png": (200, {}, b"\x89PNG" + b"0" * 4996, 0),  # body ends when the server closes
        "/text.png": (200, {"Content-Type": "text/html"}, b"<html>sorry</html>", 0),
        "/slow.png": (200, {}, png, 1.0),
    }
    _ImageServer.hits = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageServer)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_images_from_urls_success_404_too_big_not_an_image_and_timeout(tmp_path, image_server, settings):
    settings.IMPORT_IMAGE_MAX_BYTES = 1000
    settings.IMPORT_IMAGE_TIMEOUT_S = 0.3
    settings.IMPORT_IMAGE_ALLOWED_HOSTS = ["127.0.0.1"]  # the test server stands for an internal CDN
    rows = [
        {"id": "ok", "title": "a", "image_link": f"{image_server}/ok.png"},
        {"id": "404", "title": "b", "image_link": f"{image_server}/missing.png"},
        {"id": "big", "title": "c", "image_link": f"{image_server}/big.png"},
        {"id": "big2", "title": "c", "image_link": f"{image_server}/big-no-length.png"},
        {"id": "text", "title": "d", "image_link": f"{image_server}/text.png"},
        {"id": "slow", "title": "e", "image_link": f"{image_server}/slow.png"},
        {"id": "ftp", "title": "f", "image_link": "file:///etc/passwd"},
    ]
    path = write(tmp_path, "feed.jsonl", jsonl(*rows))

    run = run_import(path)

    assert (run.rows_created, run.rows_rejected, run.images_stored, run.images_failed) == (7, 0, 1, 6)
    assert product("ok").image.name == "products/shop/ok.png"
    assert product("ok").image_ref == f"{image_server}/ok.png"
    errors = dict(Product.objects.exclude(image_error="").values_list("external_id", "image_error"))
    assert errors == {
        "404": "HTTP 404 fetching image",
        "big": "image larger than 1000 bytes (5000)",
        "big2": "image larger than 1000 bytes",
        "text": "not an image (UnidentifiedImageError)",
        "slow": "image could not be fetched",  # no answer in time reads like any failed connection
        "ftp": "image URL refused: scheme 'file' is not allowed (http or https only)",
    }

    again = run_import(path)  # the same URL is not downloaded again
    assert _ImageServer.hits["/ok.png"] == 1 and again.images_stored == 0


def test_image_urls_can_be_left_alone(tmp_path, image_server):
    run = run_import(write(tmp_path, "feed.jsonl", jsonl({"id": "1", "title": "a", "image": f"{image_server}/ok.png"})),
                     fetch_image_urls=False)

    assert (run.images_stored, product("1").image.name, product("1").image_ref) == (0, "", f"{image_server}/ok.png")
    assert _ImageServer.hits == {}


# ---------------------------------------------------------------------------------------------------------------
# The command


def test_command_imports_with_a_mapping_and_prints_a_summary(tmp_path):
    path = write(tmp_path, "styles.csv", "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,"
                                         "usage,productDisplayName\n"
                                         "1,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Shirt\n"
                                         "2,Men,Apparel,Topwear,Ties,Pink,Fall,2011,Formal,Pink Tie, Cufflink Set\n"
                                         "3,Men,Apparel\n")
    out = StringIO()

    call_command("import_products", str(path), "--mapping", str(MYNTRA_MAPPING), "--batch-size", "1", stdout=out,
                 stderr=StringIO())

    text = out.getvalue()
    assert "products, source myntra) succeeded" in text
    assert "3 read, 2 created, 0 updated, 1 rejected, 1 repaired" in text
    assert "line       4  rejected  expected 10 fields, found 3" in text
    assert "/admin/labelapp/importrowissue/?import_run__id__exact=" in text
    shirt = product("1", source="myntra")
    assert shirt.category_path == "Apparel > Topwear > Shirts" and shirt.gender == "Men" and shirt.brand == ""
    assert shirt.attributes == {"baseColour": "Navy Blue", "season": "Fall", "year": "2011", "usage": "Casual"}
    assert product("2", source="myntra").title == "Pink Tie, Cufflink Set"


def test_command_fails_loudly(tmp_path):
    with pytest.raises(CommandError, match="failed: cannot open"):
        call_command("import_products", str(tmp_path / "missing.csv"), stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="not valid TOML"):
        call_command("import_products", str(tmp_path / "x.csv"), "--mapping", str(write(tmp_path, "m.toml", "[")),
                     stdout=StringIO(), stderr=StringIO())


# ---------------------------------------------------------------------------------------------------------------
# The real Myntra files


@pytest.fixture(scope="module")
def myntra_bad_lines() -> dict[str, str]:
    """The raw styles.csv lines whose productDisplayName holds unquoted commas, by id."""
    with open(MYNTRA / "styles.csv", encoding="utf-8") as handle:
        return {line.split(",", 1)[0]: line.rstrip("\n") for line in handle if line.count(",") > 9}


@pytest.mark.slow
@needs_myntra
def test_raw_myntra_file_imports_every_row_repairing_the_22(myntra_bad_lines):
    run = run_import(MYNTRA / "styles.csv", source="myntra", mapping=mapping_load(path=MYNTRA_MAPPING))

    assert run.status == ImportStatus.SUCCEEDED
    assert (run.rows_total, run.rows_created, run.rows_rejected, run.rows_repaired) == (44446, 44446, 0, 22)
    repaired = ImportRowIssue.objects.filter(import_run=run, outcome=RowOutcome.REPAIRED)
    assert repaired.count() == 22 and all(issue.reason.startswith("expected 10 fields, found 1") for issue in repaired)
    assert Product.objects.filter(source="myntra").count() == 44446

    with open(MYNTRA / "styles_clean.csv", encoding="utf-8", newline="") as handle:
        clean_titles = {row["id"]: row["productDisplayName"] for row in csv.DictReader(handle)
                        if row["id"] in myntra_bad_lines}
    imported = dict(Product.objects.filter(source="myntra", external_id__in=list(myntra_bad_lines))
                    .values_list("external_id", "title"))
    assert len(myntra_bad_lines) == 22 and imported == clean_titles
    tie = product("23101", source="myntra")
    assert tie.title == "Turtle Men Formal Pink Tie, Cufflink and Pocket Square Combo Set"
    assert tie.raw["_raw_line"] == myntra_bad_lines["23101"]
    assert tie.category_path == "Accessories > Accessories > Accessory Gift Set"


@needs_myntra
def test_raw_myntra_rows_without_overflow_setting_are_rejected_with_a_reason(tmp_path, myntra_bad_lines):
    header = (MYNTRA / "styles.csv").open().readline()
    path = write(tmp_path, "bad.csv", header + "\n".join(myntra_bad_lines.values()) + "\n")
    mapping = mapping_load(path=MYNTRA_MAPPING)
    mapping = dataclasses.replace(mapping, overflow_into=None)

    run = run_import(path, source="myntra", mapping=mapping)

    assert (run.rows_total, run.rows_rejected, run.rows_created) == (22, 22, 0)
    reasons = set(issues(run).values())
    assert reasons == {"expected 10 fields, found 11", "expected 10 fields, found 12"}


@needs_myntra
def test_clean_myntra_sample_with_its_images(tmp_path):
    with open(MYNTRA / "styles_clean.csv", encoding="utf-8") as handle:
        sample = [next(handle) for _ in range(401)]
    path = write(tmp_path, "styles_clean.csv", "".join(sample))
    ids = [line.split(",", 1)[0] for line in sample[1:]]
    with_image = {i for i in ids if (MYNTRA / "images" / f"{i}.jpg").exists()}

    run = run_import(path, source="myntra", mapping=mapping_load(path=MYNTRA_MAPPING), images_dir=MYNTRA / "images")

    assert (run.rows_total, run.rows_created, run.rows_rejected, run.rows_repaired) == (400, 400, 0, 0)
    assert with_image and (run.images_stored, run.images_failed) == (len(with_image), 0)
    stored = set(Product.objects.filter(source="myntra").exclude(image="").values_list("external_id", flat=True))
    assert stored == with_image
    sample_id = sorted(with_image)[0]
    assert product(sample_id, source="myntra").image.name == f"products/myntra/{sample_id}.jpg"
