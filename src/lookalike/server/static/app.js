// lookalike web page. Browse the collection (paged, by folder); search by a dropped, pasted or
// chosen picture, by an indexed picture ("more like this"), by a region of the query picture
// (drawn, or typed under "Refine"), or by words. Every search and browse is an address
// (?q=, ?id=, ?box=, ?folder=...), so Back, bookmarks and shared links work. No dependencies, no
// network access beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 60; // browse page size
// A card shows at most two tags, each with a probability of at least TAG_MIN and at least half
// the first one's. At the index's input size (480 px) the CNN's probabilities are flat: a right
// top class often has only 5-30 % (a cup of espresso: 8 %), while a photo whose top class is
// under 5 % has no ImageNet class that fits (an astronaut: "neck brace 1 %"). See README.
const TAG_MIN = 0.05;
const NARROW = window.matchMedia("(max-width: 760px)");

const state = {
  query: null, // {kind: "upload"|"id"|"text", ...}
  box: null,
  fracBox: null,
  busy: 0,
  imgLoaded: false,
  mode: "browse", // "browse" | "search" | "duplicates"
  items: [], // what the grid shows, in order (hits or browse images)
  scoreKind: null, // "cosine" | "text" | null (browse)
  browse: { folder: "", offset: 0, total: 0 },
  status: null, // last GET /api/status
  uploads: new Map(), // ?upload=N -> {file, name}: an upload can be searched again on Back
  uploadSeq: 0,
  focusIndex: 0,
  viewerIndex: -1,
};

// Ways to search. Each takes the query and returns fetch() arguments; a new kind of search
// adds an entry here and a control that calls setQuery().
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

// Other views (e.g. duplicates, drawn by static/duplicates.js) register here:
// views.duplicates(params: URLSearchParams, section: HTMLElement).
const views = {};

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

// -- paths, names, scores ------------------------------------------------------------------

function fileName(path) { return path.split(/[\\/]/).pop(); }

// The path relative to the indexed folder holding it (as /api/images' `rel`).
function relPath(path) {
  const st = state.status;
  if (!st) return path;
  const under = (root) => path.startsWith(root.replace(/[\\/]+$/, "") + "/");
  if (st.uploads && under(st.uploads)) return "uploads/" + path.slice(st.uploads.length + 1);
  const roots = st.roots.filter(under).sort((a, b) => b.length - a.length);
  if (!roots.length) return path;
  const rel = path.slice(roots[0].replace(/[\\/]+$/, "").length + 1);
  return st.roots.length > 1 ? `${fileName(roots[0])}/${rel}` : rel;
}

function folderOf(rel) {
  const i = rel.lastIndexOf("/");
  return i < 0 ? "" : rel.slice(0, i);
}

// The match percentage. Image searches: 0 % is what two unrelated photos of this collection
// score (the server's score_baseline, a low percentile of its pairs), 100 % an identical picture:
//   match = (score - baseline) / (1 - baseline), clamped to 0..100 %.
// Text searches: the score is the probability the CNN gave the matched classes: shown as is.
function matchPercent(score, kind) {
  if (kind === "text") return Math.round(100 * Math.max(0, Math.min(1, score)));
  const b = state.status && state.status.score_baseline != null ? state.status.score_baseline : 0;
  const m = (score - b) / (1 - b);
  return Math.round(100 * Math.max(0, Math.min(1, m)));
}

function matchText(item) {
  if (item.score == null) return "";
  const pct = matchPercent(item.score, state.scoreKind);
  return state.scoreKind === "text" ? `${pct}% sure` : `${pct}% match`;
}

function tagNames(tags, limit = 2) {
  const top = tags && tags.length ? tags[0].prob : 0;
  return (tags || []).filter((t) => t.prob >= TAG_MIN && t.prob >= top / 2).slice(0, limit)
    .map((t) => t.name.split(",")[0]);
}

function formatBytes(n) {
  if (!n) return "";
  const units = ["bytes", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function ago(t) {
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 90) return "just now";
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

// -- the address: every search and browse is a URL ------------------------------------------

// What the page shows, as URL parameters.
function currentParams() {
  const p = new URLSearchParams();
  if (state.mode === "duplicates") {
    p.set("view", "duplicates");
    if (state.dupesId) p.set("id", String(state.dupesId));
    return p;
  }
  const q = state.query;
  if (state.mode === "search" && q) {
    if (q.kind === "text") p.set("q", q.text);
    if (q.kind === "id") p.set("id", String(q.id));
    if (q.kind === "upload") p.set("upload", String(q.seq));
    if (state.box) p.set("box", state.box.join(","));
    const k = $("k").value;
    if (k !== "20") p.set("k", k);
    if ($("localize").checked && q.kind !== "text") p.set("localize", "1");
  } else if (state.browse.folder) {
    p.set("folder", state.browse.folder);
  }
  return p;
}

function remember(replace = false) {
  const search = currentParams().toString();
  const url = search ? `?${search}` : location.pathname;
  if (url === location.search || (!search && !location.search)) {
    history.replaceState({ lookalike: true }, "", url);
  } else if (replace) {
    history.replaceState({ lookalike: true }, "", url);
  } else {
    history.pushState({ lookalike: true }, "", url);
  }
}

// Show what the address says (on load, and on Back/Forward).
async function applyUrl() {
  const p = new URLSearchParams(location.search);
  closeViewer(false);
  if (p.get("k") && [...$("k").options].some((o) => o.value === p.get("k"))) {
    $("k").value = p.get("k");
  } else {
    $("k").value = "20";
  }
  $("localize").checked = p.get("localize") === "1";
  const box = parseBox(p.get("box"));
  if (p.get("view") === "duplicates") return showDuplicates(p);
  if (p.has("q")) {
    $("text-query").value = p.get("q");
    return setQuery({ kind: "text", text: p.get("q"), url: null, label: `“${p.get("q")}”` },
      { box: null, push: false });
  }
  if (p.has("id")) {
    const id = Number(p.get("id"));
    let record = null;
    try {
      record = await fetchJSON(`/api/images/${id}`);
    } catch (err) {
      showMode("search");
      setStatus(`Cannot search from image ${p.get("id")}: ${err.message}`, true);
      return;
    }
    return setQuery(queryOfRecord(record), { box, push: false });
  }
  if (p.has("upload")) {
    const saved = state.uploads.get(Number(p.get("upload")));
    if (saved) {
      return setQuery(uploadQuery(saved.file, saved.name, saved.seq), { box, push: false });
    }
    showMode("search");
    setStatus("That search used a picture from your computer: drop or choose it again.", true);
    return;
  }
  return browse(p.get("folder") || "", { push: false });
}

function parseBox(text) {
  if (!text) return null;
  const v = text.split(",").map(Number);
  return v.length === 4 && v.every(Number.isFinite) ? v : null;
}

// -- modes ---------------------------------------------------------------------------------

function showMode(mode) {
  state.mode = mode;
  document.body.dataset.mode = mode;
  $("duplicates-view").hidden = mode !== "duplicates";
  $("results-section").hidden = mode === "duplicates";
  $("query-panel").hidden = mode === "duplicates";
  $("folder-filter").hidden = mode !== "browse";
  $("load-more").hidden = true;
  $("explain").hidden = true;
  for (const [id, m] of [["nav-browse", "browse"], ["nav-duplicates", "duplicates"]]) {
    if (mode === m) $(id).setAttribute("aria-current", "page");
    else $(id).removeAttribute("aria-current");
  }
  if (mode !== "search") {
    state.query = null;
    $("query-figure").hidden = true;
    collapseQuery(false);
  }
}

// On a phone, after a search the query panel shrinks to one line (a thumbnail, the words, and
// "Refine" / "New search") so the results are in view.
function collapseQuery(collapsed) {
  $("query-panel").classList.toggle("collapsed", collapsed);
  $("query-summary").hidden = !collapsed;
  $("query-full").hidden = collapsed;
}

function afterSearchLayout() {
  if (!NARROW.matches || state.mode !== "search") return;
  collapseQuery(true);
  const q = state.query;
  $("summary-label").textContent = q.kind === "text" ? q.label
    : state.box ? `${q.label} (region)` : q.label;
  $("summary-thumb").hidden = !q.url;
  if (q.url) $("summary-thumb").src = q.url;
  $("summary-refine").hidden = !q.url;
  $("query-panel").scrollIntoView({ block: "start" });
}

// -- browsing ------------------------------------------------------------------------------

async function browse(folder, { push = true, more = false } = {}) {
  if (!more) {
    showMode("browse");
    state.browse = { folder, offset: 0, total: 0 };
    state.items = [];
    state.scoreKind = null;
    $("folder").value = folder;
    if (push) remember();
  }
  const b = state.browse;
  const params = new URLSearchParams({ offset: String(b.offset), limit: String(PAGE) });
  if (folder) params.set("folder", folder);
  const ticket = ++state.busy;
  setStatus(more ? "Loading more…" : "Loading photos…");
  try {
    const data = await fetchJSON(`/api/images?${params}`);
    if (ticket !== state.busy) return;
    b.total = data.total;
    b.offset += data.images.length;
    state.items = more ? state.items.concat(data.images) : data.images;
    render(state.items, { append: more ? data.images.length : 0 });
    const where = folder ? ` in ${labelOfFolder(folder)}` : "";
    if (!b.total) {
      setStatus(folder ? `No photos${where}.`
        : "No photos indexed yet: run lookalike index FOLDER, then reload.");
    } else {
      setStatus(`Showing ${state.items.length} of ${b.total} photos${where}`);
    }
    $("load-more").hidden = b.offset >= b.total;
  } catch (err) {
    if (ticket === state.busy) setStatus(`Cannot list the photos: ${err.message}`, true);
  }
}

function labelOfFolder(path) {
  const opt = [...$("folder").options].find((o) => o.value === path);
  return opt ? opt.dataset.rel : relPath(path + "/x").replace(/\/x$/, "");
}

async function loadFolders() {
  try {
    const data = await fetchJSON("/api/folders");
    const select = $("folder");
    const keep = state.browse.folder;
    select.replaceChildren(new Option("All folders", ""));
    for (const f of data.folders) {
      if (f.rel === ".") continue;
      const depth = f.rel.split("/").length - 1;
      const opt = new Option(`${"\u2003".repeat(depth)}${fileName(f.rel)} (${f.count})`, f.path);
      opt.dataset.rel = f.rel;
      select.append(opt);
    }
    select.value = keep;
  } catch (_) { /* the filter stays at "All folders" */ }
}

// -- the query -----------------------------------------------------------------------------

function setQuery(query, { box = null, push = true } = {}) {
  // (An upload's object URL is kept: Back may search with that picture again.)
  showMode("search");
  state.query = query;
  state.box = null;
  state.fracBox = null;
  $("selection").hidden = true;
  $("clear-box").hidden = true;
  resetRegionFields();
  state.imgLoaded = false;
  // A text query has no picture to show (nor a region to draw).
  $("query-figure").hidden = !query.url;
  if (query.url) $("query-img").src = query.url;
  showRegionSize();
  $("query-caption").textContent = query.label;
  if (query.kind !== "text") $("text-query").value = "";
  if (box) applyBox(box);
  if (push) remember();
  return search();
}

function uploadQuery(file, name, seq) {
  let saved = state.uploads.get(seq);
  if (!saved) {
    saved = { file, name, seq, url: URL.createObjectURL(file) };
    state.uploads.set(seq, saved);
  }
  // width/height 0: the box is computed in the picture's natural pixels, as the server
  // decodes it (EXIF orientation applied by both).
  return { kind: "upload", file, name, seq, url: saved.url, label: name, width: 0, height: 0 };
}

function queryFromFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    setStatus(`${file.name || "That file"} is not an image`, true);
    return;
  }
  const seq = ++state.uploadSeq;
  return setQuery(uploadQuery(file, file.name || "pasted-image", seq));
}

function queryFromText(text) {
  text = text.trim();
  if (!text) {
    setStatus("Type some words to search for", true);
    return;
  }
  return setQuery({ kind: "text", text, url: null, label: `“${text}”` });
}

function queryOfRecord(record) {
  return {
    kind: "id", id: record.id, width: record.width, height: record.height,
    url: `/api/images/${record.id}/thumbnail?size=512`, label: relPath(record.path),
  };
}

function queryFromItem(item) {
  return setQuery(queryOfRecord(item));
}

// -- searching -----------------------------------------------------------------------------

async function search() {
  const q = state.query;
  if (!q) return;
  const k = Number($("k").value);
  const opts = { localize: $("localize").checked };
  const [url, init] = SEARCHERS[q.kind](q, k, state.box, opts);
  const ticket = ++state.busy;
  document.body.setAttribute("aria-busy", "true");
  $("explain").hidden = true;
  setStatus(state.box ? "Searching for the selected region…"
    : q.kind === "text" ? `Searching for “${q.text}”…` : "Searching…");
  try {
    const data = await fetchJSON(url, init);
    if (ticket !== state.busy) return; // a newer search is under way
    state.scoreKind = q.kind === "text" ? "text" : "cosine";
    state.items = data.hits;
    render(data.hits);
    const where = state.box ? " for the selected region"
      : q.kind === "text" ? ` for “${q.text}”` : "";
    if (q.kind === "text") explainText(data);
    if (!data.hits.length && q.kind === "text") {
      setStatus(`No results for “${q.text}”`);
    } else {
      setStatus(`${data.hits.length} results${where} in ${Math.round(data.ms)} ms`);
    }
    afterSearchLayout();
  } catch (err) {
    if (ticket === state.busy) setStatus(`Search failed: ${err.message}`, true);
  } finally {
    if (ticket === state.busy) document.body.removeAttribute("aria-busy");
  }
}

// Which classes the words became, and why nothing was found (never a silent "0 results").
function explainText(data) {
  const el = $("explain");
  const names = (data.matched || []).map((m) => m.name.split(",")[0]);
  el.replaceChildren();
  if (!data.hits.length) {
    el.textContent = data.reason || (names.length
      ? `No picture here was tagged with ${names.join(", ")}.`
      : "No ImageNet class matches these words.");
    el.classList.add("error");
  } else if (names.length) {
    el.classList.remove("error");
    const strong = document.createElement("strong");
    strong.textContent = names.join(", ");
    el.append("Matched classes: ", strong);
  } else {
    return;
  }
  el.hidden = false;
}

// -- the grid ------------------------------------------------------------------------------

function render(items, { append = 0 } = {}) {
  const list = $("results");
  const tpl = $("card-template");
  const start = append ? items.length - append : 0;
  if (!append) {
    list.replaceChildren();
    state.focusIndex = 0;
  }
  for (let i = start; i < items.length; i++) {
    const item = items[i];
    const card = tpl.content.firstElementChild.cloneNode(true);
    card.dataset.id = item.id;
    card.dataset.index = String(i);
    const rel = item.rel || relPath(item.path);
    const name = fileName(rel);
    const img = card.querySelector("img");
    img.src = item.thumbnail;
    img.alt = name;
    const match = matchText(item);
    const open = card.querySelector(".open");
    open.setAttribute("aria-label", match ? `Open ${name}, ${match}` : `Open ${name}`);
    open.addEventListener("click", () => openViewer(i));
    card.querySelector(".match").textContent = match;
    if (item.score != null) card.querySelector(".match").title = `score ${item.score.toFixed(3)}`;
    const similar = card.querySelector(".similar");
    similar.setAttribute("aria-label", `More like ${name}`);
    similar.addEventListener("click", () => queryFromItem(item));
    const nameEl = card.querySelector(".name");
    nameEl.textContent = name;
    nameEl.title = rel;
    const folder = folderOf(rel);
    card.querySelector(".folder").textContent = folder ? `${folder}/` : "";
    card.querySelector(".folder").title = folder;
    card.querySelector(".tags").textContent = tagNames(item.tags).join(" · ");
    if (item.box && item.width && item.height) {
      placeBox(card.querySelector(".hit-box"), item.box, item.width, item.height);
    }
    list.append(card);
  }
  setFocusable(Math.min(state.focusIndex, Math.max(0, items.length - 1)), false);
}

function placeBox(el, [x0, y0, x1, y1], width, height) {
  el.style.left = `${(100 * x0) / width}%`;
  el.style.top = `${(100 * y0) / height}%`;
  el.style.width = `${(100 * (x1 - x0)) / width}%`;
  el.style.height = `${(100 * (y1 - y0)) / height}%`;
  el.hidden = false;
}

// The grid is one Tab stop (the current card); arrow keys move, Enter opens the viewer.
function cards() { return [...$("results").querySelectorAll(".card .open")]; }

function setFocusable(i, focus = true) {
  const all = cards();
  if (!all.length) return;
  i = Math.max(0, Math.min(all.length - 1, i));
  all.forEach((b, j) => { b.tabIndex = j === i ? 0 : -1; });
  state.focusIndex = i;
  if (focus) all[i].focus();
}

function columns() {
  const all = cards();
  if (all.length < 2) return 1;
  const top = all[0].getBoundingClientRect().top;
  const n = all.findIndex((b) => b.getBoundingClientRect().top > top + 1);
  return n < 0 ? all.length : n;
}

function setupGridKeys() {
  $("results").addEventListener("keydown", (ev) => {
    const btn = ev.target.closest(".open");
    if (!btn) return;
    const i = Number(btn.closest(".card").dataset.index);
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns(),
      Home: -i, End: cards().length };
    if (ev.key in step) {
      ev.preventDefault();
      setFocusable(i + step[ev.key]);
    }
  });
  $("skip").addEventListener("click", (ev) => {
    ev.preventDefault();
    if (cards().length) setFocusable(state.focusIndex);
    else $("results").focus();
  });
}

// -- the viewer ----------------------------------------------------------------------------

async function openViewer(i) {
  const item = state.items[i];
  if (!item) return;
  state.viewerIndex = i;
  const v = $("viewer");
  const rel = item.rel || relPath(item.path);
  $("viewer-img").src = item.file;
  $("viewer-img").alt = fileName(rel);
  $("viewer-name").textContent = fileName(rel);
  $("viewer-file").href = item.file;
  $("viewer-prev").disabled = i === 0;
  $("viewer-next").disabled = i >= state.items.length - 1 && $("load-more").hidden;
  const rows = [
    ["Folder", folderOf(rel) || "(top)"],
    ["Size", item.width && item.height ? `${item.width} × ${item.height}` : ""],
    ["File", formatBytes(item.size)],
    ["Tags", (item.tags || []).slice(0, 5)
      .map((t) => `${t.name.split(",")[0]} ${Math.round(100 * t.prob)}%`).join(", ")],
    ["Match", matchText(item)],
  ];
  fillMeta(rows);
  if (v.hidden) {
    state.viewerReturn = document.activeElement;
    v.hidden = false;
    document.body.classList.add("viewing");
    $("viewer-close").focus();
  }
  if (!item.size) { // search hits do not carry the file size: ask
    try {
      const record = await fetchJSON(`/api/images/${item.id}`);
      if (state.viewerIndex === i) {
        rows[2][1] = formatBytes(record.size);
        rows[1][1] = `${record.width} × ${record.height}`;
        fillMeta(rows);
      }
    } catch (_) { /* the rest is shown */ }
  }
}

function fillMeta(rows) {
  const dl = $("viewer-meta");
  dl.replaceChildren();
  for (const [k, val] of rows) {
    if (!val) continue;
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = val;
    dl.append(dt, dd);
  }
}

function closeViewer(restoreFocus = true) {
  const v = $("viewer");
  if (v.hidden) return;
  v.hidden = true;
  document.body.classList.remove("viewing");
  $("viewer-img").removeAttribute("src");
  const i = state.viewerIndex;
  state.viewerIndex = -1;
  if (restoreFocus && i >= 0 && cards()[i]) setFocusable(i);
  else if (restoreFocus && state.viewerReturn) state.viewerReturn.focus();
}

async function stepViewer(delta) {
  let i = state.viewerIndex + delta;
  if (i >= state.items.length && state.mode === "browse" && !$("load-more").hidden) {
    await browse(state.browse.folder, { more: true });
  }
  if (i < 0 || i >= state.items.length) return;
  setFocusable(i, false);
  openViewer(i);
}

function setupViewer() {
  $("viewer-close").addEventListener("click", () => closeViewer());
  $("viewer-prev").addEventListener("click", () => stepViewer(-1));
  $("viewer-next").addEventListener("click", () => stepViewer(1));
  $("viewer-similar").addEventListener("click", () => {
    const item = state.items[state.viewerIndex];
    closeViewer(false);
    queryFromItem(item);
  });
  $("viewer-dupes").addEventListener("click", () => {
    const item = state.items[state.viewerIndex];
    closeViewer(false);
    history.pushState({ lookalike: true }, "", `?view=duplicates&id=${item.id}`);
    applyUrl();
  });
  $("viewer").addEventListener("click", (ev) => {
    if (ev.target === $("viewer") || ev.target.classList.contains("viewer-image")) closeViewer();
  });
  document.addEventListener("keydown", (ev) => {
    if ($("viewer").hidden) return;
    if (ev.key === "Escape") { ev.preventDefault(); closeViewer(); }
    else if (ev.key === "ArrowRight") { ev.preventDefault(); stepViewer(1); }
    else if (ev.key === "ArrowLeft") { ev.preventDefault(); stepViewer(-1); }
    else if (ev.key === "Tab") { // keep focus inside the dialog
      const f = [...$("viewer").querySelectorAll("button:not([disabled]), a[href]")];
      const at = f.indexOf(document.activeElement);
      if (ev.shiftKey && at <= 0) { ev.preventDefault(); f[f.length - 1].focus(); }
      else if (!ev.shiftKey && at === f.length - 1) { ev.preventDefault(); f[0].focus(); }
    }
  });
}

// -- duplicates (the view itself comes from static/duplicates.js) ---------------------------

function showDuplicates(params) {
  showMode("duplicates");
  state.dupesId = params.get("id") ? Number(params.get("id")) : null;
  const section = $("duplicates-view");
  if (typeof views.duplicates === "function") {
    views.duplicates(params, section);
  } else {
    section.replaceChildren();
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = "The duplicates view is not available on this server yet; "
      + "`lookalike dupes --index INDEX` lists them from the command line.";
    section.append(p);
  }
}

// -- drawing a box on the query ------------------------------------------------------------

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
    remember();
    search();
  };
  stage.addEventListener("pointerup", finish);
  stage.addEventListener("pointercancel", () => { start = null; });
  $("clear-box").addEventListener("click", () => {
    resetRegionFields();
    clearBox();
  });
}

// A box from the address: shown once the picture's size is known.
function applyBox(box) {
  state.box = box;
  fillRegionFields(box);
  $("clear-box").hidden = false;
  $("refine").open = true;
  const place = () => {
    const dims = queryDims();
    if (!dims || state.box !== box) return;
    state.fracBox = [box[0] / dims[0], box[1] / dims[1], box[2] / dims[0], box[3] / dims[1]];
    placeBox($("selection"), state.fracBox, 1, 1);
  };
  if (queryDims()) place();
  else $("query-img").addEventListener("load", place, { once: true });
}

function clearBox() {
  state.box = null;
  state.fracBox = null;
  $("selection").hidden = true;
  $("clear-box").hidden = true;
  remember();
  search();
}

// -- typing a box (the keyboard way): the Region fields under "Refine" ----------------------

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
  remember();
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

// -- the index status panel ----------------------------------------------------------------

async function loadStatus() {
  try {
    state.status = await fetchJSON("/api/status");
  } catch (err) {
    setStatus(`Server not reachable: ${err.message}`, true);
    return null;
  }
  showStatus();
  return state.status;
}

function showStatus() {
  const st = state.status;
  const synced = st.last_sync ? ` · synced ${ago(st.last_sync)}` : "";
  $("index-info").textContent = `${st.count} images indexed${synced}`;
  $("st-count").textContent = String(st.count);
  $("st-roots").textContent = st.roots.length ? st.roots.join(", ") : "none recorded yet";
  $("st-last").textContent = st.last_sync
    ? `${new Date(st.last_sync * 1000).toLocaleString()} (${ago(st.last_sync)})`
    : st.count ? "not recorded (the next lookalike index records it)" : "never";
  $("rescan-readonly").hidden = st.writable;
  $("rescan-form").hidden = !st.writable;
  $("token-label").hidden = !st.token_required;
  const r = st.rescan;
  $("rescan-progress").hidden = !r;
  $("rescan").disabled = Boolean(r && r.running);
  if (r) {
    const bar = $("rescan-bar");
    if (r.running && r.phase === "embedding" && r.total) {
      bar.max = r.total;
      bar.value = r.done;
    } else if (r.running) {
      bar.removeAttribute("value"); // indeterminate
    } else {
      bar.max = 1;
      bar.value = 1;
    }
    $("rescan-text").textContent = rescanText(r);
  }
}

function rescanText(r) {
  if (r.running) {
    return r.phase === "embedding" && r.total
      ? `Rescanning: embedding ${r.done} of ${r.total}…` : `Rescanning: ${r.phase}…`;
  }
  if (r.error) return `Rescan failed: ${r.error}`;
  const d = r.report;
  return `Rescan done: ${d.added} added, ${d.updated} updated, ${d.removed} removed, `
    + `${d.skipped.length} skipped; ${d.count} photos.`;
}

async function startRescan() {
  const headers = {};
  const token = $("token").value || sessionStorage.getItem("lookalike-token") || "";
  if (token) headers.Authorization = `Bearer ${token}`;
  $("rescan-progress").hidden = false;
  try {
    await fetchJSON("/api/rescan", { method: "POST", headers });
    if (token) sessionStorage.setItem("lookalike-token", token);
  } catch (err) {
    $("rescan-text").textContent = `Rescan refused: ${err.message}`;
    return;
  }
  pollRescan();
}

async function pollRescan() {
  const st = await loadStatus();
  if (st && st.rescan && st.rescan.running) {
    setTimeout(pollRescan, 700);
  } else if (st && st.rescan && !st.rescan.error) {
    await loadFolders();
    if (state.mode === "browse") browse(state.browse.folder, { push: false });
  }
}

function setupStatusPanel() {
  $("status-button").addEventListener("click", () => {
    const panel = $("status-panel");
    panel.hidden = !panel.hidden;
    $("status-button").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) loadStatus();
  });
  $("token").value = sessionStorage.getItem("lookalike-token") || "";
  $("rescan-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    startRescan();
  });
}

// -- getting a picture (or words) in -------------------------------------------------------

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
  $("k").addEventListener("change", () => { remember(true); search(); });
  $("localize").addEventListener("change", () => { remember(true); search(); });
  $("text-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    queryFromText($("text-query").value);
  });
  $("folder").addEventListener("change", () => browse($("folder").value));
  $("load-more").addEventListener("click", () => browse(state.browse.folder, { more: true }));
  $("summary-edit").addEventListener("click", () => {
    collapseQuery(false);
    $("text-query").focus();
  });
  $("summary-refine").addEventListener("click", () => {
    collapseQuery(false);
    $("refine").open = true;
    $("query-figure").scrollIntoView({ block: "start" });
    regionInput("x0").focus({ preventScroll: true });
  });
  $("nav-browse").addEventListener("click", (ev) => {
    ev.preventDefault();
    browse("");
  });
  $("nav-duplicates").addEventListener("click", (ev) => {
    ev.preventDefault();
    history.pushState({ lookalike: true }, "", "?view=duplicates");
    applyUrl();
  });
  // "/" focuses the search box (unless typing somewhere already).
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t.closest && t.closest("input, textarea, select, [contenteditable]")) return;
    if (!$("viewer").hidden) return;
    ev.preventDefault();
    if (state.mode === "duplicates") browse("");
    collapseQuery(false);
    $("text-query").focus();
    $("text-query").select();
  });
  window.addEventListener("popstate", () => applyUrl());
  NARROW.addEventListener("change", () => { if (!NARROW.matches) collapseQuery(false); });
}

async function start() {
  setupInputs();
  setupBoxDrawing();
  setupRegionFields();
  setupGridKeys();
  setupViewer();
  setupStatusPanel();
  await loadStatus(); // roots (for relative paths) and the score baseline first
  loadFolders();
  await applyUrl();
  document.body.dataset.ready = "true";
}

start();
window.lookalike = { state, views, SEARCHERS, setQuery, search, queryFromText, browse, applyUrl };
