"""Evaluation on the shared test split: metrics, shortcut probes, the benchmark, the generalist-vs-
specialist study and its report.
"""
