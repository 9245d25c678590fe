"""An HTTP client for the service's REST API (what the CLI and the demo talk through).

``ApiClient(base_url, token=None, timeout=30)`` has one method per endpoint and returns the
route's response model (:mod:`service.models`, the same classes the server answers with:
``get_study(id) -> StudyOut``, ``robustness(id) -> Robustness``…), the image bytes
(``heatmap(format="png"|"svg"|"pdf")``) or the CSV text (``export()``). Every failure raises
:class:`ApiError`, the module's one exception:

- an HTTP error (4xx/5xx): ``status`` is the HTTP status and ``detail`` the server's own message
  (the ``detail`` of its JSON body, which names the offending field or resource);
- no HTTP answer at all (nothing listens at the URL, a timeout, a broken connection, a bad URL):
  ``status`` is ``None`` and ``detail`` says what happened and where (so too for an answer
  that is not the route's model: a server of another version).

The token, when given, is sent as ``Authorization: Bearer <token>`` on every request (the
service checks it on mutating requests only). The client keeps one connection pool: close it
with :meth:`ApiClient.close` or use it as a context manager.

``last_response`` is the last HTTP answer received (an error's too), for a caller that wants
the body exactly as the service sent it (the CLI's ``--json``); :meth:`ApiClient.request` sends
any request with the same error handling, for a route without a method of its own.
"""

import json
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter, ValidationError

from service.models import (
    Comparison,
    ExportRow,
    Health,
    Heatmap,
    ImportanceByOptimizer,
    OptimizerList,
    PresetList,
    Reproduction,
    Robustness,
    Sensitivity,
    StudyExtension,
    StudyOut,
    StudyPage,
    TaskList,
    TrialCurve,
    TrialOut,
    TrialPage,
    Tunability,
)

FINISHED = ("succeeded", "failed", "cancelled")  # a study in one of these will not change again
# the slice/metric query parameters every analysis endpoint accepts (see routers/analysis.py)
SELECTION_KEYS = (
    "metric", "direction", "value", "batch_size", "radius", "weight_decay", "axes",
)  # fmt: skip
# what a drawn route answers: its JSON, or its figure in a format of studies.rendering.FORMATS
# (every image method takes all of them: the server's routes share that registry)
ImageFormat = Literal["json", "png", "svg", "pdf"]
M = TypeVar("M")


class ApiError(Exception):
    """A request to the service failed.

    ``status`` is the HTTP status code, or ``None`` when the service gave no HTTP answer;
    ``detail`` is the server's message (or, without an answer, what went wrong).
    """

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(detail if status is None else f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def _detail(response: httpx.Response) -> str:
    """The server's message: the JSON body's ``detail``, else the body text or reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase or "no message"


def _given(**values: Any) -> dict[str, Any]:
    """The query parameters that were given (``None`` means "leave it to the server")."""
    return {name: value for name, value in values.items() if value is not None}


def _selection_params(selection: Mapping[str, Any]) -> dict[str, Any]:
    """Query parameters of a slice/metric selection; ``axes`` maps other axes to a value."""
    unknown = sorted(set(selection) - set(SELECTION_KEYS))
    if unknown:
        raise TypeError(f"unknown selection {unknown[0]!r}; known: {', '.join(SELECTION_KEYS)}")
    # value: "final" (the server's default) or "best", the value of each trial analysed
    plain = ("metric", "direction", "value", "batch_size")
    params = _given(**{key: selection.get(key) for key in plain})
    for key in ("radius", "weight_decay"):  # a number, or "none" for the None level of the axis
        if selection.get(key) is not None:
            params[key] = str(selection[key])
    axes = selection.get("axes") or {}
    if axes:
        params["axis"] = [f"{name}:{'none' if v is None else v}" for name, v in axes.items()]
    return params


def _parse(model: Any, response: httpx.Response) -> Any:
    try:
        return TypeAdapter(model).validate_json(response.content)
    except ValidationError as error:
        url = response.request.url
        raise ApiError(None, f"{url} answered an unexpected body: {error}") from None


class ApiClient:
    """A synchronous client of one service instance (see the module docstring)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self.last_response: httpx.Response | None = None  # see the module docstring

    # --- plumbing ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request to the service (``path`` from the root, e.g. ``/compare``): the
        response, with a 2xx status, or :class:`ApiError`. Every method sends through it; a
        route without a method of its own can be called with it directly."""
        url = f"{self.base_url}{path}"
        try:
            response = self._http.request(
                method, path, params=params, json=json_body, headers=headers
            )
        except httpx.ConnectError:
            raise ApiError(
                None,
                f"cannot reach the service at {self.base_url}: is it running? "
                "(start it with `sensitivity serve`, or pass --url / set SENSITIVITY_URL)",
            ) from None
        except httpx.TimeoutException:
            raise ApiError(
                None, f"the service did not answer {method} {url} within {self.timeout:g} s"
            ) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as error:
            raise ApiError(None, f"invalid service URL {self.base_url!r}: {error}") from None
        except httpx.HTTPError as error:
            raise ApiError(None, f"{method} {url} failed: {error}") from None
        self.last_response = response
        if response.is_error:
            raise ApiError(response.status_code, _detail(response))
        return response

    def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        """The answer of one request as ``model`` (an answer that is not: ApiError)."""
        return _parse(model, self.request(method, path, **kwargs))

    def _drawn(self, model: Any, path: str, params: Mapping[str, Any], format: ImageFormat) -> Any:
        """``GET path`` of a route drawn on request: with ``format="json"`` the answer as
        ``model``, else the image's bytes (``format`` is sent after ``params``)."""
        response = self.request("GET", path, params={**params, "format": format})
        return _parse(model, response) if format == "json" else response.content

    @staticmethod
    def _study(study_id: str) -> str:
        return f"/studies/{quote(study_id, safe='')}"

    # --- the service -------------------------------------------------------------------------

    def health(self) -> Health:
        """``GET /health``: database and Ray reachability (ApiError 503 when either is down)."""
        return self._model(Health, "GET", "/health")

    def presets(self) -> PresetList:
        """``GET /presets``: the shipped presets with their specs."""
        return self._model(PresetList, "GET", "/presets")

    def tasks(self) -> TaskList:
        """``GET /tasks``: every task with its metrics and its options' schema."""
        return self._model(TaskList, "GET", "/tasks")

    def optimizers(self) -> OptimizerList:
        """``GET /optimizers``: every optimizer, what η means for it, its options."""
        return self._model(OptimizerList, "GET", "/optimizers")

    # --- studies -----------------------------------------------------------------------------

    def submit(
        self,
        spec: Mapping[str, Any] | None = None,
        *,
        preset: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> StudyOut:
        """``POST /studies``: a spec, or a preset with overrides; the created study (``id``…).

        With the same ``idempotency_key`` and body the service returns the study it created
        the first time instead of a new one.
        """
        if (spec is None) == (preset is None):
            raise TypeError("submit: pass either a spec or a preset")
        if spec is not None and overrides:
            raise TypeError("submit: overrides go with a preset; merge them into the spec")
        body: Any = (
            dict(spec) if spec is not None else {"preset": preset, "overrides": overrides or {}}
        )
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._model(StudyOut, "POST", "/studies", json_body=body, headers=headers)

    def get_study(self, study_id: str) -> StudyOut:
        """``GET /studies/{id}``: spec, status, progress, timestamps, Ray job and dashboard."""
        return self._model(StudyOut, "GET", self._study(study_id))

    def list_studies(
        self,
        *,
        status: str | None = None,
        task: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> StudyPage:
        """``GET /studies``: ``items`` newest first and ``next_cursor`` (``None`` at the end)."""
        params = _given(status=status, task=task, tag=tag, limit=limit, cursor=cursor)
        return self._model(StudyPage, "GET", "/studies", params=params)

    def cancel(self, study_id: str) -> StudyOut:
        """``POST /studies/{id}/cancel`` (idempotent): the study, ``cancelled``."""
        return self._model(StudyOut, "POST", f"{self._study(study_id)}/cancel")

    def resume(self, study_id: str) -> StudyOut:
        """``POST /studies/{id}/resume``: re-launch an interrupted study's unfinished trials."""
        return self._model(StudyOut, "POST", f"{self._study(study_id)}/resume")

    def delete(self, study_id: str) -> None:
        """``DELETE /studies/{id}``: remove a finished study and its rows."""
        self.request("DELETE", self._study(study_id))

    def reconcile(self, grace_seconds: float | None = None) -> dict[str, Any]:
        """``POST /studies/reconcile``: one reconciler pass now; what it did (study ids under
        ``launched``, ``resumed``, ``failed``, ``noted``; ``checked``; ``error``)."""
        params = {} if grace_seconds is None else {"grace_seconds": grace_seconds}
        return self.request("POST", "/studies/reconcile", params=params).json()

    def watch(self, study_id: str, interval: float = 1.0) -> Iterator[StudyOut]:
        """Poll the study every ``interval`` seconds, yielding it each time; the last one
        yielded is finished (``succeeded``, ``failed`` or ``cancelled``)."""
        while True:
            study = self.get_study(study_id)
            yield study
            if study.status in FINISHED:
                return
            time.sleep(interval)

    # --- trials ------------------------------------------------------------------------------

    def trials(
        self,
        study_id: str,
        *,
        optimizer: str | None = None,
        status: str | None = None,
        eta_min: float | None = None,
        eta_max: float | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> TrialPage:
        """``GET /studies/{id}/trials``: a page of trials in creation order (filtered by
        optimizer, status and ``eta_min ≤ η ≤ eta_max``)."""
        params = _given(
            optimizer=optimizer, status=status, eta_min=eta_min, eta_max=eta_max, limit=limit,
            cursor=cursor,
        )  # fmt: skip
        return self._model(TrialPage, "GET", f"{self._study(study_id)}/trials", params=params)

    def trial(self, study_id: str, key: str) -> TrialOut:
        """``GET /studies/{id}/trials/{key}``: one trial."""
        path = f"{self._study(study_id)}/trials/{quote(key, safe='')}"
        return self._model(TrialOut, "GET", path)

    def curve(
        self, study_id: str, key: str, *, name: str | None = None, format: ImageFormat = "json"
    ) -> TrialCurve | bytes:
        """``GET /studies/{id}/trials/{key}/metrics``: the trial's reported points (of one
        metric with ``name``) as a :class:`TrialCurve`, or their plot (PNG/SVG/PDF bytes)."""
        path = f"{self._study(study_id)}/trials/{quote(key, safe='')}/metrics"
        return self._drawn(TrialCurve, path, _given(name=name), format)

    # --- analysis ----------------------------------------------------------------------------

    def heatmap(
        self, study_id: str, format: ImageFormat = "json", **selection: Any
    ) -> Heatmap | bytes:
        """``GET /studies/{id}/heatmap``: the :class:`Heatmap` or the PNG/SVG/PDF image (bytes).

        ``selection``: ``metric``, ``direction``, ``batch_size``, ``radius``, ``weight_decay``
        (a number or ``"none"``) and ``axes`` (``{name: value}`` for the other axes).
        """
        path = f"{self._study(study_id)}/heatmap"
        return self._drawn(Heatmap, path, _selection_params(selection), format)

    def robustness(
        self,
        study_id: str,
        *,
        tolerance: float | None = None,
        threshold: float | None = None,
        min_finite_fraction: float | None = None,
        **selection: Any,
    ) -> Robustness:
        """``GET /studies/{id}/robustness``: per optimizer (``ranges``) the good-η range."""
        given = _given(
            tolerance=tolerance, threshold=threshold, min_finite_fraction=min_finite_fraction
        )
        params = {**_selection_params(selection), **given}
        return self._model(Robustness, "GET", f"{self._study(study_id)}/robustness", params=params)

    def tunability(
        self,
        study_id: str,
        *,
        k_max: int | None = None,
        diverged: Literal["worst", "inf"] = "worst",
        min_finite_fraction: float | None = None,
        **selection: Any,
    ) -> Tunability:
        """``GET /studies/{id}/tunability``: expected best after k η draws, CPE per optimizer."""
        given = _given(k_max=k_max, min_finite_fraction=min_finite_fraction)
        params = {**_selection_params(selection), "diverged": diverged, **given}
        return self._model(Tunability, "GET", f"{self._study(study_id)}/tunability", params=params)

    def sensitivity(
        self, study_id: str, format: ImageFormat = "json", **selection: Any
    ) -> Sensitivity | bytes:
        """``GET /studies/{id}/sensitivity``: per optimizer the metric against η, as a
        :class:`Sensitivity` or its plot (PNG/SVG/PDF bytes); ``selection`` as for
        :meth:`heatmap`."""
        path = f"{self._study(study_id)}/sensitivity"
        return self._drawn(Sensitivity, path, _selection_params(selection), format)

    def plot(
        self,
        study_id: str,
        analysis: Literal["tunability", "importance"],
        format: ImageFormat = "png",
        **params: Any,
    ) -> bytes:
        """``GET /studies/{id}/plots/{analysis}``: the figure of ``/tunability`` or
        ``/importance`` (``params``: that route's options and the ``selection``)."""
        selection = {key: params.pop(key) for key in SELECTION_KEYS if key in params}
        query = {**_selection_params(selection), **_given(**params), "format": format}
        path = f"{self._study(study_id)}/plots/{quote(analysis, safe='')}"
        return self.request("GET", path, params=query).content

    def curves(
        self,
        study_id: str,
        *,
        metric: str | None = None,
        optimizer: str | None = None,
        eta: str | None = None,
        format: ImageFormat = "json",
        **slice: Any,
    ) -> Any:
        """``GET /studies/{id}/curves``: every trial's curve of ``metric`` (default
        ``train_loss``) in one slice (``batch_size``, ``radius``, ``weight_decay``, ``axes``),
        of one ``optimizer`` or one cell (and ``eta``: a number or ``"none"``): the JSON body
        (``panels`` per optimizer) or the figure's bytes."""
        query = {
            **_selection_params(slice), **_given(metric=metric, optimizer=optimizer, eta=eta),
            "format": format,
        }  # fmt: skip
        response = self.request("GET", f"{self._study(study_id)}/curves", params=query)
        return response.json() if format == "json" else response.content

    def importance(
        self,
        study_id: str,
        *,
        optimizer: str | None = None,
        metric: str | None = None,
        direction: str | None = None,
        value: str | None = None,
    ) -> ImportanceByOptimizer:
        """``GET /studies/{id}/importance``: per optimizer, the importance of each
        hyperparameter."""
        params = {
            **_selection_params({"metric": metric, "direction": direction, "value": value}),
            **_given(optimizer=optimizer),
        }
        return self._model(
            ImportanceByOptimizer, "GET", f"{self._study(study_id)}/importance", params=params
        )

    def reproduction(self, study_id: str) -> Reproduction:
        """``GET /studies/{id}/reproduction``: the paper preset's claims checked on the study."""
        return self._model(Reproduction, "GET", f"{self._study(study_id)}/reproduction")

    def export(
        self, study_id: str, format: Literal["csv", "json"] = "csv"
    ) -> str | list[ExportRow]:
        """``GET /studies/{id}/export``: one row per trial, as CSV text or ExportRow models."""
        response = self.request("GET", f"{self._study(study_id)}/export", params={"format": format})
        return response.text if format == "csv" else _parse(list[ExportRow], response)

    def extend(self, study_id: str, body: Mapping[str, Any]) -> StudyExtension:
        """``POST /studies/{id}/extend``: add trials to a finished study (``body``: the values
        to add, e.g. ``{"grid": {"eta": [0.3]}}``); a StudyExtension (the study, pending again,
        and how many trials were ``added`` and ``reused``)."""
        return self._model(
            StudyExtension, "POST", f"{self._study(study_id)}/extend", json_body=dict(body)
        )

    def compare(
        self,
        studies: list[str] | tuple[str, ...],
        *,
        format: ImageFormat = "json",
        min_finite_fraction: float | None = None,
        tau_max: float | None = None,
        **selection: Any,
    ) -> Comparison | bytes:
        """``GET /compare``: per optimizer across ``studies`` (ids) their good-η ranges, best
        values and tunability, and the performance profiles: a Comparison, or the profile plot
        (bytes) with ``format="png"|"svg"|"pdf"``. ``selection`` as for :meth:`heatmap`, ``value``
        (``"final"``/``"best"``) included."""
        params = {
            **_selection_params(selection),
            **_given(min_finite_fraction=min_finite_fraction, tau_max=tau_max),
            "studies": ",".join(studies),
        }
        return self._drawn(Comparison, "/compare", params, format)
