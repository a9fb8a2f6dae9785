// The live actor-tree view (anywidget ES module, no build step).
//
// The model's `tree` trait holds the whole tree as plain JSON:
//   {root, nodes: {key: node}, debug: {holder, waiting, parked}}
// Each view keeps one DOM row per actor, keyed by the actor's key, in one flat grid
// (depth is an indent inside the name cell, so columns never shift), and touches only
// the rows whose node changed; repaints are batched to one per animation frame.
// `beat` ticks every few seconds while the kernel's actor runtime is alive; a view
// that stops hearing it, or whose comm goes away (kernel restart or shutdown), says so
// instead of showing stale processes as live.

const PREFIX = "[notebook_actors]";
// (debugger sessions open in cells: the "doing" column says where, not a button)
const ACTIONS = ["stack", "restart", "cancel", "kill"];
const TITLES = {
  stack: "show the stack of every task and thread in this actor",
  restart: "a new process for this actor (notebook actors only)",
  cancel: "ask this actor and its subtree to stop",
  kill: "SIGKILL this actor (its parent sees a crash)",
};
const COLUMNS = [
  ["actor", "na-c-name"],
  ["state", "na-c-state"],
  ["doing", "na-c-doing"],
  ["pid", "na-c-pid na-num"],
  ["up", "na-c-up na-num"],
  ["CPU", "na-c-cpu na-num"],
  ["memory", "na-c-rss na-num"],
  ["msg/s", "na-c-msgs na-num"],
  ["", "na-c-actions"],
];
/** Sparkline samples: one per second over the last minute. */
const HISTORY = 60;
const ENDED = new Set(["exited", "crashed"]);

/** @param {number|null|undefined} n */
function fmtBytes(n) {
  if (!n) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

/** @param {number} s seconds */
function fmtDuration(s) {
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const pad = (/** @type {number} */ x) => String(x).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** Elapsed time of a running cell: "3.2 s", "47 s", "2:05". @param {number} s */
function fmtElapsed(s) {
  if (s < 10) return `${Math.max(0, s).toFixed(1)} s`;
  if (s < 60) return `${Math.floor(s)} s`;
  return fmtDuration(s);
}

/** @param {number} r messages per second */
function fmtRate(r) {
  if (!r) return "0/s";
  return r >= 100 ? `${Math.round(r)}/s` : `${r.toFixed(r < 10 ? 1 : 0)}/s`;
}

/** The state as a word (with how it ended): never colour alone. */
function stateWord(node) {
  const { state, exitcode } = node;
  if (!ENDED.has(state) || exitcode === null || exitcode === undefined) return state;
  // short words keep the column narrow; the crash line below says how it ended
  if (exitcode < 0 && state === "crashed") return "killed";
  return state;
}

/** The sum of a node's stream rates (messages per second). */
function msgRate(node) {
  return (node.calls || []).reduce((a, c) => a + (c.rate || 0), 0);
}

/** @param {string} tag @param {string} [cls] @param {string} [text] */
function h(tag, cls, text) {
  const el = document.createElement(tag);
  if (cls) el.className = cls;
  if (text !== undefined) el.textContent = text;
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

/** A small SVG sparkline; `draw(values, max)` redraws it. */
function sparkline(kind) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", `na-spark na-spark-${kind}`);
  svg.setAttribute("viewBox", `0 0 ${HISTORY - 1} 16`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const area = document.createElementNS(SVG, "path");
  area.setAttribute("class", "na-spark-area");
  const line = document.createElementNS(SVG, "path");
  line.setAttribute("class", "na-spark-line");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(area, line);
  svg.classList.add("na-spark-empty");
  /** @param {number[]} values @param {number} max */
  function draw(values, max) {
    svg.classList.toggle("na-spark-empty", values.length < 2);
    if (values.length < 2) { line.setAttribute("d", ""); area.setAttribute("d", ""); return; }
    const x0 = HISTORY - values.length;
    const y = (/** @type {number} */ v) => (15.5 - (15 * Math.min(v, max)) / (max || 1)).toFixed(2);
    const pts = values.map((v, i) => `${x0 + i},${y(v)}`);
    line.setAttribute("d", `M${pts.join("L")}`);
    area.setAttribute("d", `M${x0},16L${pts.join("L")}L${HISTORY - 1},16Z`);
  }
  return { svg, draw };
}

function render({ model, el }) {
  /** @type {Map<string, any>} */
  const rows = new Map();
  const root = h("div", "na-tree");
  const bar = h("div", "na-bar");
  const title = h("span", "na-title", "Actors");
  const count = h("span", "na-count");
  const conn = h("span", "na-conn");
  const connText = h("span", "na-conn-text");
  conn.append(h("span", "na-dot"), connText);
  const note = h("span", "na-note");
  bar.append(title, count, conn, note);
  const debugLine = h("div", "na-debugline");
  debugLine.setAttribute("role", "status");
  const actionLine = h("div", "na-action");
  actionLine.setAttribute("role", "status");
  const grid = h("div", "na-grid");
  grid.setAttribute("role", "table");
  const head = h("div", "na-head");
  head.setAttribute("role", "row");
  for (const [label, cls] of COLUMNS) {
    const cell = h("span", `na-cell ${cls}`, label);
    cell.setAttribute("role", "columnheader");
    head.append(cell);
  }
  const body = h("div", "na-body");
  grid.append(head, body);
  root.append(bar, debugLine, actionLine, grid);
  el.append(root);
  let frame = 0;
  let nextId = 1;
  let disconnected = "";
  let lastBeat = Date.now();

  function nodes() {
    return (model.get("tree") || {}).nodes || {};
  }

  function nameOf(key) {
    const node = nodes()[key];
    return node ? node.name : key ? String(key).split(".")[0] : "?";
  }

  function send(action, key) {
    if (disconnected) return;
    model.send({ type: "action", action, key, id: nextId++ });
    actionLine.textContent = `${action} ${nameOf(key)}…`;
    actionLine.className = "na-action na-pending";
  }

  function makeRow(key) {
    const row = h("div", "na-node");
    row.dataset.key = key;
    row.setAttribute("role", "rowgroup");
    const line = h("div", "na-line");
    line.setAttribute("role", "row");
    const cells = {};
    for (const [, cls] of COLUMNS) {
      const cell = h("span", `na-cell ${cls}`);
      cell.setAttribute("role", "cell");
      line.append(cell);
      cells[cls.split(" ")[0].slice(5)] = cell;
    }
    const caret = h("button", "na-caret", "▸");
    caret.title = "calls, recent output and traceback";
    caret.setAttribute("aria-expanded", "false");
    const name = h("span", "na-name");
    const host = h("span", "na-host");
    cells.name.append(caret, name, host);
    const pill = h("span", "na-pill");
    cells.state.append(pill);
    const doing = h("span", "na-doing");
    cells.doing.append(doing);
    const sparks = {};
    const values = {};
    for (const kind of ["cpu", "rss", "msgs"]) {
      sparks[kind] = sparkline(kind);
      values[kind] = h("span", "na-value");
      cells[kind].append(sparks[kind].svg, values[kind]);
    }
    const buttons = {};
    const installed = (model.get("status") || {}).actions;
    for (const action of ACTIONS.filter((a) => !installed || installed.includes(a))) {
      const b = h("button", `na-btn na-${action}`, action);
      b.dataset.action = action;
      b.title = TITLES[action];
      b.addEventListener("click", () => send(action, key));
      buttons[action] = b;
      cells.actions.append(b);
    }
    const crash = h("div", "na-crash");
    crash.hidden = true;
    const detail = h("div", "na-detail");
    detail.hidden = true;
    const stack = h("div", "na-stackbox");
    stack.hidden = true;
    row.append(line, crash, stack, detail);
    const entry = {
      row, line, cells, name, host, pill, doing, sparks, values, buttons, crash, detail, stack,
      json: "", expanded: false, node: null, history: { cpu: [], rss: [], msgs: [] },
    };
    caret.addEventListener("click", () => {
      entry.expanded = !entry.expanded;
      caret.textContent = entry.expanded ? "▾" : "▸";
      caret.setAttribute("aria-expanded", String(entry.expanded));
      detail.hidden = !entry.expanded;
      if (entry.expanded && entry.node) fillDetail(detail, entry.node);
    });
    return entry;
  }

  function fillDetail(detail, node) {
    detail.replaceChildren();
    const calls = node.calls || [];
    if (calls.length) {
      const table = h("table", "na-calls");
      const tr0 = h("tr");
      for (const t of ["call", "side", "peer", "sent", "received", "msg/s"]) tr0.append(h("th", "", t));
      table.append(tr0);
      for (const c of calls) {
        const tr = h("tr", c.stream ? "na-call na-stream" : "na-call");
        for (const v of [c.fn, c.side, nameOf(c.peer), c.sent, c.recv, c.rate]) tr.append(h("td", "", String(v)));
        table.append(tr);
      }
      detail.append(table);
    } else {
      detail.append(h("div", "na-none", "no calls or streams"));
    }
    if (node.traceback) {
      detail.append(h("div", "na-label", "traceback"), h("pre", "na-pre na-traceback", node.traceback));
    }
    const out = node.output || [];
    detail.append(h("div", "na-label", "recent output"));
    detail.append(h("pre", "na-pre na-output", out.length ? out.join("\n") : "(none)"));
  }

  /** What the actor does, in words: its debugger session, its cell and for how long,
   * its streams, its calls. */
  function doingText(node) {
    const debug = (model.get("tree") || {}).debug || {};
    if (debug.holder === node.key) return "in the debugger";
    if ((debug.waiting || []).includes(node.key)) return "waiting for the debugger";
    if ((debug.parked || []).includes(node.key)) return `parked: %actor debug ${node.name}`;
    if (node.activity) {
      const since = node.activity_since;
      return since ? `${node.activity}, ${fmtElapsed(Date.now() / 1000 - since)}` : node.activity;
    }
    if (ENDED.has(node.state)) return "";
    const calls = node.calls || [];
    const streams = calls.filter((c) => c.stream);
    const shown = streams.length ? streams : calls;
    if (!shown.length) return "";
    const fn = String(shown[0].fn).split(":").pop();
    const peer = shown[0].peer ? nameOf(shown[0].peer) : "";
    const arrow = shown[0].side === "caller" ? "→" : "←";
    const more = shown.length > 1 ? ` +${shown.length - 1}` : "";
    return `${fn}${peer ? ` ${arrow} ${peer}` : ""}${more}`;
  }

  function updateRow(entry, node, depth) {
    entry.node = node;
    const { row, cells } = entry;
    row.dataset.state = node.state;
    row.dataset.name = node.name;
    row.dataset.parent = node.parent || "";
    row.dataset.depth = String(depth);
    row.className = `na-node na-state-${node.state}`;
    cells.name.style.setProperty("--na-depth", String(depth));
    entry.crash.style.setProperty("--na-crash-indent", `${depth * 16}px`);
    entry.name.textContent = node.name;
    entry.name.title = `${node.name}\n${node.key}`; // the full name, when the column cuts it
    // an actor on another machine (an SSH or Slurm launcher) says where
    entry.host.textContent = node.host ? `@${node.host}` : "";
    entry.host.title = node.host ? `runs on ${node.host}` : "";
    entry.pill.textContent = stateWord(node);
    entry.pill.className = `na-pill na-s-${node.state}`;
    entry.pill.title = node.exitcode === null || node.exitcode === undefined ? "" : `exit code ${node.exitcode}`;
    cells.pid.textContent = node.pid ? String(node.pid) : "–";
    cells.up.textContent = node.started ? fmtDuration(Date.now() / 1000 - node.started) : "–";
    entry.values.cpu.textContent = ENDED.has(node.state) ? "–" : `${Math.round(node.cpu || 0)}%`;
    entry.values.rss.textContent = ENDED.has(node.state) ? "–" : fmtBytes(node.rss);
    entry.values.msgs.textContent = ENDED.has(node.state) ? "–" : fmtRate(msgRate(node));
    entry.doing.textContent = doingText(node);
    entry.doing.title = entry.doing.textContent;
    entry.crash.hidden = !node.error;
    entry.crash.textContent = node.error || "";
    entry.crash.title = node.error || "";
    setButtons(entry);
    if (entry.expanded) fillDetail(entry.detail, node);
  }

  function setButtons(entry) {
    const node = entry.node;
    if (!node) return;
    const ended = ENDED.has(node.state);
    const isRoot = !node.parent; // the kernel itself: interrupt or restart the kernel
    const enabled = {
      stack: !ended,
      restart: !isRoot && node.state !== "spawning",
      cancel: !isRoot && !ended,
      kill: !isRoot && !ended,
    };
    for (const [action, b] of Object.entries(entry.buttons)) b.disabled = !!disconnected || !enabled[action];
  }

  function depthOf(all, key) {
    let d = 0;
    for (let k = all[key].parent; k && all[k] && d < 100; k = all[k].parent) d += 1;
    return d;
  }

  /** Keys in tree order: each parent followed by its children, by name. */
  function treeOrder(all) {
    const kids = new Map();
    for (const [key, node] of Object.entries(all)) {
      const parent = node.parent && all[node.parent] ? node.parent : null;
      if (!kids.has(parent)) kids.set(parent, []);
      kids.get(parent).push(key);
    }
    const out = [];
    const walk = (parent) => {
      const list = (kids.get(parent) || []).sort((a, b) => all[a].name.localeCompare(all[b].name) || a.localeCompare(b));
      for (const key of list) { out.push(key); if (out.length <= 10000) walk(key); }
    };
    walk(null);
    return out;
  }

  function paint() {
    frame = 0;
    const tree = model.get("tree") || {};
    const all = tree.nodes || {};
    for (const [key, entry] of rows) {
      if (!(key in all)) { entry.row.remove(); rows.delete(key); }
    }
    const debugJson = JSON.stringify(tree.debug || {});
    let at = body.firstChild;
    for (const key of treeOrder(all)) {
      const node = all[key];
      let entry = rows.get(key);
      if (!entry) { entry = makeRow(key); rows.set(key, entry); }
      const depth = depthOf(all, key);
      const json = JSON.stringify(node) + depth + debugJson;
      if (json !== entry.json) { entry.json = json; updateRow(entry, node, depth); }
      if (entry.row !== at) body.insertBefore(entry.row, at);
      else at = at.nextSibling;
    }
    paintDebug(tree.debug || {});
    count.textContent = String(Object.keys(all).length);
  }

  function paintDebug(debug) {
    const parts = [];
    if (debug.holder) {
      const waiting = (debug.waiting || []).map(nameOf);
      parts.push(`${nameOf(debug.holder)} is in the debugger${waiting.length ? `; waiting: ${waiting.join(", ")}` : ""}`);
    }
    const parked = (debug.parked || []).map(nameOf);
    if (parked.length) parts.push(`parked in their debugger: ${parked.join(", ")} (open with %actor debug NAME)`);
    debugLine.textContent = parts.join(" · ");
  }

  function schedule() {
    if (!frame) frame = requestAnimationFrame(paint);
  }

  function showStatus() {
    const status = model.get("status") || {};
    if (disconnected) {
      setConn("na-conn-gone", "disconnected", disconnected);
    } else if (status.live === false) {
      setConn("na-conn-stopped", "stopped", status.why || "the actor runtime stopped");
    } else if (Date.now() - lastBeat > staleAfter()) {
      const s = Math.round((Date.now() - lastBeat) / 1000);
      setConn("na-conn-stale", `no updates for ${s} s`, "the kernel is busy: blocking code pauses the actor runtime");
    } else {
      setConn("na-conn-live", "live", "");
    }
  }

  function setConn(cls, text, why) {
    conn.className = `na-conn ${cls}`;
    connText.textContent = text;
    note.textContent = why;
    root.classList.toggle("na-frozen", cls !== "na-conn-live");
  }

  function staleAfter() {
    const every = (model.get("status") || {}).beat_interval || 2;
    return 1000 * (3 * every + 1);
  }

  /** The comm is gone (kernel restarted, shut down or died): nothing here is live. */
  function lostKernel() {
    if (disconnected) return;
    disconnected = "the kernel is gone (restarted or shut down): these processes no longer exist; run %actor tree again";
    console.warn(`${PREFIX} tree view disconnected from its kernel`);
    for (const entry of rows.values()) setButtons(entry);
    showStatus();
  }

  function onBeat() {
    lastBeat = Date.now();
    showStatus();
  }

  function showAction() {
    const a = model.get("last_action") || {};
    if (!a.action) return;
    actionLine.textContent = `${a.action} ${nameOf(a.key)}: ${a.message}`;
    actionLine.className = a.ok ? "na-action na-ok" : "na-action na-failed";
    const entry = rows.get(a.key);
    if (a.ok && typeof a.text === "string" && entry) showStack(entry, a.text);
  }

  function showStack(entry, text) {
    const box = entry.stack;
    box.replaceChildren();
    const head = h("div", "na-stackhead");
    head.append(h("span", "na-label", `stacks of ${entry.node ? entry.node.name : "?"} at ${new Date().toLocaleTimeString()}`));
    const close = h("button", "na-btn na-close", "close");
    close.addEventListener("click", () => { box.hidden = true; box.replaceChildren(); });
    head.append(close);
    box.append(head, h("pre", "na-pre na-stacktext", text));
    box.hidden = false;
  }

  // Once a second, in the browser (no kernel traffic): sparkline samples, uptimes,
  // elapsed cell times, and whether the kernel still beats.
  function tick() {
    showStatus();
    if (root.classList.contains("na-frozen")) return;
    const now = Date.now() / 1000;
    for (const entry of rows.values()) {
      const node = entry.node;
      if (!node || ENDED.has(node.state)) continue;
      const hist = entry.history;
      for (const [kind, v] of [["cpu", node.cpu || 0], ["rss", node.rss || 0], ["msgs", msgRate(node)]]) {
        hist[kind].push(v);
        if (hist[kind].length > HISTORY) hist[kind].shift();
      }
      // each line scaled to its own peak (the figure beside it gives the size); a floor
      // keeps an idle actor's 0-2 % flicker flat
      entry.sparks.cpu.draw(hist.cpu, Math.max(10, ...hist.cpu) * 1.15);
      entry.sparks.rss.draw(hist.rss, Math.max(...hist.rss) * 1.15);
      entry.sparks.msgs.draw(hist.msgs, Math.max(1, ...hist.msgs) * 1.15);
      entry.cells.cpu.title = `CPU over the last minute: now ${Math.round(node.cpu || 0)}%, peak ${Math.round(Math.max(...hist.cpu))}%`;
      entry.cells.rss.title = `memory (RSS) over the last minute: now ${fmtBytes(node.rss)}, peak ${fmtBytes(Math.max(...hist.rss))}`;
      entry.cells.msgs.title = `stream messages per second over the last minute: now ${fmtRate(msgRate(node))}`;
      if (node.started) entry.cells.up.textContent = fmtDuration(now - node.started);
      if (node.activity) entry.doing.textContent = doingText(node);
    }
  }
  const clock = setInterval(tick, 1000);

  model.on("change:tree", schedule);
  model.on("change:status", showStatus);
  model.on("change:beat", onBeat);
  model.on("change:last_action", showAction);
  // ipywidgets marks every model dead when the kernel restarts ("comm_live_update")
  // and closes the comm when the kernel side closes it or the kernel dies.
  model.on("comm_live_update", lostKernel);
  model.on("comm:close", lostKernel);
  showStatus();
  paint();
  tick();
  console.debug(`${PREFIX} tree view rendered`);

  return () => {
    clearInterval(clock);
    if (frame) cancelAnimationFrame(frame);
    model.off("change:tree", schedule);
    model.off("change:status", showStatus);
    model.off("change:beat", onBeat);
    model.off("change:last_action", showAction);
    model.off("comm_live_update", lostKernel);
    model.off("comm:close", lostKernel);
    console.debug(`${PREFIX} tree view removed`);
  };
}

export default { render };
