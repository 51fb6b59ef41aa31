// lookalike web page: search by a dropped, pasted or chosen picture, by an indexed picture
// ("more like this"), by a region of the query picture (drawn, or typed in the Region fields), or
// by words. No dependencies, no network
// access beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { query: null, box: null, busy: 0, imgLoaded: false };

// Ways to search. Each takes the query and returns fetch() arguments; a new kind of search
// (e.g. text) adds an entry here and a control in #extra-search that calls setQuery().
const SEARCHERS = {
  upload(q, k, box, opts) {
    const form = new FormData();
    form.append("image", q.file, q.name);
    form.append("k", String(k));
    if (box) form.append("box", box.join(","));
    if (opts.localize) form.append("localize", "true");
    return ["/api/search", { method: "POST", body: form }];
  },
  id(q, k, box, opts) {
    const body = { id: q.id, k, localize: opts.localize };
    if (box) body.box = box;
    return ["/api/search", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }];
  },
  text(q, k) {
    return ["/api/search", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text: q.text, k }),
    }];
  },
};

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function fetchJSON(url, init) {
  const res = await fetch(url, init);
  let data = null;
  try { data = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    const msg = (data && data.message) || `${res.status} ${res.statusText}`;
    throw new Error(res.status === 503 ? `${msg} (busy)` : msg);
  }
  return data;
}

// -- the query ---------------------------------------------------------------------------

function setQuery(query) {
  if (state.query && state.query.url && state.query.kind === "upload") {
    URL.revokeObjectURL(state.query.url);
  }
  state.query = query;
  state.box = null;
  $("selection").hidden = true;
  $("clear-box").hidden = true;
  resetRegionFields();
  state.imgLoaded = false;
  // A text query has no picture to show (nor a region to draw).
  $("query-figure").hidden = !query.url;
  if (query.url) $("query-img").src = query.url;
  showRegionSize();
  $("query-caption").textContent = query.label;
  return search();
}

function queryFromFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(`${file.name || "That file"} is not an image`, true);
    return;
  }
  const url = URL.createObjectURL(file);
  const name = file.name || "pasted-image";
  // width/height 0: the box is computed in the picture's natural pixels, as the server
  // decodes it (EXIF orientation applied by both).
  return setQuery({ kind: "upload", file, name, url, label: name, width: 0, height: 0 });
}

function queryFromText(text) {
  text = text.trim();
  if (!text) {
    setStatus("Type some words to search for", true);
    return;
  }
  return setQuery({ kind: "text", text, url: null, label: `“${text}”` });
}

function queryFromHit(hit) {
  return setQuery({
    kind: "id", id: hit.id, width: hit.width, height: hit.height,
    url: `/api/images/${hit.id}/thumbnail?size=512`, label: hit.path,
  });
}

// -- searching ---------------------------------------------------------------------------

async function search() {
  const q = state.query;
  if (!q) return;
  const k = Number($("k").value);
  const opts = { localize: $("localize").checked };
  const [url, init] = SEARCHERS[q.kind](q, k, state.box, opts);
  const ticket = ++state.busy;
  document.body.setAttribute("aria-busy", "true");
  setStatus(state.box ? "Searching for the selected region…"
    : q.kind === "text" ? `Searching for “${q.text}”…` : "Searching…");
  try {
    const data = await fetchJSON(url, init);
    if (ticket !== state.busy) return; // a newer search is under way
    render(data.hits);
    const where = state.box ? " for the selected region"
      : q.kind === "text" ? ` for “${q.text}”` : "";
    setStatus(`${data.hits.length} results${where} in ${Math.round(data.ms)} ms`);
  } catch (err) {
    if (ticket === state.busy) setStatus(`Search failed: ${err.message}`, true);
  } finally {
    if (ticket === state.busy) document.body.removeAttribute("aria-busy");
  }
}

function render(hits) {
  const list = $("results");
  const tpl = $("card-template");
  list.replaceChildren();
  for (const hit of hits) {
    const card = tpl.content.firstElementChild.cloneNode(true);
    card.dataset.id = hit.id;
    const img = card.querySelector("img");
    img.src = hit.thumbnail;
    img.alt = hit.path.split(/[\\/]/).pop();
    const more = card.querySelector(".more");
    more.setAttribute("aria-label", `More like this: ${img.alt} (score ${hit.score.toFixed(3)})`);
    more.addEventListener("click", () => queryFromHit(hit));
    card.querySelector(".score").textContent = hit.score.toFixed(3);
    const open = card.querySelector(".open");
    open.href = hit.file;
    open.setAttribute("aria-label", `Open ${img.alt} full size`);
    const path = card.querySelector(".path");
    path.textContent = hit.path;
    path.title = hit.path;
    const tags = (hit.tags || []).slice(0, 2);
    card.querySelector(".tags").textContent = tags
      .map((t) => `${t.name.split(",")[0]} ${Math.round(100 * t.prob)}%`).join(" · ");
    if (hit.box && hit.width && hit.height) {
      placeBox(card.querySelector(".hit-box"), hit.box, hit.width, hit.height);
    }
    list.append(card);
  }
}

function placeBox(el, [x0, y0, x1, y1], width, height) {
  el.style.left = `${(100 * x0) / width}%`;
  el.style.top = `${(100 * y0) / height}%`;
  el.style.width = `${(100 * (x1 - x0)) / width}%`;
  el.style.height = `${(100 * (y1 - y0)) / height}%`;
  el.hidden = false;
}

// -- drawing a box on the query ----------------------------------------------------------

function setupBoxDrawing() {
  const stage = $("stage");
  const sel = $("selection");
  let start = null;
  const frac = (ev) => {
    const r = $("query-img").getBoundingClientRect();
    return [
      Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width)),
      Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height)),
    ];
  };
  const rect = (a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]),
    Math.max(a[0], b[0]), Math.max(a[1], b[1])];
  const show = ([x0, y0, x1, y1]) => placeBox(sel, [x0, y0, x1, y1], 1, 1);
  stage.addEventListener("pointerdown", (ev) => {
    if (!state.query || ev.button !== 0) return;
    ev.preventDefault();
    stage.setPointerCapture(ev.pointerId);
    start = frac(ev);
    show(rect(start, start));
  });
  stage.addEventListener("pointermove", (ev) => { if (start) show(rect(start, frac(ev))); });
  const finish = (ev) => {
    if (!start) return;
    const r = rect(start, frac(ev));
    start = null;
    if (r[2] - r[0] < 0.03 || r[3] - r[1] < 0.03) { // a click, not a box
      sel.hidden = !state.box;
      if (state.box) show(state.fracBox);
      return;
    }
    const q = state.query;
    const w = q.width || $("query-img").naturalWidth;
    const h = q.height || $("query-img").naturalHeight;
    state.fracBox = r;
    state.box = [r[0] * w, r[1] * h, r[2] * w, r[3] * h].map((v) => Math.round(v));
    $("clear-box").hidden = false;
    fillRegionFields(state.box);
    search();
  };
  stage.addEventListener("pointerup", finish);
  stage.addEventListener("pointercancel", () => { start = null; });
  $("clear-box").addEventListener("click", () => {
    resetRegionFields();
    clearBox();
  });
}

function clearBox() {
  state.box = null;
  $("selection").hidden = true;
  $("clear-box").hidden = true;
  search();
}

// -- typing a box (the keyboard way): the Region fields ----------------------------------

const REGION = ["x0", "y0", "x1", "y1"];
const regionInput = (name) => $(`region-${name}`);

// The query picture's size in its own pixels (the box's coordinates), or null before it loads.
function queryDims() {
  const q = state.query;
  const img = $("query-img");
  if (!q || !q.url) return null;
  const w = q.width || (state.imgLoaded ? img.naturalWidth : 0);
  const h = q.height || (state.imgLoaded ? img.naturalHeight : 0);
  return w && h ? [w, h] : null;
}

function regionMessage(text, isError = false) {
  const el = $("region-msg");
  el.textContent = text;
  el.classList.toggle("error", isError);
}

function fillRegionFields(box) {
  REGION.forEach((name, i) => {
    regionInput(name).value = String(box[i]);
    regionInput(name).removeAttribute("aria-invalid");
  });
  regionMessage("");
}

function resetRegionFields() {
  for (const name of REGION) {
    regionInput(name).value = "";
    regionInput(name).removeAttribute("aria-invalid");
  }
  regionMessage("");
}

function showRegionSize() {
  const dims = queryDims();
  $("region-size").textContent = dims ? ` (${dims[0]} × ${dims[1]})` : "";
  for (const name of REGION) {
    const max = dims ? dims[name.startsWith("x") ? 0 : 1] : null;
    if (max) regionInput(name).max = String(max);
    else regionInput(name).removeAttribute("max");
  }
}

// Reads the four fields: {box} clamped to the picture (and {clamped: true} if that changed a
// value), or {error, bad: [field names]}. Sends nothing.
function readRegionFields() {
  const dims = queryDims();
  if (!dims) return { error: "Wait for the picture to load.", bad: [] };
  const [w, h] = dims;
  const raw = REGION.map((name) => regionInput(name).value.trim());
  const empty = REGION.filter((_, i) => raw[i] === "" || !Number.isFinite(Number(raw[i])));
  if (empty.length) {
    return { error: `Type a number in ${empty.join(", ")} (pixels).`, bad: empty };
  }
  const limits = [w, h, w, h];
  const box = raw.map((v, i) => Math.round(Math.min(limits[i], Math.max(0, Number(v)))));
  const clamped = box.some((v, i) => v !== Number(raw[i]));
  if (box[2] - box[0] < 8) {
    return {
      error: `x1 must be at least 8 pixels right of x0 (the picture is ${w} pixels wide).`,
      bad: ["x0", "x1"],
    };
  }
  if (box[3] - box[1] < 8) {
    return {
      error: `y1 must be at least 8 pixels below y0 (the picture is ${h} pixels high).`,
      bad: ["y0", "y1"],
    };
  }
  return { box, clamped };
}

function searchRegionFields() {
  if (!state.query || !state.query.url) return;
  const read = readRegionFields();
  for (const name of REGION) {
    if (read.bad && read.bad.includes(name)) regionInput(name).setAttribute("aria-invalid", "true");
    else regionInput(name).removeAttribute("aria-invalid");
  }
  if (read.error) {
    regionMessage(read.error, true);
    return;
  }
  const [w, h] = queryDims();
  const box = read.box;
  REGION.forEach((name, i) => { regionInput(name).value = String(box[i]); });
  regionMessage(read.clamped ? `Kept inside the ${w} × ${h} picture.` : "");
  state.box = box;
  state.fracBox = [box[0] / w, box[1] / h, box[2] / w, box[3] / h];
  placeBox($("selection"), state.fracBox, 1, 1);
  $("clear-box").hidden = false;
  search();
}

function setupRegionFields() {
  $("query-img").addEventListener("load", () => { state.imgLoaded = true; showRegionSize(); });
  // Enter in any field submits the form (implicit submission); novalidate: our message, not
  // the browser's bubble.
  $("region-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    searchRegionFields();
  });
  $("region-clear").addEventListener("click", () => {
    resetRegionFields();
    if (state.box) clearBox();
    regionInput("x0").focus();
  });
}

// -- getting a picture in ------------------------------------------------------------------

function setupInputs() {
  const drop = $("drop");
  const file = $("file");
  file.addEventListener("change", () => { queryFromFile(file.files[0]); file.value = ""; });
  drop.addEventListener("click", (ev) => {
    if (!ev.target.closest("label, input")) file.click();
  });
  drop.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); file.click(); }
  });
  // The whole page accepts a dropped picture.
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  }
  document.addEventListener("dragleave", (ev) => {
    if (!ev.relatedTarget) drop.classList.remove("over");
  });
  document.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const f = [...(ev.dataTransfer?.files || [])].find((x) => x.type.startsWith("image/"));
    if (f) queryFromFile(f);
    else setStatus("Drop an image file", true);
  });
  document.addEventListener("paste", (ev) => {
    const item = [...(ev.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (item) { ev.preventDefault(); queryFromFile(item.getAsFile()); }
  });
  $("k").addEventListener("change", () => search());
  $("localize").addEventListener("change", () => search());
  const words = $("text-query");
  words.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); queryFromText(words.value); }
  });
  $("text-search").addEventListener("click", () => queryFromText(words.value));
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search(); });
}

async function showIndexInfo() {
  try {
    const h = await fetchJSON("/api/health");
    $("index-info").textContent = `${h.images} images indexed`;
  } catch (err) {
    setStatus(`Server not reachable: ${err.message}`, true);
  }
}

setupInputs();
setupBoxDrawing();
setupRegionFields();
showIndexInfo();
window.lookalike = { state, SEARCHERS, setQuery, search, queryFromText };
