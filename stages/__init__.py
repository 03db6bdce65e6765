"""DVC stages: one thin module per stage in dvc.yaml, each run as `python -m stages.<name>`."""
