// The workflow builder: edits the workflow's JSON document (the one GET workflows/{id}/
// returns and PUT writes as the draft) through forms, a condition builder and a step graph.
// The document is the only state: every control reads from it and writes into it, so a
// document the builder did not touch is saved exactly as it was loaded.

const root = document.getElementById("builder");
const API = root.dataset.api;
const WORKFLOW_ID = root.dataset.workflow;
const CSRF = root.dataset.csrf;
const LOOKUPS = JSON.parse(document.getElementById("builder-lookups").textContent);
const DOC_KEYS = ["slug", "name", "description", "is_active", "triggers", "steps"];

const OPERATORS = {
  number: ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "changed"],
  date: ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "changed"],
  datetime: ["eq", "ne", "gt", "gte", "lt", "lte", "exists", "changed"],
  string: ["eq", "ne", "contains", "startswith", "endswith", "in", "not_in", "exists", "changed"],
  choice: ["eq", "ne", "in", "not_in", "exists", "changed"],
  boolean: ["eq", "ne", "exists", "changed"],
  list: ["contains", "exists", "changed"],
  any: ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "startswith",
    "endswith", "exists", "changed"],
};
const OPERATOR_LABELS = {
  eq: "equals", ne: "does not equal", gt: "is greater than", gte: "is at least",
  lt: "is less than", lte: "is at most", in: "is one of", not_in: "is none of",
  contains: "contains", startswith: "starts with", endswith: "ends with",
  exists: "is set", changed: "changed",
};
const DATE_VARIABLES = ["today", "today+1", "today+2", "today+7", "today+30", "today-30", "now"];
const LONG_TEXT = new Set(["note", "message", "body", "html_body", "description"]);

const state = {
  doc: null,
  saved: "",
  workflow: null,
  catalogue: null,
  stepTypes: {},
  queues: [],
  lifecycles: [],
  secrets: [],
  selected: null,
  errors: {},
  warnings: {},
  localErrors: {},
  trace: null,
};

// --- small helpers ---------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// A JSON path as the API writes it: steps[0].config.title
function pathString(parts) {
  return parts.reduce(
    (out, part) => (typeof part === "number" ? `${out}[${part}]` : out ? `${out}.${part}` : part),
    "",
  );
}

function controlId(parts) {
  return `f-${pathString(parts).replace(/[^A-Za-z0-9]+/g, "-").replace(/-$/, "")}`;
}

function getAt(parts) {
  let node = state.doc;
  for (const part of parts) {
    if (node === null || node === undefined) return undefined;
    node = node[part];
  }
  return node;
}

function setAt(parts, value) {
  let node = state.doc;
  for (const part of parts.slice(0, -1)) node = node[part];
  const last = parts[parts.length - 1];
  if (value === undefined) {
    if (Array.isArray(node)) node.splice(last, 1);
    else delete node[last];
  } else node[last] = value;
}

function clone(value) {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

function csrfHeaders() {
  return { "Content-Type": "application/json", "X-CSRFToken": CSRF, Accept: "application/json" };
}

async function api(method, url, body) {
  const response = await fetch(API + url, {
    method,
    headers: csrfHeaders(),
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, data };
}

async function listAll(url) {
  const out = [];
  let next = url;
  while (next) {
    const { ok, data } = await api("GET", next);
    if (!ok || !data) return { ok: false, results: out };
    out.push(...(Array.isArray(data) ? data : data.results || []));
    next = data.next ? data.next.slice(data.next.indexOf(API) + API.length) : null;
  }
  return { ok: true, results: out };
}

function say(text, kind = "info") {
  const el = document.getElementById("message");
  el.textContent = text;
  el.className = `message ${kind}`;
}

// --- the document ------------------------------------------------------------------------

function pickDocument(workflow) {
  const doc = {};
  for (const key of DOC_KEYS) doc[key] = clone(workflow[key]);
  return doc;
}

function dependencies(steps) {
  const deps = {};
  let previous = null;
  for (const step of steps) {
    const key = step.key;
    if (step.after === null || step.after === undefined) deps[key] = previous === null ? [] : [previous];
    else deps[key] = Array.isArray(step.after) ? [...new Set(step.after)] : [];
    previous = key;
  }
  return deps;
}

function upstreamOf(index) {
  const steps = state.doc.steps;
  const deps = dependencies(steps);
  const seen = new Set();
  const stack = [...(deps[steps[index].key] || [])];
  while (stack.length) {
    const key = stack.pop();
    if (seen.has(key) || key === steps[index].key) continue;
    seen.add(key);
    stack.push(...(deps[key] || []));
  }
  return steps.filter((s) => seen.has(s.key)).map((s) => s.key);
}

function uniqueKey(base) {
  const keys = new Set(state.doc.steps.map((s) => s.key));
  const stem = base.replace(/[^A-Za-z0-9_]/g, "_");
  if (!keys.has(stem)) return stem;
  let n = 2;
  while (keys.has(`${stem}_${n}`)) n += 1;
  return `${stem}_${n}`;
}

// A structural edit: redraw everything from the document, then validate.
function changed() {
  render();
  scheduleValidation();
}

// --- the event catalogue -----------------------------------------------------------------

function eventEntry(type) {
  return (state.catalogue || []).find((e) => e.type === type) || null;
}

// Fields of the event's context with their types: the catalogue's paths, and for a model
// event the same fields at the top level (the context carries both).
function contextFields(eventTypes) {
  const fields = new Map();
  for (const type of eventTypes) {
    const entry = eventEntry(type);
    if (!entry) continue;
    for (const field of entry.fields || []) {
      fields.set(field.path, field);
      const prefix = `${entry.group}.`;
      if (entry.kind === "model" && field.path.startsWith(prefix)) {
        const short = field.path.slice(prefix.length);
        if (!fields.has(short)) fields.set(short, { ...field, path: short });
      }
    }
  }
  return fields;
}

function triggerTypes() {
  return (state.doc.triggers || []).map((t) => t.event_type).filter(Boolean);
}

function fieldKind(field) {
  if (!field) return "any";
  if (field.choices && field.choices.length) return "choice";
  const type = field.type || "any";
  if (["integer", "number", "decimal", "float"].includes(type)) return "number";
  if (["date", "datetime", "boolean", "string", "list"].includes(type)) return type;
  if (type === "array") return "list";
  return "any";
}

// --- condition builder -------------------------------------------------------------------

function newLeaf() {
  return { field: "", operator: "eq", value: "" };
}

function traceAt(path) {
  if (!state.trace) return null;
  return state.trace[path] ?? null;
}

function traceBadge(path) {
  const result = traceAt(path);
  if (result === null) return null;
  return h("span", { class: `trace-badge ${result ? "true" : "false"}` }, result ? "true" : "false");
}

function conditionEditor(parts, fields, label) {
  const node = getAt(parts);
  const box = h("div", { class: "condition", "data-path": pathString(parts) });
  if (!node || (typeof node === "object" && !Object.keys(node).length)) {
    box.append(
      h("p", { class: "muted small" }, `${label}: none (always true).`),
      h(
        "button",
        {
          type: "button",
          id: `${controlId(parts)}-add`,
          onclick: () => {
            setAt(parts, { and: [newLeaf()] });
            changed();
            focusLater(`${controlId([...parts, "and", 0, "field"])}`);
          },
        },
        `Add a condition`,
      ),
    );
    return box;
  }
  box.append(h("p", { class: "condition-title" }, label, traceBadge(pathString(parts))));
  box.append(conditionNode(parts, fields, true));
  if (!("and" in node) && !("or" in node) && !("not" in node)) {
    // A single comparison: offer to combine it with another one.
    box.append(
      h(
        "div",
        { class: "cond-tools" },
        h(
          "button",
          {
            type: "button",
            id: `${controlId(parts)}-add-leaf`,
            onclick: () => {
              setAt(parts, { and: [clone(node), newLeaf()] });
              changed();
              focusLater(controlId([...parts, "and", 1, "field"]));
            },
          },
          "+ Condition",
        ),
        h(
          "button",
          {
            type: "button",
            onclick: () => {
              setAt(parts, { not: clone(node) });
              changed();
            },
          },
          "Negate",
        ),
      ),
    );
  }
  return box;
}

function conditionNode(parts, fields, isRoot) {
  const node = getAt(parts);
  const path = pathString(parts);
  if (node && typeof node === "object" && ("and" in node || "or" in node)) {
    const op = "and" in node ? "and" : "or";
    const children = Array.isArray(node[op]) ? node[op] : [];
    const group = h("fieldset", { class: "cond-group", "data-path": path });
    const opId = `${controlId(parts)}-op`;
    group.append(
      h(
        "legend",
        {},
        h("label", { for: opId, class: "inline-label" }, "Match"),
        " ",
        h(
          "select",
          {
            id: opId,
            class: "short",
            onchange: (e) => {
              const value = e.target.value;
              const list = node[op];
              delete node[op];
              node[value] = list;
              changed();
              focusLater(`${controlId(parts)}-op`);
            },
          },
          h("option", { value: "and", selected: op === "and" }, "all of (and)"),
          h("option", { value: "or", selected: op === "or" }, "any of (or)"),
        ),
        traceBadge(path),
      ),
    );
    children.forEach((_, index) => group.append(conditionNode([...parts, op, index], fields, false)));
    const tools = h("div", { class: "cond-tools" });
    tools.append(
      h(
        "button",
        {
          type: "button",
          id: `${controlId(parts)}-add-leaf`,
          onclick: () => {
            node[op].push(newLeaf());
            changed();
            focusLater(controlId([...parts, op, node[op].length - 1, "field"]));
          },
        },
        "+ Condition",
      ),
      h(
        "button",
        {
          type: "button",
          id: `${controlId(parts)}-add-group`,
          onclick: () => {
            node[op].push({ or: [newLeaf()] });
            changed();
          },
        },
        "+ Group",
      ),
      h(
        "button",
        {
          type: "button",
          onclick: () => {
            setAt(parts, { not: clone(node) });
            changed();
          },
        },
        "Negate",
      ),
      h(
        "button",
        { type: "button", class: "danger", onclick: () => removeConditionNode(parts) },
        isRoot ? "Remove the condition" : "Remove group",
      ),
    );
    group.append(tools);
    return group;
  }
  if (node && typeof node === "object" && "not" in node) {
    const group = h("fieldset", { class: "cond-group cond-not", "data-path": path });
    group.append(h("legend", {}, "Not", traceBadge(path)));
    group.append(conditionNode([...parts, "not"], fields, false));
    group.append(
      h(
        "div",
        { class: "cond-tools" },
        h(
          "button",
          {
            type: "button",
            onclick: () => {
              setAt(parts, clone(node.not));
              changed();
            },
          },
          "Remove the negation",
        ),
      ),
    );
    return group;
  }
  return conditionLeaf(parts, fields);
}

function removeConditionNode(parts) {
  const last = parts[parts.length - 1];
  const parentParts = parts.slice(0, -1);
  if (typeof last === "number") {
    const list = getAt(parentParts);
    list.splice(last, 1);
    const groupParts = parentParts.slice(0, -1);
    const isRootGroup = ["conditions", "condition"].includes(groupParts[groupParts.length - 1]);
    if (!list.length && isRootGroup) setAt(groupParts, emptyCondition(groupParts));
  } else if (last === "not") {
    removeConditionNode(parentParts);
    return;
  } else {
    setAt(parts, emptyCondition(parts));
  }
  changed();
}

// No condition: null for a trigger's or a step's ``conditions``; a step config's
// ``condition`` key (the validate step) is dropped instead.
function emptyCondition(parts) {
  return parts[parts.length - 2] === "config" ? undefined : null;
}

function conditionLeaf(parts, fields) {
  const node = getAt(parts) || {};
  const path = pathString(parts);
  const base = controlId(parts);
  const field = fields.get(node.field);
  const kind = fieldKind(field);
  const operators = [...OPERATORS[kind]];
  if (node.operator && !operators.includes(node.operator)) operators.push(node.operator);
  const listId = `${base}-paths`;
  const row = h("div", { class: "cond-leaf", "data-path": path });

  const fieldInput = h("input", {
    id: `${base}-field`,
    type: "text",
    list: listId,
    value: node.field ?? "",
    "data-path": `${path}.field`,
    autocomplete: "off",
    spellcheck: "false",
    oninput: (e) => {
      node.field = e.target.value;
      scheduleValidation();
      markDirty();
    },
    onchange: () => changed(),
  });
  const datalist = h(
    "datalist",
    { id: listId },
    [...fields.values()].map((f) =>
      h("option", { value: f.path }, `${f.label || f.path} (${fieldKind(f)})`),
    ),
  );
  const operatorSelect = h(
    "select",
    {
      id: `${base}-operator`,
      "data-path": `${path}.operator`,
      onchange: (e) => {
        node.operator = e.target.value;
        if (node.operator === "changed") delete node.value;
        else if (node.operator === "exists") delete node.value;
        else if (["in", "not_in"].includes(node.operator) && !Array.isArray(node.value)) node.value = [];
        else if (!["in", "not_in"].includes(node.operator) && Array.isArray(node.value)) node.value = "";
        else if (!("value" in node)) node.value = "";
        changed();
        focusLater(`${base}-operator`);
      },
    },
    operators.map((op) =>
      h("option", { value: op, selected: op === node.operator }, `${OPERATOR_LABELS[op] || op} (${op})`),
    ),
  );
  row.append(
    h(
      "div",
      { class: "cond-cell" },
      h("label", { for: `${base}-field` }, "Field"),
      fieldInput,
      datalist,
      field ? h("span", { class: "muted small" }, `${fieldKind(field)}${field.nullable ? ", may be empty" : ""}`) : null,
    ),
    h("div", { class: "cond-cell" }, h("label", { for: `${base}-operator` }, "Operator"), operatorSelect),
    h("div", { class: "cond-cell" }, valueControl(node, `${base}-value`, `${path}.value`, field, kind)),
    h(
      "div",
      { class: "cond-cell cond-remove" },
      traceBadge(path),
      h(
        "button",
        { type: "button", class: "danger", "aria-label": `Remove the condition on ${node.field || "a field"}`, onclick: () => removeConditionNode(parts) },
        "Remove",
      ),
    ),
  );
  return row;
}

// An option's value attribute: a string as it is, anything else as JSON (true, 3).
function optionValue(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function parseTyped(text, kind) {
  if (kind === "number") {
    const number = Number(text);
    return text.trim() !== "" && Number.isFinite(number) ? number : text;
  }
  if (kind === "boolean") return text === "true";
  return text;
}

function valueControl(node, id, path, field, kind) {
  const op = node.operator;
  const wrap = document.createDocumentFragment();
  if (op === "changed") {
    wrap.append(h("span", { class: "muted small", id, "data-path": path }, "no value"));
    return wrap;
  }
  if (op === "exists") {
    const value = "value" in node ? node.value : true;
    wrap.append(
      h("label", { for: id }, "Value"),
      h(
        "select",
        {
          id,
          "data-path": path,
          onchange: (e) => {
            if (e.target.value === "true") delete node.value;
            else node.value = false;
            changed();
          },
        },
        h("option", { value: "true", selected: value !== false }, "is set"),
        h("option", { value: "false", selected: value === false }, "is not set"),
      ),
    );
    return wrap;
  }
  const choices = field && field.choices ? field.choices.map((c) => (typeof c === "object" ? c.value : c)) : null;
  if (op === "in" || op === "not_in") {
    const list = Array.isArray(node.value) ? node.value : [];
    if (choices) {
      const box = h("div", { class: "choices", id, "data-path": path, role: "group", "aria-label": "Values" });
      for (const choice of choices) {
        const cid = `${id}-${String(choice).replace(/[^A-Za-z0-9]+/g, "-")}`;
        box.append(
          h(
            "label",
            { class: "choice", for: cid },
            h("input", {
              type: "checkbox",
              id: cid,
              checked: list.includes(choice),
              onchange: (e) => {
                const current = Array.isArray(node.value) ? node.value : [];
                node.value = e.target.checked ? [...current, choice] : current.filter((v) => v !== choice);
                changed();
                focusLater(cid);
              },
            }),
            ` ${choice}`,
          ),
        );
      }
      wrap.append(h("span", { class: "label-like" }, "Values"), box);
      return wrap;
    }
    wrap.append(
      h("label", { for: id }, "Values (comma-separated)"),
      h("input", {
        id,
        type: "text",
        "data-path": path,
        value: list.map((v) => String(v)).join(", "),
        oninput: (e) => {
          const text = e.target.value;
          node.value = text.trim() === "" ? [] : text.split(",").map((v) => parseTyped(v.trim(), kind));
          markDirty();
          scheduleValidation();
        },
      }),
    );
    return wrap;
  }
  wrap.append(h("label", { for: id }, "Value"));
  if (choices) {
    const options = [...choices];
    if (node.value !== undefined && node.value !== "" && !options.includes(node.value)) options.push(node.value);
    wrap.append(
      h(
        "select",
        {
          id,
          "data-path": path,
          onchange: (e) => {
            const picked = options.find((c) => optionValue(c) === e.target.value);
            node.value = picked === undefined ? "" : picked;
            changed();
            focusLater(id);
          },
        },
        h("option", { value: "", selected: node.value === "" || node.value === undefined }, "— choose —"),
        options.map((c) => h("option", { value: optionValue(c), selected: c === node.value }, String(c))),
      ),
    );
    return wrap;
  }
  // A field of unknown type: a bool stays a bool; typed text that reads as a number is a
  // number (as it would be written in the JSON), anything else a string.
  const effective = kind === "any" && typeof node.value === "boolean" ? "boolean" : kind;
  if (effective === "boolean") {
    wrap.append(
      h(
        "select",
        {
          id,
          "data-path": path,
          onchange: (e) => {
            node.value = e.target.value === "true";
            changed();
          },
        },
        h("option", { value: "true", selected: node.value === true }, "true"),
        h("option", { value: "false", selected: node.value !== true }, "false"),
      ),
    );
    return wrap;
  }
  let type = "text";
  if (effective === "number") type = "number";
  if (effective === "date" && (node.value === "" || /^\d{4}-\d{2}-\d{2}$/.test(String(node.value ?? "")))) type = "date";
  wrap.append(
    h("input", {
      id,
      type,
      step: type === "number" ? "any" : null,
      "data-path": path,
      value: node.value === undefined || node.value === null ? "" : String(node.value),
      oninput: (e) => {
        const text = e.target.value;
        const literal = effective === "any" && /^-?\d+(\.\d+)?$/.test(text.trim());
        node.value = parseTyped(text, effective === "number" || literal ? "number" : "string");
        markDirty();
        scheduleValidation();
      },
    }),
  );
  return wrap;
}

// --- workflow and triggers ---------------------------------------------------------------

function textControl(parts, label, { long = false, required = false } = {}) {
  const id = controlId(parts);
  const attrs = {
    id,
    "data-path": pathString(parts),
    required,
    oninput: (e) => {
      setAt(parts, e.target.value);
      if (parts[0] === "name") document.getElementById("wf-title").textContent = e.target.value;
      markDirty();
      scheduleValidation();
    },
  };
  const control = long ? h("textarea", { ...attrs, rows: 2 }) : h("input", { ...attrs, type: "text" });
  control.value = getAt(parts) ?? "";
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

function checkControl(parts, label, onChange) {
  const id = controlId(parts);
  return h(
    "div",
    { class: "field field-boolean" },
    h(
      "label",
      { for: id, class: "check" },
      h("input", {
        type: "checkbox",
        id,
        "data-path": pathString(parts),
        checked: Boolean(getAt(parts)),
        onchange: (e) => {
          onChange(e.target.checked);
          changed();
          focusLater(id);
        },
      }),
      ` ${label}`,
    ),
  );
}

function renderWorkflowFields() {
  const box = document.getElementById("workflow-fields");
  box.replaceChildren(
    textControl(["name"], "Name", { required: true }),
    textControl(["slug"], "Slug", { required: true }),
    textControl(["description"], "Description", { long: true }),
    checkControl(["is_active"], "Active (events start it once published)", (v) => (state.doc.is_active = v)),
  );
}

function eventSelect(parts, value) {
  const id = controlId(parts);
  const select = h("select", {
    id,
    "data-path": pathString(parts),
    onchange: (e) => {
      setAt(parts, e.target.value);
      changed();
      focusLater(id);
    },
  });
  select.append(h("option", { value: "", selected: !value }, "— choose an event —"));
  const groups = new Map();
  for (const entry of state.catalogue || []) {
    const label = `${entry.group} · ${entry.kind}`;
    if (!groups.has(label)) groups.set(label, []);
    groups.get(label).push(entry);
  }
  for (const [label, entries] of groups) {
    select.append(
      h(
        "optgroup",
        { label },
        entries.map((e) =>
          h("option", { value: e.type, selected: e.type === value }, `${e.label || e.type} (${e.type})`),
        ),
      ),
    );
  }
  if (value && !eventEntry(value)) {
    select.append(h("optgroup", { label: "in this workflow" }, h("option", { value, selected: true }, value)));
  }
  return select;
}

function renderTriggers() {
  const box = document.getElementById("triggers");
  box.replaceChildren();
  const note = document.getElementById("catalogue-note");
  note.textContent = state.catalogue
    ? `${state.catalogue.length} event types in the catalogue.`
    : "The event catalogue could not be read: type the event type.";
  (state.doc.triggers || []).forEach((trigger, index) => {
    const parts = ["triggers", index];
    const typeParts = [...parts, "event_type"];
    const typeId = controlId(typeParts);
    const typeControl = state.catalogue
      ? eventSelect(typeParts, trigger.event_type)
      : h("input", {
          id: typeId,
          type: "text",
          value: trigger.event_type ?? "",
          "data-path": pathString(typeParts),
          oninput: (e) => {
            trigger.event_type = e.target.value;
            markDirty();
            scheduleValidation();
          },
          onchange: () => changed(),
        });
    const entry = eventEntry(trigger.event_type);
    const priorityId = controlId([...parts, "priority"]);
    const card = h(
      "div",
      { class: "trigger", "data-path": pathString(parts) },
      h(
        "div",
        { class: "grid-3" },
        h("div", { class: "field" }, h("label", { for: typeId }, "Event type"), typeControl,
          entry && entry.description ? h("p", { class: "muted small" }, entry.description) : null),
        h(
          "div",
          { class: "field" },
          h("label", { for: priorityId }, "Priority"),
          h("input", {
            id: priorityId,
            type: "number",
            step: "1",
            "data-path": pathString([...parts, "priority"]),
            value: String(trigger.priority ?? 0),
            oninput: (e) => {
              const n = Number(e.target.value);
              trigger.priority = e.target.value === "" ? 0 : Number.isInteger(n) ? n : e.target.value;
              markDirty();
              scheduleValidation();
            },
          }),
        ),
        checkControl([...parts, "is_active"], "Trigger active", (v) => (trigger.is_active = v)),
      ),
      conditionEditor([...parts, "conditions"], contextFields([trigger.event_type]), "Condition"),
      h(
        "button",
        {
          type: "button",
          class: "danger",
          onclick: () => {
            state.doc.triggers.splice(index, 1);
            changed();
          },
        },
        "Remove this trigger",
      ),
    );
    box.append(card);
  });
}

// --- the step graph ----------------------------------------------------------------------

const NODE_W = 168;
const NODE_H = 50;
const GAP_X = 24;
const GAP_Y = 44;

function layout(steps) {
  const deps = dependencies(steps);
  const depth = {};
  const visiting = new Set();
  const depthOf = (key) => {
    if (key in depth) return depth[key];
    if (visiting.has(key)) return 0; // a cycle: validation reports it
    visiting.add(key);
    const parents = (deps[key] || []).filter((k) => k in deps);
    depth[key] = parents.length ? Math.max(...parents.map(depthOf)) + 1 : 0;
    visiting.delete(key);
    return depth[key];
  };
  steps.forEach((s) => depthOf(s.key));
  const rows = [];
  steps.forEach((s, index) => {
    const d = depth[s.key] ?? 0;
    (rows[d] = rows[d] || []).push({ step: s, index });
  });
  const widest = Math.max(1, ...rows.map((r) => (r ? r.length : 0)));
  const width = widest * NODE_W + (widest + 1) * GAP_X;
  const positions = {};
  rows.forEach((row, d) => {
    if (!row) return;
    const rowWidth = row.length * NODE_W + (row.length - 1) * GAP_X;
    const left = (width - rowWidth) / 2;
    row.forEach((item, i) => {
      positions[item.step.key] = {
        x: left + i * (NODE_W + GAP_X),
        y: GAP_Y / 2 + d * (NODE_H + GAP_Y),
        index: item.index,
      };
    });
  });
  const height = rows.length * (NODE_H + GAP_Y);
  return { deps, positions, width, height: Math.max(height, NODE_H + GAP_Y) };
}

function stepHasErrors(index) {
  const prefix = `steps[${index}]`;
  return Object.keys(state.errors).some((p) => p === prefix || p.startsWith(`${prefix}.`) || p.startsWith(`${prefix}[`));
}

function renderGraph() {
  const steps = state.doc.steps || [];
  const box = document.getElementById("graph");
  if (!steps.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No steps yet: pick a step type and add one."));
    document.getElementById("legend").textContent = "";
    return;
  }
  const { deps, positions, width, height } = layout(steps);
  const traceSteps = state.traceSteps || {};
  const canvas = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width: String(width),
    class: "step-graph",
    role: "group",
    "aria-label": `Step graph: ${steps.length} steps`,
  });
  canvas.append(
    svg(
      "defs",
      {},
      svg(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
        svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow-head" }),
      ),
    ),
  );
  for (const step of steps) {
    for (const parent of deps[step.key] || []) {
      const from = positions[parent];
      const to = positions[step.key];
      if (!from || !to) continue;
      const x1 = from.x + NODE_W / 2;
      const y1 = from.y + NODE_H;
      const x2 = to.x + NODE_W / 2;
      const y2 = to.y - 2;
      const mid = (y1 + y2) / 2;
      canvas.append(
        svg("path", {
          d: `M ${x1} ${y1} C ${x1} ${mid}, ${x2} ${mid}, ${x2} ${y2}`,
          class: "edge",
          "marker-end": "url(#arrow)",
          "data-edge": `${parent}->${step.key}`,
        }),
      );
    }
  }
  steps.forEach((step, index) => {
    const pos = positions[step.key];
    if (!pos) return;
    const status = traceSteps[step.key];
    const classes = ["node"];
    if (index === state.selected) classes.push("selected");
    if (stepHasErrors(index)) classes.push("has-errors");
    if (status) classes.push(`trace-${status}`);
    const label = `Step ${step.key}, ${step.type}${status ? `, dry run: ${statusLabel(status)}` : ""}${stepHasErrors(index) ? ", has problems" : ""}`;
    const g = svg(
      "g",
      {
        class: classes.join(" "),
        tabindex: "0",
        role: "button",
        "aria-label": label,
        "aria-pressed": index === state.selected ? "true" : "false",
        "data-step": step.key,
        transform: `translate(${pos.x} ${pos.y})`,
        onclick: () => selectStep(index),
        onkeydown: (e) => {
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            selectStep(index);
          }
        },
      },
      svg("rect", { width: String(NODE_W), height: String(NODE_H), rx: "8" }),
      svg("text", { x: "10", y: "21", class: "node-key" }, truncate(step.key, 20)),
      svg("text", { x: "10", y: "39", class: "node-type" }, truncate(`${step.type}${status ? ` · ${statusLabel(status)}` : ""}`, 24)),
    );
    canvas.append(g);
  });
  box.replaceChildren(canvas);
  document.getElementById("legend").textContent = state.traceSteps
    ? "Dry run: green would run, grey skipped, red would fail."
    : "Arrows point from a step to the steps that wait for it; steps side by side run in parallel.";
}

function statusLabel(status) {
  return { completed: "would run", skipped: "skipped", failed: "would fail", cancelled: "would not run" }[status] || status;
}

function truncate(text, n) {
  const s = String(text ?? "");
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

function selectStep(index) {
  state.selected = index;
  renderGraph();
  renderStepEditor();
  const editor = document.getElementById("step-editor");
  const first = editor.querySelector("input, select, textarea");
  if (first) first.focus();
}

// --- steps -------------------------------------------------------------------------------

function renderStepTypeSelect() {
  const select = document.getElementById("new-step-type");
  const current = select.value;
  select.replaceChildren(
    ...Object.values(state.stepTypes).map((t) =>
      h("option", { value: t.name, selected: t.name === current }, `${t.label} (${t.name})`),
    ),
  );
}

function addStep({ after } = {}) {
  const type = document.getElementById("new-step-type").value;
  if (!type) return;
  const step = { key: uniqueKey(type), type, config: {} };
  const steps = state.doc.steps;
  if (after !== undefined) step.after = after;
  steps.push(normaliseStep(step));
  state.selected = steps.length - 1;
  changed();
  selectStep(state.selected);
}

function normaliseStep(step) {
  return {
    key: step.key,
    type: step.type,
    config: step.config || {},
    conditions: step.conditions || null,
    after: step.after === undefined ? null : step.after,
    allow_failure: Boolean(step.allow_failure),
    retry: step.retry || null,
    timeout_seconds: step.timeout_seconds ?? null,
  };
}

function removeStep(index) {
  const steps = state.doc.steps;
  const removed = steps[index];
  const deps = dependencies(steps);
  // Steps that waited for it now wait for what it waited for, so the chain holds.
  steps.forEach((s, i) => {
    if (i === index) return;
    if (Array.isArray(s.after) && s.after.includes(removed.key)) {
      s.after = [...new Set(s.after.flatMap((k) => (k === removed.key ? deps[removed.key] : [k])))];
    }
  });
  steps.splice(index, 1);
  state.selected = steps.length ? Math.min(index, steps.length - 1) : null;
  changed();
}

function renameStep(index, key) {
  const steps = state.doc.steps;
  const old = steps[index].key;
  steps[index].key = key;
  for (const s of steps) {
    if (Array.isArray(s.after)) s.after = s.after.map((k) => (k === old ? key : k));
  }
}

function variablesFor(index, configKey) {
  const groups = [];
  const fields = contextFields(triggerTypes());
  const event = [...fields.keys()];
  for (const extra of ["event.id", "event.type", "event.occurred_at", "actor.username", "actor.email"]) {
    if (!event.includes(extra)) event.push(extra);
  }
  for (const type of triggerTypes()) {
    const entry = eventEntry(type);
    for (const rel of (entry && entry.related) || []) {
      for (const sub of rel.entity === "user" ? ["id", "username", "display_name", "email"] : ["id"]) {
        const p = `${rel.path}.${sub}`;
        if (!event.includes(p)) event.push(p);
      }
    }
  }
  groups.push(["Event", event]);
  if (index !== null) {
    const upstream = upstreamOf(index).flatMap((key) => {
      const step = state.doc.steps.find((s) => s.key === key);
      const base = [`steps.${key}`];
      if (step && step.type === "create_task") base.push(`steps.${key}.result`, `steps.${key}.completed_by.username`);
      return base;
    });
    if (upstream.length) groups.push(["Earlier steps", upstream]);
  }
  groups.push(["Dates", DATE_VARIABLES]);
  const type = index === null ? null : state.stepTypes[state.doc.steps[index].type];
  if (type && type.secret_fields.includes(configKey) && state.secrets.length) {
    groups.push(["Secrets (by name)", state.secrets.map((s) => `secrets.${s}`)]);
  }
  return groups;
}

function insertAtCursor(input, text) {
  const start = input.selectionStart ?? input.value.length;
  const end = input.selectionEnd ?? input.value.length;
  input.value = input.value.slice(0, start) + text + input.value.slice(end);
  input.setSelectionRange(start + text.length, start + text.length);
  input.dispatchEvent(new Event("input", { bubbles: true }));
  input.focus();
}

function variablePicker(input, index, configKey, label) {
  return h(
    "select",
    {
      class: "var-picker",
      id: `${input.id}-vars`,
      "aria-label": `Insert a variable into ${label}`,
      onchange: (e) => {
        if (e.target.value) insertAtCursor(input, `{{${e.target.value}}}`);
        e.target.value = "";
      },
    },
    h("option", { value: "" }, "Insert a variable…"),
    variablesFor(index, configKey).map(([group, names]) =>
      h("optgroup", { label: group }, names.map((n) => h("option", { value: n }, n))),
    ),
  );
}

function schemaOf(prop) {
  // A templated schema is {"anyOf": [schema, {"type": "string", "pattern": "\\{\\{"}]}.
  if (prop && Array.isArray(prop.anyOf)) {
    const inner = prop.anyOf.find((s) => !(s.type === "string" && s.pattern === "\\{\\{"));
    return { ...(inner || {}), templated: true };
  }
  return prop || {};
}

function types(schema) {
  if (!schema.type) return [];
  return Array.isArray(schema.type) ? schema.type : [schema.type];
}

function configField(index, key, prop, required) {
  const step = state.doc.steps[index];
  const config = step.config;
  const parts = ["steps", index, "config", key];
  const id = controlId(parts);
  const path = pathString(parts);
  const schema = schemaOf(prop);
  const t = types(schema);
  const value = config[key];
  const words = key.replace(/_/g, " ");
  const label = `${words.charAt(0).toUpperCase()}${words.slice(1)}${required ? " (required)" : ""}`;
  const set = (v) => {
    if (v === undefined || v === "") delete config[key];
    else config[key] = v;
  };
  const onSelect = (v) => {
    set(v);
    changed();
    focusLater(id);
  };
  const field = h("div", { class: "field", "data-path": path });
  const labelEl = h("label", { for: id }, label);
  const selectOf = (options, current) => {
    const list = options.map((o) => (typeof o === "object" ? o : { value: o, label: String(o) }));
    if (current !== undefined && current !== "" && !list.some((o) => o.value === current)) {
      list.push({ value: current, label: `${current} (not known)` });
    }
    return h(
      "select",
      {
        id,
        "data-path": path,
        required,
        onchange: (e) => onSelect(e.target.value === "" ? undefined : list.find((o) => optionValue(o.value) === e.target.value).value),
      },
      h("option", { value: "", selected: current === undefined || current === "" }, "— choose —"),
      list.map((o) => h("option", { value: optionValue(o.value), selected: o.value === current }, o.label)),
    );
  };
  const entity = LOOKUPS.entity_types.find((e) => e.name === config.entity_type);

  if (key === "entity_type" && !(typeof value === "string" && value.includes("{{"))) {
    field.append(labelEl, selectOf(LOOKUPS.entity_types.map((e) => ({ value: e.name, label: `${e.label} (${e.name})` })), value));
    return field;
  }
  if (key === "field" && step.type === "update_field") {
    const options = entity ? entity.writable.map((f) => ({ value: f.name, label: `${f.label} (${f.name})` })) : [];
    field.append(labelEl, selectOf(options, value));
    if (!entity) field.append(h("p", { class: "muted small" }, "Choose the entity type first."));
    return field;
  }
  if (key === "value" && step.type === "update_field") {
    const target = entity && entity.writable.find((f) => f.name === config.field);
    if (target && target.choices && !(typeof value === "string" && value.includes("{{"))) {
      field.append(labelEl, selectOf(target.choices.map((c) => ({ value: c.value, label: `${c.label} (${c.value})` })), value));
      return field;
    }
    if (target && target.type === "boolean") {
      field.append(labelEl, selectOf([true, false], value));
      return field;
    }
    return templatedText(field, labelEl, { id, path, index, key, value, kind: target && target.type === "number" ? "number" : "string", datalist: target && target.type === "user" ? userOptions() : null });
  }
  if (key === "condition" && step.type === "validate" && (value === undefined || (value && typeof value === "object"))) {
    const fields = contextFields(triggerTypes());
    for (const k of upstreamOf(index)) fields.set(`steps.${k}`, { path: `steps.${k}`, type: "any" });
    field.append(conditionEditor(parts, fields, label));
    return field;
  }
  if (key === "lifecycle") {
    field.append(labelEl, selectOf(state.lifecycles.map((l) => ({ value: l.slug, label: `${l.name} (${l.slug})` })), value));
    return field;
  }
  if (key === "template" && step.type === "send_email") {
    field.append(labelEl, selectOf(LOOKUPS.email_templates.map((t) => ({ value: t.name, label: `${t.name}: ${t.subject}` })), value));
    return field;
  }
  if (key === "signing_secret") {
    field.append(labelEl, selectOf(state.secrets, value));
    return field;
  }
  if (schema.enum && !(typeof value === "string" && value.includes("{{") && !schema.enum.includes(value))) {
    field.append(labelEl, selectOf(schema.enum, value));
    return field;
  }
  if (t.includes("boolean") && t.length === 1 && (value === undefined || typeof value === "boolean")) {
    field.classList.add("field-boolean");
    field.append(
      h(
        "label",
        { for: id, class: "check" },
        h("input", {
          type: "checkbox",
          id,
          "data-path": path,
          checked: value === true,
          onchange: (e) => {
            if (e.target.checked) config[key] = true;
            else delete config[key];
            changed();
            focusLater(id);
          },
        }),
        ` ${label}`,
      ),
    );
    return field;
  }
  const structured = (t.includes("object") || t.includes("array") || (!t.length && !schema.enum && key !== "value")) &&
    !(typeof value === "string");
  if (structured || (value !== undefined && typeof value === "object" && value !== null)) {
    return jsonField(field, labelEl, { id, path, config, key, value });
  }
  if ((t.includes("number") || t.includes("integer")) && !t.includes("string") && !schema.templated) {
    field.append(
      labelEl,
      h("input", {
        id,
        type: "number",
        step: t.includes("integer") ? "1" : "any",
        "data-path": path,
        value: value ?? "",
        oninput: (e) => {
          set(e.target.value === "" ? undefined : Number(e.target.value));
          markDirty();
          scheduleValidation();
        },
      }),
    );
    return field;
  }
  const numeric = (t.includes("number") || t.includes("integer")) && !t.includes("string");
  let datalist = null;
  if (["assignee", "recipient", "run_as"].includes(key)) datalist = userOptions();
  if (key === "queue") datalist = state.queues.map((q) => ({ value: q.name, label: q.name }));
  return templatedText(field, labelEl, {
    id, path, index, key, value, kind: numeric ? "number" : "string", datalist,
    long: LONG_TEXT.has(key) || (schema.maxLength || 0) > 1000,
  });
}

function userOptions() {
  return LOOKUPS.users.map((u) => ({ value: u.email || u.username, label: u.username }));
}

function templatedText(field, labelEl, { id, path, index, key, value, kind, datalist, long }) {
  const config = state.doc.steps[index].config;
  const attrs = {
    id,
    "data-path": path,
    spellcheck: "false",
    list: datalist ? `${id}-list` : null,
    autocomplete: "off",
    oninput: (e) => {
      const text = e.target.value;
      if (text === "") delete config[key];
      else config[key] = kind === "number" && /^-?\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : text;
      markDirty();
      scheduleValidation();
    },
  };
  const input = long ? h("textarea", { ...attrs, rows: 3 }) : h("input", { ...attrs, type: "text" });
  input.value = value === undefined || value === null ? "" : String(value);
  field.append(labelEl, h("div", { class: "templated" }, input, variablePicker(input, index, key, key.replace(/_/g, " "))));
  if (datalist) {
    field.append(h("datalist", { id: `${id}-list` }, datalist.map((o) => h("option", { value: o.value }, o.label))));
  }
  return field;
}

function jsonField(field, labelEl, { id, path, config, key, value }) {
  const area = h("textarea", {
    id,
    rows: 4,
    "data-path": path,
    spellcheck: "false",
    class: "code",
    oninput: (e) => {
      const text = e.target.value.trim();
      if (text === "") {
        delete config[key];
        delete state.localErrors[path];
      } else {
        try {
          config[key] = JSON.parse(text);
          delete state.localErrors[path];
        } catch {
          state.localErrors[path] = ["not valid JSON yet"];
        }
      }
      markDirty();
      scheduleValidation();
    },
  });
  area.value = value === undefined ? "" : JSON.stringify(value, null, 2);
  field.append(labelEl, area, h("p", { class: "muted small" }, "JSON"));
  return field;
}

function renderStepEditor() {
  const box = document.getElementById("step-editor");
  const steps = state.doc.steps || [];
  if (state.selected === null || !steps[state.selected]) {
    box.replaceChildren(h("p", { class: "muted" }, steps.length ? "Pick a step in the graph to edit it." : ""));
    return;
  }
  const index = state.selected;
  const step = steps[index];
  const type = state.stepTypes[step.type];
  const parts = ["steps", index];
  const deps = dependencies(steps);
  const keyId = controlId([...parts, "key"]);
  const editor = h("div", { class: "step-form", "data-path": pathString(parts) });
  editor.append(
    h("h3", {}, `Step ${step.key}`, h("span", { class: "muted small" }, ` · ${type ? type.label : step.type}`)),
    type && type.description ? h("p", { class: "muted small" }, type.description, type.waits !== "never" ? ` The run waits on it${type.waits === "optional" ? " when 'wait' is set" : ""}.` : "") : null,
  );
  editor.append(
    h(
      "div",
      { class: "field" },
      h("label", { for: keyId }, "Key"),
      h("input", {
        id: keyId,
        type: "text",
        "data-path": pathString([...parts, "key"]),
        value: step.key,
        spellcheck: "false",
        onchange: (e) => {
          renameStep(index, e.target.value);
          changed();
          focusLater(keyId);
        },
      }),
    ),
  );
  // Runs after: the edges into this step.
  const afterBox = h("fieldset", { class: "after", "data-path": pathString([...parts, "after"]) });
  afterBox.append(h("legend", {}, "Runs after"));
  const others = steps.filter((s, i) => i !== index);
  if (!others.length) afterBox.append(h("p", { class: "muted small" }, "The first step runs when the workflow starts."));
  for (const other of others) {
    const cid = `${controlId([...parts, "after"])}-${other.key.replace(/[^A-Za-z0-9]+/g, "-")}`;
    afterBox.append(
      h(
        "label",
        { class: "choice", for: cid },
        h("input", {
          type: "checkbox",
          id: cid,
          checked: (deps[step.key] || []).includes(other.key),
          onchange: (e) => {
            const current = deps[step.key] || [];
            const next = e.target.checked ? [...current, other.key] : current.filter((k) => k !== other.key);
            const order = steps.map((s) => s.key);
            step.after = next.sort((a, b) => order.indexOf(a) - order.indexOf(b));
            changed();
            focusLater(cid);
          },
        }),
        ` ${other.key}`,
      ),
    );
  }
  afterBox.append(
    h("p", { class: "muted small" }, step.after === null ? "Default: the step before it in the list." : "Set here; none ticked means it starts with the workflow."),
  );
  editor.append(afterBox);

  // Config generated from the step type's schema.
  const configBox = h("fieldset", { class: "config", "data-path": pathString([...parts, "config"]) });
  configBox.append(h("legend", {}, "Configuration"));
  if (type) {
    const props = (type.schema && type.schema.properties) || {};
    const required = new Set((type.schema && type.schema.required) || []);
    const ordered = [...Object.keys(props).filter((k) => required.has(k)), ...Object.keys(props).filter((k) => !required.has(k))];
    for (const key of ordered) configBox.append(configField(index, key, props[key], required.has(key)));
    for (const key of Object.keys(step.config || {})) {
      if (!(key in props)) configBox.append(jsonField(h("div", { class: "field", "data-path": pathString([...parts, "config", key]) }), h("label", { for: controlId([...parts, "config", key]) }, `${key} (not in the schema)`), { id: controlId([...parts, "config", key]), path: pathString([...parts, "config", key]), config: step.config, key, value: step.config[key] }));
    }
  } else {
    configBox.append(jsonField(h("div", { class: "field" }), h("label", { for: controlId([...parts, "config"]) }, "Config"), { id: controlId([...parts, "config"]), path: pathString([...parts, "config"]), config: step, key: "config", value: step.config }));
  }
  editor.append(configBox);

  const stepFields = contextFields(triggerTypes());
  for (const key of upstreamOf(index)) stepFields.set(`steps.${key}.status`, { path: `steps.${key}.status`, type: "string", choices: ["completed", "skipped", "failed"] });
  editor.append(conditionEditor([...parts, "conditions"], stepFields, "Run only when"));

  // Failure handling.
  const retry = step.retry || {};
  const failure = h("fieldset", { class: "failure" }, h("legend", {}, "When it fails"));
  const retryInput = (name, label) => {
    const p = [...parts, "retry", name];
    const id = controlId(p);
    return h(
      "div",
      { class: "field" },
      h("label", { for: id }, label),
      h("input", {
        id,
        type: "number",
        step: "1",
        min: "0",
        "data-path": pathString(p),
        value: retry[name] ?? "",
        placeholder: type && type.default_retry[name] !== undefined ? String(type.default_retry[name]) : "",
        oninput: (e) => {
          const next = { ...(step.retry || {}) };
          if (e.target.value === "") delete next[name];
          else next[name] = Number(e.target.value);
          step.retry = Object.keys(next).length ? next : null;
          markDirty();
          scheduleValidation();
        },
      }),
    );
  };
  const timeoutId = controlId([...parts, "timeout_seconds"]);
  failure.append(
    h(
      "div",
      { class: "grid-3" },
      retryInput("max_attempts", "Attempts at most"),
      retryInput("backoff_seconds", "First backoff (s)"),
      retryInput("max_backoff_seconds", "Longest backoff (s)"),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: timeoutId }, "Timeout (seconds)"),
      h("input", {
        id: timeoutId,
        type: "number",
        step: "1",
        min: "1",
        "data-path": pathString([...parts, "timeout_seconds"]),
        value: step.timeout_seconds ?? "",
        oninput: (e) => {
          step.timeout_seconds = e.target.value === "" ? null : Number(e.target.value);
          markDirty();
          scheduleValidation();
        },
      }),
    ),
    checkControl([...parts, "allow_failure"], "Allow failure (the steps after it still run)", (v) => (step.allow_failure = v)),
  );
  editor.append(failure);
  editor.append(
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", id: "add-parallel", onclick: () => addStep({ after: [...(deps[step.key] || [])] }) }, "Add a step beside it (parallel)"),
      h("button", { type: "button", id: "add-after", onclick: () => addStep({ after: [step.key] }) }, "Add a step after it"),
      h("button", { type: "button", class: "danger", id: "remove-step", onclick: () => removeStep(index) }, "Remove this step"),
    ),
  );
  box.replaceChildren(editor);
}

// --- validation and errors ---------------------------------------------------------------

let validationTimer = null;
let validationSeq = 0;

function scheduleValidation() {
  clearTimeout(validationTimer);
  validationTimer = setTimeout(validate, 400);
}

function errorsFrom(data) {
  const error = (data && data.error) || {};
  const errors = {};
  for (const [path, messages] of Object.entries(error.fields || {})) errors[path] = [...messages];
  for (const issue of error.issues || []) {
    const list = (errors[issue.path || ""] = errors[issue.path || ""] || []);
    if (!list.includes(issue.message)) list.push(issue.message);
  }
  if (!Object.keys(errors).length && error.message) errors[""] = [error.message];
  return errors;
}

function warningsFrom(data) {
  const warnings = {};
  for (const w of (data && (data.warnings || (data.error && data.error.warnings))) || []) {
    (warnings[w.path || ""] = warnings[w.path || ""] || []).push(w.message);
  }
  return warnings;
}

async function validate() {
  const seq = ++validationSeq;
  const { ok, status, data } = await api("POST", "workflows/validate/", state.doc);
  if (seq !== validationSeq) return;
  if (ok) state.errors = {};
  else if (status === 400) state.errors = errorsFrom(data);
  else state.errors = { "": [`Validation could not run (HTTP ${status}).`] };
  state.warnings = warningsFrom(data);
  showErrors();
  renderGraph();
}

function parentPath(path) {
  const match = path.match(/^(.*)(\.[^.[\]]+|\[\d+\])$/);
  return match ? match[1] : null;
}

function controlFor(path) {
  let p = path;
  while (p) {
    const at = `[data-path="${CSS.escape(p)}"]`;
    const el = root.querySelector(`input${at}, select${at}, textarea${at}`) || root.querySelector(at);
    if (el) return el;
    p = parentPath(p);
  }
  return null;
}

function showErrors() {
  for (const el of root.querySelectorAll(".field-error.generated")) el.remove();
  for (const el of root.querySelectorAll("[aria-invalid]")) {
    el.removeAttribute("aria-invalid");
    el.removeAttribute("aria-describedby");
  }
  const all = { ...state.errors };
  for (const [p, m] of Object.entries(state.localErrors)) all[p] = [...(all[p] || []), ...m];
  const list = document.getElementById("problem-list");
  list.replaceChildren();
  let n = 0;
  for (const [path, messages] of Object.entries(all)) {
    const control = path ? controlFor(path) : null;
    const text = messages.join("; ");
    n += 1;
    const errorId = `err-${n}`;
    if (control) {
      const p = h("p", { class: "field-error generated error", id: errorId, "data-error-for": path }, path === control.dataset.path ? text : `${path}: ${text}`);
      const isInput = ["INPUT", "SELECT", "TEXTAREA"].includes(control.tagName);
      if (isInput) {
        control.setAttribute("aria-invalid", "true");
        control.setAttribute("aria-describedby", errorId);
        const holder = control.closest(".templated") || control.closest("label.check") || control;
        holder.after(p);
      } else control.prepend(p);
    }
    list.append(
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "link",
            onclick: () => focusPath(path),
          },
          path || "workflow",
        ),
        `: ${text}`,
      ),
    );
  }
  for (const [path, messages] of Object.entries(state.warnings)) {
    list.append(h("li", { class: "warning" }, `${path || "workflow"} (warning): ${messages.join("; ")}`));
  }
  document.getElementById("problems").hidden = !list.children.length;
  const validity = document.getElementById("validity");
  validity.textContent = n ? `${n} problem${n === 1 ? "" : "s"} to fix before it can be saved.` : "The draft is valid.";
  validity.className = `validity ${n ? "bad" : "good"}`;
}

function focusPath(path) {
  const match = path.match(/^steps\[(\d+)\]/);
  if (match && Number(match[1]) !== state.selected) {
    state.selected = Number(match[1]);
    renderGraph();
    renderStepEditor();
    showErrors();
  }
  const control = controlFor(path);
  if (!control) return;
  const target = ["INPUT", "SELECT", "TEXTAREA"].includes(control.tagName) ? control : control.querySelector("input, select, textarea, button");
  if (target) target.focus();
  control.scrollIntoView({ block: "center" });
}

function focusLater(id) {
  requestAnimationFrame(() => {
    const el = document.getElementById(id);
    if (el) el.focus();
  });
}

// --- rendering the whole page -------------------------------------------------------------

function markDirty() {
  renderState();
}

function renderState() {
  const el = document.getElementById("wf-state");
  const wf = state.workflow;
  const dirty = JSON.stringify(state.doc) !== state.saved;
  const version = wf.version ? `Version ${wf.version} is published` : "Never published";
  const draft = wf.has_draft ? "a draft is saved" : "no draft";
  el.textContent = `${version}; ${draft}${dirty ? "; unsaved changes" : ""}.`;
  document.getElementById("discard-draft").disabled = !wf.version || (!wf.has_draft && !dirty);
  document.getElementById("publish-open").disabled = !wf.has_draft && !dirty;
}

function render() {
  const active = document.activeElement && document.activeElement.id;
  renderWorkflowFields();
  renderTriggers();
  renderGraph();
  renderStepEditor();
  renderState();
  showErrors();
  if (active) {
    const el = document.getElementById(active);
    if (el) el.focus();
  }
}

// --- saving, publishing, trying ------------------------------------------------------------

function loaded(workflow) {
  state.workflow = workflow;
  state.doc = pickDocument(workflow);
  state.saved = JSON.stringify(state.doc);
  if (state.selected !== null && !state.doc.steps[state.selected]) state.selected = null;
}

async function save() {
  const { ok, status, data } = await api("PUT", `workflows/${WORKFLOW_ID}/`, state.doc);
  if (!ok) {
    state.errors = errorsFrom(data);
    showErrors();
    renderGraph();
    const code = data && data.error ? data.error.code : `HTTP ${status}`;
    say(`Not saved (${code}): ${data && data.error ? data.error.message : ""}`, "bad");
    return false;
  }
  loaded(data);
  render();
  say(data.has_draft ? "Draft saved. Nothing that runs changes until it is published." : "Saved: the document equals the published version.", "good");
  return true;
}

async function saveIfDirty() {
  if (JSON.stringify(state.doc) === state.saved) return true;
  return save();
}

function diffList(diff) {
  const out = h("div", { class: "diff" });
  const section = (title, items) => {
    if (!items || (Array.isArray(items) && !items.length) || (typeof items === "object" && !Object.keys(items).length)) return;
    out.append(h("h3", {}, title), h("pre", { class: "code" }, JSON.stringify(items, null, 2)));
  };
  const rest = { ...diff };
  delete rest.from;
  delete rest.to;
  const empty = Object.values(rest).every((v) => !v || (Array.isArray(v) && !v.length) || (typeof v === "object" && !Object.keys(v).length));
  out.prepend(h("p", {}, diff.from ? `From version ${diff.from} to the draft:` : "The first version:"));
  if (empty) out.append(h("p", { class: "muted" }, "Nothing changes."));
  for (const [key, value] of Object.entries(rest)) section(key.replace(/_/g, " "), value);
  return out;
}

async function openPublish() {
  if (!(await saveIfDirty())) return;
  const dialog = document.getElementById("publish-dialog");
  document.getElementById("publish-error").textContent = "";
  const { ok, data } = await api("GET", `workflows/${WORKFLOW_ID}/diff/?to=draft`);
  document.getElementById("diff").replaceChildren(ok ? diffList(data) : h("p", { class: "error" }, (data && data.error && data.error.message) || "No diff."));
  dialog.showModal();
  document.getElementById("publish-confirm").focus();
}

async function publish() {
  const { ok, data } = await api("POST", `workflows/${WORKFLOW_ID}/publish/`);
  if (!ok) {
    const error = (data && data.error) || {};
    document.getElementById("publish-error").textContent = `${error.code || "ERROR"}: ${error.message || "not published"}`;
    state.errors = errorsFrom(data);
    showErrors();
    renderGraph();
    return;
  }
  document.getElementById("publish-dialog").close();
  loaded(data);
  render();
  say(`Version ${data.version} is published: new runs start on it.`, "good");
  loadVersions();
}

async function discard() {
  if (!window.confirm("Drop the draft and go back to the published version?")) return;
  const { ok, data } = await api("POST", `workflows/${WORKFLOW_ID}/discard-draft/`);
  if (!ok) {
    say(`${data && data.error ? `${data.error.code}: ${data.error.message}` : "Not discarded."}`, "bad");
    return;
  }
  loaded(data);
  render();
  validate();
  say("The draft is discarded.", "good");
}

function sampleValue(field) {
  if (field.choices && field.choices.length) return typeof field.choices[0] === "object" ? field.choices[0].value : field.choices[0];
  const kind = fieldKind(field);
  if (kind === "number") return 1000;
  if (kind === "boolean") return true;
  if (kind === "date") return new Date().toISOString().slice(0, 10);
  if (kind === "datetime") return new Date().toISOString();
  if (kind === "list") return [];
  return "sample";
}

function generateSample() {
  const type = document.getElementById("try-event").value || triggerTypes()[0];
  const entry = eventEntry(type);
  const payload = {};
  if (entry) {
    const prefix = `${entry.group}.`;
    for (const field of entry.fields || []) {
      let path = field.path;
      if (entry.kind === "model" && path.startsWith(prefix)) path = path.slice(prefix.length);
      if (["event", "actor", "changes"].includes(path.split(".")[0])) continue;
      const segments = path.split(".");
      let node = payload;
      segments.slice(0, -1).forEach((seg) => {
        node[seg] = typeof node[seg] === "object" && node[seg] !== null ? node[seg] : {};
        node = node[seg];
      });
      node[segments[segments.length - 1]] = field.nullable ? null : sampleValue(field);
    }
  }
  document.getElementById("try-payload").value = JSON.stringify(payload, null, 2);
}

function traceMap(trace, out) {
  if (!trace) return out;
  if (trace.path) out[trace.path] = trace.result;
  for (const child of trace.children || []) traceMap(child, out);
  return out;
}

function traceTree(trace) {
  if (!trace) return null;
  const label = trace.children
    ? `${trace.op}`
    : `${trace.field} ${trace.operator}${trace.expected !== undefined && trace.expected !== null ? ` ${JSON.stringify(trace.expected)}` : ""} (actual ${JSON.stringify(trace.actual)})`;
  return h(
    "li",
    { class: trace.result ? "true" : "false" },
    h("span", { class: `trace-badge ${trace.result ? "true" : "false"}` }, trace.result ? "true" : "false"),
    ` ${label}`,
    trace.children && trace.children.length ? h("ul", {}, trace.children.map(traceTree)) : null,
  );
}

async function tryIt() {
  const out = document.getElementById("try-result");
  let payload = {};
  try {
    payload = JSON.parse(document.getElementById("try-payload").value || "{}");
  } catch {
    out.replaceChildren(h("p", { class: "error", role: "alert" }, "The sample payload is not valid JSON."));
    return;
  }
  if (!(await saveIfDirty())) {
    out.replaceChildren(h("p", { class: "error", role: "alert" }, "Fix the problems first: the dry run reads the saved draft."));
    return;
  }
  const body = { payload };
  const eventType = document.getElementById("try-event").value.trim();
  const entity = document.getElementById("try-entity").value.trim();
  if (eventType) body.event_type = eventType;
  if (entity) body.entity_id = entity;
  const version = state.workflow.has_draft ? "?version=draft" : "";
  const { ok, data } = await api("POST", `workflows/${WORKFLOW_ID}/simulate/${version}`, body);
  if (!ok) {
    const error = (data && data.error) || {};
    out.replaceChildren(h("p", { class: "error", role: "alert" }, `${error.code || "ERROR"}: ${error.message || ""}`));
    return;
  }
  state.trace = {};
  for (const trigger of data.triggers) traceMap(trigger.trace, state.trace);
  state.traceSteps = {};
  for (const step of data.steps) {
    state.traceSteps[step.key] = data.would_start ? step.status_if_run : "skipped";
    traceMap(step.condition_trace, state.trace);
  }
  const matched = data.would_start;
  out.replaceChildren(
    h("p", { id: "try-verdict", class: matched ? "good" : "bad" },
      matched ? `Matched: trigger ${data.matched_trigger + 1} starts a run.` : "No match: no run would start."),
    h("h3", {}, "Triggers"),
    h(
      "ul",
      { class: "trace" },
      data.triggers.map((t) =>
        h(
          "li",
          { class: t.matched ? "true" : "false" },
          `${t.event_type}: ${t.matched ? "matched" : t.type_matches ? "condition false" : "other event type"}`,
          t.trace ? h("ul", {}, traceTree(t.trace)) : null,
        ),
      ),
    ),
    h("h3", {}, "Steps"),
    h(
      "ul",
      { class: "trace", id: "try-steps" },
      data.steps.map((s) =>
        h(
          "li",
          { class: `trace-${state.traceSteps[s.key]}`, "data-step": s.key },
          `${s.key}: ${data.would_start ? statusLabel(s.status_if_run) : "not started"}`,
          s.reason ? ` (${s.reason})` : "",
          s.error ? h("span", { class: "error" }, ` ${s.error_code ? `${s.error_code}: ` : ""}${s.error}`) : null,
        ),
      ),
    ),
  );
  render();
}

async function loadVersions() {
  const box = document.getElementById("versions");
  const { ok, results } = await listAll(`workflows/${WORKFLOW_ID}/versions/`);
  if (!ok) {
    box.replaceChildren(h("p", { class: "error" }, "The versions could not be read."));
    return;
  }
  if (!results.length) {
    box.replaceChildren(h("p", { class: "muted" }, "No version yet: publish the draft to make the first one."));
    return;
  }
  box.replaceChildren(
    h(
      "ul",
      { class: "versions", id: "version-list" },
      results.map((v) =>
        h(
          "li",
          {},
          h("strong", {}, `v${v.number}`),
          ` ${new Date(v.created_at).toLocaleString()}${v.created_by ? ` by ${v.created_by}` : ""}`,
          v.number === state.workflow.version ? h("span", { class: "pill" }, "current") : null,
          v.number !== state.workflow.version
            ? h("button", { type: "button", class: "link", onclick: () => restore(v.number) }, ` restore v${v.number}`)
            : null,
        ),
      ),
    ),
  );
}

async function restore(number) {
  if (!window.confirm(`Publish version ${number} again as a new version? The draft is kept.`)) return;
  const { ok, data } = await api("POST", `workflows/${WORKFLOW_ID}/versions/${number}/restore/`);
  if (!ok) {
    say(`${data && data.error ? data.error.message : "Not restored."}`, "bad");
    return;
  }
  state.workflow = data;
  renderState();
  say(`Version ${number} is published again as version ${data.version}.`, "good");
  loadVersions();
}

// --- start ---------------------------------------------------------------------------------

async function start() {
  const [workflow, types, catalogue, queues, lifecycles, secrets] = await Promise.all([
    api("GET", `workflows/${WORKFLOW_ID}/`),
    api("GET", "step-types/"),
    api("GET", "event-types/"),
    listAll("queues/"),
    listAll("lifecycles/"),
    listAll("secrets/"),
  ]);
  if (!workflow.ok) {
    say(`The workflow could not be read (HTTP ${workflow.status}).`, "bad");
    return;
  }
  for (const t of (types.data && types.data.results) || []) state.stepTypes[t.name] = t;
  state.catalogue = catalogue.ok && catalogue.data ? catalogue.data.results : null;
  state.queues = queues.results;
  state.lifecycles = lifecycles.results;
  state.secrets = secrets.results.map((s) => s.name);
  loaded(workflow.data);
  renderStepTypeSelect();
  const first = triggerTypes()[0];
  if (first) document.getElementById("try-event").value = first;
  render();
  validate();
  loadVersions();

  document.getElementById("add-trigger").addEventListener("click", () => {
    state.doc.triggers.push({ event_type: "", conditions: null, priority: 0, is_active: true });
    changed();
    focusLater(controlId(["triggers", state.doc.triggers.length - 1, "event_type"]));
  });
  document.getElementById("add-step").addEventListener("click", () => addStep());
  document.getElementById("save-draft").addEventListener("click", save);
  document.getElementById("publish-open").addEventListener("click", openPublish);
  document.getElementById("publish-confirm").addEventListener("click", publish);
  document.getElementById("publish-cancel").addEventListener("click", () => document.getElementById("publish-dialog").close());
  document.getElementById("discard-draft").addEventListener("click", discard);
  document.getElementById("try-open").addEventListener("click", () => {
    document.getElementById("try-section").scrollIntoView({ block: "start" });
    document.getElementById("try-entity").focus();
  });
  document.getElementById("try-sample").addEventListener("click", generateSample);
  document.getElementById("try-run").addEventListener("click", tryIt);
  window.addEventListener("beforeunload", (e) => {
    if (JSON.stringify(state.doc) !== state.saved) e.preventDefault();
  });
  window.flowdeskBuilder = { document: () => clone(state.doc), saved: () => state.saved };
}

start();
