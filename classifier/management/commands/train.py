"""Train a classifier on the catalogue: queue it for the ml worker, or run it here with --sync."""

from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from classifier.management.options import feature_config_read
from classifier.models import TrainStatus
from classifier.services.pipeline import train_run_execute
from classifier.services.runs import train_run_create
from labelapp.catalogue.management.importing import TqdmStream


class Command(BaseCommand):
    help = ("Train a model on the human labels (exclusive objective) and/or the legacy rules' labels (rule "
            "objective), evaluate it on the test split, predict the catalogue and promote it.")

    def add_arguments(self, parser):
        parser.add_argument("--architecture", help="logreg, dnn, wide_deep, cnn, rnn, image or multimodal "
                                                   "(default: CLASSIFIER_DEFAULT_ARCHITECTURE)")
        parser.add_argument("--objectives", default="exclusive",
                            help="comma-separated: exclusive, rule or exclusive,rule (default: exclusive)")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--learning-rate", type=float)
        parser.add_argument("--loss-weights", help='JSON, e.g. \'{"exclusive": 1, "rule": 0.5}\'')
        parser.add_argument("--seed", type=int, dest="random_state")
        parser.add_argument("--config", help="feature config TOML file (default: CLASSIFIER_FEATURE_CONFIG)")
        parser.add_argument("--no-promote", action="store_true", help="train and evaluate, keep the active model")
        parser.add_argument("--max-regression", type=float,
                            help="promote only if the headline metric drops by at most this much")
        parser.add_argument("--sync", action="store_true", help="run here, with progress, instead of queueing")
        parser.add_argument("--no-weak-targets", action="store_true",
                            help="learn the exclusive head from human labels only, not also from the rules' and the "
                                 "feed's categories")
        parser.add_argument("--strict", action="store_true",
                            help="fail the run when the feature config reads the field its labels were taken from "
                                 "(labels imported from the feed category), instead of dropping those inputs")

    def handle(self, *args, **options):
        params = {name: options[name] for name in ("epochs", "batch_size", "learning_rate", "random_state")
                  if options[name] is not None}
        if options["loss_weights"]:
            try:
                params["loss_weights"] = {str(k): float(v) for k, v in json.loads(options["loss_weights"]).items()}
            except (ValueError, AttributeError) as error:
                raise CommandError(f"--loss-weights must be a JSON object of numbers: {error}") from None
        if options["no_weak_targets"]:
            params["weak_targets"] = False
        if options["strict"]:
            params["strict_inputs"] = True
        feature_config = feature_config_read(options["config"])
        try:
            run = train_run_create(
                architecture=options["architecture"], objectives=[o.strip() for o in options["objectives"].split(",")
                                                                  if o.strip()],
                params=params, promote=not options["no_promote"], max_regression=options["max_regression"],
                trigger="command", feature_config=feature_config, schedule=not options["sync"])
        except ValidationError as error:
            raise CommandError("; ".join(f"{field}: {' '.join(messages)}"
                                         for field, messages in error.message_dict.items())) from None
        if not options["sync"]:
            self.stdout.write(f"Queued train run {run.id} ({run.architecture}, {'+'.join(run.objectives)}) for the "
                              f"ml worker; follow it at /review/runs/{run.id}/ or GET /api/v1/train-runs/{run.id}/")
            return
        with tqdm(total=100, desc="train", unit="%", file=TqdmStream(self.stderr), disable=None,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}") as bar:
            def report(stage: str, percent: float, message: str) -> None:
                bar.update(max(0, int(percent) - bar.n))
                bar.set_postfix_str(message, refresh=True)

            run = train_run_execute(train_run_id=run.id, report=report)
        if run.status == TrainStatus.FAILED:
            raise CommandError(f"train run {run.id} failed: {run.error.splitlines()[0]}")
        self.stdout.write(self._summary(run))

    def _summary(self, run) -> str:
        counts, metrics, version = run.data_counts, run.metrics, run.model_version
        lines = [f"Train run {run.id} succeeded in {run.duration_s:.1f}s: {run.architecture}, "
                 f"{'+'.join(run.objectives)}; {counts.get('train', 0):,} training products "
                 f"({counts.get('exclusive_labels', 0):,} human labels, "
                 f"{sum((counts.get('weak_targets') or {}).values()):,} weak targets, "
                 f"{counts.get('rule_known', 0):,} with rules), "
                 f"{counts.get('validation', 0):,} validation."]
        lines += [f"  warning: {warning}" for warning in run.params.get("warnings", [])]
        for report, title in (("ground_truth", "hand-labelled ground truth"), ("rule_test", "rule-based test set")):
            section = metrics.get(report)
            if not section:
                continue
            parts = []
            if "exclusive" in section:
                e = section["exclusive"]
                parts.append(f"accuracy {_f(e.get('accuracy'))}, top-5 {_f(e.get('top5_accuracy'))}, "
                             f"macro-F1 {_f(e.get('macro_f1'))} (n={e.get('n')})")
            if "rule" in section:
                r = section["rule"]
                parts.append(f"rule micro-F1 {_f(r.get('micro_f1'))}, macro-F1 {_f(r.get('macro_f1'))} (n={r.get('n')})")
            lines.append(f"  {title}: " + "; ".join(parts))
        calibration = metrics.get("calibration") or {}
        if calibration:
            test = calibration.get("test") or {}
            lines.append(f"  calibration: temperature {calibration['temperature']:.2f} on {calibration['n']} "
                         f"{calibration['fitted_on']}; test ECE {_f(test.get('ece_before'))} → "
                         f"{_f(test.get('ece_after'))}; precision "
                         f"{'measured' if calibration.get('measured') else 'not measured (fills gaps only)'}")
        lines.append(f"  model version {version.name}: {run.get_outcome_display()}; "
                     f"{version.predictions_count:,} products predicted; artefact {version.artefact_path}")
        if run.promotion_reason:
            lines.append(f"  promotion: {run.promotion_reason}")
        return "\n".join(lines)


def _f(value) -> str:
    return "–" if value is None else f"{value:.4f}"
