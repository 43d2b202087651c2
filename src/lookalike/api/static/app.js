// lookalike web page: plain JS, no build step, no network beyond this server.
"use strict";

const $ = (id) => document.getElementById(id);
let apiKey = localStorage.getItem("lookalike-api-key") || "";
let droppedFile = null;

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

function lines(id) {
  return $(id).value.split("\n").map((s) => s.trim()).filter(Boolean);
}

function filters() {
  // One value per line: a source's name (or a category) may hold commas ("acme, inc").
  const body = { k: Number($("k").value) };
  for (const name of ["sources", "categories", "tags"]) {
    const values = lines(name);
    if (values.length) body[name] = values;
  }
  if ($("since").value) body.since = $("since").value;
  if ($("until").value) body.until = $("until").value;
  return body;
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

// The current query, so that "More results" asks for its next page (the API's offset).
let current = null;

async function search(label, build, offset = 0) {
  current = { label, build, offset };
  setStatus(`Searching ${label}…`);
  $("more").hidden = true;
  try {
    const response = await call("/search", build(offset));
    const payload = await readJson(response);
    if (!response.ok) {
      setStatus(describeError(payload.detail), true);
      $("grid").replaceChildren();
      return;
    }
    render(payload, label, offset);
    $("more").hidden = payload.hits.length < filters().k;
  } catch (error) {
    setStatus(`The server did not answer: ${error}`, true);
  }
}

function day(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 10);
}

async function thumbnail(img, id) {
  const url = `/items/${id}/image?size=360`;
  if (!apiKey) {
    img.src = url;
    return;
  }
  const response = await call(url);
  if (response.ok) img.src = URL.createObjectURL(await response.blob());
}

function render(payload, label, offset = 0) {
  const hits = payload.hits;
  const shown = offset + hits.length;
  setStatus(`${shown} results for ${label} (the last ${hits.length} in ${payload.took_ms.toFixed(1)} ms)`);
  const cards = hits.map((hit, index) => {
    const card = document.createElement("article");
    card.className = "card";
    card.title = `More like ${hit.name || hit.item_id}`;
    card.dataset.id = hit.id;
    const thumb = document.createElement("div");
    thumb.className = "thumb";
    const img = document.createElement("img");
    img.alt = hit.name || hit.item_id;
    img.loading = "lazy";
    thumbnail(img, hit.id);
    thumb.append(img);
    if (hit.box) {
      card.classList.add("crop");
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
    name.textContent = hit.name || hit.item_id;
    const sub = document.createElement("div");
    sub.className = "sub";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = hit.score.toFixed(3);
    const rank = document.createElement("span");
    rank.className = "rank";
    const where = [hit.category, hit.source].filter(Boolean).join(" · ");
    rank.textContent = `${hit.box ? `${hit.label || "object"} · ` : ""}${where} · ${day(hit.created_at)}`;
    if (hit.tags && hit.tags.length) name.title = hit.tags.join(", ");
    rank.title = `rank ${offset + index + 1}, id ${hit.id}`;
    sub.append(score, rank);
    meta.append(name, sub);
    card.append(thumb, meta);
    card.addEventListener("click", () => {
      resetDrop();
      search(`more like “${hit.name || hit.item_id}”`, (page) => jsonRequest({ id: hit.id }, true, page));
    });
    return card;
  });
  if (offset > 0) $("grid").append(...cards);
  else $("grid").replaceChildren(...cards);
}

// A detected crop's box, drawn over its picture: the thumbnail is contained in a square, so the
// picture's drawn size and offset come from its aspect ratio.
function placeBox(thumb, img, box, hit) {
  if (!img.naturalWidth || !hit.width || !hit.height) return;
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
}

function jsonRequest(query, idAsNumber = false, offset = 0) {
  let body = JSON.stringify({ ...query, ...filters(), offset });
  // Send the id back as the exact integer it was, not as a rounded JavaScript number.
  if (idAsNumber) body = body.replace(/"id":"(\d+)"/, '"id":$1');
  return { method: "POST", headers: { "Content-Type": "application/json" }, body };
}

function imageRequest(file, offset = 0) {
  const form = new FormData();
  form.append("image", file);
  const f = filters();
  form.append("k", f.k);
  form.append("offset", offset);
  for (const name of ["sources", "categories", "tags"]) (f[name] || []).forEach((s) => form.append(name, s));
  if (f.since) form.append("since", f.since);
  if (f.until) form.append("until", f.until);
  if ($("detect").checked) form.append("detect", "true");
  return { method: "POST", body: form };
}

function resetDrop() {
  droppedFile = null;
  const text = document.createElement("span");
  text.textContent = "Drop an image here, or click to choose one";
  $("drop").replaceChildren($("file"), text);
}

function useFile(file) {
  if (!file) return;
  droppedFile = file;
  const preview = document.createElement("img");
  preview.src = URL.createObjectURL(file);
  const text = document.createElement("span");
  text.textContent = `${file.name}: searching by this image`;
  $("drop").replaceChildren($("file"), preview, text);
  $("text").value = "";
  search(`your image “${file.name}”`, (page) => imageRequest(file, page));
}

$("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (text) {
    resetDrop();
    search(`“${text}”`, (page) => jsonRequest({ text }, false, page));
  } else if (droppedFile) {
    const file = droppedFile;
    search(`your image “${file.name}”`, (page) => imageRequest(file, page));
  } else {
    setStatus("Type something to look for, or drop an image.", true);
  }
});

$("file").addEventListener("change", (event) => useFile(event.target.files[0]));
const drop = $("drop");
["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
  event.preventDefault();
  drop.classList.add("over");
}));
["dragleave", "drop"].forEach((name) => drop.addEventListener(name, (event) => {
  event.preventDefault();
  drop.classList.remove("over");
}));
drop.addEventListener("drop", (event) => useFile(event.dataTransfer.files[0]));

$("more").addEventListener("click", () => {
  if (current) search(current.label, current.build, current.offset + filters().k);
});
