"""System checks catch an embedding column that does not match the configured model."""
from __future__ import annotations

import dataclasses

from similarity.checks import similarity_embedding_dimensions_check
from similarity.core import backbones


def ids(errors):
    return {error.id for error in errors}


def test_the_default_configuration_passes():
    assert similarity_embedding_dimensions_check() == []


def test_an_unknown_model_version_or_backbone_is_an_error(settings):
    settings.SIMILARITY_MODEL_VERSION = "resnet50-imagenet"
    assert ids(similarity_embedding_dimensions_check()) == {"similarity.E003"}

    settings.SIMILARITY_BACKBONE = "vit_h14"
    assert ids(similarity_embedding_dimensions_check()) == {"similarity.E001"}


def test_a_backbone_whose_dimension_differs_from_the_column_is_an_error(settings, monkeypatch):
    wider = dataclasses.replace(backbones.EFFICIENTNET_LITE0, dim=1536)
    monkeypatch.setitem(backbones.BACKBONES, "efficientnet_lite0", wider)

    assert ids(similarity_embedding_dimensions_check()) == {"similarity.E002", "similarity.E004"}


def test_text_dimension_and_hybrid_weight_are_checked(settings):
    settings.SIMILARITY_TEXT_DIM = 128
    settings.SIMILARITY_HYBRID_TEXT_WEIGHT = 1.5

    assert ids(similarity_embedding_dimensions_check()) == {"similarity.E005", "similarity.E006"}
