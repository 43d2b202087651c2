// The detail view of a hit (or of any stored item): every field, the large image, "more like this",
// "not like this", a link. A modal <dialog>: Escape and the ✕ button close it, and the focus goes
// back to what opened it.
"use strict";

function fullDate(seconds) {
  if (!Number.isFinite(seconds)) return "";
  return `${new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19)} UTC`;
}

const detail = {
  hit: null,
  opener: null,
  actions: { more: () => {}, unlike: () => {}, link: () => "" },

  init() {
    const dialog = document.getElementById("detail");
    document.getElementById("detail-close").addEventListener("click", () => this.close());
    // Escape closes it here, not by the browser's default: the focus must go back at once (the
    // "close" event comes a task later, when a quick Enter may have opened the view again).
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      this.close();
    });
    // A click on the backdrop (outside the dialog's box) closes it too.
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) this.close();
    });
    document.getElementById("detail-more").addEventListener("click", () => this.act("more"));
    document.getElementById("detail-unlike").addEventListener("click", () => this.act("unlike"));
    document.getElementById("detail-copy").addEventListener("click", () => this.copy());
    const img = document.getElementById("detail-img");
    img.addEventListener("load", () => this.placeBox());
    new ResizeObserver(() => this.placeBox()).observe(document.querySelector(".detail-image"));
  },

  open(hit, opener, { canUnlike }) {
    this.hit = hit;
    this.opener = opener || document.activeElement;
    const dialog = document.getElementById("detail");
    document.getElementById("detail-title").textContent = hit.name || hit.item_id || `item ${hit.id}`;
    const img = document.getElementById("detail-img");
    img.alt = hit.name || hit.item_id || "";
    img.removeAttribute("src");
    document.getElementById("detail-box").hidden = true;
    thumbnail(img, hit.id, 1024);
    document.getElementById("detail-facts").replaceChildren(...this.facts(hit));
    document.getElementById("detail-unlike").hidden = !canUnlike;
    document.getElementById("detail-link").value = this.actions.link(hit);
    if (!dialog.open) dialog.showModal();
    document.getElementById("detail-more").focus();
  },

  facts(hit) {
    const rows = [
      ["Item id", hit.item_id],
      ["Name", hit.name],
      ["Source", hit.source],
      ["Category", hit.category],
      ["Tags", (hit.tags || []).join(", ")],
      ["Date", fullDate(hit.created_at)],
      ["Size", hit.width && hit.height ? `${hit.width} × ${hit.height} px` : ""],
      ["Score", hit.score != null ? hit.score.toFixed(4) : ""],
      ["Stored id", hit.id],
      ["URI", hit.uri],
    ];
    if (hit.box) {
      rows.push(["Object", `${hit.label || "object"}${hit.det_score != null ? ` (${hit.det_score.toFixed(2)})` : ""}`]);
      rows.push(["Box", hit.box.join(", ")]);
    }
    const out = [];
    for (const [name, value] of rows) {
      if (value === "" || value == null) continue;
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = String(value);
      dd.dataset.field = name.toLowerCase().replace(/ /g, "-");
      out.push(dt, dd);
    }
    return out;
  },

  placeBox() {
    const hit = this.hit;
    const img = document.getElementById("detail-img");
    const box = document.getElementById("detail-box");
    if (hit && hit.box && placeBox(img.parentElement, img, box, hit)) box.hidden = false;  // app.js
  },

  act(name) {
    const hit = this.hit;
    this.opener = null;  // the grid is replaced: the focus goes to the results, not to a gone card
    this.close();
    this.actions[name](hit);
  },

  async copy() {
    const field = document.getElementById("detail-link");
    let copied = false;
    try {
      await navigator.clipboard.writeText(field.value);
      copied = true;
    } catch {
      field.select();
      copied = document.execCommand && document.execCommand("copy");
    }
    const button = document.getElementById("detail-copy");
    button.textContent = copied ? "Link copied" : "Copy the link below";
    setTimeout(() => { button.textContent = "Copy link"; }, 2000);
  },

  close() {
    const dialog = document.getElementById("detail");
    if (!dialog.open) return;
    const opener = this.opener;
    this.opener = null;
    dialog.close();
    if (opener && opener.isConnected) opener.focus();
    else document.getElementById("grid").focus();
  },
};
