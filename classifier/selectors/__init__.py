"""Reads of train runs, their reports, model versions, predictions and learning curves (no TensorFlow: web-safe).

Modules by job: `runs` (runs, summaries, comparisons), `reports` (metric reports), `predictions` (the predictions
browser and predictions for products), `curves` (learning and simulation curves), `versions`, `common`.
"""
