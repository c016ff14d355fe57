"""Celery tasks of the payments app: thin, take ids, call one service."""
