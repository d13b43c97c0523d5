"""User-level differential privacy: DP-SGD over users (dp_sgd.py, batching.py), its accounting
(accounting.py), federated averaging with or without it (federated.py), the hook train.py calls
(training.py) and a membership-inference check of what a trained model leaks (membership.py)."""
