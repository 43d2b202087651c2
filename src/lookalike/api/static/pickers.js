// Source, category and tag pickers, fed by GET /facets: a disclosure per filter field, holding one
// checkbox per known value (with its count) and a field for a value the list leaves out.
"use strict";

// The filters every server has, for when /facets cannot be read (an older server, an error).
const FALLBACK_FIELDS = [
  { name: "source", param: "sources", label: "Source", values: [], truncated: false },
  { name: "category", param: "categories", label: "Category", values: [], truncated: false },
  { name: "tags", param: "tags", label: "Tags", values: [], truncated: false },
];

const pickers = {
  fields: [],
  onChange: () => {},

  build(container, fields) {
    this.fields = fields;
    container.replaceChildren(...fields.map((field) => this.picker(field)));
  },

  picker(field) {
    const details = document.createElement("details");
    details.className = "picker";
    details.id = `picker-${field.param}`;
    details.dataset.param = field.param;
    const summary = document.createElement("summary");
    const label = document.createElement("span");
    label.textContent = field.label;
    const chosen = document.createElement("span");
    chosen.className = "chosen";
    summary.append(label, chosen);
    const panel = document.createElement("div");
    panel.className = "options";
    panel.setAttribute("role", "group");
    panel.setAttribute("aria-label", field.label);
    const list = document.createElement("div");
    list.className = "values";
    for (const { value, count } of field.values) list.append(this.option(field, value, count));
    const other = document.createElement("input");
    other.type = "text";
    other.className = "other";
    other.placeholder = field.values.length ? "another value, then Enter" : "a value, then Enter";
    other.setAttribute("aria-label", `Add a ${field.label.toLowerCase()} value`);
    other.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();  // not the form's submit: the value joins the filter
      const value = other.value.trim();
      if (!value) return;
      other.value = "";
      this.choose(details, value);
      this.changed(details);
    });
    panel.append(list);
    if (field.truncated) {
      const note = document.createElement("p");
      note.className = "note";
      note.textContent = `The ${field.values.length} most common; type any other.`;
      panel.append(note);
    }
    panel.append(other);
    details.append(summary, panel);
    list.addEventListener("change", () => this.changed(details));
    this.summarise(details);
    return details;
  },

  option(field, value, count) {
    const label = document.createElement("label");
    label.className = "check";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = value;
    const text = document.createElement("span");
    text.className = "value";
    text.textContent = value;
    label.append(box, text);
    if (count != null) {
      const n = document.createElement("span");
      n.className = "n";
      n.textContent = count.toLocaleString();
      n.setAttribute("aria-label", `${count} items`);
      label.append(n);
    }
    return label;
  },

  boxes(details) {
    return [...details.querySelectorAll(".values input[type=checkbox]")];
  },

  // Checks the value's box, adding one for a value the list does not show (a link, a truncated list).
  choose(details, value) {
    let box = this.boxes(details).find((b) => b.value === value);
    if (!box) {
      const field = this.fields.find((f) => f.param === details.dataset.param);
      const option = this.option(field, value, null);
      details.querySelector(".values").append(option);
      box = option.querySelector("input");
    }
    box.checked = true;
  },

  changed(details) {
    this.summarise(details);
    this.onChange();
  },

  summarise(details) {
    const chosen = this.boxes(details).filter((b) => b.checked).map((b) => b.value);
    const text = chosen.length === 0 ? "any" : chosen.length === 1 ? chosen[0] : `${chosen.length} chosen`;
    details.querySelector(".chosen").textContent = text;
  },

  // The chosen values, by the search request's parameter.
  values() {
    const found = {};
    for (const details of document.querySelectorAll("details.picker")) {
      found[details.dataset.param] = this.boxes(details).filter((b) => b.checked).map((b) => b.value);
    }
    return found;
  },

  set(values) {
    for (const details of document.querySelectorAll("details.picker")) {
      const wanted = values[details.dataset.param] || [];
      for (const box of this.boxes(details)) box.checked = false;
      for (const value of wanted) this.choose(details, value);
      this.summarise(details);
    }
  },
};
