"""Django-free ML core: image loading, EfficientNet-Lite0 embeddings and text vectors.

Nothing under this package may import Django, DRF, Celery or any project app, so it can
run in batch jobs, notebooks and tests without settings.
"""
