"""syncd's HTTP surface: webhook ingest, health, readiness and Prometheus metrics."""

from daemon.http.app import create_app, handler_args

__all__ = ["create_app", "handler_args"]
