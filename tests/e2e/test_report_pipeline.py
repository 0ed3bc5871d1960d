"""End to end, on the miniature city: the offline HTML report (also opened in headless Chromium), `dvc plots
diff` across experiments, and localizing held-out query photos with the trained model."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from PIL import Image

from tests.helpers import TINY_SYNTHETIC, dvc, ran_stages

pytestmark = pytest.mark.slow
SECTIONS = ("summary", "recalls", "recall-curves", "training", "maps", "predictions", "params")


def _page(dest):
    return (dest / "reports" / "index.html").read_text()


def test_repro_writes_one_offline_report_with_every_section(repo):  # noqa: F811
    dest, out = repo
    assert "report" in ran_stages(out)
    page = _page(dest)
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*['\"]?\s*(https?:)?//", page, re.I)
    # Nothing is loaded from anywhere: every src is a data: URI; links are in-page anchors, or the one link to
    # the per-query results next to the metrics (a file of the repository, relative to reports/)
    refs = re.findall(r"\b(?:src|href)\s*=\s*['\"]([^'\"]*)['\"]", page, re.I)
    assert refs and all(
        r.startswith(("data:", "#")) or r == "../metrics/eval/synth_test.queries.tsv" for r in refs
    )
    assert (dest / "reports" / "../metrics/eval/synth_test.queries.tsv").is_file()
    assert "default-src 'none'" in page  # and the page's CSP forbids any network load anyway
    for sid in SECTIONS:
        assert f"<section id='{sid}'>" in page
    sections = dict(re.findall(r"<section id='([^']+)'>(.*?)</section>", page, re.S))
    metrics = json.loads((dest / "metrics/eval/synth_test.json").read_text())
    assert (
        f"{metrics['R@1']:.1f}" in sections["recalls"]
        and f"{metrics['R@20']:.1f}" in sections["recalls"]
    )
    assert "night, 9 queries" in sections["recalls"]
    assert sections["recall-curves"].count("<svg") == 1
    assert sections["training"].count("<svg") == 3  # loss, learning rate, validation recall
    assert "Training loss" in sections["training"] and "Validation recall" in sections["training"]
    # maps: the test set, its top-1 error histogram, val, and one per training city
    assert sections["maps"].count("<svg") == 3 + TINY_SYNTHETIC["train_cities"]
    assert (
        "top-1 wrong" in sections["maps"]
        and "How far the top-1 database image lies" in sections["maps"]
    )
    pictures = sorted(os.listdir(dest / "reports/predictions/synth_test"))
    assert sections["predictions"].count("<img") == len(pictures) == 3
    assert "loss: multisimilarity" in sections["params"] and "recall_values" in sections["params"]


def test_report_is_byte_identical_when_rebuilt_from_the_same_inputs(repo):  # noqa: F811
    dest, _ = repo
    before = hashlib.md5(_page(dest).encode()).hexdigest()
    assert ran_stages(dvc("repro", cwd=dest)) == set()  # up to date: nothing reruns
    os.remove(dest / "reports" / "index.html")
    subprocess.run([sys.executable, "stages/report.py"], cwd=dest, check=True, capture_output=True)
    assert hashlib.md5(_page(dest).encode()).hexdigest() == before


def _chromium():
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium and chromium-driver (see .ci/run)")
        pytest.skip(
            "needs Debian's chromium + chromium-driver: apt-get install -y chromium chromium-driver"
        )
    pytest.importorskip("selenium")
    return browser, driver


def test_report_opens_from_disk_in_headless_chromium_with_the_table_and_charts_drawn(repo):  # noqa: F811
    browser, driver = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    dest, _ = repo
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    profile = tempfile.mkdtemp(prefix="chromium-")
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        chrome.get((dest / "reports" / "index.html").as_uri())
        rows = [r.text for r in chrome.find_elements(By.CSS_SELECTOR, "#recalls table tr")]
        assert rows[0].split() == ["dataset", "R@1", "R@5", "R@10", "R@20"] and rows[1].startswith(
            "synth_test"
        )
        curve = chrome.find_element(By.CSS_SELECTOR, "#recall-curves svg")
        assert curve.size["width"] > 200 and curve.size["height"] > 150
        # the recall line and the map points were laid out by the browser, with a real extent
        line = chrome.execute_script(
            "const p = document.querySelector('#recall-curves svg .mark-line path');"
            "const b = p.getBBox(); return [b.width, b.height];"
        )
        assert line[0] > 100 and line[1] > 1
        points = chrome.execute_script(
            "return document.querySelectorAll('#maps svg .mark-symbol path').length"
        )
        assert points > 100
        images = chrome.execute_script(
            "return Array.from(document.images).map(i => i.complete && i.naturalWidth)"
        )
        assert len(images) == 3 and all(w > 100 for w in images)
        errors = [e for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []  # no blocked or failed load
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _localize(dest, *args):
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(dest / "src")}
    return subprocess.run(
        [sys.executable, "-m", "vpr.localize", *args],
        cwd=dest,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_localize_puts_correctly_retrieved_held_out_queries_within_25m_also_as_a_sideways_phone_photo(
    repo, tmp_path
):  # noqa: F811
    dest, _ = repo
    gt_dir, features = dest / "data/gt/synth_test", dest / "data/features/synth_test"
    db_paths = [str(p) for p in np.load(gt_dir / "database_paths.npy")]
    q_paths = [str(p) for p in np.load(gt_dir / "queries_paths.npy")]
    q_utm = np.load(gt_dir / "queries_utm.npy")
    offsets, indices = (
        np.load(gt_dir / "positives_offsets.npy"),
        np.load(gt_dir / "positives_indices.npy"),
    )
    is_positive = lambda qi, image: db_paths.index(image) in indices[offsets[qi] : offsets[qi + 1]]  # noqa: E731
    # A query the pipeline retrieves correctly, re-shot as a phone would store it: 6x larger, pixels turned
    # sideways, EXIF Orientation 6 ("turn me 90 degrees clockwise"), and a name without any coordinates.
    top1 = (np.load(features / "queries.npy") @ np.load(features / "database.npy").T).argmax(1)
    qi = next(i for i, t in enumerate(top1) if t in indices[offsets[i] : offsets[i + 1]])
    img = Image.open(dest / q_paths[qi]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    img.resize((img.width * 6, img.height * 6), Image.BICUBIC).transpose(
        Image.Transpose.ROTATE_90
    ).save(tmp_path / "IMG_2024.jpg", quality=95, exif=exif)

    proc = _localize(
        dest,
        "data/raw/synth/test/queries",
        str(tmp_path / "IMG_2024.jpg"),
        "--database",
        "synth_test",
        "--json",
        "--out",
        str(tmp_path / "pictures"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "note:" not in proc.stderr  # the stored descriptors of the same model were reused
    *results, phone = json.loads(proc.stdout)
    assert [r["photo"].split("/")[-1] for r in results] == [p.split("/")[-1] for p in q_paths]
    errors = []
    for i, r in enumerate(results):
        if is_positive(
            i, r["matches"][0]["image"]
        ):  # the top-1 is within 25 m: correctly retrieved
            e = r["estimate"]
            errors.append(
                float(np.hypot(e["utm_east"] - q_utm[i, 0], e["utm_north"] - q_utm[i, 1]))
            )
    metrics = json.loads((dest / "metrics/eval/synth_test.json").read_text())
    assert (
        len(errors) == round(metrics["R@1"] * len(results) / 100) > 0
    )  # localize agrees with evaluate
    # the estimate is a mean of matches within --agree-m (25 m) of a top-1 that is within 25 m of the query:
    # at most 50 m off by construction; typically much closer
    assert max(errors) <= 50.0 and float(np.median(errors)) <= 25.0, errors
    assert len(list((tmp_path / "pictures").glob("*_matches.jpg"))) == len(results) + 1

    assert (phone["width"], phone["height"]) == (img.width * 6, img.height * 6)  # upright again
    assert phone["matches"][0]["image"] == results[qi]["matches"][0]["image"]
    e = phone["estimate"]
    assert np.hypot(e["utm_east"] - q_utm[qi, 0], e["utm_north"] - q_utm[qi, 1]) <= 25.0


def test_dvc_plots_diff_overlays_recall_and_training_curves_of_two_experiments(repo, tmp_path):  # noqa: F811
    dest, _ = repo
    dvc("exp", "run", "-n", "short", "-S", "viz.curve_max_n=10", cwd=dest)
    out = tmp_path / "plots.json"
    with open(out, "w") as fh:
        subprocess.run(
            [sys.executable, "-m", "dvc", "plots", "diff", "HEAD", "short", "--json"],
            cwd=dest,
            stdout=fh,
            check=True,
            env={**os.environ, "DVC_NO_ANALYTICS": "1"},
        )
    plots = json.loads(out.read_text())
    assert not plots.get("errors")
    data = plots["data"]
    for name in (
        "metrics/curves/synth_test.csv",
        "Validation recall per epoch",
        "metrics/train/plots/metrics/train_loss.tsv",
        "metrics/train/plots/metrics/lr.tsv",
    ):
        assert [p["revisions"] for p in data[name]] == [["HEAD", "short"]], name
        assert {row["rev"] for row in data[name][0]["content"]["data"]["values"]} == {
            "HEAD",
            "short",
        }, name
    curve = data["metrics/curves/synth_test.csv"][0]["content"]["data"]["values"]
    assert (
        sum(r["rev"] == "HEAD" for r in curve) == 20
        and sum(r["rev"] == "short" for r in curve) == 10
    )
    pictures = [k for k in data if k.startswith("reports/predictions/synth_test/")]
    assert pictures and all(
        sorted(p["revisions"][0] for p in data[k]) == ["HEAD", "short"] for k in pictures
    )
