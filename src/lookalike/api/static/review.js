// lookalike review screen: open flags as a paged grid, decided with the keyboard. Plain JS, no build.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 24;
let apiKey = localStorage.getItem("lookalike-api-key") || "";
let flags = [];
let total = 0;
let offset = 0;
let selected = 0;

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

async function picture(img, url) {
  // An <img> sends no X-API-Key: with a key, the picture is fetched with it and shown from a blob.
  if (!apiKey) {
    img.src = url;
    return;
  }
  const response = await call(url);
  if (!response.ok) return;
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(await response.blob());
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function detail(response) {
  try {
    const body = await response.json();
    return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function loadPolicies() {
  const response = await call("/policies");
  if (!response.ok) return;
  for (const policy of await response.json()) {
    const option = document.createElement("option");
    option.value = option.textContent = policy.name;
    $("policy").append(option);
  }
}

function query() {
  const params = new URLSearchParams({ status: $("status-filter").value, limit: PAGE, offset });
  if ($("policy").value) params.set("policy", $("policy").value);
  if ($("since").value) params.set("since", $("since").value);
  if ($("until").value) params.set("until", $("until").value);
  return params;
}

async function load(keepSelection = false) {
  setStatus("Loading flags…");
  const response = await call(`/flags?${query()}`);
  if (!response.ok) {
    setStatus(await detail(response), true);
    return;
  }
  const body = await response.json();
  flags = body.flags;
  total = body.total;
  if (!flags.length && offset > 0 && total > 0) {
    offset = Math.max(0, offset - PAGE);
    return load();
  }
  selected = keepSelection ? Math.min(selected, Math.max(0, flags.length - 1)) : 0;
  render();
  setStatus(total ? `${total} ${$("status-filter").value} flags` : `No ${$("status-filter").value} flags.`);
}

function card(flag, index) {
  const node = document.createElement("article");
  node.className = "card flag" + (index === selected ? " selected" : "");
  node.dataset.flag = flag.id;
  const thumb = document.createElement("div");
  thumb.className = "thumb";
  if (flag.stored) {
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = flag.item_id || "";
    picture(img, `/items/${flag.item}/image?size=256`);
    thumb.append(img);
  } else {
    thumb.textContent = "taken down";
  }
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = `${flag.policy} · ${flag.label}`;
  const sub = document.createElement("div");
  sub.className = "sub";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = flag.score.toFixed(3);
  const when = document.createElement("span");
  when.className = "rank";
  when.textContent = `#${flag.id} · ${flag.flagged_at.slice(0, 10)} · ${flag.item_id || ""}`;
  sub.append(score, when);
  meta.append(name, sub);
  node.append(thumb, meta);
  node.addEventListener("click", () => {
    selected = index;
    render();
    enlarge();
  });
  return node;
}

function render() {
  const grid = $("flags");
  grid.replaceChildren(...flags.map(card));
  const pages = Math.max(1, Math.ceil(total / PAGE));
  $("page").textContent = `page ${Math.floor(offset / PAGE) + 1} of ${pages}`;
  $("prev").disabled = offset === 0;
  $("next").disabled = offset + PAGE >= total;
  const chosen = grid.children[selected];
  if (chosen) chosen.scrollIntoView({ block: "nearest" });
}

function enlarge() {
  const flag = flags[selected];
  if (!flag || !flag.stored) return;
  picture($("large"), `/items/${flag.item}/image`);
  $("viewer-meta").textContent = `#${flag.id} ${flag.policy} · ${flag.label} · ${flag.score.toFixed(3)} · ${flag.uri || ""}`;
  $("viewer").hidden = false;
}

async function decide(decision) {
  const flag = flags[selected];
  if (!flag) return;
  const by = $("by").value.trim();
  if (!by) {
    setStatus("Enter your name as reviewer first.", true);
    $("by").focus();
    return;
  }
  localStorage.setItem("lookalike-reviewer", by);
  const body = { decision, by, note: $("note").value, take_down: decision === "confirm" && $("takedown").checked };
  const response = await call(`/flags/${flag.id}/review`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    setStatus(await detail(response), true);
    return;
  }
  $("viewer").hidden = true;
  $("note").value = "";
  await load(true);
  setStatus(`Flag #${flag.id} ${decision === "confirm" ? "confirmed" : "dismissed"}${body.take_down ? ", item taken down" : ""}.`);
}

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  const columns = Math.max(1, Math.round($("flags").clientWidth / 196));
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns, j: 1, k: -1 };
  if (event.key in moves) {
    selected = Math.max(0, Math.min(flags.length - 1, selected + moves[event.key]));
    render();
    if (!$("viewer").hidden) enlarge();
  } else if (event.key === "Enter" || event.key === " ") {
    enlarge();
  } else if (event.key === "Escape") {
    $("viewer").hidden = true;
  } else if (event.key === "c") {
    decide("confirm");
  } else if (event.key === "d") {
    decide("dismiss");
  } else {
    return;
  }
  event.preventDefault();
});

$("viewer").addEventListener("click", () => ($("viewer").hidden = true));
$("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
$("next").addEventListener("click", () => { offset += PAGE; load(); });
for (const id of ["policy", "status-filter", "since", "until"]) {
  $(id).addEventListener("change", () => { offset = 0; load(); });
}
$("by").value = localStorage.getItem("lookalike-reviewer") || "";
loadPolicies().then(() => load());
