"""Localize new photos: retrieve the most similar geotagged database images and estimate the position.

    python -m vpr.localize PHOTO_OR_FOLDER... --model models/best.pt --database synth_test [--json]

For each photo: the top-k database matches (lat/lon, UTM, cosine similarity) and an estimated position,
the similarity-weighted mean of the matches that lie within ``--agree-m`` (25 m) of the top-1 (just the
top-1 when none does), plus a picture of the matches. ``--database`` is an evaluation set of the pipeline
(its stored descriptors in data/features/<set> are reused when they come from this very model) or any
folder of images named with the '@' fields. Photos may have any size and orientation: EXIF rotation is
applied, then the photo is prepared exactly as the database images were (vpr.eval.prepare: the policy and
size recorded with the stored descriptors, i.e. ``extract.resize``), so it is compared like for like.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

import numpy as np

from vpr.data.filenames import parse_name
from vpr.data.groundtruth import IMAGE_EXTENSIONS, list_images, load_eval_set
from vpr.errors import DataError, VPRError


# --- database -------------------------------------------------------------------------------------------

@dataclass
class Database:
    paths: np.ndarray          # image paths
    utm: np.ndarray            # (n, 2) east, north
    zones: list                # (zone number, band letter) per image; ("", "") when the name has none
    latlon: np.ndarray         # (n, 2) lat, lon; NaN where unknown
    features_dir: str | None   # stored descriptors of this database, if any
    name: str


def open_database(database: str, gt_root: str = "data/gt", features_root: str = "data/features") -> Database:
    """An evaluation set name (data/gt/<set>, descriptors in data/features/<set>) or a folder of '@'-named
    images."""
    if os.path.isdir(os.path.join(gt_root, database)) and not os.path.isdir(database):
        paths = load_eval_set(os.path.join(gt_root, database)).database_paths
        features_dir = os.path.join(features_root, database)
    elif os.path.isdir(database):
        paths, features_dir = np.array(list_images(database)), None
    else:
        have = sorted(d for d in os.listdir(gt_root) if d != "train") if os.path.isdir(gt_root) else []
        raise DataError(f"--database {database}: neither an evaluation set under {gt_root} "
                        f"({', '.join(have) or 'none built yet: run dvc repro'}) nor a folder of geotagged images")
    names = [parse_name(p) for p in paths]
    utm_xy = np.array([[n.utm_east, n.utm_north] for n in names], dtype=np.float64).reshape(-1, 2)
    zones = [(n.utm_zone, n.utm_band) for n in names]
    latlon = np.array([_latlon(n) for n in names], dtype=np.float64).reshape(-1, 2)
    return Database(np.asarray(paths), utm_xy, zones, latlon, features_dir, database)


def _latlon(name) -> tuple[float, float]:
    try:
        return float(name.lat), float(name.lon)
    except ValueError:
        return to_latlon(name.utm_east, name.utm_north, name.utm_zone, name.utm_band)


def to_latlon(east: float, north: float, zone: str, band: str) -> tuple[float, float]:
    """WGS84 lat/lon of a UTM position; NaN when the zone is not known."""
    import utm
    try:
        lat, lon = utm.to_latlon(east, north, int(zone), band or None, northern=None if band else True,
                                 strict=False)
        return float(lat), float(lon)
    except (ValueError, TypeError, utm.error.OutOfRangeError):
        return float("nan"), float("nan")


def database_descriptors(db: Database, model, model_path: str, asked, device: str, stored_only: bool,
                         batch_size: int = 64, log=print) -> tuple[np.ndarray, "ImagePrep", str, dict]:
    """(descriptors, the image preparation they were extracted with, their storage dtype, the query method they
    were evaluated with: extract.query_method / majority_weight, empty = single). The stored ones
    when they come from this very model (and the ``asked`` preparation, if one is asked for); otherwise the
    database is extracted now with the asked preparation, else the stored descriptors', else the one the
    model was validated with (``stored_only``: DataError)."""
    from vpr.eval.extract import compute_descriptors
    from vpr.eval.prepare import ImagePrep
    from vpr.fingerprint import weights_md5

    ours = dict(spec=model.spec, descriptor_dim=model.descriptor_dim, weights_md5=weights_md5(model),
                epoch=model.epoch)
    stored, info = _stored(db.features_dir) if db.features_dir else (None, {})
    stored_prep = ImagePrep.from_dict(info.get("prepare"), info.get("image_size")) if info else None
    if stored is not None:
        why = _mismatch(stored, info, ours, asked, stored_prep, len(db.paths))
        if why is None:
            method = {k: info[k] for k in ("query_method", "majority_weight") if k in info}
            return np.asarray(stored, dtype=np.float32), stored_prep, str(stored.dtype), method
        shown = asked or stored_prep
        reason = (f"{db.features_dir}/database.npy ({_describe(info)}) does not match {model_path} "
                  f"({_describe({**ours, 'image_size': list(shown.size) if shown and shown.size else None})}): {why}")
    elif db.features_dir:
        reason = f"no stored descriptors in {db.features_dir}"
    else:
        reason = f"{db.name} is a folder: no stored descriptors"
    if stored_only:
        hint = f"re-run `dvc repro extract@{db.name}` with this model, or " if db.features_dir else ""
        raise DataError(f"{reason}; {hint}drop --stored-only to extract the database here")
    prep = asked or stored_prep or model.default_prep
    log(f"note: {reason}; extracting the {len(db.paths)} database images now"
        f"{f' at {prep.size[0]}x{prep.size[1]} px ({prep.policy})' if prep.size else ' at their native sizes'}")
    d = compute_descriptors(model, db.paths, prep, batch_size, 0, device, desc=f"{db.name} database")
    return d, prep, "float32", {}


def _stored(features_dir: str):
    path = os.path.join(features_dir, "database.npy")
    if not os.path.isfile(path):
        return None, {}
    info_path = os.path.join(features_dir, "info.json")
    info = json.load(open(info_path)) if os.path.isfile(info_path) else {}
    return np.load(path, mmap_mode="r", allow_pickle=False), info


def _mismatch(stored: np.ndarray, info: dict, ours: dict, asked, stored_prep, num_paths: int) -> str | None:
    """Why stored descriptors cannot be used with our model (None: they can)."""
    if stored.ndim != 2 or stored.shape[0] != num_paths:
        return f"{stored.shape[0]} descriptors for {num_paths} database images"
    if stored.shape[1] != ours["descriptor_dim"]:
        return f"descriptor size {stored.shape[1]} vs {ours['descriptor_dim']}"
    if info.get("spec") is not None and info["spec"] != ours["spec"]:
        diff = sorted(k for k in set(info["spec"]) | set(ours["spec"]) if info["spec"].get(k) != ours["spec"].get(k))
        return f"different model ({', '.join(diff)})"
    if info.get("weights_md5") and info["weights_md5"] != ours["weights_md5"]:
        return "same architecture, different weights"
    post = [k for k, plain in (("ensemble", []), ("scales", [1.0])) if info.get(k, plain) != plain]
    if (info.get("pca") or {}).get("dim"):
        post.append("pca")
    if post:
        return f"stored descriptors are post-processed ({', '.join(post)}), a single model's are not"
    if asked and asked != stored_prep:
        return f"extracted with {_prep_words(stored_prep)}, asked for {_prep_words(asked)}"
    return None


def _prep_words(prep) -> str:
    size = f"{prep.size[0]}x{prep.size[1]} px" if prep.size else "native size"
    return f"{size}, {prep.policy}" + (f" ({prep.side} side)" if prep.policy == "keep_aspect" else "")


def _describe(d: dict) -> str:
    spec = d.get("spec") or {}
    parts = [f"{spec.get('backbone', '?')}+{spec.get('aggregator', '?')} {d.get('descriptor_dim', '?')}-D"]
    epoch = d.get("checkpoint_epoch", d.get("epoch"))
    if epoch is not None:
        parts.append(f"epoch {epoch}")
    if d.get("weights_md5"):
        parts.append(f"weights md5 {d['weights_md5'][:8]}")
    if d.get("image_size"):
        parts.append(f"{d['image_size'][0]}x{d['image_size'][1]} px")
    return ", ".join(parts)


# --- photos ---------------------------------------------------------------------------------------------

def collect_photos(items) -> list[str]:
    """Files as given, folders expanded (recursively, sorted); everything checked before any work."""
    photos = []
    for item in items:
        if os.path.isdir(item):
            photos += list_images(item)
        elif os.path.isfile(item):
            photos.append(item)
        else:
            raise DataError(f"{item}: no such photo or folder")
    for p in photos:
        _check_photo(p)
    return photos


def _check_photo(path: str) -> None:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path):
            pass
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: not a readable image ({exc.__class__.__name__}); pass photos "
                        f"({', '.join(IMAGE_EXTENSIONS)}) or folders of photos") from None


def photo_descriptors(model, photos, prep, device: str, dtype: str = "float32", method: dict | None = None,
                      batch_size: int = 32) -> tuple[np.ndarray, list]:
    """Descriptors of the photos, prepared exactly as the evaluation's queries were (``prep`` and the query
    ``method``, the same code as the extract stage; five rows per photo for nearest_crop / maj_voting) and
    rounded to the database's storage ``dtype`` (as evaluate compares them), and each photo's (width, height)
    after EXIF rotation."""
    from vpr.eval.extract import compute_descriptors
    from vpr.eval.prepare import oriented_size
    from vpr.eval.query_methods import query_prep

    name = (method or {}).get("query_method", "single")
    sizes = [oriented_size(p)[::-1] for p in photos]
    d = compute_descriptors(model, photos, query_prep(prep, name), batch_size, 0, device, desc="photos",
                            crops="mean" if name == "five_crops" else "all")
    if not len(photos):
        d = np.zeros((0, model.descriptor_dim), np.float32)
    return d.astype(dtype).astype(np.float32), sizes


# --- position -------------------------------------------------------------------------------------------

def estimate_position(utm_xy: np.ndarray, similarity: np.ndarray, agree_m: float = 25.0) -> tuple[np.ndarray,
                                                                                              np.ndarray]:
    """Estimated (east, north) from the ranked matches: similarity-weighted mean of the matches within
    ``agree_m`` of the top-1 (the top-1 alone when no other agrees). Returns (position, used mask)."""
    utm_xy = np.asarray(utm_xy, dtype=np.float64)
    used = np.linalg.norm(utm_xy - utm_xy[0], axis=1) <= agree_m
    weights = np.clip(np.asarray(similarity, dtype=np.float64)[used], 1e-6, None)
    return (utm_xy[used] * weights[:, None]).sum(0) / weights.sum(), used


def localize(photos, model, model_path: str, db: Database, top_k: int = 5, agree_m: float = 25.0,
             asked_prep=None, device: str = "cpu", stored_only: bool = False, log=print) -> list[dict]:
    """One result dict per photo (see the module docstring). ``asked_prep``: an ImagePrep to use instead of
    the stored descriptors' (then the database is extracted again)."""
    from vpr.eval.retrieval import retrieve

    db_desc, prep, dtype, method = database_descriptors(db, model, model_path, asked_prep, device, stored_only, log=log)
    # Photos prepared as the database was, as the evaluation does.
    q_desc, sizes = photo_descriptors(model, photos, prep, device, dtype, method)
    k = min(top_k, len(db.paths))
    top = retrieve(db_desc, q_desc, k, **method)
    results = []
    from vpr.eval.query_methods import crops_per_query
    crops = crops_per_query(method.get("query_method", "single"))
    for i, photo in enumerate(photos):
        idx = top[i]
        sims = (db_desc[idx] @ q_desc[i * crops:(i + 1) * crops].T).max(1)    # the best of the photo's crops
        # Only matches in the top-1's UTM zone can be averaged in metres.
        same_zone = np.array([db.zones[j] == db.zones[idx[0]] for j in idx])
        pos, used = estimate_position(np.where(same_zone[:, None], db.utm[idx], np.inf), sims, agree_m)
        zone, band = db.zones[idx[0]]
        if used.sum() == 1:  # the top-1 itself: its own lat/lon, as its name gives them
            lat, lon = db.latlon[idx[0]]
        else:
            lat, lon = to_latlon(pos[0], pos[1], zone, band) if zone else (float("nan"), float("nan"))
        dist = np.linalg.norm(db.utm[idx] - db.utm[idx[0]], axis=1)
        matches = [dict(rank=r + 1, image=str(db.paths[j]), similarity=round(float(sims[r]), 4),
                        lat=_num(db.latlon[j, 0], 6), lon=_num(db.latlon[j, 1], 6),
                        utm_east=round(float(db.utm[j, 0]), 2), utm_north=round(float(db.utm[j, 1]), 2),
                        utm_zone=f"{db.zones[j][0]}{db.zones[j][1]}", distance_to_top1_m=round(float(dist[r]), 1),
                        agrees_with_top1=bool(used[r]))
                   for r, j in enumerate(idx)]
        ranks = [int(r) + 1 for r in np.nonzero(used)[0]]
        estimate = dict(lat=_num(lat, 6), lon=_num(lon, 6), utm_east=round(float(pos[0]), 2),
                        utm_north=round(float(pos[1]), 2), utm_zone=f"{zone}{band}",
                        method="top-1" if len(ranks) == 1 else "similarity-weighted mean", from_ranks=ranks)
        results.append(dict(photo=photo, width=sizes[i][0], height=sizes[i][1], matches=matches, estimate=estimate))
    return results


def _num(x: float, digits: int):
    return None if not np.isfinite(x) else round(float(x), digits)


# --- picture --------------------------------------------------------------------------------------------

def match_picture(result: dict, tile_height: int = 120):
    """The photo (its own aspect ratio) then the top-k matches; blue frame = used in the estimate."""
    from PIL import Image, ImageDraw

    from vpr.viz.predictions import GREY, _tile

    blue = (40, 110, 220)
    ratio = result["width"] / max(result["height"], 1)
    tiles = [_tile(result["photo"], (tile_height, max(40, round(tile_height * ratio))), GREY, "photo")]
    for m in result["matches"]:
        label = f"#{m['rank']} sim {m['similarity']:.2f}  {m['distance_to_top1_m']:.0f} m"
        tiles.append(_tile(m["image"], (tile_height, round(tile_height * 4 / 3)),
                           blue if m["agrees_with_top1"] else GREY, label))
    gap, footer = 6, 18
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    out = Image.new("RGB", (width, max(t.height for t in tiles) + footer), (255, 255, 255))
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + gap
    e = result["estimate"]
    where = f"{e['lat']:.6f}, {e['lon']:.6f}" if e["lat"] is not None else f"UTM {e['utm_east']}, {e['utm_north']}"
    ImageDraw.Draw(out).text((4, out.height - footer + 3), f"estimate: {where} ({e['method']} of "
                             f"match{'es' if len(e['from_ranks']) > 1 else ''} {', '.join(map(str, e['from_ranks']))}; blue = within the agreement radius "
                             f"of #1)", fill=(0, 0, 0))
    return out


def write_pictures(results: list[dict], out_dir: str) -> None:
    from vpr.io import atomic_path
    os.makedirs(out_dir, exist_ok=True)
    taken = set()
    for r in results:
        stem = os.path.splitext(os.path.basename(r["photo"]))[0][:80] or "photo"
        name, n = f"{stem}_matches.jpg", 1
        while name in taken:
            n += 1
            name = f"{stem}_{n}_matches.jpg"
        taken.add(name)
        path = os.path.join(out_dir, name)
        with atomic_path(path) as tmp:
            match_picture(r).save(tmp, format="JPEG", quality=90)
        r["picture"] = path


# --- command line ---------------------------------------------------------------------------------------

def load_model_for_localize(model_path: str, device: str):
    from vpr.train.checkpoint import load_model
    model, ckpt = load_model(model_path)
    model.to(device)
    model.spec, model.epoch = ckpt["spec"], ckpt.get("epoch")
    from vpr.eval.prepare import ImagePrep
    # what the model was validated with (training size and extract.resize); old checkpoints: stretching
    model.default_prep = ImagePrep.from_dict(ckpt.get("prepare"), ckpt["spec"].get("image_size"))
    return model


def _device(name: str) -> str:
    import torch
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda: no CUDA device is visible; use auto or cpu")
    return name


def _print_text(results: list[dict]) -> None:
    from tabulate import tabulate
    for r in results:
        print(f"\n{r['photo']}  ({r['width']}x{r['height']} px after EXIF rotation)")
        rows = [[m["rank"], m["similarity"], m["lat"], m["lon"], m["utm_east"], m["utm_north"], m["utm_zone"],
                 m["distance_to_top1_m"], os.path.basename(m["image"])] for m in r["matches"]]
        print(tabulate(rows, headers=["#", "similarity", "lat", "lon", "UTM east", "UTM north", "zone",
                                      "m from #1", "database image"], tablefmt="simple",
                       floatfmt=("", ".3f", ".6f", ".6f", ".1f", ".1f", "", ".0f", "")))
        e = r["estimate"]
        how = "top-1" if e["method"] == "top-1" else \
            f"similarity-weighted mean of matches {', '.join(map(str, e['from_ranks']))}"
        where = f"{e['lat']:.6f}, {e['lon']:.6f}  " if e["lat"] is not None else ""
        print(f"estimated position: {where}(UTM {e['utm_east']:.1f} E {e['utm_north']:.1f} N {e['utm_zone']}) "
              f"from {how}")
        if r.get("picture"):
            print(f"picture: {r['picture']}")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m vpr.localize", description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", nargs="+", metavar="PHOTO_OR_FOLDER", help="photos and/or folders of photos")
    ap.add_argument("--model", default="models/best.pt", help="checkpoint (default: models/best.pt)")
    ap.add_argument("--database", required=True,
                    help="evaluation set name (data/gt/<set>, e.g. synth_test) or a folder of '@'-named images")
    ap.add_argument("--top-k", type=int, default=5, help="matches per photo (default 5)")
    ap.add_argument("--agree-m", type=float, default=25.0,
                    help="matches within this distance of the top-1 join the position estimate (default 25 m)")
    ap.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                    help="extraction size (default: that of the stored descriptors, else the training size)")
    ap.add_argument("--resize", choices=("stretch", "keep_aspect", "cover_crop"),
                    help="image preparation (default: that of the stored descriptors, else extract.resize of the "
                         "training run)")
    ap.add_argument("--resize-side", choices=("shorter", "longer"), help="keep_aspect: which side takes the size")
    ap.add_argument("--out", default="localized", help="folder for the match pictures (default: localized/)")
    ap.add_argument("--no-pictures", action="store_true", help="do not write match pictures")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ap.add_argument("--stored-only", action="store_true",
                    help="stop if the stored database descriptors do not come from this model, instead of "
                         "extracting the database now")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--gt-root", default="data/gt", help=argparse.SUPPRESS)
    ap.add_argument("--features-root", default="data/features", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.top_k < 1:
        ap.error(f"--top-k must be >= 1, got {args.top_k}")
    if args.agree_m < 0:
        ap.error(f"--agree-m must be >= 0, got {args.agree_m}")
    if args.image_size and min(args.image_size) < 16:
        ap.error(f"--image-size must be at least 16x16, got {args.image_size}")
    return args


def _asked_prep(args, model):
    """The preparation asked for on the command line (None: none asked, use the stored descriptors')."""
    if not (args.image_size or args.resize or args.resize_side):
        return None
    from vpr.eval.prepare import ImagePrep
    base = model.default_prep
    return ImagePrep(tuple(args.image_size) if args.image_size else base.size, args.resize or base.policy,
                     args.resize_side or base.side)


def main(argv=None) -> int:
    args = parse_args(argv)
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    try:
        photos = collect_photos(args.photos)
        db = open_database(args.database, args.gt_root, args.features_root)
        device = _device(args.device)
        model = load_model_for_localize(args.model, device)
        results = localize(photos, model, args.model, db, args.top_k, args.agree_m, _asked_prep(args, model), device,
                           args.stored_only, log=log)
        if not args.no_pictures:
            write_pictures(results, args.out)
    except VPRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_text(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
