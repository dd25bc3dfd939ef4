// sisr serve: the page. Plain JavaScript, no build step and nothing fetched from another host.
// It speaks only the HTTP API (relative URLs under api/v1/), so scripts see the same server the page sees.
"use strict";

(() => {
  const API = "api/v1/";
  const POLL_MS = 300;
  const MAX_UNANSWERED_POLLS = 30;
  const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  const ACTIVE = new Set(["uploading", "queued", "running"]);
  const STATE_LABELS = {
    ready: "Ready",
    waiting: "Waiting",
    uploading: "Uploading",
    queued: "Queued",
    running: "Running",
    done: "Done",
    failed: "Failed",
    error: "Error",
    cancelled: "Cancelled",
  };

  const $ = (selector, root = document) => root.querySelector(selector);
  const ui = {
    dropZone: $("#drop-zone"),
    fileInput: $("#file-input"),
    settings: $("#settings"),
    modelSelect: $("#model-select"),
    modelInfo: $("#model-info"),
    scaleField: $("#scale-field"),
    scaleSelect: $("#scale-select"),
    tileInput: $("#tile-input"),
    formatSelect: $("#format-select"),
    denoiseField: $("#denoise-field"),
    denoiseInput: $("#denoise-input"),
    denoiseOutput: $("#denoise-output"),
    startButton: $("#start-button"),
    startHint: $("#start-hint"),
    downloadAll: $("#download-all"),
    jobList: $("#job-list"),
    emptyState: $("#empty-state"),
    resultsCount: $("#results-count"),
    pageError: $("#page-error"),
    serverStatus: $("#server-status"),
    footerVersion: $("#footer-version"),
    announcer: $("#announcer"),
    cardTemplate: $("#card-template"),
    runTemplate: $("#run-template"),
  };

  const app = {
    models: [],
    limits: null,
    cards: [],
    waiting: [], // submissions held in the page so the server's queue is never overfilled by this page
    nextCardId: 1,
  };

  // ---------------------------------------------------------------- HTTP

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  function headers(extra) {
    const result = new Headers(extra || {});
    if (TOKEN) result.set("Authorization", `Bearer ${TOKEN}`);
    return result;
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(API + path, { ...options, headers: headers(options.headers) });
    } catch (_) {
      throw new ApiError("The server did not answer; check that sisr serve is still running.", 0);
    }
    if (!response.ok) throw new ApiError(await errorSentence(response), response.status);
    return response;
  }

  // The API answers errors as {"error": "<one sentence>", "status": n}; anything else gets a plain sentence.
  async function errorSentence(response) {
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") return body.error;
      if (body && typeof body.detail === "string") return body.detail;
    } catch (_) {
      // not JSON
    }
    if (response.status === 401) return "This server needs a token: open the address that sisr serve printed.";
    return `The server answered ${response.status}${response.statusText ? " " + response.statusText : ""}.`;
  }

  function filenameFrom(response, fallback) {
    const header = response.headers.get("Content-Disposition") || "";
    const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(header);
    if (star) {
      try {
        return decodeURIComponent(star[1].trim());
      } catch (_) {
        // fall through to the plain form
      }
    }
    const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(header);
    return plain ? plain[1].trim() : fallback;
  }

  // ---------------------------------------------------------------- small helpers

  function announce(message) {
    ui.announcer.textContent = "";
    requestAnimationFrame(() => {
      ui.announcer.textContent = message;
    });
  }

  function formatBytes(bytes) {
    // Binary units, as the server's --max-upload-mb counts them.
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
    const megabytes = bytes / (1024 * 1024);
    return `${megabytes.toFixed(megabytes < 10 ? 1 : 0)} MB`;
  }

  function formatSize(size) {
    return size ? `${size[0]} × ${size[1]}` : "";
  }

  function formatSeconds(seconds) {
    if (seconds == null) return "";
    return seconds < 10 ? `${seconds.toFixed(2)} s` : `${seconds.toFixed(1)} s`;
  }

  function formatParameters(count) {
    if (!count) return "";
    if (count >= 1e6) return `${(count / 1e6).toFixed(1)} M parameters`;
    if (count >= 1e3) return `${Math.round(count / 1e3)} k parameters`;
    return `${count} parameters`;
  }

  function modelByName(name) {
    return app.models.find((model) => model.name === name);
  }

  function showPageError(message) {
    ui.pageError.textContent = message;
    ui.pageError.hidden = !message;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // ---------------------------------------------------------------- server and models

  async function connect() {
    for (;;) {
      try {
        const health = await (await api("health")).json();
        ui.footerVersion.textContent = health.version ? `sisr ${health.version}.` : "";
        if (health.status === "ok") break;
        setServerStatus("loading", "Loading the model…");
      } catch (error) {
        if (error.status === 401) {
          setServerStatus("error", "Token needed");
          showPageError(error.message);
          return;
        }
        if (error.status !== 503) setServerStatus("error", "Not reachable");
        else setServerStatus("loading", "Loading the model…");
      }
      await sleep(1000);
    }
    for (;;) {
      try {
        const answer = await (await api("models")).json();
        app.models = answer.models || [];
        app.limits = answer.limits || null;
        break;
      } catch (error) {
        if (error.status === 401) {
          setServerStatus("error", "Token needed");
          showPageError("This server needs its token: open the address that sisr serve printed, ending in #token=….");
          return;
        }
        if (error.status !== 503) {
          setServerStatus("error", "Models unavailable");
          showPageError(error.message);
          return;
        }
        await sleep(1000);
      }
    }
    setServerStatus("ok", "Ready");
    fillModels();
    if (app.limits && app.limits.max_upload_bytes) {
      $("#drop-hint").textContent = `PNG, JPEG, WebP, TIFF, BMP · up to ${formatBytes(app.limits.max_upload_bytes)}`;
    }
    updateControls();
  }

  function setServerStatus(state, text) {
    ui.serverStatus.dataset.state = state;
    $(".status-text", ui.serverStatus).textContent = text;
  }

  function modelOptions(select, selected) {
    select.replaceChildren();
    const groups = new Map();
    for (const model of app.models) {
      const source = model.source || "other";
      if (!groups.has(source)) {
        const group = document.createElement("optgroup");
        group.label = sourceLabel(source);
        groups.set(source, group);
        select.append(group);
      }
      const option = new Option(`${model.name} · ×${model.scale}`, model.name);
      option.selected = model.name === selected;
      groups.get(source).append(option);
    }
  }

  function sourceLabel(source) {
    const labels = { bundled: "Bundled with sisr", file: "Models folder", bicubic: "Baseline" };
    return labels[source] || `Downloaded (${source})`;
  }

  function fillModels() {
    const remembered = localStorage.getItem("sisr.model");
    const fallback = app.models.find((model) => model.default) || app.models[0];
    const selected = modelByName(remembered) ? remembered : fallback && fallback.name;
    modelOptions(ui.modelSelect, selected);
    ui.modelSelect.disabled = app.models.length === 0;
    const tile = localStorage.getItem("sisr.tile");
    if (tile && !ui.tileInput.value) ui.tileInput.value = tile;
    modelChanged();
  }

  function modelChanged() {
    const model = modelByName(ui.modelSelect.value);
    if (!model) return;
    localStorage.setItem("sisr.model", model.name);
    ui.modelInfo.textContent = [`×${model.scale}`, model.arch, formatParameters(model.parameters), model.licence && `licence ${model.licence}`]
      .filter(Boolean)
      .join(" · ");
    const scales = model.scales && model.scales.length ? model.scales : [model.scale];
    ui.scaleSelect.replaceChildren(...scales.map((scale) => new Option(`×${scale}`, String(scale), false, scale === model.scale)));
    ui.scaleField.hidden = scales.length < 2;
    ui.denoiseField.hidden = !model.denoise;
  }

  // The options of the settings form, as the API's form fields.
  function readOptions(modelName) {
    const model = modelByName(modelName || ui.modelSelect.value);
    const options = { model: model ? model.name : ui.modelSelect.value };
    if (!modelName && !ui.scaleField.hidden) options.scale = ui.scaleSelect.value;
    const tile = ui.tileInput.value.trim();
    if (tile) options.tile = tile;
    if (ui.formatSelect.value) options.format = ui.formatSelect.value;
    if (model && model.denoise) options.denoise = ui.denoiseInput.value;
    return options;
  }

  // A tile size that gives a handful of tiles (so the bar moves) without much overlap overhead.
  function autoTile(dims) {
    if (!dims) return 256;
    const side = Math.ceil(Math.max(dims[0], dims[1]) / 3 / 32) * 32;
    return Math.min(512, Math.max(64, side));
  }

  // ---------------------------------------------------------------- cards

  function addFiles(files) {
    const images = Array.from(files || []);
    if (!images.length) return;
    for (const file of images) app.cards.push(createCard(file));
    updateControls();
    announce(images.length === 1 ? `Added ${images[0].name}.` : `Added ${images.length} images.`);
  }

  function createCard(file) {
    const el = ui.cardTemplate.content.firstElementChild.cloneNode(true);
    const card = {
      id: app.nextCardId++,
      file,
      el,
      dims: null,
      runs: [],
      state: "ready",
      inputUrl: null,
      inputSize: null,
      localUrl: URL.createObjectURL(file),
      viewer: null,
      lastOptions: null,
    };
    el.id = `card-${card.id}`;
    const name = $(".job-name", el);
    name.textContent = file.name || "pasted image";
    name.title = file.name || "";
    el.setAttribute("aria-labelledby", `${el.id}-name`);
    name.id = `${el.id}-name`;
    $(".job-progress", el).setAttribute("aria-label", `Progress of ${file.name}`);
    $(".job-cancel", el).setAttribute("aria-label", `Cancel ${file.name}`);
    $(".job-remove", el).setAttribute("aria-label", `Remove ${file.name}`);
    $(".job-retry", el).setAttribute("aria-label", `Retry ${file.name}`);
    $(".job-model-select", el).id = `${el.id}-rerun-model`;
    $(".rerun-label", el).htmlFor = `${el.id}-rerun-model`;

    const thumb = $(".job-thumb img", el);
    thumb.onload = () => {
      thumb.hidden = false;
      card.dims = [thumb.naturalWidth, thumb.naturalHeight];
      renderMeta(card);
    };
    thumb.onerror = () => {
      thumb.hidden = true;
    };
    thumb.src = card.localUrl;

    $(".job-cancel", el).addEventListener("click", () => cancelCard(card));
    $(".job-remove", el).addEventListener("click", () => removeCard(card));
    $(".job-retry", el).addEventListener("click", () => {
      setError(card, "");
      enqueue(card, card.lastOptions || readOptions());
    });
    $(".job-rerun-form", el).addEventListener("submit", (event) => {
      event.preventDefault();
      enqueue(card, readOptions($(".job-model-select", el).value));
    });

    if (app.limits && app.limits.max_upload_bytes && file.size > app.limits.max_upload_bytes) {
      setState(card, "error");
      setError(card, `${file.name} is ${formatBytes(file.size)}, over this server's limit of ${formatBytes(app.limits.max_upload_bytes)}.`);
    } else {
      setState(card, "ready");
    }
    renderMeta(card);
    ui.jobList.append(el);
    return card;
  }

  function renderMeta(card) {
    const parts = [];
    const size = card.inputSize || card.dims;
    if (size) parts.push(`${formatSize(size)} px`);
    parts.push(formatBytes(card.file.size));
    $(".job-meta", card.el).textContent = parts.join(" · ");
  }

  function setState(card, state, progressText) {
    card.state = state;
    card.el.dataset.state = state;
    $(".job-state", card.el).textContent = STATE_LABELS[state] || state;
    const active = ACTIVE.has(state) || state === "waiting";
    $(".job-cancel", card.el).hidden = !active;
    $(".job-remove", card.el).hidden = active;
    $(".job-retry", card.el).hidden = !(state === "error" || state === "failed" || state === "cancelled") || !card.retryable;
    $(".job-progress-row", card.el).hidden = !(active || state === "ready");
    $(".job-rerun-form", card.el).hidden = active || !card.runs.some((run) => run.state === "done");
    if (progressText !== undefined) $(".job-progress-text", card.el).textContent = progressText;
    updateControls();
  }

  function setError(card, message) {
    const error = $(".job-error", card.el);
    error.textContent = message;
    error.hidden = !message;
  }

  function setProgress(card, value) {
    $(".job-progress", card.el).value = Math.max(0, Math.min(1, value));
  }

  function updateControls() {
    const ready = app.cards.filter((card) => card.state === "ready").length;
    ui.startButton.disabled = ready === 0 || app.models.length === 0;
    ui.startButton.textContent = ready > 1 ? `Start ${ready} images` : "Start";
    const active = app.cards.filter((card) => ACTIVE.has(card.state) || card.state === "waiting").length;
    if (!app.models.length) ui.startHint.textContent = "Waiting for the server…";
    else if (ready) ui.startHint.textContent = ready === 1 ? "1 image ready." : `${ready} images ready.`;
    else if (active) ui.startHint.textContent = active === 1 ? "1 image in progress." : `${active} images in progress.`;
    else ui.startHint.textContent = "Add images to start.";
    const done = doneJobIds();
    ui.downloadAll.disabled = done.length === 0;
    ui.downloadAll.hidden = app.cards.length === 0;
    ui.emptyState.hidden = app.cards.length > 0;
    ui.resultsCount.textContent = app.cards.length ? `(${app.cards.length})` : "";
  }

  function doneJobIds() {
    return app.cards.flatMap((card) => card.runs.filter((run) => run.state === "done").map((run) => run.id));
  }

  // ---------------------------------------------------------------- jobs

  function enqueue(card, options) {
    card.lastOptions = options;
    setError(card, "");
    setProgress(card, 0);
    setState(card, "waiting", "Waiting to upload");
    app.waiting.push({ card, options });
    pump();
  }

  function activeJobs() {
    return app.cards.filter((card) => ACTIVE.has(card.state)).length;
  }

  function pump() {
    const limit = (app.limits && app.limits.max_jobs) || 4;
    while (app.waiting.length && activeJobs() < limit) {
      const { card, options } = app.waiting.shift();
      submit(card, options);
    }
  }

  async function submit(card, options) {
    setState(card, "uploading", "Uploading…");
    const form = new FormData();
    form.append("image", card.file, card.file.name || "image");
    const fields = { ...options };
    if (!fields.tile) fields.tile = String(autoTile(card.dims));
    for (const [key, value] of Object.entries(fields)) form.append(key, value);
    let job;
    try {
      job = await (await api("jobs", { method: "POST", body: form })).json();
    } catch (error) {
      if (card.state !== "uploading") return; // removed or cancelled meanwhile
      // Worth another try only when the server was busy or away; a bad file or option stays bad.
      card.retryable = error.status === 0 || error.status === 429 || error.status >= 500;
      setState(card, "error", "");
      setError(card, error.message);
      announce(`${card.file.name}: ${error.message}`);
      pump();
      return;
    }
    const run = { id: job.id, model: job.model || options.model, state: job.state, job, url: null, filename: null };
    card.runs.push(run);
    card.el.dataset.jobId = run.id;
    if (card.state !== "uploading") {
      // Cancelled while uploading: cancel on the server too.
      api(`jobs/${encodeURIComponent(run.id)}`, { method: "DELETE" }).catch(() => {});
      run.state = "cancelled";
      return;
    }
    updateRun(card, run, job);
    poll(card, run);
  }

  async function poll(card, run) {
    let unanswered = 0;
    while (ACTIVE.has(run.state)) {
      await sleep(POLL_MS);
      if (!ACTIVE.has(run.state)) break; // cancelled by the page while sleeping
      let job;
      try {
        job = await (await api(`jobs/${encodeURIComponent(run.id)}`)).json();
        unanswered = 0;
      } catch (error) {
        // A dropped poll is tried again; a server silent for ~10 s is reported (and can be retried).
        if (error.status === 0 && ++unanswered < MAX_UNANSWERED_POLLS) continue;
        run.state = "failed";
        card.retryable = error.status === 0;
        setState(card, "failed", "");
        setError(card, error.message);
        break;
      }
      if (!ACTIVE.has(run.state)) break;
      updateRun(card, run, job);
    }
    pump();
  }

  function updateRun(card, run, job) {
    run.job = job;
    run.state = job.state;
    if (job.input_size && !card.inputSize) {
      card.inputSize = job.input_size;
      renderMeta(card);
    }
    if (job.state === "queued") {
      setProgress(card, 0);
      setState(card, "queued", "In the queue");
    } else if (job.state === "running") {
      const fraction = job.tiles_total ? job.tiles_done / job.tiles_total : job.progress || 0;
      setProgress(card, fraction);
      const text = job.tiles_total ? `Tile ${job.tiles_done} of ${job.tiles_total}` : "Starting…";
      setState(card, "running", text);
    } else if (job.state === "done") {
      setProgress(card, 1);
      finishRun(card, run);
    } else if (job.state === "failed") {
      card.retryable = true;
      setState(card, "failed", "");
      setError(card, job.error || "The network could not process this image.");
      announce(`${card.file.name}: failed.`);
    } else if (job.state === "cancelled") {
      setState(card, "cancelled", "");
    }
  }

  async function finishRun(card, run) {
    setState(card, "running", "Fetching the result…");
    run.state = "fetching";
    try {
      if (!card.inputUrl) {
        const input = await api(`jobs/${encodeURIComponent(run.id)}/input`);
        card.inputUrl = URL.createObjectURL(await input.blob());
      }
      const response = await api(`jobs/${encodeURIComponent(run.id)}/result`);
      const fallback = `${(card.file.name || "image").replace(/\.[^.]*$/, "")}-x${modelScale(run)}.png`;
      run.filename = filenameFrom(response, fallback);
      run.blob = await response.blob();
      run.url = URL.createObjectURL(run.blob);
    } catch (error) {
      run.state = "failed";
      card.retryable = true;
      setState(card, "failed", "");
      setError(card, error.message);
      return;
    }
    run.state = "done";
    setState(card, "done", "");
    showResult(card, run);
    const job = run.job;
    announce(`${card.file.name}: done with ${run.model} in ${formatSeconds(job.seconds)}, ${formatSize(job.output_size)} pixels.`);
    pump();
  }

  function modelScale(run) {
    const job = run.job || {};
    if (job.scale) return job.scale;
    if (job.output_size && job.input_size) return Math.round(job.output_size[0] / job.input_size[0]);
    const model = modelByName(run.model);
    return model ? model.scale : "";
  }

  async function cancelCard(card) {
    const waiting = app.waiting.findIndex((entry) => entry.card === card);
    if (waiting >= 0) app.waiting.splice(waiting, 1);
    const run = card.runs[card.runs.length - 1];
    const wasUploading = card.state === "uploading";
    card.retryable = true;
    setState(card, "cancelled", "");
    announce(`${card.file.name}: cancelled.`);
    if (run && ACTIVE.has(run.state) && !wasUploading) {
      run.state = "cancelled";
      try {
        await api(`jobs/${encodeURIComponent(run.id)}`, { method: "DELETE" });
      } catch (error) {
        setError(card, error.message);
      }
    }
    if (card.runs.some((r) => r.state === "done")) setState(card, "done", "");
    pump();
  }

  function removeCard(card) {
    const waiting = app.waiting.findIndex((entry) => entry.card === card);
    if (waiting >= 0) app.waiting.splice(waiting, 1);
    for (const run of card.runs) {
      if (run.url) URL.revokeObjectURL(run.url);
      // Frees the server's copy too; a job already gone is fine.
      api(`jobs/${encodeURIComponent(run.id)}`, { method: "DELETE" }).catch(() => {});
    }
    if (card.inputUrl) URL.revokeObjectURL(card.inputUrl);
    URL.revokeObjectURL(card.localUrl);
    if (card.viewer) card.viewer.destroy();
    const index = app.cards.indexOf(card);
    const next = app.cards[index + 1] || app.cards[index - 1];
    app.cards.splice(index, 1);
    card.el.remove();
    updateControls();
    announce(`Removed ${card.file.name}.`);
    (next ? $(".job-remove, .job-cancel", next.el) : ui.fileInput).focus();
  }

  // ---------------------------------------------------------------- results

  function showResult(card, run) {
    const el = card.el;
    $(".job-result", el).hidden = false;

    const row = ui.runTemplate.content.firstElementChild.cloneNode(true);
    const job = run.job;
    $(".run-model", row).textContent = run.model;
    $(".run-stats", row).textContent = [
      `${formatSize(job.input_size)} → ${formatSize(job.output_size)} px`,
      formatSeconds(job.seconds),
      formatBytes(run.blob.size),
    ]
      .filter(Boolean)
      .join(" · ");
    const link = $(".job-download", row);
    link.href = run.url;
    link.download = run.filename;
    link.dataset.jobId = run.id;
    link.setAttribute("aria-label", `Download ${run.filename}`);
    $(".download-text", row).textContent = `Download ${extensionOf(run.filename)}`;
    $(".job-runs", el).append(row);

    if (!card.viewer) card.viewer = new CompareViewer(card);
    // A second model's result is compared with the previous result; the first with the input.
    const done = card.runs.filter((r) => r.state === "done");
    const left = done.length > 1 ? done[done.length - 2].id : "input";
    card.viewer.refreshSides(left, run.id);

    const rerun = $(".job-model-select", el);
    const used = new Set(done.map((r) => r.model));
    const next = app.models.find((model) => !used.has(model.name)) || app.models[0];
    modelOptions(rerun, next && next.name);
  }

  function extensionOf(name) {
    const match = /\.([^.]+)$/.exec(name || "");
    return match ? match[1].toUpperCase() : "";
  }

  async function downloadAll() {
    const ids = doneJobIds();
    if (!ids.length) return;
    ui.downloadAll.disabled = true;
    showPageError("");
    try {
      const response = await api(`results.zip?ids=${ids.map(encodeURIComponent).join(",")}`);
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      link.href = url;
      link.download = filenameFrom(response, "sisr-results.zip");
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      showPageError(error.message);
    } finally {
      updateControls();
    }
  }

  // ---------------------------------------------------------------- before/after viewer

  // Zoom is in device pixels per image pixel, so 1 means "100 % pixels": one pixel of the
  // result on one pixel of the screen, whatever the display's pixel ratio.
  const MAX_ZOOM = 32;
  const ZOOM_STEP = 1.25;
  const PAN_STEP = 40;

  class CompareViewer {
    constructor(card) {
      const el = card.el;
      this.card = card;
      this.viewport = $(".compare-viewport", el);
      this.beforeImg = $(".compare-before img", el);
      this.afterImg = $(".compare-after img", el);
      this.leftLabel = $(".compare-label-left", el);
      this.rightLabel = $(".compare-label-right", el);
      this.note = $(".compare-note", el);
      this.slider = $(".compare-slider", el);
      this.zoomLevel = $(".zoom-level", el);
      this.sides = $(".compare-sides", el);
      this.leftSelect = $(".compare-left", el);
      this.rightSelect = $(".compare-right", el);
      this.width = 1;
      this.height = 1;
      this.zoom = 1;
      this.x = 0;
      this.y = 0;
      this.fitted = true;
      this.drag = null;

      const name = card.file.name;
      this.viewport.setAttribute(
        "aria-label",
        `Comparison of ${name}. Arrow keys pan, plus and minus zoom, 0 fits, 1 shows 100 % pixels.`,
      );
      this.slider.setAttribute("aria-label", `Before/after position for ${name}`);
      this.zoomLevel.setAttribute("aria-label", "Zoom level");
      $(".zoom-controls", el).setAttribute("aria-label", `Zoom for ${name}`);

      this.slider.addEventListener("input", () => this.setPosition(Number(this.slider.value)));
      $(".zoom-in", el).addEventListener("click", () => this.zoomBy(ZOOM_STEP));
      $(".zoom-out", el).addEventListener("click", () => this.zoomBy(1 / ZOOM_STEP));
      $(".zoom-fit", el).addEventListener("click", () => this.fit());
      $(".zoom-actual", el).addEventListener("click", () => this.zoomTo(1));
      this.leftSelect.addEventListener("change", () => this.refreshSides(this.leftSelect.value, this.rightSelect.value));
      this.rightSelect.addEventListener("change", () => this.refreshSides(this.leftSelect.value, this.rightSelect.value));

      this.viewport.addEventListener("wheel", (event) => this.onWheel(event), { passive: false });
      this.viewport.addEventListener("pointerdown", (event) => this.onPointerDown(event));
      this.viewport.addEventListener("pointermove", (event) => this.onPointerMove(event));
      this.viewport.addEventListener("pointerup", (event) => this.onPointerUp(event));
      this.viewport.addEventListener("pointercancel", (event) => this.onPointerUp(event));
      this.viewport.addEventListener("keydown", (event) => this.onKey(event));
      this.viewport.addEventListener("dblclick", (event) => {
        const point = this.localPoint(event);
        if (this.zoom < 1) this.zoomTo(1, point.x, point.y);
        else this.fit();
      });

      this.resizeObserver = new ResizeObserver(() => (this.fitted ? this.fit() : this.apply()));
      this.resizeObserver.observe(this.viewport);
      this.setPosition(Number(this.slider.value));
    }

    destroy() {
      this.resizeObserver.disconnect();
    }

    // The choices for either side: the input enlarged with nearest neighbour, and each result.
    sideChoices() {
      const card = this.card;
      const choices = [{ id: "input", label: "Input (nearest)", url: card.inputUrl, size: card.inputSize }];
      for (const run of card.runs) {
        if (run.state === "done") choices.push({ id: run.id, label: run.model, url: run.url, size: run.job.output_size });
      }
      return choices;
    }

    refreshSides(leftId, rightId) {
      const choices = this.sideChoices();
      const left = choices.find((choice) => choice.id === leftId) || choices[0];
      const right = choices.find((choice) => choice.id === rightId) || choices[choices.length - 1];
      for (const [select, chosen] of [
        [this.leftSelect, left],
        [this.rightSelect, right],
      ]) {
        select.replaceChildren(...choices.map((choice) => new Option(choice.label, choice.id, false, choice === chosen)));
      }
      this.sides.hidden = choices.length < 3;

      // Both sides are drawn at the larger side's size: a smaller image is enlarged with nearest
      // neighbour, so what is compared is its own pixels.
      const sizes = [left.size, right.size].filter(Boolean);
      const largest = sizes.reduce((a, b) => (b[0] * b[1] > a[0] * a[1] ? b : a), sizes[0] || [1, 1]);
      this.width = largest[0];
      this.height = largest[1];
      this.setSide(this.beforeImg, left, this.leftLabel, "Before");
      this.setSide(this.afterImg, right, this.rightLabel, "After");
      this.beforeImg.alt = "";
      this.afterImg.alt = "";
      this.fit();
    }

    setSide(img, choice, label, word) {
      img.classList.toggle("is-enlarged", !choice.size || choice.size[0] < this.width);
      img.dataset.side = choice.id;
      img.style.width = `${this.width}px`;
      img.style.height = `${this.height}px`;
      img.onerror = () => {
        this.note.textContent = "This browser cannot show this image format; the download is unaffected.";
        this.note.hidden = false;
      };
      img.onload = () => {
        this.note.hidden = true;
      };
      img.src = choice.url;
      label.textContent = `${word}: ${choice.label}`;
    }

    setPosition(percent) {
      this.viewport.style.setProperty("--pos", `${percent}%`);
      this.slider.setAttribute("aria-valuetext", `${Math.round(percent)} % before, ${Math.round(100 - percent)} % after`);
    }

    get pixelRatio() {
      return window.devicePixelRatio || 1;
    }

    fitZoom() {
      const box = this.viewport.getBoundingClientRect();
      if (!box.width || !box.height) return 1;
      return Math.min(box.width / this.width, box.height / this.height) * this.pixelRatio;
    }

    fit() {
      this.fitted = true;
      this.zoom = this.fitZoom();
      const box = this.viewport.getBoundingClientRect();
      const scale = this.zoom / this.pixelRatio;
      this.x = (box.width - this.width * scale) / 2;
      this.y = (box.height - this.height * scale) / 2;
      this.apply();
    }

    zoomBy(factor, cx, cy) {
      this.zoomTo(this.zoom * factor, cx, cy);
    }

    // Zooms keeping the image point under (cx, cy) in place (the viewport's centre by default).
    zoomTo(zoom, cx, cy) {
      const box = this.viewport.getBoundingClientRect();
      const minimum = Math.min(this.fitZoom(), 1);
      const next = Math.min(MAX_ZOOM, Math.max(minimum, zoom));
      const px = cx === undefined ? box.width / 2 : cx;
      const py = cy === undefined ? box.height / 2 : cy;
      const before = this.zoom / this.pixelRatio;
      const after = next / this.pixelRatio;
      this.x = px - ((px - this.x) / before) * after;
      this.y = py - ((py - this.y) / before) * after;
      this.zoom = next;
      this.fitted = false;
      this.apply();
    }

    panBy(dx, dy) {
      this.x += dx;
      this.y += dy;
      this.fitted = false;
      this.apply();
    }

    // Keeps the image covering the viewport where it is larger than it, centred where smaller.
    clamp() {
      const box = this.viewport.getBoundingClientRect();
      const scale = this.zoom / this.pixelRatio;
      const w = this.width * scale;
      const h = this.height * scale;
      this.x = w <= box.width ? (box.width - w) / 2 : Math.min(0, Math.max(box.width - w, this.x));
      this.y = h <= box.height ? (box.height - h) / 2 : Math.min(0, Math.max(box.height - h, this.y));
      return w > box.width + 0.5 || h > box.height + 0.5;
    }

    apply() {
      const pannable = this.clamp();
      const scale = this.zoom / this.pixelRatio;
      const transform = `translate(${this.x}px, ${this.y}px) scale(${scale})`;
      this.beforeImg.style.transform = transform;
      this.afterImg.style.transform = transform;
      // At or above 100 % every image shows its own pixels as squares; below, the browser's smooth
      // downscale is the honest overview. The nearest-neighbour enlargement of a smaller side
      // is always pixelated.
      const pixelated = this.zoom >= 0.999;
      for (const img of [this.beforeImg, this.afterImg]) {
        img.classList.toggle("is-pixelated", pixelated || img.classList.contains("is-enlarged"));
      }
      this.viewport.classList.toggle("is-zoomed", pannable);
      this.zoomLevel.value = `${Math.round(this.zoom * 100)} %`;
      this.zoomLevel.textContent = this.zoomLevel.value;
    }

    localPoint(event) {
      const box = this.viewport.getBoundingClientRect();
      return { x: event.clientX - box.left, y: event.clientY - box.top };
    }

    onWheel(event) {
      event.preventDefault();
      const point = this.localPoint(event);
      const lines = event.deltaMode === 1 ? 16 : 1;
      this.zoomBy(Math.exp((-event.deltaY * lines) / 500), point.x, point.y);
    }

    onPointerDown(event) {
      if (event.button !== 0) return;
      this.drag = { id: event.pointerId, x: event.clientX, y: event.clientY };
      this.viewport.setPointerCapture(event.pointerId);
      this.viewport.classList.add("is-dragging");
    }

    onPointerMove(event) {
      if (!this.drag || this.drag.id !== event.pointerId) return;
      const dx = event.clientX - this.drag.x;
      const dy = event.clientY - this.drag.y;
      this.drag.x = event.clientX;
      this.drag.y = event.clientY;
      this.panBy(dx, dy);
    }

    onPointerUp(event) {
      if (!this.drag || this.drag.id !== event.pointerId) return;
      this.drag = null;
      this.viewport.classList.remove("is-dragging");
    }

    onKey(event) {
      if (event.altKey || event.ctrlKey || event.metaKey) return;
      const step = event.shiftKey ? PAN_STEP * 5 : PAN_STEP;
      const actions = {
        ArrowLeft: () => this.panBy(step, 0),
        ArrowRight: () => this.panBy(-step, 0),
        ArrowUp: () => this.panBy(0, step),
        ArrowDown: () => this.panBy(0, -step),
        "+": () => this.zoomBy(ZOOM_STEP),
        "=": () => this.zoomBy(ZOOM_STEP),
        "-": () => this.zoomBy(1 / ZOOM_STEP),
        0: () => this.fit(),
        1: () => this.zoomTo(1),
      };
      const action = actions[event.key];
      if (!action) return;
      event.preventDefault();
      action();
    }
  }

  // ---------------------------------------------------------------- wiring

  ui.fileInput.addEventListener("change", () => {
    addFiles(ui.fileInput.files);
    ui.fileInput.value = "";
  });

  for (const type of ["dragenter", "dragover"]) {
    ui.dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      ui.dropZone.classList.add("is-dragover");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    ui.dropZone.addEventListener(type, () => ui.dropZone.classList.remove("is-dragover"));
  }
  // Files dropped anywhere on the page are added, never opened by the browser in place of the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => {
    event.preventDefault();
    ui.dropZone.classList.remove("is-dragover");
    if (event.dataTransfer) addFiles(event.dataTransfer.files);
  });
  document.addEventListener("paste", (event) => {
    const files = event.clipboardData ? Array.from(event.clipboardData.files) : [];
    if (files.length) addFiles(files);
  });

  ui.modelSelect.addEventListener("change", modelChanged);
  ui.tileInput.addEventListener("change", () => localStorage.setItem("sisr.tile", ui.tileInput.value.trim()));
  ui.denoiseInput.addEventListener("input", () => {
    ui.denoiseOutput.value = Number(ui.denoiseInput.value).toFixed(2);
  });
  ui.settings.addEventListener("submit", (event) => {
    event.preventDefault();
    const options = readOptions();
    for (const card of app.cards) if (card.state === "ready") enqueue(card, options);
  });
  ui.downloadAll.addEventListener("click", downloadAll);

  updateControls();
  connect();
})();
