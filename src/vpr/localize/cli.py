"""The command line: python -m vpr.localize PHOTO_OR_FOLDER... --database SET (see the package docstring)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from vpr.device import resolve_device
from vpr.errors import VPRError, data_warnings_as_lines
from vpr.localize.database import open_database
from vpr.localize.estimate import collect_photos, localize
from vpr.localize.pictures import write_pictures


def load_model_for_localize(model_path: str, device: str):
    from vpr.models.checkpoint import load_model

    model, ckpt = load_model(model_path)
    model.to(device)
    model.spec, model.epoch = ckpt["spec"], ckpt.get("epoch")
    from vpr.eval.prepare import ImagePrep

    # what the model was validated with (training size and extract.resize); old checkpoints: stretching
    model.default_prep = ImagePrep.from_dict(ckpt.get("prepare"), ckpt["spec"].get("image_size"))
    from vpr.eval.confidence import Calibration

    # the confidence calibration fitted on validation when this checkpoint was saved; None: an older checkpoint
    model.calibration = Calibration.from_dict(ckpt.get("calibration"), model_path)
    return model


def _print_text(results: list[dict]) -> None:
    from tabulate import tabulate

    for r in results:
        print(f"\n{r['photo']}  ({r['width']}x{r['height']} px after EXIF rotation)")
        rows = [
            [
                m["rank"],
                m["similarity"],
                m["lat"],
                m["lon"],
                m["utm_east"],
                m["utm_north"],
                m["utm_zone"],
                m["distance_to_top1_m"],
                os.path.basename(m["image"]),
            ]
            for m in r["matches"]
        ]
        print(
            tabulate(
                rows,
                headers=[
                    "#",
                    "similarity",
                    "lat",
                    "lon",
                    "UTM east",
                    "UTM north",
                    "zone",
                    "m from #1",
                    "database image",
                ],
                tablefmt="simple",
                floatfmt=("", ".3f", ".6f", ".6f", ".1f", ".1f", "", ".0f", ""),
            )
        )
        print(_verdict(r))
        if r.get("picture"):
            print(f"picture: {r['picture']}")


def _verdict(r: dict) -> str:
    """The estimated position, or "not in this database" for a photo whose confidence is below the threshold."""
    conf = "" if r.get("confidence") is None else f" (confidence {r['confidence']:.2f})"
    if r.get("in_database") is False:
        return f"not in this database{conf}"
    e = r["estimate"]
    how = (
        "top-1"
        if e["method"] == "top-1"
        else f"similarity-weighted mean of matches {', '.join(map(str, e['from_ranks']))}"
    )
    where = f"{e['lat']:.6f}, {e['lon']:.6f}  " if e["lat"] is not None else ""
    return (
        f"estimated position: {where}(UTM {e['utm_east']:.1f} E {e['utm_north']:.1f} N {e['utm_zone']}) "
        f"from {how}{conf}"
    )


def parse_args(argv=None) -> argparse.Namespace:
    from vpr import localize as package  # its docstring describes the command

    ap = argparse.ArgumentParser(
        prog="python -m vpr.localize", description=package.__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "photos", nargs="+", metavar="PHOTO_OR_FOLDER", help="photos and/or folders of photos"
    )
    ap.add_argument(
        "--model", default="models/best.pt", help="checkpoint (default: models/best.pt)"
    )
    ap.add_argument(
        "--database",
        required=True,
        help="evaluation set name (data/gt/<set>, e.g. synth_test) or a folder of '@'-named images",
    )
    ap.add_argument("--top-k", type=int, default=5, help="matches per photo (default 5)")
    ap.add_argument(
        "--agree-m",
        type=float,
        default=25.0,
        help="matches within this distance of the top-1 join the position estimate (default 25 m)",
    )
    ap.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="extraction size (default: that of the stored descriptors, else the training size)",
    )
    ap.add_argument(
        "--resize",
        choices=("stretch", "keep_aspect", "cover_crop"),
        help="image preparation (default: that of the stored descriptors, else extract.resize of the "
        "training run)",
    )
    ap.add_argument(
        "--resize-side",
        choices=("shorter", "longer"),
        help="keep_aspect: which side takes the size",
    )
    ap.add_argument(
        "--out", default="localized", help="folder for the match pictures (default: localized/)"
    )
    ap.add_argument("--no-pictures", action="store_true", help="do not write match pictures")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ap.add_argument(
        "--stored-only",
        action="store_true",
        help="stop if the stored database descriptors do not come from this model, instead of "
        "extracting the database now",
    )
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
    return ImagePrep(
        tuple(args.image_size) if args.image_size else base.size,
        args.resize or base.policy,
        args.resize_side or base.side,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    with data_warnings_as_lines():
        return _run(args)


def _run(args) -> int:
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    try:
        photos = collect_photos(
            args.photos
        )  # every photo decoded (bad ones skipped) before anything is extracted
        db = open_database(args.database, args.gt_root, args.features_root)
        device = resolve_device(args.device, "--device")
        model = load_model_for_localize(args.model, device)
        results = localize(
            photos,
            model,
            args.model,
            db,
            args.top_k,
            args.agree_m,
            _asked_prep(args, model),
            device,
            args.stored_only,
            log=log,
        )
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
