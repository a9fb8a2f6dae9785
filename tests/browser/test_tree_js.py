"""The widget's ES module (widgets/tree.js) in Chromium with a fake model (no kernel):
keyed DOM updates for 100 actors, state words, buttons, cleanup."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
TREE_JS = Path(__file__).resolve().parents[2] / "widgets" / "tree.js"
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
            page.set_content("<div id='el'></div>")
            page.add_script_tag(content=FAKE_MODEL)
            js = TREE_JS.read_text().replace("export default { render };", "window.naRender = render;")
            page.add_script_tag(content=js, type="module")
            page.wait_for_function("() => typeof window.naRender === 'function'")
            yield page
        finally:
            browser.close()


def test_hundred_actors_update_by_key(page):
    """Test that 100 actors render nested, and that an update replaces no row except
    those that left or arrived (keyed updates, no full re-render)."""
    tree = hundred_actors()
    page.evaluate(
        """async (tree) => {
          window.model = makeModel({tree, status: {live: true}, last_action: {}});
          window.cleanup = naRender({model, el: document.getElementById('el')});
          await nextFrame();
          document.querySelectorAll('.na-node').forEach((row) => { row.__tag = row.dataset.key; });
        }""",
        tree,
    )
    assert page.locator(".na-node").count() == 100
    assert page.locator(".na-node[data-key='m3'] > .na-kids > .na-node").count() == 10
    assert page.locator(".na-title").text_content() == "actors (100)"

    nodes = dict(tree["nodes"])
    nodes["m1l1"] = {**nodes["m1l1"], "state": "crashed", "exitcode": -9, "error": "died"}
    del nodes["m2l2"]
    nodes["new"] = node("new", "newcomer", "m0")
    kept = page.evaluate(
        """async (tree) => {
          model.set('tree', tree);
          await nextFrame();
          const rows = [...document.querySelectorAll('.na-node')];
          return {count: rows.length, retagged: rows.filter((r) => r.__tag !== r.dataset.key).map((r) => r.dataset.key)};
        }""",
        {**tree, "nodes": nodes},
    )
    assert kept == {"count": 100, "retagged": ["new"]}
    crashed = page.locator(".na-node[data-key='m1l1']")
    assert "na-state-crashed" in crashed.get_attribute("class")
    assert crashed.locator("> .na-line .na-state").text_content() == "crashed(SIGKILL)"
    assert crashed.locator("> .na-line .na-error").text_content() == "! died"
    assert crashed.locator("> .na-line .na-cancel").is_disabled()
    assert not crashed.locator("> .na-line .na-debug").is_disabled()
    assert page.locator(".na-node[data-key='m0'] > .na-kids > .na-node[data-key='new']").count() == 1


def test_buttons_send_actions_and_answers_show(page):
    """Test that a button sends an action message and the answer is shown; the root's
    cancel is disabled."""
    page.evaluate(
        """async (tree) => {
          window.model = makeModel({tree, status: {live: true}, last_action: {}});
          window.cleanup = naRender({model, el: document.getElementById('el')});
          await nextFrame();
        }""",
        hundred_actors(),
    )
    assert page.locator(".na-node[data-key='root'] > .na-line .na-cancel").is_disabled()
    page.locator(".na-node[data-key='m4'] > .na-line .na-kill").click()
    assert page.evaluate("model.sent") == [{"type": "action", "action": "kill", "key": "m4", "id": 1}]
    page.evaluate(
        "model.set('last_action', {id: 1, action: 'kill', key: 'm4', ok: false, message: 'actor m4 is gone'})"
    )
    assert page.locator(".na-action").text_content() == "kill mid-4: actor m4 is gone"
    assert "na-failed" in page.locator(".na-action").get_attribute("class")


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
          window.model = makeModel({tree, status: {live: true}, last_action: {}});
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
    assert page.locator(".na-node[data-key='m8l0'] > .na-line .na-cpu").text_content() == "19%"
