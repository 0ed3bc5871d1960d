"""A picture per localized photo: the photo, then its top-k matches."""

from __future__ import annotations

import os


def match_picture(result: dict, tile_height: int = 120):
    """The photo (its own aspect ratio) then the top-k matches; blue frame = used in the estimate."""
    from PIL import Image, ImageDraw

    from vpr.viz.predictions import GREY, _tile

    blue = (40, 110, 220)
    ratio = result["width"] / max(result["height"], 1)
    tiles = [
        _tile(result["photo"], (tile_height, max(40, round(tile_height * ratio))), GREY, "photo")
    ]
    for m in result["matches"]:
        label = f"#{m['rank']} sim {m['similarity']:.2f}  {m['distance_to_top1_m']:.0f} m"
        tiles.append(
            _tile(
                m["image"],
                (tile_height, round(tile_height * 4 / 3)),
                blue if m["agrees_with_top1"] else GREY,
                label,
            )
        )
    gap, footer = 6, 18
    width = sum(t.width for t in tiles) + gap * (len(tiles) - 1)
    out = Image.new("RGB", (width, max(t.height for t in tiles) + footer), (255, 255, 255))
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + gap
    ImageDraw.Draw(out).text((4, out.height - footer + 3), _caption(result), fill=(0, 0, 0))
    return out


def _caption(result: dict) -> str:
    conf = "" if result.get("confidence") is None else f"; confidence {result['confidence']:.2f}"
    if result.get("in_database") is False:
        return f"not in this database{conf}"
    e = result["estimate"]
    where = (
        f"{e['lat']:.6f}, {e['lon']:.6f}"
        if e["lat"] is not None
        else f"UTM {e['utm_east']}, {e['utm_north']}"
    )
    return (
        f"estimate: {where} ({e['method']} of match{'es' if len(e['from_ranks']) > 1 else ''} "
        f"{', '.join(map(str, e['from_ranks']))}; blue = within the agreement radius of #1{conf})"
    )


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
