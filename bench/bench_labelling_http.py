"""Labelling over HTTP: next-item and submit latency with many labellers at once, through gunicorn on loopback.

    DJANGO_DEBUG=1 .venv/bin/python bench/bench_labelling_http.py [--items 5000] [--labellers 20] [--duration 30]
        [--think-ms 0] [--workers 2] [--threads 8] [--reuse]

Prepares its own database (labelapp_bench_labelling, created and migrated if missing; nothing in labelapp is
touched): a Myntra-shaped category tree, --items dev products with rule labels and a model version whose
predictions give every card five suggestions, one open round holding all of them in its queue, and --labellers
labeller accounts. Starts gunicorn (gthread, DEBUG off, whitenoise manifest static files) on a free loopback
port, logs every labeller in over HTTP, then runs them as threads, each with its own requests.Session:

    next item   GET  /label/  (htmx partial: leases the product on screen and the preloaded one, renders both)
    submit      POST /label/items/<id>/submit/  (htmx: labels with the first suggestion, answers the next preload)

in a loop for --duration seconds (the first 2 s unmeasured), --think-ms on average between the two (a person
reading the card; each pause drawn from 0.5–1.5 × the mean, starts staggered). Prints p50 / p95 / p99 per request kind, throughput and the machine's load. Celery tasks the submits
schedule (closing a finished round) go to a private queue that nobody consumes, purged at the end.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MYNTRA = REPO.parent / "shared/datasets/myntra-fashion/styles_clean.csv"
DB = "labelapp_bench_labelling"
PG = "postgres://labelapp@127.0.0.1:54329"
PASSWORD = "bench-labeller-pw-123"
QUEUE = f"bench-labelling-{os.getpid()}"
WARMUP_S = 2.0

sys.path.insert(0, str(REPO))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def database_ensure() -> None:
    import psycopg2

    admin = psycopg2.connect(f"{PG}/postgres".replace("postgres://", "postgresql://"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{DB}"')
            log(f"created database {DB}")
    admin.close()


def server_env(static_root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789",
        "DATABASE_URL": f"{PG}/{DB}",
        "REDIS_URL": "redis://127.0.0.1:63799",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SESSION_COOKIE_SECURE": "0",
        "DJANGO_CSRF_COOKIE_SECURE": "0",
        "STATIC_ROOT": str(static_root),
        "CELERY_DEFAULT_QUEUE": QUEUE,
        "CELERY_ML_QUEUE": QUEUE,
        "CACHE_KEY_PREFIX": "bench-labelling",
        "LOG_LEVEL": "WARNING",
    }


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True)


def myntra_rows(n: int) -> list[dict[str, str]]:
    rng = random.Random(7)
    if MYNTRA.exists():
        with open(MYNTRA, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        return rng.sample(rows, min(n, len(rows))) + [rng.choice(rows) for _ in range(max(0, n - len(rows)))]
    kinds = [("Apparel", "Topwear", "Shirts"), ("Apparel", "Bottomwear", "Jeans"),
             ("Accessories", "Watches", "Watches")]
    return [dict(zip(("masterCategory", "subCategory", "articleType"), rng.choice(kinds)),
                 productDisplayName=f"Synthetic product {i}", gender="Men", baseColour="Blue") for i in range(n)]


def data_prepare(*, items: int, labellers: int) -> int:
    """Fill the bench database: categories, products, rule labels, a model version + predictions, one open round."""
    os.environ.update({"DATABASE_URL": f"{PG}/{DB}", "DJANGO_SETTINGS_MODULE": "config.settings"})
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from classifier.models import ModelVersion, Prediction, TrainRun
    from labelapp.catalogue.models import Category, LegacyRule, Product, RuleLabel, Split
    from labelapp.catalogue.services.categories import category_path_ensure
    from labelapp.common.roles import LABELLER
    from labelapp.workflow.models import LabellingRound, QueueItem

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE labelapp_queueitem, labelapp_label, labelapp_labellinground, classifier_prediction, "
            "classifier_modelversion, classifier_trainrun, labelapp_rulelabel, labelapp_legacyrule, labelapp_product, "
            "django_session CASCADE")
    rows = myntra_rows(items)
    cache: dict = {}
    leaves = {}
    for row in rows:
        path = (row["masterCategory"] or "Other", row["subCategory"] or "Other", row["articleType"] or "Other")
        if path not in leaves:
            leaves[path] = category_path_ensure(names=list(path), cache=cache)
    Category.objects.filter(pk__in=[node.pk for node in leaves.values()]).update(is_exclusive=True)
    leaf_ids = [node.pk for node in leaves.values()]
    # Every product is a dev product here: the split is what the pool reads, not what this bench measures.
    products = Product.objects.bulk_create([
        Product(source="bench", external_id=f"b{i}", raw={"id": i}, title=row["productDisplayName"] or f"Product {i}",
                description=f"{row.get('baseColour', '')} {row.get('articleType', '')} for {row.get('gender', '')}",
                brand=(row["productDisplayName"] or "x").split()[0], gender=row.get("gender", ""),
                category_path=" > ".join(filter(None, (row["masterCategory"], row["subCategory"], row["articleType"]))),
                split=Split.DEV)
        for i, row in enumerate(rows)], batch_size=2000)
    rule = LegacyRule.objects.create(name="bench rule", category_id=leaf_ids[0],
                                     conditions=[{"field": "title", "op": "contains", "value": "a"}])
    RuleLabel.objects.bulk_create([RuleLabel(product=p, category_id=leaf_ids[i % len(leaf_ids)], rule=rule)
                                   for i, p in enumerate(products) if i % 2 == 0], batch_size=5000)
    run = TrainRun.objects.create(status="succeeded", stage="done", architecture="logreg", objectives=["exclusive"],
                                  feature_config="")
    version = ModelVersion.objects.create(name="bench-version", train_run=run, architecture="logreg",
                                          objectives=["exclusive"], artefact_path="", classes=leaf_ids, is_active=True)
    rng = np.random.default_rng(3)
    predictions = []
    for product in products:
        picks = rng.choice(len(leaf_ids), size=min(5, len(leaf_ids)), replace=False)
        proba = np.sort(rng.dirichlet(np.ones(len(picks))))[::-1]
        predictions.append(Prediction(model_version=version, product=product, category_id=leaf_ids[picks[0]],
                                      confidence=float(proba[0]),
                                      top_k=[[leaf_ids[p], round(float(q), 4)] for p, q in zip(picks, proba)]))
    Prediction.objects.bulk_create(predictions, batch_size=5000)
    labelling_round = LabellingRound.objects.create(number=1, strategy_mix={"margin": 1.0}, batch_size=items,
                                                    objectives=["exclusive"], model_version=version,
                                                    options={"fill": {"items": items}})
    QueueItem.objects.bulk_create([
        QueueItem(round=labelling_round, product=p, strategy="margin", score=-i / items, position=i)
        for i, p in enumerate(products)], batch_size=5000)
    group = Group.objects.get_or_create(name=LABELLER)[0]
    for n in range(labellers):
        user, _ = User.objects.get_or_create(username=f"bench-labeller-{n}")
        user.set_password(PASSWORD)
        user.save()
        user.groups.add(group)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    log(f"prepared {len(products):,} products over {len(leaf_ids)} exclusive categories, round 1 with "
        f"{items:,} queue items, {labellers} labellers")
    return labelling_round.pk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn_start(env: dict[str, str], *, port: int, workers: int, threads: int, log_path: Path):
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread", "--timeout", "60"],
        cwd=REPO, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)


CARD = re.compile(r'class="label-card" data-item="(\d+)"')
TOKEN = re.compile(r'name="token" value="([^"]+)"')
SUGGESTION = re.compile(r'name="category" value="(\d+)" data-key="1"')


class Labeller(threading.Thread):
    def __init__(self, *, base: str, username: str, stop: threading.Event, start_at: float, think_s: float):
        super().__init__(daemon=True)
        import requests

        self.base, self.stop, self.start_at, self.think_s = base, stop, start_at, think_s
        self.session = requests.Session()
        self.session.get(f"{base}/accounts/login/")
        response = self.session.post(f"{base}/accounts/login/", allow_redirects=False, data={
            "username": username, "password": PASSWORD, "csrfmiddlewaretoken": self.session.cookies["csrftoken"]})
        assert response.status_code == 302, response.text[:500]
        self.csrf = self.session.cookies["csrftoken"]
        self.timings: dict[str, list[float]] = {"next": [], "submit": []}
        self.errors = 0

    def timed(self, kind: str, method: str, url: str, **kwargs):
        started = time.perf_counter()
        response = self.session.request(method, url, headers={"HX-Request": "true", "X-CSRFToken": self.csrf},
                                        **kwargs)
        elapsed = (time.perf_counter() - started) * 1000
        if time.monotonic() >= self.start_at:
            self.timings[kind].append(elapsed)
        if response.status_code != 200:
            self.errors += 1
        return response

    def run(self) -> None:
        # People read at their own pace: a think time drawn around the mean, and a staggered start, so the
        # labellers do not march in step (which would turn the load into bursts of every labeller at once).
        rng = random.Random(self.name)
        time.sleep(rng.uniform(0, self.think_s))
        while not self.stop.is_set():
            page = self.timed("next", "GET", f"{self.base}/label/").text
            cards, tokens, suggestion = CARD.findall(page), TOKEN.findall(page), SUGGESTION.search(page)
            if not cards:
                return
            if self.think_s:
                time.sleep(rng.uniform(0.5, 1.5) * self.think_s)
            self.timed("submit", "POST", f"{self.base}/label/items/{cards[0]}/submit/", data={
                "category": suggestion.group(1) if suggestion else "none", "time_spent_ms": "1500",
                "token": tokens[0], "showing": cards[1] if len(cards) > 1 else "",
                "csrfmiddlewaretoken": self.csrf})


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(server_pid: int) -> tuple[float, float]:
    """CPU seconds used so far by gunicorn (master and workers), and by the PostgreSQL backends of the bench DB."""
    import psycopg2

    web = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()
           and _pgid(int(entry.name)) == server_pid]
    connection = psycopg2.connect(f"{PG}/postgres".replace("postgres://", "postgresql://"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [DB])
        database = [row[0] for row in cursor.fetchall()]
    connection.close()
    return sum(_cpu_seconds(pid) for pid in web), sum(_cpu_seconds(pid) for pid in database)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def percentiles(values: list[float]) -> str:
    if not values:
        return "no requests"
    array = np.asarray(values)
    return (f"n {len(array):>6,}  p50 {np.percentile(array, 50):6.1f} ms  p95 {np.percentile(array, 95):6.1f} ms  "
            f"p99 {np.percentile(array, 99):6.1f} ms  mean {array.mean():6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--labellers", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="mean pause between reading a card and submitting (0: as fast as the server answers)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--reuse", action="store_true", help="keep the prepared data (skip migrate and load)")
    args = parser.parse_args()

    database_ensure()
    static_root = Path(tempfile.mkdtemp(prefix="bench-labelling-static-"))
    env = server_env(static_root)
    if not args.reuse:
        log("migrating the bench database")
        manage(env, "migrate", "--noinput", "-v0")
    manage(env, "collectstatic", "--noinput", "-v0")
    if not args.reuse:
        data_prepare(items=args.items, labellers=args.labellers)
    port = free_port()
    log_path = static_root / "gunicorn.log"
    server = gunicorn_start(env, port=port, workers=args.workers, threads=args.threads, log_path=log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        stop = threading.Event()
        start_at = time.monotonic() + 60  # replaced once everyone is logged in
        labellers = [Labeller(base=base, username=f"bench-labeller-{n}", stop=stop, start_at=start_at,
                              think_s=args.think_ms / 1000) for n in range(args.labellers)]
        start_at = time.monotonic() + WARMUP_S
        for labeller in labellers:
            labeller.start_at = start_at
        log(f"{args.labellers} labellers logged in; gunicorn {args.workers} workers × {args.threads} threads on "
            f"{base}; running {args.duration:.0f} s (think {args.think_ms:.0f} ms)")
        for labeller in labellers:
            labeller.start()
        time.sleep(WARMUP_S)
        cpu_before, client_before = server_cpu_seconds(server.pid), time.process_time()
        time.sleep(args.duration)
        cpu_after, client_used = server_cpu_seconds(server.pid), time.process_time() - client_before
        web_cpu, database_cpu = (after - before for after, before in zip(cpu_after, cpu_before))
        stop.set()
        for labeller in labellers:
            labeller.join(timeout=30)
        measured = args.duration
        timings = {kind: [t for labeller in labellers for t in labeller.timings[kind]] for kind in ("next", "submit")}
        print()
        print(f"labellers {args.labellers}, think {args.think_ms:.0f} ms, {measured:.0f} s measured, "
              f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs")
        print(f"  next item  {percentiles(timings['next'])}")
        print(f"  submit     {percentiles(timings['submit'])}")
        requests_done = len(timings["next"]) + len(timings["submit"])
        print(f"  labels/s   {len(timings['submit']) / measured:.1f}   non-200 answers: "
              f"{sum(labeller.errors for labeller in labellers)}")
        per_request = 1000 / max(requests_done, 1)
        print(f"  CPU a request: gunicorn {web_cpu * per_request:.1f} ms, PostgreSQL {database_cpu * per_request:.1f} ms"
              f" (client {client_used:.1f} s in all)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        _purge_queue()


def _purge_queue() -> None:
    try:
        import redis

        redis.Redis.from_url("redis://127.0.0.1:63799/0").delete(QUEUE)
    except Exception as error:  # noqa: BLE001 — best effort
        log(f"could not purge the private queue {QUEUE}: {error}")


if __name__ == "__main__":
    main()
