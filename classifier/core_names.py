"""Names the web process needs from the classifier core without importing Keras."""

ARCHITECTURE_NAMES = ("logreg", "dnn", "wide_deep", "cnn", "rnn", "image", "multimodal")
