from django.apps import AppConfig


class SimilarityConfig(AppConfig):
    name = "similarity"
    verbose_name = "Visual similarity"

    def ready(self) -> None:
        from labelapp.common.events import CATEGORIES_CHANGED, PRODUCTS_IMPORTED, event_subscribe
        from similarity import checks  # noqa: F401  (registers the embedding-dimension check)
        from similarity.services.category_copies import embeddings_categories_sync_dirty
        from similarity.services.jobs import embeddings_refresh_after_import

        # The catalogue announces changes; the similarity app keeps its copies and vectors in step.
        event_subscribe(CATEGORIES_CHANGED, embeddings_categories_sync_dirty)
        event_subscribe(PRODUCTS_IMPORTED, embeddings_refresh_after_import)
