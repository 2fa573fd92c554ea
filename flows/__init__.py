"""Prefect flows: wire tasks into the DAG (SPEC §1)."""
