"""Datasets on disk: loading, checks, provenance and the shared patient-grouped splits."""
