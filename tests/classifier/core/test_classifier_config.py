"""Feature config: the shipped default, TOML round trip, validation."""
from __future__ import annotations

import pytest

from classifier.core.config import FeatureConfig, FieldSpec, config_dumps, config_load, config_loads, config_save


def test_default_config_is_the_seed_systems():
    config = config_load()

    fields = {spec.name: spec for spec in config.fields}
    assert [spec.name for spec in config.fields] == ["title", "brand", "category", "category_path", "description",
                                                     "gender", "size", "image"]
    assert (fields["title"].kind, fields["title"].max_tokens) == ("text", 8000)
    assert (fields["brand"].representation, fields["brand"].max_values, fields["brand"].embedding_dim) == (
        "embedding", 5000, 10)
    assert (fields["category"].max_values, fields["category"].embedding_dim) == (950, 6)
    assert (fields["category_path"].kind, fields["category_path"].max_tokens) == ("text", 1000)
    assert fields["description"].max_tokens == 8000
    assert (fields["gender"].kind, fields["gender"].max_values) == ("categorical", None)
    assert fields["size"].max_values == 100
    assert (fields["image"].kind, fields["image"].dim) == ("dense", 1280)


def test_config_round_trips_through_toml(tmp_path, config):
    changed = config.with_fields(["title"], vocabulary_size=123).with_model(l2=1e-5, conv_widths=(3, 5))
    config_save(changed, tmp_path / "config.toml")

    assert config_load(tmp_path / "config.toml") == changed
    assert config_loads(config_dumps(config_load())) == config_load()


def test_config_rejects_unknown_representations_and_options():
    with pytest.raises(ValueError, match="representation"):
        FieldSpec(name="title", kind="text", representation="onehot")
    with pytest.raises(ValueError, match="column"):
        FieldSpec(name="colour", kind="categorical", representation="onehot")
    with pytest.raises(ValueError, match="unknown options"):
        config_loads('[fields.title]\nkind = "text"\nrepresentation = "tfidf"\nmax_token = 5\n')


def test_with_fields_changes_only_the_named_fields(config):
    changed = config.with_fields(["title"], representation="bow")

    assert changed.field("title").representation == "bow"
    assert changed.field("description") == config.field("description")
    assert isinstance(changed, FeatureConfig)
