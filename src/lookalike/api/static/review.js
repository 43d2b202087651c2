// lookalike review screen: a team's queue of flags. Each reviewer is handed a flag nobody else holds
// (GET /flags/next), sees the upload beside what it matched, and decides with buttons or keys.
// Plain JS, no build.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 24;
let apiKey = localStorage.getItem("lookalike-api-key") || "";
let flags = [];
let total = 0;
let offset = 0;
let selected = 0;
let current = null; // the flag under review, as GET /flags/{id} shows it
let revealed = false; // the current flag's pictures shown unblurred
let lease = 300;
let showing = Promise.resolve(); // the flag being fetched and claimed; a decision waits for it

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

function post(url, body) {
  return call(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
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

const me = () => $("by").value.trim();
const queueing = () => $("status-filter").value === "open";
const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadConfig() {
  const response = await call("/review/config");
  if (!response.ok) return;
  const config = await response.json();
  lease = config.lease_s;
  const chosen = localStorage.getItem("lookalike-blur");
  $("blur").checked = chosen === null ? config.blur : chosen === "1";
  document.body.classList.toggle("blur", $("blur").checked);
}

async function loadPolicies() {
  const response = await call("/policies");
  if (!response.ok) return;
  for (const policy of await response.json()) {
    const option = document.createElement("option");
    option.value = option.textContent = policy.name;
    $("policy").append(option);
  }
  // Flags raised by a hash bank carry the policy bank:NAME.
  const banks = await call("/banks");
  for (const bank of banks.ok ? await banks.json() : []) {
    const option = document.createElement("option");
    option.value = option.textContent = `bank:${bank.name}`;
    $("policy").append(option);
  }
  const waves = document.createElement("option");
  waves.value = waves.textContent = "waves";
  $("policy").append(waves);
}

function filters() {
  const params = new URLSearchParams();
  if ($("policy").value) params.set("policy", $("policy").value);
  if ($("since").value) params.set("since", $("since").value);
  if ($("until").value) params.set("until", $("until").value);
  return params;
}

async function load({ quiet = false } = {}) {
  if (!quiet) setStatus("Loading flags…");
  const params = filters();
  params.set("status", $("status-filter").value);
  params.set("limit", PAGE);
  params.set("offset", offset);
  const response = await call(`/flags?${params}`);
  if (!response.ok) {
    if (!quiet) setStatus(await detail(response), true);
    return;
  }
  const body = await response.json();
  // A quiet refresh that finds nothing new leaves the grid (and its pictures) as they are.
  const same = quiet && body.total === total && JSON.stringify(body.flags) === JSON.stringify(flags);
  flags = body.flags;
  total = body.total;
  if (same) return;
  if (!flags.length && offset > 0 && total > 0) {
    offset = Math.max(0, offset - PAGE);
    return load({ quiet });
  }
  const held = current ? flags.findIndex((f) => f.id === current.id) : -1;
  selected = held >= 0 ? held : Math.min(selected, Math.max(0, flags.length - 1));
  render();
  const status = $("status-filter").value;
  if (!quiet) setStatus(total ? `${total} ${status} flags` : `No ${status} flags.`);
}

function card(flag, index) {
  const node = element("article", "card flag");
  node.dataset.flag = flag.id;
  if (current && current.id === flag.id) node.classList.add("selected");
  const holder = flag.claim && flag.claim.by !== me() ? flag.claim.by : "";
  if (holder) node.classList.add("held");
  const thumb = element("div", "thumb");
  if (flag.stored) {
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = flag.item_id || "";
    picture(img, `/items/${flag.item}/image?size=256`);
    thumb.append(img);
  } else {
    thumb.textContent = flag.refused ? "refused, never stored" : "no longer stored";
  }
  const meta = element("div", "meta");
  meta.append(element("div", "name", `${flag.policy} · ${flag.label}`));
  const sub = element("div", "sub");
  sub.append(element("span", "score", scoreText(flag)), element("span", "rank", `#${flag.id} · ${flag.flagged_at.slice(0, 10)}`));
  meta.append(sub);
  if (flag.item_id !== null && flag.item_id !== undefined) meta.append(element("div", "who", `${flag.source} · ${flag.item_id}`));
  if (holder) meta.append(element("div", "held-by", `${holder} is reviewing`));
  node.append(thumb, meta);
  // A tap or click selects (and claims) the flag; deciding is the buttons' job, enlarging Enter's.
  node.addEventListener("click", () => select(index, "panel"));
  return node;
}

function render() {
  const grid = $("flags");
  grid.replaceChildren(...flags.map(card));
  const status = $("status-filter").value;
  $("heading").textContent = `${status[0].toUpperCase()}${status.slice(1)} flags`;
  $("count").textContent = total ? `${total}` : "";
  const pages = Math.max(1, Math.ceil(total / PAGE));
  $("page").textContent = `page ${Math.floor(offset / PAGE) + 1} of ${pages}`;
  $("prev").disabled = offset === 0;
  $("next").disabled = offset + PAGE >= total;
}

async function select(index, scroll = "") {
  // scroll: "panel" after a tap (on a phone the panel is above the grid), "card" after a key.
  const flag = flags[index];
  if (!flag) return;
  selected = index;
  // Outlined at once (the key or tap answered), then shown and claimed.
  for (const node of $("flags").children) node.classList.toggle("selected", Number(node.dataset.flag) === flag.id);
  await show(flag.id);
  if (scroll === "panel" && window.innerWidth < 760) $("current").scrollIntoView({ block: "start" });
  const chosen = $("flags").querySelector(".card.selected");
  if (chosen && scroll === "card") chosen.scrollIntoView({ block: "nearest" });
}

function show(id) {
  showing = showing.catch(() => {}).then(() => fetchFlag(id));
  return showing;
}

async function fetchFlag(id) {
  // An open flag is claimed as it is shown, if the reviewer has said who they are; one another
  // reviewer holds is shown with their name, and cannot be decided here.
  let response = null;
  if (queueing() && me()) {
    response = await post(`/flags/${id}/claim`, { by: me(), lease_s: lease });
    if (response.status === 409 || response.status === 400) response = null;
  }
  if (!response) response = await call(`/flags/${id}`);
  if (!response.ok) {
    setStatus(await detail(response), true);
    return;
  }
  setCurrent(await response.json());
}

async function next(after = null) {
  // The next flag nobody else holds; without a name (or off the open queue), the next card.
  if (!queueing() || !me()) {
    if (flags.length) await select(Math.min(after === null ? selected : selected + 1, flags.length - 1));
    else setCurrent(null);
    return;
  }
  const params = filters();
  params.set("by", me());
  params.set("lease_s", lease);
  if (after !== null) params.set("after", after);
  const response = await call(`/flags/next?${params}`);
  if (!response.ok) {
    setStatus(await detail(response), true);
    return;
  }
  const body = await response.json();
  setCurrent(body.flag);
  if (!body.flag) setStatus("No open flag left that nobody else is reviewing.");
}

function setCurrent(flag) {
  if (!flag || !current || current.id !== flag.id) {
    revealed = false;
    $("takedown").checked = false; // a take-down is chosen for one flag, never carried to the next
  }
  current = flag;
  const index = flag ? flags.findIndex((f) => f.id === flag.id) : -1;
  if (index >= 0) selected = index;
  markSelected();
  renderCurrent();
}

function markSelected() {
  // The card of the flag on screen is outlined; the cards themselves (and their pictures) stay.
  for (const node of $("flags").children) node.classList.toggle("selected", Boolean(current) && Number(node.dataset.flag) === current.id);
}

function fact(list, name, value, className = "") {
  if (value === null || value === undefined || value === "") return;
  list.append(element("dt", "", name), element("dd", className, String(value)));
}

const byBank = (flag) => flag.policy.startsWith("bank:");
const day = (iso) => iso && iso.slice(0, 10);

function scoreText(flag) {
  // A bank's match is a PDQ distance in bits (0: the same picture); a policy's a cosine.
  return byBank(flag) ? `${Math.round(flag.score)} bits` : flag.score.toFixed(3);
}

function renderCurrent() {
  const panel = $("current");
  if (!current) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  const flag = current;
  $("current-title").textContent = `#${flag.id} · ${flag.policy} · ${flag.label}`;
  renderClaim();
  const wave = flag.match && flag.match.kind === "wave";
  $("takedown").parentElement.title = wave
    ? "A wave is confirmed as a whole; take its items down one by one"
    : "Confirming deletes the item and erases its bytes; you are asked each time";
  $("upload-gone").hidden = flag.stored;
  $("upload-gone").textContent = flag.refused ? "refused at upload, never stored" : "no longer stored";
  $("upload-img").hidden = !flag.stored;
  $("reveal").hidden = !flag.stored;
  if (flag.stored && $("upload-img").dataset.item !== flag.item) {
    $("upload-img").dataset.item = flag.item;
    $("upload-img").removeAttribute("src");
    $("upload-img").alt = flag.item_id || "";
    picture($("upload-img"), `/items/${flag.item}/image?size=512`);
  }
  const facts = $("upload-meta");
  facts.replaceChildren();
  fact(facts, "Source", flag.source);
  fact(facts, "Item id", flag.item_id);
  fact(facts, "Name", flag.name);
  fact(facts, "Uri", flag.uri);
  fact(facts, "Created", flag.created_at && flag.created_at.slice(0, 10));
  fact(facts, "Flagged", flag.flagged_at.slice(0, 10));
  fact(facts, "Status", flag.status);
  fact(facts, "Refused", flag.refused);
  fact(facts, "PDQ hash", flag.pdq, "hash");
  fact(facts, "SHA-256", flag.sha256, "hash");
  $("score").textContent = scoreText(flag);
  const bank = flag.match && flag.match.kind === "bank" ? flag.match : null;
  $("score-kind").textContent = wave
    ? "lowest cosine to the first"
    : bank
      ? `PDQ distance${bank.max_distance !== null ? ` (the bank matches at most ${bank.max_distance})` : ""}`
      : "cosine";
  renderMatch(flag.match || { kind: "unknown" });
  showRevealed();
}

function renderClaim() {
  // Who holds the flag on screen, and whether this reviewer may decide it.
  const flag = current;
  const mine = flag.claim && flag.claim.by === me();
  const held = flag.claim && !mine;
  const badge = $("current-claim");
  badge.className = "claim" + (held ? " theirs" : mine ? " mine" : "");
  badge.textContent = held
    ? `${flag.claim.by} is reviewing this (until ${clock(flag.claim.expires_at)})`
    : mine
      ? `Yours until ${clock(flag.claim.expires_at)}`
      : flag.status !== "open"
        ? `${flag.status}`
        : me() ? "Not claimed" : "Enter your name to claim flags";
  for (const id of ["confirm", "dismiss"]) $(id).disabled = Boolean(held);
  const wave = flag.match && flag.match.kind === "wave";
  $("takedown").disabled = Boolean(held) || !flag.stored || wave;
}

function showRevealed() {
  // The upload and what it matched, blurred or not (the pictures themselves are not fetched again).
  for (const frame of document.querySelectorAll("#current .frame")) frame.classList.toggle("revealed", revealed);
  $("reveal").textContent = revealed ? "Enlarge" : "Reveal";
}

function renderMatch(match) {
  const box = $("match");
  box.replaceChildren();
  const facts = element("dl", "facts");
  if (match.kind === "wave") {
    box.append(element("p", "match-title", `Near-duplicate wave: ${match.sellers} sellers, ${match.items.length} items`));
    fact(facts, "Window", `${match.since.slice(0, 16).replace("T", " ")} – ${match.until.slice(0, 16).replace("T", " ")} UTC`);
    fact(facts, "Threshold", match.threshold);
    box.append(facts);
    const members = element("div", "members");
    for (const member of match.items) {
      const node = element("div", "member frame");
      if (member.stored) {
        const img = document.createElement("img");
        img.loading = "lazy";
        img.alt = member.item_id;
        picture(img, `/items/${member.item}/image?size=128`);
        node.append(img);
      } else {
        node.append(element("span", "gone", "gone"));
      }
      const caption = element("div", "member-meta");
      caption.append(element("div", "who", `${member.source} · ${member.item_id}`), element("div", "rank", member.score.toFixed(3)));
      const wrap = element("div", "member-card");
      wrap.append(node, caption);
      members.append(wrap);
    }
    box.append(members);
    return;
  }
  if (match.kind === "bank") {
    renderBank(box, facts, match);
    return;
  }
  if (match.kind === "label") {
    box.append(element("p", "match-title", `Label “${match.label}” of policy ${match.policy}`));
    if (match.prompts) {
      const prompts = element("ul", "prompts");
      for (const text of match.prompts) prompts.append(element("li", "", text));
      facts.append(element("dt", "", "Prompts"), element("dd", "", ""));
      facts.lastChild.append(prompts);
      if (match.negative_prompts && match.negative_prompts.length) fact(facts, "Not", match.negative_prompts.join(" · "));
      fact(facts, "Threshold", match.threshold);
    } else {
      fact(facts, "Prompts", "the policy was removed since");
    }
    box.append(facts);
    return;
  }
  box.append(element("p", "match-title", `${current.policy} · ${current.label}`));
  for (const [key, value] of Object.entries(match)) if (key !== "kind") fact(facts, key, typeof value === "object" ? JSON.stringify(value) : value);
  box.append(facts);
}

function renderBank(box, facts, match) {
  // A bank keeps hashes, not pictures (a take-down's bytes are erased): what the entry is stands in.
  const entry = match.entry;
  const down = entry && entry.taken_down;
  const kind = match.bank_kind ? ` (${match.bank_kind} · ${match.action}${match.enabled === false ? " · disabled" : ""})` : " (removed since)";
  const lifted = entry && entry.removed ? ` · ${entry.removed.action === "unblock" ? "block lifted" : "removed from the bank"}` : "";
  const title = !down ? `Entry of bank ${match.bank}` : down.at ? `Taken down on ${day(down.at)} by ${down.by}, flag ${down.flag}` : `Taken down with flag ${down.flag}`;
  box.append(element("p", "match-title", title + lifted));
  const frame = element("div", "frame hashes");
  frame.append(element("span", "gone", down ? "taken down: its picture was erased" : "a bank keeps hashes, not pictures"));
  box.append(frame);
  fact(facts, "Bank", `${match.bank}${kind}`);
  fact(facts, "Label", match.label);
  fact(facts, "Distance", `${match.distance} bits${match.distance === 0 ? " (identical hashes)" : ""}${match.max_distance !== null ? ` · bank's max ${match.max_distance}` : ""}`);
  fact(facts, "Why", match.reason);
  if (entry) {
    fact(facts, "Entry", `#${entry.id}`);
    fact(facts, "Labels", entry.labels && entry.labels.join(", "));
    fact(facts, "Note", entry.note);
    fact(facts, "PDQ hash", entry.pdq, "hash");
    fact(facts, "SHA-256", entry.sha256, "hash");
    if (down) {
      fact(facts, "Was", [down.source, down.item_id].filter(Boolean).join(" · "));
      fact(facts, "Uri", down.uri);
    } else {
      fact(facts, "Added", entry.added_at && `${day(entry.added_at)} by ${entry.added_by}`);
    }
    if (entry.paused_at) fact(facts, "Paused", `since ${day(entry.paused_at)} (a flood of matches)`);
    if (entry.removed) {
      const how = entry.removed.action === "unblock" ? "Block lifted" : "Removed";
      fact(facts, how, `${day(entry.removed.at)} by ${entry.removed.by}${entry.removed.note ? `: ${entry.removed.note}` : ""}`);
    } else if (!entry.pdq && !entry.sha256) {
      fact(facts, "Removed", "since, from the bank");
    }
  } else {
    fact(facts, "Entry", "no longer in the bank");
  }
  if (match.other_entries) fact(facts, "Also", `${match.other_entries} other entries of this bank`);
  box.append(facts);
}

function reveal() {
  if (!current) return;
  revealed = !revealed;
  showRevealed();
}

function enlarge() {
  const flag = current;
  if (!flag || !flag.stored) return;
  revealed = true; // enlarging is asking to see it
  showRevealed();
  picture($("large"), `/items/${flag.item}/image`);
  $("viewer-meta").textContent = `#${flag.id} ${flag.policy} · ${flag.label} · ${scoreText(flag)} · ${flag.source || ""} · ${flag.item_id || ""} · ${flag.uri || ""}`;
  $("viewer").hidden = false;
}

async function decide(decision) {
  await showing.catch(() => {}); // a key pressed just after an arrow decides the flag the arrow chose
  const flag = current;
  if (!flag) return;
  const by = me();
  if (!by) {
    setStatus("Enter your name as reviewer first.", true);
    $("by").focus();
    return;
  }
  localStorage.setItem("lookalike-reviewer", by);
  const takeDown = decision === "confirm" && $("takedown").checked && !$("takedown").disabled;
  if (takeDown) {
    const what = `${flag.item_id || flag.item}${flag.source ? ` from ${flag.source}` : ""}`;
    // Asked every time: a take-down deletes the item and erases its bytes.
    if (!confirm(`Take down ${what}?\n\nThe item is deleted from the collection and its kept bytes erased. This cannot be undone.`)) {
      setStatus("Take-down cancelled; nothing was decided.");
      return;
    }
  }
  const body = { decision, by, note: $("note").value, take_down: takeDown };
  const response = await post(`/flags/${flag.id}/review`, body);
  $("takedown").checked = false; // never stays ticked
  if (!response.ok) {
    setStatus(await detail(response), true);
    if (response.status === 409) await show(flag.id); // who holds it now
    return;
  }
  $("viewer").hidden = true;
  $("note").value = "";
  await load({ quiet: true });
  await next();
  setStatus(`Flag #${flag.id} ${decision === "confirm" ? "confirmed" : "dismissed"}${takeDown ? ", item taken down" : ""}.`);
}

async function renew() {
  // Hold the flag on screen while the page is open; a lapsed claim is shown as whoever took it.
  const flag = current;
  if (!flag || !flag.claim || flag.claim.by !== me() || flag.status !== "open" || document.hidden) return;
  const response = await post(`/flags/${flag.id}/claim`, { by: me(), lease_s: lease });
  if (response.ok) {
    const renewed = await response.json();
    if (current && current.id === renewed.id) {
      current.claim = renewed.claim;
      renderClaim();
    }
  } else if (response.status === 409) {
    await show(flag.id);
  }
}

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) {
    if (event.key === "Escape") event.target.blur();
    return;
  }
  if (event.target instanceof HTMLButtonElement && (event.key === "Enter" || event.key === " ")) return;
  const columns = Math.max(1, Math.round($("flags").clientWidth / 196));
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns, j: 1, k: -1 };
  if (event.key in moves) {
    select(Math.max(0, Math.min(flags.length - 1, selected + moves[event.key])), "card").then(() => {
      if (!$("viewer").hidden) enlarge();
    });
  } else if (event.key === "Enter" || event.key === " ") {
    enlarge();
  } else if (event.key === "Escape") {
    $("viewer").hidden = true;
  } else if (event.key === "c") {
    decide("confirm");
  } else if (event.key === "d") {
    decide("dismiss");
  } else if (event.key === "r") {
    reveal();
  } else if (event.key === "n") {
    next(current ? current.id : null);
  } else {
    return;
  }
  event.preventDefault();
});

$("viewer").addEventListener("click", () => ($("viewer").hidden = true));
$("upload-frame").addEventListener("click", () => (revealed ? enlarge() : reveal()));
$("confirm").addEventListener("click", () => decide("confirm"));
$("dismiss").addEventListener("click", () => decide("dismiss"));
$("skip").addEventListener("click", () => next(current ? current.id : null));
$("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
$("next").addEventListener("click", () => { offset += PAGE; load(); });
$("filter").addEventListener("submit", (event) => event.preventDefault());
for (const id of ["policy", "status-filter", "since", "until"]) {
  $(id).addEventListener("change", async () => {
    offset = 0;
    current = null;
    await load();
    await next();
  });
}
$("blur").addEventListener("change", () => {
  localStorage.setItem("lookalike-blur", $("blur").checked ? "1" : "0");
  document.body.classList.toggle("blur", $("blur").checked);
});
$("by").addEventListener("input", () => localStorage.setItem("lookalike-reviewer", me()));
$("by").addEventListener("change", async () => {
  // A name given: the flag on screen is claimed for it; one someone else holds gives way to the
  // next flag this reviewer may take (their own held one first).
  if (current && queueing() && me()) {
    await show(current.id);
    if (current && current.claim && current.claim.by !== me()) await next();
  } else if (!current && me()) await next();
  await load({ quiet: true });
  render(); // the cards say who is reviewing what as this reviewer sees it: their own are not "held"
});
$("by").value = localStorage.getItem("lookalike-reviewer") || "";
setInterval(() => { if (!document.hidden && $("viewer").hidden) load({ quiet: true }); }, 20000);
loadConfig()
  .then(() => setInterval(renew, Math.max(5, lease / 3) * 1000))
  .then(loadPolicies)
  .then(() => load())
  .then(() => next());
