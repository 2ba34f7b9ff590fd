"""Training, evaluation and hyperparameter search of the CNN classifiers."""
