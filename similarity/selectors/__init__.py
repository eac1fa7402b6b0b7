"""Reads of the similarity app, split by job: settings (the SIMILARITY_* settings and the active text model),
search (nearest neighbours in pgvector, stored vectors, embedding generations), similar (the similar-products
query behind the API and the evaluation pages, its errors and cache), evaluation (judgements, precision, index
recall) and jobs (embedding jobs and coverage)."""
