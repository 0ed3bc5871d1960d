import os

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")

# A miniature embedded city: same generator as the default, a few hundred small images.
TINY_SYNTHETIC = dict(image_size=(48, 64), train_cities=2, train_blocks=3, places_per_city=20, val_blocks=2,
                      test_blocks=2, val_queries=20, test_queries=24,
                      query_aspects=((4, 3), (3, 4), (16, 9), (1, 1)))   # phone photos of several shapes


def eval_set(set_dir, **options):
    """Ground truth of ``<set_dir>/{database,queries}`` as the build_gt stage computes it (vpr.data.layouts)."""
    from vpr.data.layouts import build_eval_index
    return build_eval_index(str(set_dir), **options)[0]


@pytest.fixture(scope="session")
def tiny_city(tmp_path_factory):
    """Path of a generated miniature dataset root (train/, val/, test/)."""
    from vpr.data.synthetic.generate import SyntheticSpec, generate
    root = tmp_path_factory.mktemp("synth") / "synth"
    generate(root, SyntheticSpec.of(TINY_SYNTHETIC), workers=1)
    return root
