"""Serving registered models over HTTP (app.py), with Prometheus metrics (metrics.py); server.py runs it."""
