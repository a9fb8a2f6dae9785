"""The widget's ES module (widgets/tree.js) in Chromium with a fake model (no kernel):
keyed DOM updates for 100 actors, aligned columns, state words, sparklines, the
disconnected and stale states, buttons, cleanup."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
TREE_JS = Path(__file__).resolve().parents[2] / "widgets" / "tree.js"
TREE_CSS = TREE_JS.with_name("tree.css")
OUTPUT = Path(__file__).parent / "output"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)

# A model with anywidget's surface: get/set/on/off/send.
FAKE_MODEL = """
window.makeModel = (state) => {
  const handlers = {};
  return {
    state, sent: [], handlers,
    get(k) { return this.state[k]; },
    set(k, v) { this.state[k] = v; (handlers["change:" + k] || []).forEach((f) => f()); },
    on(e, f) { (handlers[e] = handlers[e] || []).push(f); },
    off(e, f) { handlers[e] = (handlers[e] || []).filter((g) => g !== f); },
    send(m) { this.sent.push(m); },
  };
};
window.nextFrame = () => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
"""


def node(key: str, name: str, parent: str | None, **kw):
    base = {
        "key": key,
        "name": name,
        "uid": [name, key],
        "pid": 1000,
        "parent": parent,
        "state": "idle",
        "exitcode": None,
        "error": None,
        "started": time.time() - 65,
        "cpu": 1.0,
        "rss": 30 << 20,
        "addr": None,
        "activity": None,
        "calls": [],
        "output": [],
    }
    return {**base, **kw}


def hundred_actors() -> dict:
    nodes = {"root": node("root", "root", None, state="running")}
    for m in range(9):
        nodes[f"m{m}"] = node(f"m{m}", f"mid-{m}", "root")
        for leaf in range(10):
            if len(nodes) < 100:
                nodes[f"m{m}l{leaf}"] = node(f"m{m}l{leaf}", f"leaf-{m}-{leaf}", f"m{m}")
    return {"root": "root", "nodes": nodes, "debug": {"holder": None, "waiting": []}}


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_content(f"<style>{TREE_CSS.read_text()}</style><div id='el'></div>")
            page.add_script_tag(content=FAKE_MODEL)
            js = TREE_JS.read_text().replace("export default { render };", "window.naRender = render;")
            page.add_script_tag(content=js, type="module")
            page.wait_for_function("() => typeof window.naRender === 'function'")
            yield page
        finally:
            browser.close()


RENDER = """async ([tree, status]) => {
  window.model = makeModel({tree, status: status || {live: true}, last_action: {}, beat: 0});
  window.cleanup = naRender({model, el: document.getElementById('el')});
  await nextFrame();
}"""


def render(page, tree, status=None):
    page.evaluate(RENDER, [tree, status])


def test_hundred_actors_update_by_key(page):
    """Test that 100 actors render in tree order, and that an update replaces no row
    except those that left or arrived (keyed updates, no full re-render)."""
    tree = hundred_actors()
    render(page, tree)
    page.evaluate("document.querySelectorAll('.na-node').forEach((row) => { row.__tag = row.dataset.key; })")
    assert page.locator(".na-node").count() == 100
    assert page.locator(".na-node[data-parent='m3']").count() == 10
    assert page.locator(".na-count").text_content() == "100"

    nodes = dict(tree["nodes"])
    nodes["m1l1"] = {**nodes["m1l1"], "state": "crashed", "exitcode": -9, "error": "killed by SIGKILL"}
    del nodes["m2l2"]
    nodes["new"] = node("new", "newcomer", "m0")
    kept = page.evaluate(
        """async (tree) => {
          model.set('tree', tree);
          await nextFrame();
          const rows = [...document.querySelectorAll('.na-node')];
          return {count: rows.length, retagged: rows.filter((r) => r.__tag !== r.dataset.key).map((r) => r.dataset.key),
                  order: rows.map((r) => r.dataset.key)};
        }""",
        {**tree, "nodes": nodes},
    )
    assert (kept["count"], kept["retagged"]) == (100, ["new"])
    order = kept["order"]
    # each parent is followed by its children (by name): m0, its ten leaves, then the newcomer
    assert order[:2] == ["root", "m0"] and order[12] == "new" and order[13] == "m1"
    crashed = page.locator(".na-node[data-key='m1l1']")
    assert "na-state-crashed" in crashed.get_attribute("class")
    assert crashed.locator("> .na-line .na-pill").text_content() == "killed"
    assert crashed.locator("> .na-crash").text_content() == "killed by SIGKILL"
    assert crashed.locator("> .na-line .na-cancel").is_disabled()
    assert not crashed.locator("> .na-line .na-restart").is_disabled()


def test_columns_align_at_every_depth(page):
    """Test that every column starts at the same x in the header and in rows of depth
    0, 1 and 2, also when one row's content is longer than the others'."""
    tree = hundred_actors()
    long_name = {**tree["nodes"]["m3l4"], "name": "a-much-longer-actor-name-than-the-others", "activity": "cell [123]"}
    tree["nodes"]["m3l4"] = {**long_name, "activity_since": time.time()}
    render(page, tree)
    lefts = page.evaluate(
        """() => [document.querySelector('.na-head'),
                  ...['root', 'm3', 'm3l0', 'm3l4'].map((k) => document.querySelector(`.na-node[data-key='${k}'] > .na-line`))]
              .map((line) => [...line.children].map((cell) => Math.round(cell.getBoundingClientRect().left)))"""
    )
    assert len(lefts[0]) == 9
    assert all(row == lefts[0] for row in lefts), lefts
    depth = page.evaluate(
        "['root', 'm3', 'm3l0'].map((k) => document.querySelector(`.na-node[data-key='${k}'] .na-name`)"
        ".getBoundingClientRect().left)"
    )
    assert depth[0] < depth[1] < depth[2]  # depth is an indent inside the name cell


def test_crash_reads_as_a_sentence_and_nothing_is_clipped(page):
    """Test that a crashed actor shows its error on a line of its own, wrapped, and
    that no button or state word is cut off."""
    tree = hundred_actors()
    error = "ValueError: " + "a long explanation of what went wrong " * 6
    tree["nodes"]["m5"] = {**tree["nodes"]["m5"], "state": "crashed", "exitcode": 0, "error": error}
    render(page, tree)
    row = page.locator(".na-node[data-key='m5']")
    assert row.locator("> .na-line .na-pill").text_content() == "crashed"
    assert row.locator("> .na-crash").text_content() == error
    clipped = page.evaluate(
        """() => [...document.querySelectorAll('.na-btn, .na-pill, .na-crash')]
              .filter((e) => e.offsetParent && (e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1))
              .map((e) => e.className + ': ' + e.textContent)"""
    )
    assert clipped == []


def test_a_running_cell_shows_as_the_cell_and_its_time(page):
    """Test that an actor running a notebook cell reads "cell [12], 3.2 s" (ticking),
    not as a stream."""
    tree = hundred_actors()
    stream = {"fn": "x:run_cell", "side": "callee", "peer": "root", "stream": True, "sent": 3, "recv": 0, "rate": 0.0}
    tree["nodes"]["m2"] = {
        **tree["nodes"]["m2"],
        "state": "running",
        "activity": "cell [12]",
        "activity_since": time.time() - 3.2,
        "calls": [stream],
    }
    render(page, tree)
    doing = page.locator(".na-node[data-key='m2'] > .na-line .na-doing")
    first = doing.text_content()
    assert re.fullmatch(r"cell \[12\], \d\.\d s", first), first
    page.wait_for_function(
        "(t) => document.querySelector(`.na-node[data-key='m2'] .na-doing`).textContent !== t", arg=first
    )
    assert re.fullmatch(r"cell \[12\], \d+(\.\d)? s", doing.text_content())


def test_sparklines_draw_the_last_minute(page):
    """Test that each running actor gets CPU, memory and message-rate sparklines that
    fill as samples arrive, and that an ended actor's stay as they were."""
    tree = hundred_actors()
    render(page, tree)
    for cpu in (10, 80, 30):
        page.evaluate(
            """async (cpu) => {
              const t = model.get('tree');
              model.set('tree', {...t, nodes: {...t.nodes, m1: {...t.nodes.m1, cpu}}});
              const n = document.querySelector(`.na-node[data-key='m1'] .na-spark-cpu .na-spark-line`);
              const before = n.getAttribute('d');
              await new Promise((r) => { const i = setInterval(() => { if (n.getAttribute('d') !== before) { clearInterval(i); r(); } }, 50); });
            }""",
            cpu,
        )
    paths = page.evaluate(
        "['cpu', 'rss', 'msgs'].map((k) => document.querySelector(`.na-node[data-key='m1'] .na-spark-${k} .na-spark-line`)"
        ".getAttribute('d'))"
    )
    assert all(p and p.count("L") >= 2 for p in paths), paths
    ys = [float(pt.split(",")[1]) for pt in paths[0][1:].split("L")[-3:]]
    assert ys[1] < ys[0] and ys[1] < ys[2]  # 80 % is drawn higher than 10 % and 30 %
    assert "peak 80%" in page.locator(".na-node[data-key='m1'] .na-c-cpu").get_attribute("title")


def test_disconnected_when_the_kernel_goes_away(page):
    """Test that the view says "disconnected", greys out and disables every button when
    ipywidgets marks its model dead (kernel restart), and sends nothing after that."""
    render(page, hundred_actors())
    conn = page.locator(".na-conn")
    assert conn.text_content() == "live"
    page.evaluate("model.handlers['comm_live_update'].forEach((f) => f())")
    assert conn.text_content() == "disconnected"
    assert "kernel is gone" in page.locator(".na-note").text_content()
    assert page.locator(".na-btn:not(:disabled)").count() == 0
    assert "na-frozen" in page.locator(".na-tree").get_attribute("class")
    page.locator(".na-node[data-key='m4'] > .na-line .na-kill").click(force=True)
    assert page.evaluate("model.sent") == []


def test_stale_when_the_beats_stop(page):
    """Test that the view says it gets no updates when the kernel stops beating (a
    blocking cell), and is live again at the next beat."""
    render(page, hundred_actors(), {"live": True, "beat_interval": 0.1})
    page.wait_for_function("() => document.querySelector('.na-conn').textContent.startsWith('no updates')")
    assert "blocking code" in page.locator(".na-note").text_content()
    page.evaluate("model.set('beat', 1)")
    assert page.locator(".na-conn").text_content() == "live"


def test_buttons_send_actions_and_answers_show(page):
    """Test that a button sends an action message and the answer is shown; the root's
    cancel is disabled; a stack answer opens under its actor."""
    render(page, hundred_actors(), {"live": True, "actions": ["cancel", "kill", "stack"]})
    assert page.locator(".na-node[data-key='root'] > .na-line .na-cancel").is_disabled()
    assert page.locator(".na-node[data-key='root'] > .na-line .na-restart").count() == 0  # not installed
    page.locator(".na-node[data-key='m4'] > .na-line .na-kill").click()
    assert page.evaluate("model.sent") == [{"type": "action", "action": "kill", "key": "m4", "id": 1}]
    page.evaluate(
        "model.set('last_action', {id: 1, action: 'kill', key: 'm4', ok: false, message: 'actor m4 is gone'})"
    )
    assert page.locator(".na-action").text_content() == "kill mid-4: actor m4 is gone"
    assert "na-failed" in page.locator(".na-action").get_attribute("class")
    page.evaluate(
        "model.set('last_action', {id: 2, action: 'stack', key: 'm4', ok: true, message: 'stacks of mid-4',"
        " text: 'Task main\\n  File x.py, line 3, in spin'})"
    )
    box = page.locator(".na-node[data-key='m4'] > .na-stackbox")
    assert box.is_visible() and "in spin" in box.locator(".na-stacktext").text_content()
    box.locator(".na-close").click()
    assert not box.is_visible()


def test_cleanup_detaches_from_the_model(page):
    """Test that the cleanup function removes every model listener."""
    handlers = page.evaluate(
        """async (tree) => {
          window.model = makeModel({tree, status: {live: true}, last_action: {}});
          const cleanup = naRender({model, el: document.getElementById('el')});
          await nextFrame();
          cleanup();
          return Object.values(model.handlers).reduce((n, hs) => n + hs.length, 0);
        }""",
        hundred_actors(),
    )
    assert handlers == 0


def test_repaint_cost_of_a_hundred_changing_actors(page, record_property):
    """Test that repainting 100 actors that all changed completes, and record its cost."""
    ms = page.evaluate(
        """async (tree) => {
          window.model = makeModel({tree, status: {live: true}, last_action: {}, beat: 0});
          naRender({model, el: document.getElementById('el')});
          await nextFrame();
          const times = [];
          for (let i = 0; i < 20; i++) {
            const nodes = {};
            for (const [k, n] of Object.entries(tree.nodes)) nodes[k] = {...n, cpu: i, rss: n.rss + i};
            const t0 = performance.now();
            model.set('tree', {...tree, nodes});
            await nextFrame();
            times.push(performance.now() - t0);
          }
          return times;
        }""",
        hundred_actors(),
    )
    assert len(ms) == 20
    record_property("repaint_ms_median", sorted(ms)[10])
    print(f"repaint of 100 changed actors: median {sorted(ms)[10]:.1f} ms, max {max(ms):.1f} ms")
    assert page.locator(".na-node[data-key='m8l0'] > .na-line .na-c-cpu .na-value").text_content() == "19%"


def test_an_actor_on_another_machine_names_its_host(page):
    """Test that an actor started by a launcher (SSH, Slurm) shows where it runs, and
    a local one shows nothing extra."""
    tree = hundred_actors()
    tree["nodes"]["m3"] = {**tree["nodes"]["m3"], "host": "gpu1"}
    render(page, tree)
    assert page.locator(".na-node[data-key='m3'] > .na-line .na-host").text_content() == "@gpu1"
    assert page.locator(".na-node[data-key='m4'] > .na-line .na-host").text_content() == ""


#: Whether an element's text is cut off, and how: its full width, its shown width, its
#: text-overflow, and whether it spills past the cell that holds it.
NAME_FIT = """(key) => {
  const name = document.querySelector(`.na-node[data-key='${key}'] .na-name`);
  const cell = name.closest('.na-cell');
  return {full: name.scrollWidth, shown: name.clientWidth, overflow: getComputedStyle(name).textOverflow,
          spills: name.getBoundingClientRect().right > cell.getBoundingClientRect().right + 0.5,
          title: name.title};
}"""


def test_a_long_actor_name_ends_in_an_ellipsis_and_shows_in_full_on_hover(page):
    """Test that a name longer than its column is cut with an ellipsis inside its cell
    (not chopped by the cell's edge), at depth 2 too, that the hover title holds the full
    name, and that a short name is shown whole."""
    tree = hundred_actors()
    long = "a-much-longer-actor-name-than-any-column-would-hold-" * 2
    tree["nodes"]["m3l4"] = {**tree["nodes"]["m3l4"], "name": long}
    page.set_viewport_size({"width": 1000, "height": 800})
    render(page, tree)
    fit = page.evaluate(NAME_FIT, "m3l4")
    assert fit["full"] > fit["shown"] > 0 and fit["overflow"] == "ellipsis" and not fit["spills"], fit
    assert fit["title"].splitlines()[0] == long
    short = page.evaluate(NAME_FIT, "m3l0")
    assert short["full"] <= short["shown"] and not short["spills"], short
    page.locator(".na-node[data-key='m3l4']").screenshot(path=str(OUTPUT / "tree_js_long_name.png"))
