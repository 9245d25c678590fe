// The live study page (docs/study-page.md): plain JavaScript, no build step, no dependency.
//
// The page is rendered by the server first; this script keeps it up to date. While the study
// runs it listens to GET /studies/{id}/events (server-sent events): every "version" event
// updates the progress at once and schedules a refresh of the figures, the clickable heatmap
// cells, the good-η table and the failure table (at most one refresh every MIN_REFRESH_MS);
// "end" closes the stream and refreshes one last time. Figure URLs carry the version (v=…), so
// the browser fetches a figure again only when a trial changed.
//
// Text from the store is data: it goes into the page through textContent and attributes only,
// never innerHTML; URLs are built with URLSearchParams.
"use strict";

(() => {
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const base = `/studies/${encodeURIComponent(data.study_id)}`;
  const MIN_REFRESH_MS = 2000;
  const FINISHED = new Set(data.finished_statuses);
  const $ = (selector) => document.querySelector(selector);
  const state = { current: data.state, updates: 0, cell: null };

  // --- the selection: slice, metric, value, curve ---------------------------------------------

  function selection() {
    const chosen = data.slices[Number($("#slice").value)];
    return {
      slice: chosen ? chosen.query : [],
      metric: $("#metric").value,
      value: $("#value").value,
      curve: $("#curve-metric").value,
    };
  }

  // the query string of a route: the slice, then the given [name, value] pairs
  function query(pairs, { analysis = true, version = true } = {}) {
    const chosen = selection();
    const params = new URLSearchParams(chosen.slice);
    if (analysis) {
      params.append("metric", chosen.metric);
      params.append("value", chosen.value);
    }
    for (const [name, value] of pairs) params.append(name, value);
    if (version) params.append("v", state.current.version);
    return params.toString();
  }

  // every figure: its URL in a format, the formats it comes in, whether it has JSON data
  const PLOTS = {
    heatmap: {
      url: (format, version) => `${base}/heatmap?${query([["format", format]], { version })}`,
      formats: data.analysis_formats, json: true, shown: "svg",
    },
    curves: {
      url: (format, version) =>
        `${base}/curves?${query([["metric", selection().curve], ["format", format]],
          { analysis: false, version })}`,
      formats: data.figure_formats, json: true, shown: "png",
    },
    sensitivity: {
      url: (format, version) => `${base}/sensitivity?${query([["format", format]], { version })}`,
      formats: data.analysis_formats, json: true, shown: "png",
    },
    tunability: {
      url: (format, version) => format === "json"
        ? `${base}/tunability?${query([], { version })}`
        : `${base}/plots/tunability?${query([["format", format]], { version })}`,
      formats: data.figure_formats, json: true, shown: "png",
    },
    importance: {
      url: (format, version) => format === "json"
        ? `${base}/importance?${query([], { version })}`
        : `${base}/plots/importance?${query([["format", format]], { version })}`,
      formats: data.figure_formats, json: true, shown: "png", onDemand: true,
    },
    cell: {
      url: (format, version) => {
        const cell = state.cell;
        const pairs = [["optimizer", cell.optimizer], ["eta", etaParam(cell.eta)],
          ["metric", selection().curve], ["format", format]];
        return `${base}/curves?${query(pairs, { analysis: false, version })}`;
      },
      formats: data.figure_formats, json: true, shown: "png",
    },
  };

  const etaParam = (eta) => (eta === null ? "none" : String(eta));
  const etaText = (eta) => (eta === null ? "∞" : String(eta));
  const number = (value) => (value === null || value === undefined ? "—"
    : Number(value.toPrecision(3)).toString());

  // --- drawing --------------------------------------------------------------------------------

  function figure(name) {
    return document.querySelector(`figure[data-plot="${name}"]`);
  }

  function setNote(element, text) {
    element.textContent = text || "";
    element.hidden = !text;
  }

  // point a figure's image and download links at the current selection and version
  function showPlot(name) {
    const plot = PLOTS[name];
    const box = figure(name);
    const image = box.querySelector("img");
    const url = plot.url(plot.shown, true);
    if (image.getAttribute("src") !== url) image.setAttribute("src", url);
    const links = box.querySelector(".downloads");
    links.replaceChildren(document.createTextNode("Download:"));
    const formats = plot.json ? [...plot.formats, "json"] : plot.formats;
    for (const format of formats) {
      const link = document.createElement("a");
      link.href = plot.url(format, false);
      link.dataset.format = format;
      link.setAttribute("download", "");
      link.textContent = format.toUpperCase();
      links.append(" ", link);
    }
  }

  // an image that fails: hide it and say why (the route's {"detail": …})
  function watchImage(name) {
    const box = figure(name);
    const image = box.querySelector("img");
    const note = box.querySelector(".note");
    image.addEventListener("load", () => { image.hidden = false; setNote(note, ""); });
    image.addEventListener("error", async () => {
      const failed = image.getAttribute("src");
      let why = "not available yet";
      try {
        const response = await fetch(failed);
        const body = await response.json();
        if (body && typeof body.detail === "string") why = body.detail;
      } catch (error) { /* keep the generic text */ }
      if (image.getAttribute("src") !== failed) return; // a newer one is on its way
      image.hidden = true;
      setNote(note, why);
    });
  }

  function cellText(row, texts) {
    for (const text of texts) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
  }

  function trialLink(key) {
    const link = document.createElement("a");
    link.href = `${base}/trials/${encodeURIComponent(key)}`;
    link.textContent = key.slice(0, 12);
    const cell = document.createElement("td");
    cell.append(link);
    return cell;
  }

  async function getJson(url) {
    const response = await fetch(url);
    const body = await response.json();
    if (!response.ok) throw new Error(typeof body.detail === "string" ? body.detail : "error");
    return body;
  }

  // the heatmap as a grid of buttons: one per optimizer × η, its median and status
  async function drawCells() {
    const table = $("#cells");
    const note = $("#cells-note");
    let heatmap;
    try {
      heatmap = await getJson(`${base}/heatmap?${query([["format", "json"]])}`);
    } catch (error) {
      table.replaceChildren();
      setNote(note, error.message);
      return;
    }
    setNote(note, "");
    const header = document.createElement("tr");
    for (const text of ["optimizer \\ η", ...heatmap.columns.map(etaText)]) {
      header.append(Object.assign(document.createElement("th"), { textContent: text }));
    }
    const rows = [header];
    heatmap.rows.forEach((optimizer, i) => {
      const row = document.createElement("tr");
      const name = document.createElement("th");
      name.textContent = optimizer;
      row.append(name);
      heatmap.columns.forEach((eta, j) => {
        const status = heatmap.status[i][j];
        const button = document.createElement("button");
        button.type = "button";
        button.className = `cell status-${status}`;
        button.dataset.optimizer = optimizer;
        button.dataset.eta = etaParam(eta);
        button.dataset.status = status;
        const value = heatmap.values[i][j];
        button.textContent = status === "diverged" ? "div." : status === "failed" ? "fail"
          : value === null ? "…" : number(value);
        button.title = `${optimizer}, η = ${etaText(eta)}: ${status}, `
          + `${heatmap.n_ok[i][j]}/${heatmap.n_total[i][j]} seeds finite`;
        const colour = cellColour(value, heatmap);
        if (colour && status !== "diverged" && status !== "failed") {
          button.style.background = colour.fill;
          button.style.color = colour.text;
        }
        if (state.cell && state.cell.optimizer === optimizer && state.cell.eta === eta) {
          button.classList.add("selected");
        }
        button.addEventListener("click", () => openCell(optimizer, eta));
        const td = document.createElement("td");
        td.append(button);
        row.append(td);
      });
      rows.push(row);
    });
    table.replaceChildren(...rows);
  }

  // viridis at five stops, on a log scale of the finite values (reversed when maximising)
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function cellColour(value, heatmap) {
    if (value === null) return null;
    const finite = heatmap.values.flat().filter((v) => v !== null);
    const positive = finite.every((v) => v > 0);
    const scale = (v) => (positive ? Math.log10(v) : v);
    const low = Math.min(...finite.map(scale));
    const high = Math.max(...finite.map(scale));
    let t = high > low ? (scale(value) - low) / (high - low) : 0.5;
    if (heatmap.direction === "maximize") t = 1 - t;
    const x = t * (VIRIDIS.length - 1);
    const k = Math.min(Math.floor(x), VIRIDIS.length - 2);
    const rgb = VIRIDIS[k].map((c, i) => Math.round(c + (VIRIDIS[k + 1][i] - c) * (x - k)));
    const light = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140;
    return { fill: `rgb(${rgb.join(",")})`, text: light ? "#111" : "#fff" };
  }

  function openCell(optimizer, eta) {
    state.cell = { optimizer, eta };
    $("#cell-view").hidden = false;
    for (const button of document.querySelectorAll("#cells button.cell")) {
      button.classList.toggle("selected",
        button.dataset.optimizer === optimizer && button.dataset.eta === etaParam(eta));
    }
    drawCell();
    $("#cell-view").scrollIntoView({ block: "nearest" });
  }

  // the cell view: its seeds' curves (figure) and their final values (table)
  async function drawCell() {
    if (!state.cell) return;
    const { optimizer, eta } = state.cell;
    $("#cell-title").textContent = `${optimizer} at η = ${etaText(eta)}`;
    showPlot("cell");
    const table = $("#cell-trials");
    const header = table.rows[0];
    let body;
    try {
      body = await getJson(PLOTS.cell.url("json", true));
    } catch (error) {
      table.replaceChildren(header);
      setNote(figure("cell").querySelector(".note"), error.message);
      return;
    }
    updateCurveNames(body.metrics);
    const rows = [header];
    for (const trial of body.panels[optimizer] || []) {
      const row = document.createElement("tr");
      cellText(row, [String(trial.seed), trial.status, number(trial.final_objective),
        String(trial.points.length), trial.reason || ""]);
      row.append(trialLink(trial.key));
      rows.push(row);
    }
    table.replaceChildren(...rows);
  }

  // curve names recorded since the page was rendered join the curve selector
  function updateCurveNames(names) {
    const select = $("#curve-metric");
    const known = new Set([...select.options].map((option) => option.value));
    for (const name of names || []) {
      if (!known.has(name)) select.append(new Option(name, name));
    }
  }

  async function drawRanges() {
    const table = $("#ranges");
    const note = $("#ranges-note");
    let body;
    try {
      body = await getJson(`${base}/robustness?${query([])}`);
    } catch (error) {
      setNote(note, error.message);
      return;
    }
    setNote(note, "");
    const rows = [table.rows[0]];
    for (const [name, r] of Object.entries(body.ranges)) {
      const row = document.createElement("tr");
      const high = r.includes_infinity ? "∞" : r.eta_high === null ? "—" : String(r.eta_high);
      cellText(row, [name, r.eta_low === null ? "—" : String(r.eta_low), high, number(r.decades),
        r.best_eta === null ? "—" : String(r.best_eta), number(r.best_value), String(r.seeds),
        String(r.diverged_seeds)]);
      rows.push(row);
    }
    table.replaceChildren(...rows);
  }

  async function drawFailures() {
    const table = $("#failures");
    const rows = [table.rows[0]];
    let more = false;
    for (const status of ["failed", "diverged"]) {
      let page;
      try {
        page = await getJson(`${base}/trials?status=${status}&limit=500`);
      } catch (error) {
        continue;
      }
      more = more || page.next_cursor !== null;
      for (const trial of page.items) {
        const row = document.createElement("tr");
        cellText(row, [trial.optimizer, etaText(trial.eta), String(trial.seed), trial.status,
          trial.reason || ""]);
        row.append(trialLink(trial.key));
        rows.push(row);
      }
    }
    table.replaceChildren(...rows);
    const count = rows.length - 1;
    $("#failures-count").textContent = `(${count}${more ? "+, the first 500 of each shown" : ""})`;
  }

  // --- progress and refreshes -----------------------------------------------------------------

  function applyState(next) {
    state.current = next;
    state.updates += 1;
    document.body.dataset.version = next.version;
    document.body.dataset.updates = String(state.updates);
    const status = $("#status");
    status.textContent = next.status;
    status.className = `status-${next.status}`;
    for (const element of document.querySelectorAll("[data-count]")) {
      element.textContent = String(next.progress[element.dataset.count]);
    }
    const total = next.progress.total || 1;
    $("#progress-bar").style.width = `${Math.round((100 * next.progress.done) / total)}%`;
    $("#study-error").textContent = next.error || "";
  }

  function setLive(text) {
    $("#live-state").textContent = text;
  }

  let refreshing = false;
  let pending = false;
  let lastRefresh = 0;
  let timer = null;

  // one refresh at a time, at most one every MIN_REFRESH_MS; a request meanwhile is kept
  function schedule() {
    if (refreshing) { pending = true; return; }
    if (timer !== null) return;
    const wait = Math.max(0, lastRefresh + MIN_REFRESH_MS - Date.now());
    timer = setTimeout(async () => {
      timer = null;
      refreshing = true;
      lastRefresh = Date.now();
      try { await refresh(); } finally {
        refreshing = false;
        if (pending) { pending = false; schedule(); }
      }
    }, wait);
  }

  async function refresh({ everything = false } = {}) {
    const finished = FINISHED.has(state.current.status);
    for (const name of Object.keys(PLOTS)) {
      if (name === "cell") continue;
      if (PLOTS[name].onDemand && !(everything || finished)) continue;
      showPlot(name);
    }
    const label = data.slices[Number($("#slice").value)];
    if ($("#slice-label") && label) $("#slice-label").textContent = `(${label.label})`;
    await Promise.all([drawCells(), drawRanges(), drawFailures(), drawCell()]);
  }

  // --- start ----------------------------------------------------------------------------------

  for (const name of Object.keys(PLOTS)) watchImage(name);
  for (const id of ["#slice", "#metric", "#value", "#curve-metric"]) {
    $(id).addEventListener("change", () => refresh({ everything: true }));
  }
  $("#cell-close").addEventListener("click", () => {
    state.cell = null;
    $("#cell-view").hidden = true;
    for (const button of document.querySelectorAll("#cells button.selected")) {
      button.classList.remove("selected");
    }
  });
  $("#importance-update").addEventListener("click", () => showPlot("importance"));
  $("#curves-json").href = PLOTS.curves.url("json", false);
  document.body.dataset.version = state.current.version;
  document.body.dataset.updates = "0";
  refresh({ everything: true });

  if (FINISHED.has(state.current.status)) return; // nothing will change: no stream
  const source = new EventSource(`${base}/events`);
  source.addEventListener("version", (event) => {
    const next = JSON.parse(event.data);
    const changed = next.version !== state.current.version;
    applyState(next);
    setLive("live");
    if (changed) schedule();
  });
  source.addEventListener("heartbeat", () => setLive("live"));
  source.addEventListener("end", (event) => {
    source.close();
    const last = JSON.parse(event.data);
    if (last.status === "deleted") { setLive("deleted"); return; }
    applyState(last);
    setLive("finished");
    refresh({ everything: true });
  });
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.CLOSED) setLive("reconnecting…");
  });
})();
