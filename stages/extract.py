"""Stage extract@<set>: descriptors of the set's database and queries with models/best.pt or last.pt (plus, optionally,
an ensemble of other checkpoints or experiments, multi-scale fusion and PCA)."""

from _common import argument, eval_set_names, load_config, run


def main():
    cfg = load_config("extract")
    name = argument(eval_set_names(cfg))  # before importing torch
    from vpr.device import resolve_device
    from vpr.eval.extract_set import ensemble_members, extract_set

    e = cfg.extract
    device = resolve_device(e.device, "extract.device")
    summary = extract_set(
        f"data/gt/{name}",
        f"data/features/{name}",
        f"models/{e.checkpoint}.pt",
        e,
        device,
        ensemble_members(e.ensemble, device),
    )
    print(f"extract@{name}: {summary}")


if __name__ == "__main__":
    run(main, takes=("set", "data.test"))
