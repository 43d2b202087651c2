// A search as the address holds it: a link reproduces it, reload and Back/Forward restore it.
// An uploaded image cannot live in an address: the address of an image search holds its filters and
// "upload=1"; the file itself is kept by this tab's history only (see app.js).
"use strict";

const LIST_PARAMS = ["sources", "categories", "tags", "unlike"];
const PAGE_SIZES = [12, 24, 48, 96];

function emptyState() {
  return {
    q: "", id: "", item: "", upload: false, unlike: [],
    sources: [], categories: [], tags: [], since: "", until: "",
    k: 24, page: 1, hybrid: null, perItem: null, detect: false, show: "",
  };
}

function flag(value) {
  if (value === null) return null;
  return !["0", "false", "off", "no"].includes(value.toLowerCase());
}

// The state an address holds; anything malformed falls back to its default, never to an error.
function stateFromUrl(search) {
  const params = new URLSearchParams(search);
  const state = emptyState();
  state.q = (params.get("q") || "").trim();
  const id = params.get("id") || "";
  state.id = /^[0-9]{1,19}$/.test(id) ? id : "";
  state.item = (params.get("item") || "").trim();
  state.upload = params.get("upload") === "1";
  for (const name of LIST_PARAMS) {
    state[name] = [...new Set(params.getAll(name).map((v) => v.trim()).filter(Boolean))];
  }
  const date = /^\d{4}-\d{2}-\d{2}$/;
  state.since = date.test(params.get("since") || "") ? params.get("since") : "";
  state.until = date.test(params.get("until") || "") ? params.get("until") : "";
  const k = Number(params.get("k"));
  if (PAGE_SIZES.includes(k)) state.k = k;
  const page = Number(params.get("page"));
  if (Number.isInteger(page) && page >= 1 && page <= 100) state.page = page;
  state.hybrid = flag(params.get("hybrid"));
  state.perItem = flag(params.get("per_item"));
  state.detect = flag(params.get("detect")) === true;
  const show = params.get("show") || "";
  state.show = /^[0-9]{1,19}$/.test(show) ? show : "";
  return state;
}

// The address of a state: only what differs from the defaults, so that links stay short.
function urlFromState(state) {
  const params = new URLSearchParams();
  if (state.q) params.set("q", state.q);
  if (state.id) params.set("id", state.id);
  if (state.item) params.set("item", state.item);
  if (state.upload) params.set("upload", "1");
  for (const name of LIST_PARAMS) for (const value of state[name]) params.append(name, value);
  if (state.since) params.set("since", state.since);
  if (state.until) params.set("until", state.until);
  if (state.k !== 24) params.set("k", String(state.k));
  if (state.page > 1) params.set("page", String(state.page));
  if (state.hybrid !== null) params.set("hybrid", state.hybrid ? "1" : "0");
  if (state.perItem !== null) params.set("per_item", state.perItem ? "1" : "0");
  if (state.detect) params.set("detect", "1");
  if (state.show) params.set("show", state.show);
  const query = params.toString();
  return query ? `/?${query}` : "/";
}

// Whether the state asks for a search (an image search needs its file, which only history holds).
function hasQuery(state) {
  return Boolean(state.q || state.id || state.item || state.upload);
}
