// lookalike web page: plain JS, no build step, no network beyond this server.
// state.js: the search in the address; pickers.js: the filters fed by /facets; detail.js: a hit's details.
"use strict";

const $ = (id) => document.getElementById(id);
let apiKey = localStorage.getItem("lookalike-api-key") || "";
let droppedFile = null;
// What the server offers (GET /facets): optional search fields, and whether items have names.
let server = { features: [], hasNames: false };
// Uploaded images of this tab's searches, by history entry: an address cannot hold a file.
const uploads = new Map();
let uploadCount = 0;

function headers(extra = {}) {
  return apiKey ? { ...extra, "X-API-Key": apiKey } : extra;
}

async function call(url, options = {}) {
  let response = await fetch(url, { ...options, headers: headers(options.headers || {}) });
  if (response.status === 401) {
    const key = prompt("This server needs an API key (X-API-Key):", "");
    if (key) {
      apiKey = key;
      localStorage.setItem("lookalike-api-key", key);
      response = await fetch(url, { ...options, headers: headers(options.headers || {}) });
    }
  }
  return response;
}

function has(feature) {
  return server.features.includes(feature);
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function describeError(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
  return JSON.stringify(detail);
}

// Ids are 63-bit integers, beyond what a JavaScript number holds exactly: read them as strings.
async function readJson(response) {
  const text = await response.text();
  return JSON.parse(text.replace(/"id":\s*(\d+)/g, '"id":"$1"'));
}

// -- the form and the state ---------------------------------------------------------------------

// The filters and modes the form shows, as a state (the query part is added by the caller).
function formState() {
  const state = emptyState();
  Object.assign(state, pickers.values());
  state.since = $("since").value;
  state.until = $("until").value;
  state.k = Number($("k").value);
  if (has("hybrid")) state.hybrid = $("hybrid").checked;
  if (has("per_item")) state.perItem = $("per-item").checked;
  state.detect = $("detect").checked;
  return state;
}

function showState(state) {
  $("text").value = state.q;
  $("item").value = state.item;
  pickers.set(state);
  $("since").value = state.since;
  $("until").value = state.until;
  $("k").value = String(state.k);
  $("hybrid").checked = state.hybrid ?? server.hasNames;
  $("per-item").checked = state.perItem ?? true;
  $("detect").checked = state.detect;
  showUnlikes(state);
}

// The search the page shows: its state, a label, and the history entry's upload (if any).
let current = null;

function label(state, extra) {
  if (state.q) return `“${state.q}”`;
  if (state.item) return `item “${state.item}”`;
  if (state.id) return `more like “${(extra && extra.name) || `item ${state.id}`}”`;
  const file = extra && uploads.get(extra.upload);
  return file ? `your image “${file.name}”` : "your image";
}

// Runs a search and records it: "push" (a new search: a new history entry), "replace" (the same
// search, e.g. one more page), or "none" (Back/Forward or a reload: the entry exists already).
async function run(state, how, extra = {}) {
  if (how !== "none") {
    const url = urlFromState({ ...state, show: "" });
    if (how === "push") history.pushState(extra, "", url);
    else history.replaceState(extra, "", url);
  }
  current = { state, extra };
  showState(state);
  if (state.upload && !uploads.has(extra.upload)) {
    $("grid").replaceChildren();
    $("more").hidden = true;
    setStatus(
      "An uploaded image cannot be kept in the address: drop it again to search by it. " +
        "To share a search by a picture, open a hit and copy its link (it names the stored item).",
      true,
    );
    return;
  }
  if (state.id && !extra.name) extra.name = await storedName(state.id);  // a link names only the id
  await fetchPage(state, extra, 0, state.page);
  if (state.show) openStored(state.show);
}

// Asks for pages [first, first + pages) of the state's hits and shows them (appended after page 1).
async function fetchPage(state, extra, first, pages) {
  let k = state.k * pages;
  let offset = state.k * first;
  const append = first > 0;
  if (k > 1000) {  // the API's largest k: show only the last page asked for
    offset = state.k * (first + pages - 1);
    k = state.k;
  }
  setStatus(`Searching ${label(state, extra)}…`);
  $("more").hidden = true;
  try {
    const response = await call("/search", request(state, extra, k, offset));
    const payload = await readJson(response);
    if (current.state !== state) return;  // a newer search was started meanwhile
    if (!response.ok) {
      setStatus(describeError(payload.detail), true);
      $("grid").replaceChildren();
      return;
    }
    render(payload, label(state, extra), offset, append);
    $("more").hidden = payload.hits.length < k;
  } catch (error) {
    setStatus(`The server did not answer: ${error}`, true);
  }
}

// The search request of a state: JSON, or multipart form data for an uploaded image.
function request(state, extra, k, offset) {
  const body = { k, offset };
  for (const name of ["sources", "categories", "tags"]) if (state[name].length) body[name] = state[name];
  if (state.since) body.since = state.since;
  if (state.until) body.until = state.until;
  if (has("per_item") && state.perItem !== false) body.per_item = 1;
  if (has("unlike") && state.unlike.length) body.unlike = state.unlike;
  if (state.upload) {
    const form = new FormData();
    form.append("image", uploads.get(extra.upload));
    for (const [name, value] of Object.entries(body)) {
      for (const one of Array.isArray(value) ? value : [value]) form.append(name, String(one));
    }
    if (state.detect) form.append("detect", "true");
    return { method: "POST", body: form };
  }
  if (state.q) {
    body.text = state.q;
    if (has("hybrid") && (state.hybrid ?? server.hasNames)) body.hybrid = true;
  } else if (state.item) {
    body.item_id = state.item;
  } else {
    body.id = state.id;
  }
  // Send the id back as the exact integer it was, not as a rounded JavaScript number.
  const json = JSON.stringify(body).replace(/"id":"(\d+)"/, '"id":$1');
  return { method: "POST", headers: { "Content-Type": "application/json" }, body: json };
}

// -- results --------------------------------------------------------------------------------------

function day(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 10);
}

async function thumbnail(img, id, size = 360) {
  const url = `/items/${id}/image?size=${size}`;
  if (!apiKey) {
    img.src = url;
    return;
  }
  const response = await call(url);
  if (response.ok) img.src = URL.createObjectURL(await response.blob());
}

function render(payload, text, offset, append) {
  const hits = payload.hits;
  const shown = offset + hits.length;
  const range = offset > 0 && !append ? `results ${offset + 1}–${shown}` : `${shown} results`;
  setStatus(`${range} for ${text} (the last ${hits.length} in ${payload.took_ms.toFixed(1)} ms)`);
  const cards = hits.map((hit, index) => card(hit, offset + index + 1));
  if (append) $("grid").append(...cards);
  else $("grid").replaceChildren(...cards);
}

function card(hit, rank) {
  const article = document.createElement("article");
  article.className = "card";
  article.tabIndex = 0;
  article.setAttribute("role", "button");
  article.dataset.id = hit.id;
  const title = hit.name || hit.item_id;
  const where = [hit.category, hit.source].filter(Boolean).join(" · ");
  article.setAttribute(
    "aria-label", `${rank}. ${title}, ${where ? `${where}, ` : ""}${day(hit.created_at)}, score ${hit.score.toFixed(3)}: details`,
  );
  const thumb = document.createElement("div");
  thumb.className = "thumb";
  const img = document.createElement("img");
  img.alt = "";
  img.loading = "lazy";
  thumbnail(img, hit.id);
  thumb.append(img);
  if (hit.box) {
    article.classList.add("crop");
    const box = document.createElement("div");
    box.className = "box";
    box.title = `${hit.label || "object"} ${hit.det_score != null ? hit.det_score.toFixed(2) : ""}`;
    thumb.append(box);
    const place = () => placeBox(thumb, img, box, hit);
    img.addEventListener("load", place);
    new ResizeObserver(place).observe(thumb);
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = title;
  name.title = title;
  const kind = document.createElement("div");
  kind.className = "rank";
  kind.textContent = `${hit.box ? `${hit.label || "object"} · ` : ""}${where}`;
  if (hit.tags && hit.tags.length) kind.title = hit.tags.join(", ");
  const sub = document.createElement("div");
  sub.className = "sub";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  const date = document.createElement("time");
  date.className = "date";
  date.dateTime = day(hit.created_at);
  date.textContent = day(hit.created_at);
  sub.append(score, date);
  meta.append(name, kind, sub);
  article.append(thumb, meta);
  const open = () => detail.open(hit, article, { canUnlike: has("unlike") && !current.state.upload });
  article.addEventListener("click", open);
  article.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      open();
    }
  });
  return article;
}

// A detected crop's box, drawn over its picture (a card's thumbnail, the detail view's image): the
// picture is contained in its frame, so its drawn size and offset come from its aspect ratio.
// Whether the box could be placed (not before the picture has loaded).
function placeBox(thumb, img, box, hit) {
  if (!img.naturalWidth || !hit.width || !hit.height) return false;
  const side = thumb.clientWidth;
  const scale = Math.min(side / hit.width, thumb.clientHeight / hit.height);
  const left = (side - hit.width * scale) / 2;
  const top = (thumb.clientHeight - hit.height * scale) / 2;
  const [x0, y0, x1, y1] = hit.box;
  Object.assign(box.style, {
    left: `${left + x0 * scale}px`,
    top: `${top + y0 * scale}px`,
    width: `${(x1 - x0) * scale}px`,
    height: `${(y1 - y0) * scale}px`,
  });
  box.dataset.placed = "true";
  return true;
}

async function storedName(id) {
  try {
    const response = await call(`/items/${id}`);
    if (response.ok) {
      const item = await readJson(response);
      return item.name || item.item_id;
    }
  } catch {
    // the search itself will say what is wrong
  }
  return "";
}

// A stored item named by a link's "show": its details, from the hits or from GET /items/{id}.
async function openStored(id) {
  const shown = [...document.querySelectorAll(".card")].find((c) => c.dataset.id === id);
  if (shown) {
    shown.click();
    return;
  }
  const response = await call(`/items/${id}`);
  if (response.ok) detail.open(await readJson(response), null, { canUnlike: false });
}

// "Not like this": the lookalikes the current search leaves out, each removable.
function showUnlikes(state) {
  const box = $("unlikes");
  box.hidden = !(has("unlike") && state.unlike.length);
  if (box.hidden) return;
  const intro = document.createElement("span");
  intro.textContent = "Not like:";
  const chips = state.unlike.map((example) => {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.textContent = `${example} ✕`;
    chip.setAttribute("aria-label", `Stop leaving out lookalikes of ${example}`);
    chip.addEventListener("click", () => {
      run({ ...state, unlike: state.unlike.filter((e) => e !== example), page: 1 }, "push", current.extra);
    });
    return chip;
  });
  box.replaceChildren(intro, ...chips);
}

// -- the search's controls ------------------------------------------------------------------------

// Words and an item id are two queries: with both filled, the one typed last is searched.
let typedLast = "text";
$("text").addEventListener("input", () => { typedLast = "text"; });
$("item").addEventListener("input", () => { typedLast = "item"; });

function searchFromForm() {
  const state = formState();
  let text = $("text").value.trim();
  let item = $("item").value.trim();
  if (text && item) {
    if (typedLast === "item") text = "";
    else item = "";
  }
  if (text) {
    resetDrop();
    run({ ...state, q: text }, "push");
  } else if (item) {
    resetDrop();
    run({ ...state, item }, "push");
  } else if (droppedFile) {
    runUpload(droppedFile, state);
  } else {
    setStatus("Type something to look for, give an item id, or drop an image.", true);
  }
}

function runUpload(file, state) {
  uploadCount += 1;
  const key = `${Date.now()}-${uploadCount}`;
  uploads.set(key, file);
  run({ ...state, upload: true }, "push", { upload: key });
}

// A filter or a mode changed: the search on screen follows it (a new history entry).
function refilter() {
  if (!current || !hasQuery(current.state)) return;
  const { q, id, item, upload, unlike } = current.state;
  run({ ...formState(), q, id, item, upload, unlike, page: 1 }, "push", current.extra);
}

function resetDrop() {
  droppedFile = null;
  const text = document.createElement("span");
  text.id = "drop-text";
  text.textContent = "Drop an image here, or click (or press Enter) to choose one";
  $("drop").replaceChildren($("file"), text);
}

function useFile(file) {
  if (!file) return;
  droppedFile = file;
  const preview = document.createElement("img");
  preview.src = URL.createObjectURL(file);
  preview.alt = "";
  const text = document.createElement("span");
  text.id = "drop-text";
  text.textContent = `${file.name}: searching by this image`;
  $("drop").replaceChildren($("file"), preview, text);
  $("text").value = "";
  $("item").value = "";
  runUpload(file, formState());
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  searchFromForm();
});

$("file").addEventListener("change", (event) => useFile(event.target.files[0]));
const drop = $("drop");
drop.addEventListener("click", (event) => {
  if (event.target !== $("file")) $("file").click();
});
drop.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    $("file").click();
  }
});
["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
  event.preventDefault();
  drop.classList.add("over");
}));
["dragleave", "drop"].forEach((name) => drop.addEventListener(name, (event) => {
  event.preventDefault();
  drop.classList.remove("over");
}));
drop.addEventListener("drop", (event) => useFile(event.dataTransfer.files[0]));

for (const id of ["since", "until", "k", "hybrid", "per-item"]) $(id).addEventListener("change", refilter);
pickers.onChange = refilter;

$("more").addEventListener("click", () => {
  if (!current) return;
  const state = { ...current.state, page: current.state.page + 1 };
  current = { state, extra: current.extra };
  history.replaceState(current.extra, "", urlFromState(state));
  fetchPage(state, current.extra, state.page - 1, 1);
});

detail.actions = {
  more: (hit) => {
    resetDrop();
    const state = { ...formState(), id: String(hit.id), unlike: [] };
    run(state, "push", { name: hit.name || hit.item_id });
  },
  unlike: (hit) => {
    const { state, extra } = current;
    const example = `id:${hit.id}`;
    const unlike = state.unlike.includes(example) ? state.unlike : [...state.unlike, example].slice(-20);
    run({ ...state, unlike, page: 1 }, "push", extra);
  },
  // A link to the search on screen with this hit's details open (a link to a search by an uploaded
  // image cannot hold the image: it opens the lookalikes of the hit instead).
  link: (hit) => {
    const base = current && hasQuery(current.state) && !current.state.upload
      ? current.state : { ...emptyState(), id: String(hit.id) };
    return location.origin + urlFromState({ ...base, page: 1, show: String(hit.id) });
  },
};

window.addEventListener("popstate", (event) => {
  detail.opener = null;  // the page changes under it: no card to go back to
  detail.close();
  const state = stateFromUrl(location.search);
  const extra = event.state || {};
  if (hasQuery(state)) {
    run(state, "none", extra);
    return;
  }
  current = null;
  showState(state);
  resetDrop();
  $("grid").replaceChildren();
  $("more").hidden = true;
  setStatus("");
});

async function loadFacets() {
  let fields = FALLBACK_FIELDS;
  try {
    const response = await call("/facets");
    if (response.ok) {
      const payload = await response.json();
      fields = payload.fields;
      server = { features: payload.features || [], hasNames: Boolean(payload.has_names) };
    }
  } catch {
    // an older server, or none: the pickers take typed values only
  }
  pickers.build($("pickers"), fields);
  $("hybrid-control").hidden = !has("hybrid");
  $("per-item-control").hidden = !has("per_item");
}

async function start() {
  detail.init();
  await loadFacets();
  const state = stateFromUrl(location.search);
  if (hasQuery(state)) run(state, "none", history.state || {});
  else showState(state);
  document.body.dataset.ready = "true";
}

start();
