"""Localize new photos: retrieve the most similar geotagged database images and estimate the position.

    python -m vpr.localize PHOTO_OR_FOLDER... --model models/best.pt --database synth_test [--json]

For each photo: the top-k database matches (lat/lon, UTM, cosine similarity) and an estimated position,
the similarity-weighted mean of the matches that lie within ``--agree-m`` (25 m) of the top-1 (just the
top-1 when none does), plus a picture of the matches. ``--database`` is an evaluation set of the pipeline
(its stored descriptors in data/features/<set> are reused when they come from this very model) or any
folder of images named with the '@' fields. Photos may have any size and orientation: EXIF rotation is
applied, then the photo is prepared exactly as the database images were (vpr.eval.prepare: the policy and
size recorded with the stored descriptors, i.e. ``extract.resize``), so it is compared like for like.

Each photo also gets a ``confidence``: the calibrated probability that its top-1 lies within the ground-truth
radius, from the top-1 similarity and its margin over the best match elsewhere (vpr.eval.confidence, fitted
on the validation queries when training saved the checkpoint). Below the threshold stored with it the photo is
``in_database: false`` ("not in this database"; the matches are still listed). A checkpoint saved before
calibrations existed gives no confidence and withholds nothing (said once).
"""

from vpr.localize.cli import load_model_for_localize, main, parse_args
from vpr.localize.database import Database, database_descriptors, open_database, to_latlon
from vpr.localize.estimate import collect_photos, estimate_position, localize, photo_descriptors
from vpr.localize.pictures import match_picture, write_pictures

__all__ = [
    "Database",
    "collect_photos",
    "database_descriptors",
    "estimate_position",
    "load_model_for_localize",
    "localize",
    "main",
    "match_picture",
    "open_database",
    "parse_args",
    "photo_descriptors",
    "to_latlon",
    "write_pictures",
]
