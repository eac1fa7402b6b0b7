from django.apps import AppConfig


class SimilarityConfig(AppConfig):
    name = "similarity"
    verbose_name = "Visual similarity"

    def ready(self) -> None:
        from similarity import checks  # noqa: F401  (registers the embedding-dimension check)
