"""Load the committed demo sample: taxonomy, products with photos, legacy rules, ground truth; train a first model.

Each step runs once per database and is recorded (workflow.SetupStep) when it finishes: running `make demo` again
— the documented restart — changes nothing, so products imported since (another feed, the whole Myntra) never get
the demo's feed-derived labels, and nothing a user labelled, edited or trained is touched. A run that stopped half
way resumes at its first unfinished step.
"""

from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from classifier.models import ModelVersion
from labelapp.workflow.models import LabellingRound, SetupStep
from labelapp.workflow.services.filling import labelling_round_fill
from labelapp.workflow.services.rounds import labelling_round_create

DEMO = Path(settings.BASE_DIR) / "demo"
SOURCE = "myntra"


class Command(BaseCommand):
    help = "Import the demo sample in demo/ once; a second run changes nothing (each step is recorded)."

    def add_arguments(self, parser):
        parser.add_argument("--list", action="store_true", help="show which steps have run, and stop")

    def handle(self, *args, **options):
        if not (DEMO / "products.csv").exists():
            raise CommandError(f"{DEMO} has no demo sample; rebuild it with bin/make_demo_sample.py")
        done = dict(SetupStep.objects.filter(name__startswith="demo:").values_list("name", "done_at"))
        steps = self._steps()
        if options["list"]:
            for name, (title, _) in steps.items():
                when = done.get(f"demo:{name}")
                self.stdout.write(f"{name:14} {'done ' + when.strftime('%Y-%m-%d %H:%M') if when else 'to do'}  {title}")
            return
        if all(f"demo:{name}" in done for name in steps):
            self.stdout.write("The demo catalogue is loaded already; nothing was imported again.")
            return
        for name, (title, run) in steps.items():
            if f"demo:{name}" in done:
                continue
            self.stdout.write(title)
            detail = run() or ""
            SetupStep.objects.create(name=f"demo:{name}", detail=detail)

    def _steps(self) -> dict[str, tuple[str, Callable[[], str | None]]]:
        return {
            "taxonomy": ("Demo taxonomy:", lambda: self._call("import_taxonomy", str(DEMO / "taxonomy.csv"))),
            "products": ("Demo catalogue (the raw, noisy Myntra rows, with photos):", lambda: self._call(
                "import_products", str(DEMO / "products.csv"), "--source", SOURCE,
                "--mapping", str(DEMO / "mappings" / "myntra.toml"), "--images", str(DEMO / "images"),
                "--show-issues", "3")),
            "rules": ("Legacy rules:", self._rules),
            "similarity": ("Image embeddings (EfficientNet-Lite0) and text vectors for similar products:",
                           self._similarity),
            "ground-truth": ("Ground truth: the test split's Myntra articleType as hand labels; a seed set of 60 "
                             "dev products labelled the same way, so the first model has something to learn from:",
                             self._ground_truth),
            "first-model": ("First model (rule labels + the seed labels), then every product gets a prediction:",
                            self._first_model),
            "first-round": ("The first labelling round:", self._first_round),
        }

    def _call(self, *args: str) -> None:
        call_command(*args, stdout=self.stdout, stderr=self.stderr)

    def _rules(self) -> None:
        self._call("import_rules", str(DEMO / "rules.json"))
        self._call("apply_rules")

    def _similarity(self) -> None:
        self._call("embed_images")
        self._call("build_text_vectors")

    def _ground_truth(self) -> None:
        # Runs once, right after the demo's own import: only the demo's products are there to be labelled.
        self._call("import_ground_truth", "--from-feed", "--source", SOURCE, "--split", "test")
        self._call("import_ground_truth", "--from-feed", "--source", SOURCE, "--split", "dev", "--limit", "60")

    def _first_model(self) -> str:
        if ModelVersion.objects.exists():
            return "skipped: a model version existed"
        self._call("train", "--objectives", "exclusive,rule", "--config", str(DEMO / "classifier.toml"), "--sync")
        return ""

    def _first_round(self) -> str:
        if LabellingRound.objects.exists():
            return "skipped: a round existed"
        # 80 % chosen by margin, 20 % at random (the unbiased slice), 20 products.
        round = labelling_round_create(strategy_mix={"margin": 0.8}, random_share=0.2, batch_size=20,
                                       objectives=["exclusive", "rule"])
        filled = labelling_round_fill(round_id=round.id)
        self.stdout.write(f"Labelling round {round.number} opened with {filled} products (margin 80 % + "
                          f"random 20 %): label them at /label/ as 'labeller'.")
        return f"round {round.number}, {filled} products"
