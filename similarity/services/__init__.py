"""Writes and workflows of the similarity app, split by sub-domain.

The hooks other apps call are re-exported here: `embeddings_refresh_after_import`, `embeddings_sync_categories`.
"""

from similarity.services.embeddings import embeddings_refresh_after_import, embeddings_sync_categories

__all__ = ["embeddings_refresh_after_import", "embeddings_sync_categories"]
