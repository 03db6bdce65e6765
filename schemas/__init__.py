"""Pandera models, one per dataset kind written by the pipeline."""
