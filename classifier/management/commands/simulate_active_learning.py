"""Simulate the active-learning loop on the catalogue with known labels as the oracle; chart the learning curves."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from classifier.management.options import feature_config_read
from classifier.services.simulation import ORACLES, simulation_run


class Command(BaseCommand):
    help = ("Run the labelling loop without a UI: a random seed set, then rounds of batches chosen by each "
            "strategy, the same training code as production, accuracy on the test split. Writes a CSV and a PNG "
            "of the learning curves and says how many labels each strategy needs to reach random's final accuracy.")

    def add_arguments(self, parser):
        parser.add_argument("--strategy", nargs="+", default=["random", "margin"],
                            help="strategies to compare; a mix is written margin:0.8+random:0.2")
        parser.add_argument("--rounds", type=int, default=5)
        parser.add_argument("--batch-size", type=int, default=20)
        parser.add_argument("--seed-size", type=int, default=20)
        parser.add_argument("--objectives", default="exclusive", help="exclusive or exclusive,rule")
        parser.add_argument("--repeats", type=int, default=1, help="seeds per strategy")
        parser.add_argument("--oracle", choices=ORACLES, default="labels",
                            help="labels: current human labels; feed: an exclusive feed category")
        parser.add_argument("--architecture")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--config", help="feature config TOML file (default: CLASSIFIER_FEATURE_CONFIG)")
        parser.add_argument("--strict", action="store_true",
                            help="fail when the feature config reads the field the oracle's answers come from "
                                 "(the feed category), instead of dropping those inputs")
        parser.add_argument("--diversity", type=float, default=0.0, help="batch diversity weight (0: off)")
        parser.add_argument("--out", help="folder for the CSV and PNG (default ARTEFACT_ROOT/simulations)")

    def handle(self, *args, **options):
        for name in ("rounds", "batch_size", "seed_size", "repeats"):
            if options[name] < (0 if name == "rounds" else 1):
                raise CommandError(f"--{name.replace('_', '-')} must be positive")
        feature_config = feature_config_read(options["config"])

        def progress(record: dict) -> None:
            self.stderr.write(f"  {record['strategy']} seed {record['seed']} round {record['round']}: "
                              f"{record['labels']} labels → accuracy {record['accuracy']:.4f} "
                              f"({record['seconds']:.1f}s)")

        try:
            outcome = simulation_run(
                strategies=options["strategy"], rounds=options["rounds"], batch_size=options["batch_size"],
                seed_size=options["seed_size"], objectives=[o.strip() for o in options["objectives"].split(",")],
                repeats=options["repeats"], oracle=options["oracle"], architecture=options["architecture"],
                epochs=options["epochs"], diversity=options["diversity"], feature_config=feature_config,
                strict=options["strict"], out_dir=Path(options["out"]) if options["out"] else None, progress=progress)
        except ValueError as error:
            raise CommandError(str(error)) from None
        for note in outcome.notes:
            self.stdout.write(f"Warning: {note}")
        self.stdout.write(f"Pool {outcome.pool:,} dev products, test {outcome.test:,}, {outcome.classes} classes.")
        summary = outcome.summary
        labels = sorted({int(n) for entry in summary.values() for n in entry["labels"]})
        self.stdout.write("labels   " + "  ".join(f"{name[:14]:>14}" for name in summary))
        for n in labels:
            cells = []
            for entry in summary.values():
                where = list(entry["labels"]).index(n) if n in entry["labels"] else None
                cells.append(f"{entry['mean_accuracy'][where]:>14.4f}" if where is not None else f"{'':>14}")
            self.stdout.write(f"{n:>6}   " + "  ".join(cells))
        if "random" in summary:
            target = summary["random"]["final_accuracy"]
            self.stdout.write(f"Labels needed to reach random's final accuracy {target:.4f}:")
            for name, entry in summary.items():
                needed, saving = entry.get("labels_to_baseline"), entry.get("saving")
                self.stdout.write(f"  {name}: {needed if needed else 'not reached'}"
                                  + (f" ({saving:.2f}× fewer labels)" if saving else ""))
        self.stdout.write(f"Wrote {outcome.csv_path} and {outcome.png_path}")
