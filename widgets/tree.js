// The live actor-tree view (anywidget ES module, no build step).
//
// The model's `tree` trait holds the whole tree as plain JSON:
//   {root, nodes: {key: node}, debug: {holder, waiting}}
// Each view keeps one DOM row per actor, keyed by the actor's key, and touches only
// the rows whose node changed; repaints are batched to one per animation frame.

const PREFIX = "[notebook_actors]";
const ACTIONS = ["cancel", "kill", "restart", "debug"];

/** @param {number|null|undefined} n */
function fmtBytes(n) {
  if (!n) return "-";
  const units = ["B", "K", "M", "G"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return i === 0 ? `${n}B` : `${n.toFixed(1)}${units[i]}`;
}

/** @param {number|null|undefined} started epoch seconds */
function fmtAge(started) {
  if (!started) return "-";
  let s = Math.max(0, Math.floor(Date.now() / 1000 - started));
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const pad = (/** @type {number} */ x) => String(x).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

const SIGNALS = { 2: "SIGINT", 9: "SIGKILL", 15: "SIGTERM", 6: "SIGABRT", 11: "SIGSEGV" };

/** The state as a word (with exit code or signal): never colour alone. */
function stateWord(node) {
  const { state, exitcode } = node;
  if ((state === "exited" || state === "crashed") && exitcode !== null && exitcode !== undefined) {
    const sig = exitcode < 0 ? SIGNALS[-exitcode] : null;
    return `${state}(${sig || exitcode})`;
  }
  return state;
}

/** @param {string} tag @param {string} [cls] @param {string} [text] */
function h(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

function render({ model, el }) {
  /** @type {Map<string, {row: HTMLElement, kids: HTMLElement, json: string, detail: HTMLElement, expanded: boolean}>} */
  const rows = new Map();
  const root = h("div", "na-tree");
  const header = h("div", "na-header");
  const title = h("span", "na-title", "actors");
  const live = h("span", "na-live");
  const debugLine = h("div", "na-debug");
  const actionLine = h("div", "na-action");
  const body = h("div", "na-body");
  header.append(title, live);
  root.append(header, debugLine, actionLine, body);
  el.append(root);
  let frame = 0;
  let nextId = 1;

  function nameOf(key) {
    const node = (model.get("tree").nodes || {})[key];
    return node ? node.name : key ? key.split(".")[0] : "?";
  }

  function makeRow(key) {
    const row = h("div", "na-node");
    row.dataset.key = key;
    const line = h("div", "na-line");
    const caret = h("button", "na-caret", "▸");
    caret.title = "show streams and recent output";
    caret.addEventListener("click", () => {
      const entry = rows.get(key);
      if (!entry) return;
      entry.expanded = !entry.expanded;
      caret.textContent = entry.expanded ? "▾" : "▸";
      entry.detail.hidden = !entry.expanded;
      const node = (model.get("tree").nodes || {})[key];
      if (node && entry.expanded) fillDetail(entry.detail, node);
    });
    line.append(caret);
    for (const cls of ["na-name", "na-pid", "na-state", "na-up", "na-cpu", "na-rss", "na-streams", "na-error"]) {
      line.append(h("span", cls));
    }
    const buttons = h("span", "na-buttons");
    for (const action of ACTIONS) {
      const b = h("button", `na-btn na-${action}`, action);
      b.dataset.action = action;
      b.addEventListener("click", () => {
        const id = nextId++;
        model.send({ type: "action", action, key, id });
        actionLine.textContent = `${action} ${nameOf(key)}…`;
        actionLine.className = "na-action na-pending";
      });
      buttons.append(b);
    }
    line.append(buttons);
    const detail = h("div", "na-detail");
    detail.hidden = true;
    const kids = h("div", "na-kids");
    row.append(line, detail, kids);
    return { row, kids, json: "", detail, expanded: false };
  }

  function fillDetail(detail, node) {
    detail.replaceChildren();
    const calls = node.calls || [];
    if (calls.length) {
      const table = h("table", "na-calls");
      const head = h("tr");
      for (const t of ["call", "side", "peer", "sent", "recv", "msg/s"]) head.append(h("th", "", t));
      table.append(head);
      for (const c of calls) {
        const tr = h("tr", c.stream ? "na-call na-stream" : "na-call");
        for (const v of [c.fn, c.side, nameOf(c.peer), c.sent, c.recv, c.rate]) tr.append(h("td", "", String(v)));
        table.append(tr);
      }
      detail.append(table);
    } else {
      detail.append(h("div", "na-none", "no calls or streams"));
    }
    if (node.activity) detail.append(h("div", "na-activity", node.activity));
    const out = node.output || [];
    detail.append(h("pre", "na-output", out.length ? out.join("\n") : "(no recent output)"));
  }

  function updateRow(entry, node) {
    const { row } = entry;
    const line = row.firstChild;
    const get = (cls) => line.querySelector(`.${cls}`);
    const word = stateWord(node);
    row.dataset.state = node.state;
    row.dataset.name = node.name;
    row.className = `na-node na-state-${node.state}`;
    get("na-name").textContent = node.name;
    get("na-pid").textContent = node.pid ? `pid ${node.pid}` : "pid -";
    const state = get("na-state");
    state.textContent = word;
    state.className = `na-state na-badge-${node.state}`;
    get("na-up").dataset.started = node.started || "";
    get("na-up").textContent = fmtAge(node.started);
    get("na-cpu").textContent = `${Math.round(node.cpu || 0)}%`;
    get("na-rss").textContent = fmtBytes(node.rss);
    const streams = (node.calls || []).filter((c) => c.stream);
    const rate = streams.reduce((a, c) => a + (c.rate || 0), 0);
    get("na-streams").textContent = streams.length
      ? `${streams.length} stream${streams.length > 1 ? "s" : ""} · ${rate.toFixed(0)} msg/s`
      : "";
    get("na-error").textContent = node.error ? `! ${node.error}` : "";
    const ended = node.state === "exited" || node.state === "crashed";
    for (const b of line.querySelectorAll(".na-btn")) {
      const action = b.dataset.action;
      if (action === "debug") b.disabled = !(node.state === "crashed" || node.state === "debugger");
      else b.disabled = ended || !node.parent; // the root is the kernel itself
    }
    if (entry.expanded) fillDetail(entry.detail, node);
  }

  function paint() {
    frame = 0;
    const tree = model.get("tree") || {};
    const nodes = tree.nodes || {};
    for (const [key, entry] of rows) {
      if (!(key in nodes)) { entry.row.remove(); rows.delete(key); }
    }
    // Parents first, so a child always finds its parent's row.
    const order = Object.keys(nodes).sort((a, b) => depth(nodes, a) - depth(nodes, b) || nodes[a].name.localeCompare(nodes[b].name));
    for (const key of order) {
      const node = nodes[key];
      let entry = rows.get(key);
      if (!entry) { entry = makeRow(key); rows.set(key, entry); }
      const json = JSON.stringify(node);
      if (json !== entry.json) { entry.json = json; updateRow(entry, node); }
      const parent = node.parent && rows.get(node.parent);
      const box = parent ? parent.kids : body;
      if (entry.row.parentNode !== box) box.append(entry.row);
    }
    const debug = tree.debug || {};
    const parked = (debug.parked || []).map(nameOf).join(", ");
    debugLine.textContent = [
      debug.holder ? `debugger: ${nameOf(debug.holder)} holds the REPL; waiting: ${(debug.waiting || []).map(nameOf).join(", ") || "none"}` : "",
      parked ? `parked in their debugger: ${parked}` : "",
    ].filter(Boolean).join(" · ");
    title.textContent = `actors (${Object.keys(nodes).length})`;
  }

  function depth(nodes, key) {
    let d = 0;
    for (let k = nodes[key].parent; k && nodes[k] && d < 100; k = nodes[k].parent) d += 1;
    return d;
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(paint);
  }

  function showStatus() {
    const status = model.get("status") || {};
    live.textContent = status.live === false ? `not live: ${status.why || "stopped"}` : "live";
    live.className = status.live === false ? "na-live na-stopped" : "na-live";
  }

  function showAction() {
    const a = model.get("last_action") || {};
    if (!a.action) return;
    actionLine.textContent = `${a.action} ${nameOf(a.key)}: ${a.message}`;
    actionLine.className = a.ok ? "na-action na-ok" : "na-action na-failed";
  }

  // Uptime ticks in the browser: no kernel traffic for it.
  const clock = setInterval(() => {
    for (const span of root.querySelectorAll(".na-up")) {
      const started = Number(span.dataset.started);
      if (started) span.textContent = fmtAge(started);
    }
  }, 1000);

  model.on("change:tree", schedule);
  model.on("change:status", showStatus);
  model.on("change:last_action", showAction);
  showStatus();
  paint();
  console.debug(`${PREFIX} tree view rendered`);

  return () => {
    clearInterval(clock);
    if (frame) cancelAnimationFrame(frame);
    model.off("change:tree", schedule);
    model.off("change:status", showStatus);
    model.off("change:last_action", showAction);
    console.debug(`${PREFIX} tree view removed`);
  };
}

export default { render };
