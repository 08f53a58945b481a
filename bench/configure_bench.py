"""Configure page: first open in a fresh process, and a widget change to the updated estimate, in a
real browser (headless Chromium driven by Playwright) and with AppTest. Results:
bench/RESULTS.md ("Configure page").

    python bench/configure_bench.py --baseline-ref main     # this tree against `main`, ~6 min
    python bench/configure_bench.py --opens 3 --changes 20 --models brightrun/tiny-llama

One home (SQLite + local objects, the embedded default) with the example dataset (40
conversations, validated in-process by the product's service). Two *variants* of the dashboard's
code are measured in the same run, interleaved: ``new`` (this tree) and ``baseline`` (``git
archive`` of ``--baseline-ref`` into bench/out/, no other checkout touched). Per variant:

- **first open (browser)**: a fresh dashboard process started as the product starts it
  (``python -m app.serve``, or ``streamlit run app/main.py`` for a tree without it); Chromium opens
  ``/configure?dataset_id=…`` and the clock runs from ``goto`` to (a) the form drawn (the
  "Advanced settings" expander visible), (b) the estimate drawn ("Tokens to train" shown, no
  "Estimating…"), (c) the page idle (the script no longer running). ``--opens`` fresh processes.
- **widget change → estimate (browser)**: in the same tab, "Epochs" is set to a new value
  (typed, Enter) ``--changes`` times (each value new: the estimate is not in any cache); the clock
  runs from the Enter to the "Tokens to train" metric showing the new number. p50/p95/max.
- **server CPU**: CPU seconds (user + system, /proc) the Streamlit process spent on the first open
  and on each change: on a shared, loaded machine wall time mostly measures the queue for a core,
  CPU time what the page costs.
- **floor**: a fresh ``streamlit run`` of a two-line app, ``goto`` to its text drawn (``--floor``
  times): what the browser and Streamlit themselves cost on this machine at this load.
- **AppTest**: a fresh Python process runs Home, then ``switch_page`` to Configure (timed: first
  open), then ``--changes`` epoch changes (each ``run()`` timed).

With ``--models``, every listed base model that is on this machine is measured (an installed one is
linked into each fresh home, so Configure preselects it as it does for a user who installed it; another
is chosen through the form: the first change). Prints a markdown table plus ``#`` lines with raw
numbers and the load average. Writes only under bench/out/ (removed at the end).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "configure"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 120_000
EXAMPLE = ROOT / "examples" / "demo-support-v4.jsonl"
DEFAULT_MODEL = "brightrun/tiny-llama"  # the configured default base model (preselected)

APPTEST_SCRIPT = r"""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
from streamlit.testing.v1 import AppTest
model, changes = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
at = AppTest.from_file(os.path.join(os.getcwd(), "app", "main.py"), default_timeout=300)
at.run()
t1 = time.perf_counter()
at.query_params["dataset_id"] = os.environ["BENCH_DATASET_ID"]
at.switch_page("../pages/configure.py").run()
t2 = time.perf_counter()
assert not at.exception, at.exception
if at.selectbox(key="configure_base_model").value != model:
    at.selectbox(key="configure_base_model").select(model).run()
times = []
for i in range(changes):
    at.number_input(key="configure_num_epochs").set_value(2 + i % 40)
    s = time.perf_counter(); at.run(); times.append(time.perf_counter() - s)
    assert not at.exception, at.exception
print(json.dumps({"home_s": t1 - t0, "open_s": t2 - t1, "changes_s": times}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(home: Path, root: Path) -> dict[str, str]:
    env = dict(os.environ, BRIGHTRUN_HOME=str(home), PYTHONPATH=str(root), RAY_AUTH_MODE="disabled",
               HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def link_base_model(home: Path, model: str) -> bool:
    """Make ``model`` installed in the fresh ``home`` when it is installed in the caller's home
    (``$BRIGHTRUN_HOME/base-models``): a symbolic link, no copy. An installed model is what the
    product preselects on Configure, so its round measures the page as a user with it sees it."""
    from backend.base_models.install import installed_path
    from backend.base_models.registry import base_models_root

    folder = installed_path(model, base_models_root())
    if folder:
        (home / "base-models").mkdir(parents=True, exist_ok=True)
        (home / "base-models" / Path(folder).name).symlink_to(folder)
    return bool(folder)


def make_home(home: Path) -> str:
    """A fresh home with the example dataset, validated in-process; returns its id."""
    code = ("import io,sys; from backend.accounts.users import ensure_local_user; "
            "from backend.datasets import service as ds; a = ensure_local_user(); "
            f"data = open({str(EXAMPLE)!r}, 'rb').read(); "
            "i = ds.upload_dataset(a, io.BytesIO(data), 'demo-support-v4.jsonl', 'Demo support', "
            "size=len(data), submit=False); d = ds.run_validation(i.id); "
            "assert d.status == 'ready', d.status; print(d.id)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env_for(home, ROOT),
                         capture_output=True, text=True, timeout=600, check=True)
    return out.stdout.strip().splitlines()[-1]


def baseline_tree(ref: str) -> Path:
    """``git archive REF`` unpacked under bench/out/ (no worktree, no checkout touched)."""
    dest = OUT / f"baseline-{ref.replace('/', '_')}"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


class Server:
    """The dashboard of one code tree, in its own process group."""

    def __init__(self, root: Path, home: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (OUT / f"server-{self.port}.log").open("wb")
        # the product's launcher where the tree has it (modules imported before the first view)
        launch = ["-m", "app.serve"] if (root / "app" / "serve.py").is_file() else \
            ["-m", "streamlit", "run", "app/main.py"]
        cmd = [sys.executable, *launch, "--server.headless", "true",
               "--server.port", str(self.port), "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
        self.proc = subprocess.Popen(cmd, cwd=root, env=env_for(home, root), stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("streamlit did not start")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server process has used so far (/proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                continue
        self.log.close()


METRIC_JS = """(label) => {
    for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
        const l = m.querySelector('[data-testid="stMetricLabel"]');
        const v = m.querySelector('[data-testid="stMetricValue"]');
        if (l && v && l.innerText.trim() === label && m.closest('[data-stale="true"]') === null)
            return v.innerText.trim();
    }
    return null;
}"""
ESTIMATING_JS = "() => document.body.innerText.includes('Estimating…')"
IDLE_JS = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') !== 'running';
}"""


def tokens(page) -> str | None:
    return page.evaluate(METRIC_JS, "Tokens to train")


def browser_round(browser, server: "Server", dataset_id: str, model: str, changes: int,
                  preselected: bool = False) -> dict:
    """One fresh tab: first open, then ``changes`` epoch changes. Times in seconds; ``*_cpu_s``:
    CPU seconds of the server process (the figure that load on a shared machine distorts least)."""
    url = server.url
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.set_default_timeout(TIMEOUT_MS)
    cpu0 = server.cpu_s()
    t0 = time.perf_counter()
    page.goto(f"{url}/configure?dataset_id={dataset_id}", wait_until="commit")
    page.get_by_text("Advanced settings").first.wait_for(state="visible")
    t_form = time.perf_counter() - t0
    page.wait_for_function(f"() => ({METRIC_JS})('Tokens to train') !== null "
                           f"&& !({ESTIMATING_JS})()", polling=20)
    t_est = time.perf_counter() - t0
    page.wait_for_function(IDLE_JS, polling=20)
    t_idle = time.perf_counter() - t0
    out = {"form_s": t_form, "estimate_s": t_est, "idle_s": t_idle, "changes_s": [],
           "open_cpu_s": server.cpu_s() - cpu0, "changes_cpu_s": []}
    page.get_by_text("Advanced settings").first.click()
    page.wait_for_function(IDLE_JS, polling=20)
    if model != DEFAULT_MODEL and not preselected:  # choose it in the form, as a user would
        page.get_by_label("Base model").click()
        page.get_by_role("option", name=model).first.click()
        page.wait_for_function(IDLE_JS, polling=20)
        page.wait_for_timeout(500)
    epochs = page.get_by_label("Epochs", exact=True)
    for i in range(changes):
        page.wait_for_function(IDLE_JS, polling=20)
        before = tokens(page)
        cpu = server.cpu_s()
        epochs.fill(str(2 + (i % 40) if 2 + (i % 40) != int(epochs.input_value() or 0) else 42))
        t = time.perf_counter()
        epochs.press("Enter")
        page.wait_for_function(f"(b) => {{ const v = ({METRIC_JS})('Tokens to train'); "
                               f"return v !== null && v !== b && !({ESTIMATING_JS})(); }}",
                               arg=before, polling=10)
        out["changes_s"].append(time.perf_counter() - t)
        out["changes_cpu_s"].append(server.cpu_s() - cpu)
    errors = page.locator('[data-testid="stException"]')
    if errors.count():
        raise RuntimeError(errors.first.inner_text()[:2000])
    page.close()
    return out


def apptest_round(root: Path, home: Path, dataset_id: str, model: str, changes: int) -> dict:
    script = OUT / "apptest_round.py"
    script.write_text(APPTEST_SCRIPT)
    env = env_for(home, root) | {"BENCH_DATASET_ID": dataset_id}
    res = subprocess.run([sys.executable, str(script), model, str(changes)], cwd=root, env=env,
                         capture_output=True, text=True, timeout=900)
    if res.returncode:
        raise RuntimeError(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


FLOOR_APP = 'import streamlit as st\nst.title("Floor")\nst.write("Advanced settings")\n'


def floor_round(browser, home: Path) -> float:
    """The floor: a fresh ``streamlit run`` of a two-line app, from ``goto`` to its text drawn —
    what the browser and Streamlit cost on this machine before any page code runs."""
    root = OUT / "floor"
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "main.py").write_text(FLOOR_APP)
    server = Server(root, home)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.set_default_timeout(TIMEOUT_MS)
        t0 = time.perf_counter()
        page.goto(server.url, wait_until="commit")
        page.get_by_text("Advanced settings").first.wait_for(state="visible")
        took = time.perf_counter() - t0
        page.close()
        return took
    finally:
        server.stop()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline-ref", default="main", help="git ref measured as the baseline")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--opens", type=int, default=3, help="fresh server processes per variant")
    ap.add_argument("--changes", type=int, default=20, help="widget changes per open")
    ap.add_argument("--floor", type=int, default=3,
                    help="fresh processes of a two-line Streamlit app (the browser's floor)")
    ap.add_argument("--models", default="brightrun/tiny-llama,smollm2-135m-instruct")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from backend.base_models.registry import available_base_models

    here = set(available_base_models())
    models = [m for m in args.models.split(",") if m in here]
    skipped = [m for m in args.models.split(",") if m not in here]
    variants = {"new": ROOT}
    if not args.no_baseline:
        variants["baseline"] = baseline_tree(args.baseline_ref)
    results: dict = {}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="brt-configure-bench-", dir=OUT) as tmp, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for model in models:
            for i in range(args.opens):
                for name, root in variants.items():  # interleaved: same load for both
                    home = Path(tmp) / f"{name}-{model.replace('/', '_')}-{i}"
                    preselected = link_base_model(home, model)
                    dataset_id = make_home(home)
                    server = Server(root, home)
                    try:
                        r = browser_round(browser, server, dataset_id, model, args.changes,
                                          preselected)
                    finally:
                        server.stop()
                    a = apptest_round(root, home, dataset_id, model, args.changes)
                    key = (model, name)
                    results.setdefault(key, []).append({"browser": r, "apptest": a})
                    print(f"# {model} {name} open {i}: browser form {r['form_s']:.2f}s estimate "
                          f"{r['estimate_s']:.2f}s idle {r['idle_s']:.2f}s (server CPU "
                          f"{r['open_cpu_s']:.2f}s) change p50 "
                          f"{statistics.median(r['changes_s']):.2f}s; AppTest open "
                          f"{a['open_s']:.2f}s change p50 {statistics.median(a['changes_s']):.2f}s",
                          flush=True)
        floor = [floor_round(browser, Path(tmp) / "floor-home") for _ in range(args.floor)]
        browser.close()
    load1 = os.getloadavg()
    if floor:
        print(f"# floor (two-line Streamlit app, fresh process, goto → text drawn): median "
              f"{statistics.median(floor):.2f} s, all {[round(f, 2) for f in floor]}")
    print(f"\n# load average before {load0}, after {load1}; cores {os.cpu_count()}")
    if skipped:
        print(f"# not on this machine (not measured): {', '.join(skipped)}")
    print("\n| model | variant | browser: form drawn, median (max) | browser: estimate drawn, "
          "median (max) | browser: change → estimate p50 / p95 / max | AppTest: first open, "
          "median (max) | AppTest: change p50 / p95 | server CPU: first open / change p50 |")
    print("|---|---|---|---|---|---|---|---|")
    summary = {}
    for (model, name), rounds in results.items():
        form = [r["browser"]["form_s"] for r in rounds]
        est = [r["browser"]["estimate_s"] for r in rounds]
        ch = [c for r in rounds for c in r["browser"]["changes_s"]]
        ao = [r["apptest"]["open_s"] for r in rounds]
        ac = [c for r in rounds for c in r["apptest"]["changes_s"]]
        oc = [r["browser"]["open_cpu_s"] for r in rounds]
        cc = [c for r in rounds for c in r["browser"]["changes_cpu_s"]]
        summary[(model, name)] = (statistics.median(est), pct(ch, 95), statistics.median(ao),
                                  statistics.median(oc), pct(cc, 50))
        print(f"| {model} | {name} | {statistics.median(form):.2f} s ({max(form):.2f}) | "
              f"{statistics.median(est):.2f} s ({max(est):.2f}) | {pct(ch, 50):.2f} / "
              f"{pct(ch, 95):.2f} / {max(ch):.2f} s | {statistics.median(ao):.2f} s "
              f"({max(ao):.2f}) | {pct(ac, 50):.3f} / {pct(ac, 95):.3f} s | "
              f"{statistics.median(oc):.2f} / {pct(cc, 50):.3f} s |")
    for model in models:
        if (model, "baseline") in summary:
            n, b = summary[(model, "new")], summary[(model, "baseline")]
            print(f"\n# {model} ratios new/baseline: estimate drawn {n[0] / b[0]:.2f}, "
                  f"change p95 {n[1] / b[1]:.2f}, AppTest open {n[2] / b[2]:.2f}, server CPU "
                  f"first open {n[3] / b[3]:.2f}, server CPU change {n[4] / b[4]:.2f}")
    print("# raw: " + json.dumps({f"{m}|{n}": v for (m, n), v in results.items()}))
    shutil.rmtree(OUT, ignore_errors=True)


if __name__ == "__main__":
    main()
