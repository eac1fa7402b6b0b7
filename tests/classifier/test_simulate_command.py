"""`manage.py simulate_active_learning` on a small catalogue: curves, CSV, PNG, labels-to-reach."""
from __future__ import annotations

import csv
from io import StringIO

import pytest
from django.core.management import CommandError, call_command


@pytest.mark.django_db
def test_simulation_writes_curves_and_compares_strategies(catalogue, tmp_path, settings):
    settings.CLASSIFIER_DEFAULT_ARCHITECTURE = "logreg"
    settings.CLASSIFIER_LEARNING_RATE = 0.05
    out = StringIO()
    call_command("simulate_active_learning", "--strategy", "random", "margin:0.5+random:0.5", "--rounds", "2",
                 "--batch-size", "10", "--seed-size", "10", "--epochs", "10", "--objectives", "exclusive,rule",
                 "--out", str(tmp_path), stdout=out, stderr=StringIO())

    text = out.getvalue()
    assert "Labels needed to reach random's final accuracy" in text
    csv_file, = tmp_path.glob("*.csv")
    png_file, = tmp_path.glob("*.png")
    assert png_file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(csv_file.open()))
    assert {row["strategy"] for row in rows} == {"random", "margin:0.5+random:0.5"}
    assert sorted({int(row["labels"]) for row in rows}) == [10, 20, 30]
    assert all(0 <= float(row["accuracy"]) <= 1 for row in rows)
    # Keyword classes are easy: 30 labels already beat chance (1/3) by far.
    assert max(float(row["accuracy"]) for row in rows if row["labels"] == "30") > 0.6


@pytest.mark.django_db
@pytest.mark.parametrize("argv, message", [
    (["--strategy", "psychic"], "unknown strategies"),
    (["--objectives", "rule"], "objectives"),
    (["--seed-size", "5000"], "not enough"),
    (["--batch-size", "0"], "--batch-size must be positive"),
])
def test_simulation_rejects_bad_options(catalogue, argv, message):
    with pytest.raises(CommandError, match=message):
        call_command("simulate_active_learning", *argv, stdout=StringIO(), stderr=StringIO())
