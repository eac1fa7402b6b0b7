"""The answer is never an input: a model does not read the field its labels were taken from.

`import_ground_truth --from-feed` labels products with their feed category (strategy "import"): for a catalogue
whose feed category is right, the cheapest ground truth. A model that reads the feed category (feature-config
fields on the `category` or `category_path` column) and is trained or judged on those labels learns, and is scored
on, a copy of its input: on one catalogue 0.81 accuracy with it against 0.74 without. So when any exclusive target
of a run (training, validation or test) is such a label, the fields that read the feed category are dropped and the
run says why; a strict run refuses instead. The simulation applies the same rule to its oracle.

Weak targets taken from the feed (dev products without a label) do not count: they are weighted by the feed's
measured precision and the run is judged on labels only, so a model that copies them is measured, not flattered.
"""

from __future__ import annotations

from dataclasses import dataclass

from classifier.core.config import FeatureConfig
from classifier.services.dataset import FEED_CATEGORY_COLUMNS, CatalogueTargets
from classifier.services.runs import TrainingDataError
from labelapp.catalogue.models import LabelStrategy

FEED_LABEL_STRATEGIES = frozenset({LabelStrategy.IMPORT.value})
"""Strategies of labels whose category is the product's feed category: "import" is written only by
`labels_import_from_feed` (labelapp.catalogue.services.ground_truth)."""
FEED_LABELS = "of the labels were taken from the feed category (strategy 'import', import_ground_truth --from-feed)"


@dataclass(frozen=True)
class InputGuard:
    """The feature config a model may train with, the fields dropped from the one asked for, and why."""

    config: FeatureConfig
    dropped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def feed_labelled(*, targets: CatalogueTargets) -> set[int]:
    """Return the ids of the products whose current label was taken from their feed category."""
    return {product_id for product_id, strategy in targets.exclusive_strategy.items()
            if strategy in FEED_LABEL_STRATEGIES}


def feed_leak_guard(*, config: FeatureConfig, feed_labels: int, strict: bool = False,
                    labels: str = FEED_LABELS) -> InputGuard:
    """Return `config` without the fields that read the feed category when `feed_labels` > 0, saying so.

    `labels` says, after the count, what those answers are (the message's words). Raise TrainingDataError with
    `strict`, or when the feed category is all the config reads.
    """
    reading = tuple(spec.name for spec in config.fields if spec.column in FEED_CATEGORY_COLUMNS)
    if not feed_labels or not reading:
        return InputGuard(config=config)
    fields = ", ".join(reading)
    why = f"{feed_labels:,} {labels}, so reading it would be reading the answer"
    if strict or len(reading) == len(config.fields):
        remedy = ("remove them from the feature config (as demo/classifier.toml does) or leave out --strict to drop "
                  "them" if strict else "give the feature config other inputs")
        raise TrainingDataError(f"the feature config reads the feed category (fields {fields}) and {why}: {remedy}")
    warning = f"dropped the inputs that read the feed category ({fields}): {why}"
    return InputGuard(config=config.without_fields(reading), dropped=reading, warnings=(warning,))
