"""``python -m service.cli``: the same program as the ``sensitivity`` script."""

from service.cli import app

app(prog_name="sensitivity")
