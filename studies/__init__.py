"""The study domain: the task catalog, the study spec, the SQL store, analysis and presets.

Pure Python, pydantic, SQLAlchemy, Optuna and matplotlib: no FastAPI, no Ray.
"""
