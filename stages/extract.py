"""Stage extract@<set>: descriptors of the set's database and queries with models/best.pt."""
import os
import sys

from _common import run, setup_torch


def main():
    import numpy as np

    from vpr.config import load_config
    from vpr.data.groundtruth import load_eval_set
    from vpr.eval.extract import compute_descriptors
    from vpr.fingerprint import weights_md5
    from vpr.io import atomic_dir, write_json
    from vpr.train.checkpoint import load_model

    cfg = load_config()
    name = sys.argv[1]
    e = cfg.extract
    device = setup_torch(e.device)
    eval_set = load_eval_set(f"data/gt/{name}")
    model, ckpt = load_model("models/best.pt")
    model.to(device)
    with atomic_dir(f"data/features/{name}") as tmp:
        for part, paths in (("database", eval_set.database_paths), ("queries", eval_set.queries_paths)):
            d = compute_descriptors(model, paths, e.image_size, e.batch_size, e.num_workers, device,
                                    desc=f"{name} {part}")
            np.save(os.path.join(tmp, f"{part}.npy"), d.astype(e.dtype, copy=False))   # float16: half the bytes
        write_json(os.path.join(tmp, "info.json"),
                   dict(descriptor_dim=model.descriptor_dim, checkpoint_epoch=ckpt["epoch"], dtype=e.dtype,
                        weights_md5=weights_md5(model),
                        image_size=list(e.image_size) if e.image_size else None, spec=ckpt["spec"]))
    print(f"extract@{name}: {eval_set.num_database} database + {eval_set.num_queries} queries, "
          f"{model.descriptor_dim}-D descriptors")


if __name__ == "__main__":
    run(main)
