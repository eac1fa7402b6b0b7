"""Names shared by the classifier core, its Django shell and the web process; importing this loads no Keras.

Each is defined here once: the architecture registry (classifier.core.architectures.ARCHITECTURES) must hold
exactly ARCHITECTURE_NAMES, and the estimator's heads are OBJECTIVES (both checked by tests).
"""

ARCHITECTURE_NAMES = ("logreg", "dnn", "wide_deep", "cnn", "rnn", "image", "multimodal")
OBJECTIVES = ("exclusive", "rule")
"""exclusive: a softmax head over the exclusive classes (human labels); rule: a sigmoid head over rule labels."""
