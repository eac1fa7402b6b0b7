"""Load the committed demo sample: taxonomy, products with photos, legacy rules, ground truth; train a first model."""
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from classifier.models import ModelVersion
from labelapp.workflow.models import LabellingRound
from labelapp.workflow.services.filling import labelling_round_fill
from labelapp.workflow.services.rounds import labelling_round_create

DEMO = Path(settings.BASE_DIR) / "demo"


class Command(BaseCommand):
    help = "Import the demo sample in demo/ (safe to run again: every step upserts)."

    def handle(self, *args, **options):
        if not (DEMO / "products.csv").exists():
            raise CommandError(f"{DEMO} has no demo sample; rebuild it with bin/make_demo_sample.py")
        self.stdout.write("Demo taxonomy:")
        call_command("import_taxonomy", str(DEMO / "taxonomy.csv"), stdout=self.stdout, stderr=self.stderr)
        self.stdout.write("Demo catalogue (the raw, noisy Myntra rows, with photos):")
        call_command("import_products", str(DEMO / "products.csv"), "--source", "myntra",
                     "--mapping", str(DEMO / "mappings" / "myntra.toml"), "--images", str(DEMO / "images"),
                     "--show-issues", "3", stdout=self.stdout, stderr=self.stderr)
        self.stdout.write("Legacy rules:")
        call_command("import_rules", str(DEMO / "rules.json"), stdout=self.stdout, stderr=self.stderr)
        call_command("apply_rules", stdout=self.stdout, stderr=self.stderr)
        self.stdout.write("Image embeddings (EfficientNet-Lite0) and text vectors for similar products:")
        call_command("embed_images", stdout=self.stdout, stderr=self.stderr)
        call_command("build_text_vectors", stdout=self.stdout, stderr=self.stderr)
        self.stdout.write("Ground truth: the test split's Myntra articleType as hand labels; a seed set of 60 dev "
                          "products labelled the same way, so the first model has something to learn from:")
        call_command("import_ground_truth", "--from-feed", "--split", "test", stdout=self.stdout)
        call_command("import_ground_truth", "--from-feed", "--split", "dev", "--limit", "60", stdout=self.stdout)
        if not ModelVersion.objects.exists():
            self.stdout.write("First model (rule labels + the seed labels), then every product gets a prediction:")
            call_command("train", "--objectives", "exclusive,rule", "--config", str(DEMO / "classifier.toml"),
                         "--sync", stdout=self.stdout, stderr=self.stderr)
        if not LabellingRound.objects.exists():
            # The first round: 80 % chosen by margin, 20 % at random (the unbiased slice), 20 products.
            round = labelling_round_create(strategy_mix={"margin": 0.8}, random_share=0.2, batch_size=20,
                                           objectives=["exclusive", "rule"])
            filled = labelling_round_fill(round_id=round.id)
            self.stdout.write(f"Labelling round {round.number} opened with {filled} products (margin 80 % + "
                              f"random 20 %): label them at /label/ as 'labeller'.")
