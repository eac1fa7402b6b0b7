"""What image and text embedding jobs share: the job's products in chunks, and a chunk's vectors as halfvec text.

Both `embeddings` (image jobs, worker only) and `text` (text jobs) run jobs chunk by chunk with these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from pgvector import HalfVector

from labelapp.catalogue.models import Product
from similarity.models import EmbeddingJob

JobProgress = Callable[[EmbeddingJob], None]
"""Called with the job (counters refreshed) after each committed chunk."""


class _HalfVectorText(HalfVector):
    """A vector already in pgvector's text form: HalfVectorField sends `to_text()` as it is."""

    def __init__(self, text: str) -> None:  # noqa: D107  (no parent __init__: nothing else is needed)
        self._text = text

    def to_text(self) -> str:
        return self._text


def halfvec_texts(vectors: np.ndarray) -> list[HalfVector]:
    """Format float32 [n, d] rows for halfvec columns.

    Five significant digits give back every float16 exactly, in half the characters of pgvector's own formatting,
    and one C-level `%` per row is twice as fast (0.3 against 0.6 ms per 1280-d row): the write of a chunk is on
    the embedding job's critical path.
    """
    if not len(vectors):
        return []
    template = "[" + ",".join(["%.5g"] * vectors.shape[1]) + "]"
    return [_HalfVectorText(template % tuple(row))
            for row in np.asarray(vectors, dtype=np.float16).astype(np.float64).tolist()]


def job_product_ids(*, job: EmbeddingJob) -> RawSQL:
    """Return the job's product ids as a subquery: an import can queue a million ids, too many for IN (...)."""
    return RawSQL(f"SELECT unnest(product_ids) FROM {EmbeddingJob._meta.db_table} WHERE id = %s", (job.id,))


def job_product_chunks(*, job: EmbeddingJob, products: QuerySet[Product], fields: tuple[str, ...],
                       chunk_size: int) -> Iterator[list[dict]]:
    """Yield the job's products (within `products`) in id order, `chunk_size` at a time, as dicts of `fields`.

    Every product: keyset pages by id. Listed products: pages of the sorted id list, so each query reads one
    chunk's rows whatever the length of the list.
    """
    if job.product_ids is None:
        last_id = 0
        while chunk := list(products.filter(id__gt=last_id).order_by("id").values(*fields)[:chunk_size]):
            last_id = chunk[-1]["id"]
            yield chunk
        return
    ids = sorted(set(job.product_ids))
    for start in range(0, len(ids), chunk_size):
        chunk = list(products.filter(id__in=ids[start:start + chunk_size]).order_by("id").values(*fields))
        if chunk:
            yield chunk
