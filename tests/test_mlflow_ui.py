"""Watching and comparing curricula in MLflow: plots every round, `teachgym ui`, a real `mlflow server`
over HTTP, and the MLflow UI in a real (headless) Chromium."""

import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path

import mlflow
import pytest

from teachgym.cli import main, ui_url
from teachgym.config import load_config
from teachgym.loop import run_experiment

from conftest import Served, free_port, http_get, tiny_config


def sim_config(tmp_path, rounds=2, **tracking):
    cfg = tiny_config(tmp_path, rounds=rounds, examples_per_round=1500, save_student=False)
    cfg["student"] = {"name": "simulated", "examples_to_learn": 400}
    cfg["env"] = {"name": "arithmetic", "eval_per_skill": 20, "pool_per_skill": 100}
    cfg["tracking"] = {"enabled": True, **tracking}
    return cfg


def test_plots_and_metrics_arrive_while_the_run_is_in_progress(tmp_path, mlflow_store, monkeypatch):
    """Logging is written in the background: a round shows up in the store moments after it ends, the
    plots are redrawn as rounds finish, and when the run ends everything is there."""
    from teachgym.tracking import checkpoints as tracking

    monkeypatch.setattr(tracking, "PLOT_EVERY_S", 0.0)  # redraw after every round (default: every 10 s, and
    monkeypatch.setattr(tracking, "PLOT_MAX_SHARE", 1e9)  # at most a fifth of the time)
    client = mlflow.MlflowClient(mlflow_store)
    seen = []

    def watch(record, rounds):
        # What a person watching the UI finds once the round's logging has been written (polled).
        deadline, last = time.monotonic() + 60, seen[-1][4] if seen else None
        while True:
            run = client.search_runs([client.get_experiment_by_name("teachgym/arithmetic").experiment_id],
                                     "attributes.run_name = 'missing-skill-s0'")[0]
            plots = sorted(a.path for a in client.list_artifacts(run.info.run_id, "plots"))
            history = client.get_metric_history(run.info.run_id, "acc/mean")
            heatmap = None
            if len(plots) == 3:
                dst = tmp_path / f"r{record.round}-{time.monotonic_ns()}"
                dst.mkdir()
                heatmap = Path(client.download_artifacts(run.info.run_id, "plots/accuracy_heatmap.png", str(dst)))
                heatmap = heatmap.read_bytes()
            if (len(history) == record.round + 1 and heatmap not in (None, last)) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        seen.append((record.round, run.info.status, plots, len(history), heatmap))

    result = run_experiment(load_config(sim_config(tmp_path, rounds=2)), on_round=watch)
    assert [s[0] for s in seen] == [0, 1, 2]
    assert all(s[1] == "RUNNING" for s in seen)
    assert all(s[2] == ["plots/accuracy_heatmap.png", "plots/learning_curves.png", "plots/teacher_mixture.png"]
               for s in seen)
    assert [s[3] for s in seen] == [1, 2, 3]  # metrics arrive round by round
    assert len({s[4] for s in seen}) == 3  # the heatmap is redrawn each round (one more column)
    assert all(s[4][:8] == b"\x89PNG\r\n\x1a\n" for s in seen)
    # When the run ends, everything is there: every round's child run finished, with its files.
    children = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert sorted(c.info.run_name for c in children) == ["round-00", "round-01", "round-02"]
    assert all(c.info.status == "FINISHED" for c in children)
    assert client.get_run(result.run_id).info.status == "FINISHED"


def test_the_predictions_table_reads_back_as_mlflow_tables_do(tmp_path, mlflow_store):
    """eval_predictions.json is written in place, as MlflowClient.log_table writes it (and tagged as a table)."""
    result = run_experiment(load_config(sim_config(tmp_path, rounds=1)))
    client = mlflow.MlflowClient(mlflow_store)
    child = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                               f"tags.mlflow.parentRunId = '{result.run_id}' and tags.`teachgym.round` = '1'")[0]
    assert json.loads(child.data.tags["mlflow.loggedArtifacts"]) == [{"path": "eval_predictions.json", "type": "table"}]
    table = client.load_table(child.info.experiment_id, "eval_predictions.json", run_ids=[child.info.run_id])
    assert len(table) == 6 * 20 and {"prompt", "gold", "output", "correct", "loss", "skills"} <= set(table.columns)
    assert table["correct"].mean() == pytest.approx(result.rounds[1].mean_accuracy)


def test_plots_can_be_turned_off(tmp_path, mlflow_store):
    result = run_experiment(load_config(sim_config(tmp_path, rounds=1, plots=False)))
    assert mlflow.MlflowClient(mlflow_store).list_artifacts(result.run_id, "plots") == []


def test_ui_says_what_to_do_when_the_port_is_in_use(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err and f"teachgym ui --port {port + 1}" in err
    assert ui_url("127.0.0.1", 5000, "7") == \
        "http://127.0.0.1:5000/#/experiments/7/runs?compareRunsMode=CHART&workflowType=machine_learning"


@pytest.mark.slow
def test_a_real_mlflow_server_over_http(tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    uri = f"http://127.0.0.1:{port}"
    with Served(cmd, port):
        cfg = sim_config(tmp_path, rounds=2, tracking_uri=uri)
        result = run_experiment(load_config(cfg))
        assert result.tracking_uri == uri

        def rest(path, body=None):
            import urllib.request

            req = urllib.request.Request(f"{uri}/api/2.0/mlflow/{path}", method="POST" if body else "GET",
                                         data=json.dumps(body).encode() if body else None,
                                         headers={"Content-Type": "application/json"})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(req, timeout=30) as r:
                return json.loads(r.read())

        exp = rest("experiments/get-by-name?experiment_name=teachgym%2Farithmetic")["experiment"]
        runs = rest("runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]
        names = sorted(r["info"]["run_name"] for r in runs)
        assert names == ["missing-skill-s0", "round-00", "round-01", "round-02"]
        parent = next(r for r in runs if r["info"]["run_name"] == "missing-skill-s0")
        assert parent["info"]["status"] == "FINISHED"
        history = rest(f"metrics/get-history?run_id={parent['info']['run_id']}&metric_key=acc/mean")["metrics"]
        logged = [m["value"] for m in sorted(history, key=lambda m: m["step"])]
        assert logged == pytest.approx([r.mean_accuracy for r in result.rounds])
        arts = rest(f"artifacts/list?run_id={parent['info']['run_id']}&path=plots")["files"]
        assert sorted(a["path"] for a in arts) == [
            "plots/accuracy_heatmap.png", "plots/learning_curves.png", "plots/teacher_mixture.png"]
        # Artifacts travel over HTTP too: the server proxies them.
        png = http_get(f"{uri}/get-artifact?path=plots/accuracy_heatmap.png&run_uuid={parent['info']['run_id']}")
        assert png[:4] == b"\x89PNG"
        assert (tmp_path / "artifacts").exists()


def _browser_or_skip():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver)) if not p]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        msg = f"no {', '.join(missing)}: apt-get install chromium chromium-driver; pip install selenium"
        if os.environ.get("TEACHGYM_REQUIRE_BROWSER"):
            pytest.fail(msg + " (TEACHGYM_REQUIRE_BROWSER is set: CI must run this test)")
        pytest.skip(msg)
    return chromium, driver


@pytest.mark.slow
def test_the_mlflow_ui_in_a_real_browser(tmp_path):
    chromium, driver = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_experiment(load_config(sim_config(tmp_path, rounds=3, tracking_uri=store)))
    # A small sweep in an experiment of its own: its comparison must be readable on its run's page.
    from teachgym.sweep import plan_sweep, run_sweep

    sweep_cfg = sim_config(tmp_path, rounds=2, tracking_uri=store, experiment="teachgym/sweep-demo", plots=False,
                           log_predictions=False)
    sweep = run_sweep(plan_sweep(sweep_cfg, ["policy.name=uniform,skill-it", "loop.seed=0:2"], name="ui"),
                      sequential=True)
    port = free_port()
    cmd = [sys.executable, "-m", "teachgym.cli", "ui", "--tracking-uri", store, "--port", str(port),
           "--experiment", "teachgym/arithmetic"]
    served = Served(cmd, port)
    with served:
        opts = webdriver.ChromeOptions()
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-proxy-server",
                    "--window-size=1400,1000", "--disable-dev-shm-usage"):
            opts.add_argument(arg)
        opts.binary_location = chromium
        browser = webdriver.Chrome(service=Service(driver), options=opts)
        try:
            url = ui_url("127.0.0.1", port, mlflow.MlflowClient(store).get_experiment_by_name(
                "teachgym/arithmetic").experiment_id)
            browser.get(url)
            wait = WebDriverWait(browser, 120)
            wait.until(lambda b: b.find_element(By.LINK_TEXT, "missing-skill-s0"))
            # The round runs are nested under the parent: expand it, as a person would.
            browser.find_element(By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']").click()
            wait.until(lambda b: all(f"round-0{r}" in b.find_element(By.TAG_NAME, "body").text for r in range(4)))
            wait.until(lambda b: "acc/mean" in b.find_element(By.TAG_NAME, "body").text)  # the acc charts drew
            body = browser.find_element(By.TAG_NAME, "body").text
            assert re.search(r"\bacc\s*\(\d+\)", body)  # the chart section of the acc/ metrics, with its count
            # The model-training view, not the GenAI one: its sidebar has the model registry, not judges or prompts.
            assert "Model registry" in body and "Judges" not in body and "Prompts" not in body, body[:400]
            exp = mlflow.MlflowClient(store).get_experiment_by_name("teachgym/arithmetic")
            assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
            shot = Path(os.environ.get("TEACHGYM_SCREENSHOT_DIR", tmp_path)) / "mlflow_ui.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(shot))
            assert shot.stat().st_size > 20_000
            # The sweep run's page shows the comparison table (its description) and lists its artifacts.
            sweep_exp = mlflow.MlflowClient(store).get_experiment_by_name("teachgym/sweep-demo").experiment_id
            browser.get(f"http://127.0.0.1:{port}/#/experiments/{sweep_exp}/runs/{sweep.run_id}"
                        "?workflowType=machine_learning")
            wait.until(lambda b: "Paired with uniform" in b.find_element(By.TAG_NAME, "body").text)
            for more in browser.find_elements(By.XPATH, "//*[normalize-space(text())='Show more']"):
                more.click()  # the description is folded after a few lines
            wait.until(lambda b: "Every policy" in b.find_element(By.TAG_NAME, "body").text)
            body = browser.find_element(By.TAG_NAME, "body").text
            assert "sweep-ui" in body and "skill-it" in body and "sweep/finished" in body
        finally:
            browser.quit()
    assert f"open: {url}" in served.output  # teachgym ui printed the very URL the browser opened


@pytest.mark.parametrize("keep", ["every", "best"])
def test_student_checkpoints_are_mlflow_models_ranked_by_accuracy(tmp_path, mlflow_store, keep):
    from teachgym.envs.arithmetic import ArithmeticEnv

    cfg = sim_config(tmp_path, rounds=3, checkpoints=keep, plots=False, log_predictions=False)
    result = run_experiment(load_config(cfg))
    mlflow.set_tracking_uri(mlflow_store)
    models = mlflow.search_logged_models(output_format="list",
                                         order_by=[{"field_name": "metrics.acc/mean", "ascending": False}])
    accs = [r.mean_accuracy for r in result.rounds]
    best_round = max(range(1, 4), key=lambda r: (accs[r], -r))
    expected = [f"student-round-{r:02d}" for r in sorted(range(1, 4), key=lambda r: (-accs[r], r))]
    assert [m.name for m in models] == (expected if keep == "every" else [f"student-round-{best_round:02d}"])
    assert all(m.source_run_id == result.run_id for m in models)
    top = models[0]
    linked = {m.key: m.value for m in top.metrics}
    assert linked["acc/mean"] == pytest.approx(accs[best_round])
    tags = mlflow.MlflowClient().get_run(result.run_id).data.tags
    assert tags["teachgym.best_round"] == str(best_round) and tags["teachgym.best_model_id"] == top.model_id

    # The checkpoint is the student: loaded back through pyfunc, it scores what the loop measured.
    env = ArithmeticEnv(eval_per_skill=20, pool_per_skill=100)
    ev = env.eval_set()
    answers = mlflow.pyfunc.load_model(f"models:/{top.model_id}").predict(list(ev["prompt"]))
    correct = [env.verify(p, a) for p, a in zip(ev["prompt"], answers)]
    per_skill = {}
    for ok, skills in zip(correct, ev["skills"]):
        for s in skills:
            per_skill.setdefault(s, []).append(ok)
    assert sum(sum(v) / len(v) for v in per_skill.values()) / len(per_skill) == pytest.approx(accs[best_round])


def test_plots_of_a_long_run_stay_a_readable_size(tmp_path):
    """500 rounds: the heatmap keeps a page's width and every axis labels a few rounds, not all 500."""
    from PIL import Image

    from teachgym.loop import RoundRecord
    from teachgym.plots import MAX_TICKS, _tick_positions, write_round_plots

    skills = ["a", "b", "c"]
    records = [RoundRecord(r, 0.5, ("a", 0.1), {s: (r % 7) / 7 for s in skills}, None, 100 * r, None, 0.0,
                           {f"teacher/weight/{s}": 1 / 3 for s in skills}) for r in range(501)]
    paths = write_round_plots(records, skills, tmp_path)
    assert all(Image.open(p).size[0] <= 1600 for p in paths)
    assert _tick_positions(10) == list(range(10)) and len(_tick_positions(501)) <= MAX_TICKS
    assert _tick_positions(501)[0] == 0 and _tick_positions(501)[-1] == 500
