"""Web app and JSON API around a Predictor (needs the ``serve`` extra: fastapi, uvicorn).

Import ``apexmer.serving.app`` explicitly; this package imports nothing heavy itself.
"""
