"""Django-free product classifier: feature config, Keras model builders, training, metrics and ensembles.

Import the submodules directly: `config`, `frames`, `metrics` and `ensembles` need only NumPy;
`features`, `encoders`, `architectures` and `estimator` (ProductClassifier) load TensorFlow. A web process
that reads a config or computes metrics therefore never loads TensorFlow.
"""
