"""Prefect tasks: each wraps one audiotag call with caching, retries, tracking and artifacts."""
