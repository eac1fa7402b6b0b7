"""Writes and workflows of the similarity app, split by job: jobs (queue), embeddings (run image jobs, worker
only), text (run text jobs), job_chunks (what both runs share), category_copies (keep the vectors' category columns
current), spaces, neighbours, evaluation."""
