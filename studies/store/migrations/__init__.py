"""Alembic environment and revisions of the study store (a package so that it is installed)."""
