"""Evaluation: metrics (numpy/pandas), fairness audit, reports."""
