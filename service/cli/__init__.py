"""The ``sensitivity`` command line: serve the API, submit studies, follow them, get the answer.

Every command but ``serve`` talks to a running service over HTTP (``service.client.ApiClient``):
its URL comes from ``--url`` or ``SENSITIVITY_URL`` (default ``http://127.0.0.1:8000``), its
token from ``--token`` or ``SENSITIVITY_API_TOKEN`` (the variable the server reads too). There is
one command per read and write of the API (docs/cli.md lists them with their routes):

- studies (:mod:`.studies`): ``list``, ``show``, ``submit``, ``extend``, ``status`` (live),
  ``cancel``, ``resume``, ``delete``, ``reconcile``;
- trials (:mod:`.trials`): ``trials``, ``trial``, ``curve``;
- analysis (:mod:`.analysis`): ``heatmap``, ``robustness``, ``tunability``, ``importance``,
  ``sensitivity``, ``compare``, ``reproduction``, ``export``;
- catalog and service (:mod:`.catalog`, :mod:`.serve`): ``presets``, ``tasks``,
  ``optimizers``, ``health``, ``serve``.

Every read takes ``--json``: stdout is then exactly the API's JSON body (indented), one
document; progress bars, hints and errors go to stderr. Without it the answer is a rich table.
An error is one red line on stderr, never a traceback, and the exit code says which kind it was
(:class:`~service.cli.core.ExitCode`: 0 ok, 1 the API refused, 2 usage, 3 unreachable, 4 the
study did not succeed, 5 ``--timeout``). ``submit`` prints only the new study's id on stdout
(``ID=$(sensitivity submit …)``). ``--version`` prints the package version;
``--install-completion`` / ``--show-completion`` set up shell completion (typer's).
"""

from service.cli.core import ExitCode, app

# the command modules register their commands on ``app`` when imported; --help lists the panels
# in this order (studies first), so it is not the alphabetical one
# isort: off
from service.cli import studies, trials, analysis, catalog, serve

# isort: on
from service.cli.follow import follow
from service.cli.overrides import merge, parse_overrides
from service.cli.render import number, reproduction_table, robustness_table, summary

__all__ = [
    "ExitCode",
    "analysis",
    "app",
    "catalog",
    "follow",
    "merge",
    "number",
    "parse_overrides",
    "reproduction_table",
    "robustness_table",
    "serve",
    "studies",
    "summary",
    "trials",
]
