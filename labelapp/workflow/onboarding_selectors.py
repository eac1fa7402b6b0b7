"""Where onboarding a catalogue stands, derived from the data alone: reloading the page shows the same steps."""

from __future__ import annotations

from dataclasses import dataclass

from classifier.models import ModelVersion, TrainRun, TrainStatus
from labelapp.catalogue.models import Category, ImportKind, ImportRun, ImportStatus, LegacyRule, Product, RuleLabel
from labelapp.workflow.models import LabellingRound, QueueItem, RoundStatus

DONE, RUNNING, FAILED, CURRENT, TODO = "done", "running", "failed", "current", "todo"


@dataclass(frozen=True)
class OnboardingStep:
    key: str
    title: str
    state: str  # done | running | failed | current (the next thing to do) | todo


@dataclass(frozen=True)
class OnboardingState:
    """Each step's facts for one source (the feed being onboarded)."""

    source: str
    import_run: ImportRun | None
    products: int
    feed_matched: int
    categories: int
    exclusive_categories: int
    rules: int
    rule_labels: int
    train_run: TrainRun | None
    active_version: ModelVersion | None
    round: LabellingRound | None
    round_items: int
    steps: tuple[OnboardingStep, ...]

    def step(self, key: str) -> OnboardingStep:
        return next(step for step in self.steps if step.key == key)


def onboarding_source_latest() -> str:
    """The source of the newest product import: the catalogue being onboarded when the page names none."""
    return (ImportRun.objects.filter(kind=ImportKind.PRODUCTS).exclude(source="").order_by("-created_at", "-id")
            .values_list("source", flat=True).first()) or ""


def _job_state(*, finished: bool, succeeded: bool) -> str:
    if not finished:
        return RUNNING
    return DONE if succeeded else FAILED


def _model_state(*, train_run: TrainRun | None, active_version: ModelVersion | None) -> str:
    """Done once a run succeeded (promoted or not) or a model serves; failed when the newest run failed alone."""
    if train_run is None:
        return DONE if active_version is not None else TODO
    if not train_run.is_finished:
        return RUNNING
    return DONE if train_run.status == TrainStatus.SUCCEEDED or active_version is not None else FAILED


def _steps(*, import_run, categories: int, rules: int, train_run, active_version, round, round_items: int
           ) -> list[OnboardingStep]:
    imported = import_run is not None and import_run.status == ImportStatus.SUCCEEDED
    states = {
        "feed": DONE if import_run is not None else CURRENT,
        "import": (_job_state(finished=import_run.is_finished, succeeded=imported) if import_run else TODO),
        "taxonomy": DONE if categories else TODO,
        "rules": DONE if rules else TODO,
        "model": _model_state(train_run=train_run, active_version=active_version),
        "round": (DONE if round is not None and round_items else RUNNING if round is not None
                  and round.status == RoundStatus.OPEN and not round.error else TODO),
    }
    titles = {"feed": "Feed", "import": "Import", "taxonomy": "Taxonomy & categories", "rules": "Rules",
              "model": "First model", "round": "Labelling round"}
    steps, current_given = [], False
    for key, state in states.items():
        if state == TODO and not current_given:
            state, current_given = CURRENT, True
        current_given = current_given or state in (CURRENT, RUNNING, FAILED)
        steps.append(OnboardingStep(key=key, title=titles[key], state=state))
    return steps


def onboarding_state(*, source: str) -> OnboardingState:
    """Return where onboarding `source` stands: its newest import, the taxonomy, rules, model and round."""
    import_run = (ImportRun.objects.filter(kind=ImportKind.PRODUCTS, source=source).order_by("-created_at", "-id")
                  .first() if source else None)
    products = Product.objects.filter(source=source)
    categories = Category.objects.count()
    rules = LegacyRule.objects.filter(active=True).count()
    train_run = TrainRun.objects.order_by("-created_at", "-id").first()
    active_version = ModelVersion.objects.filter(is_active=True).first()
    round = (LabellingRound.objects.filter(status=RoundStatus.OPEN).first()
             or LabellingRound.objects.order_by("-number").first())
    round_items = QueueItem.objects.filter(round=round).count() if round else 0
    return OnboardingState(
        source=source, import_run=import_run, products=products.count(),
        feed_matched=products.exclude(feed_category=None).count(), categories=categories,
        exclusive_categories=Category.objects.filter(is_exclusive=True).count(), rules=rules,
        rule_labels=RuleLabel.objects.count(), train_run=train_run, active_version=active_version, round=round,
        round_items=round_items,
        steps=tuple(_steps(import_run=import_run, categories=categories, rules=rules, train_run=train_run,
                           active_version=active_version, round=round, round_items=round_items)))
