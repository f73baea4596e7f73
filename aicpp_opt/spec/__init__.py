"""Inputs: model files, instances, workloads and plans (dataclasses + validation)."""
