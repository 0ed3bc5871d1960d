"""Stage fetch@<dataset>: produce data/raw/<dataset> from its source (synthetic | url | path)."""

from _common import argument, load_config, run


def main():
    from vpr.data.sources import fetch

    cfg = load_config("fetch")
    name = argument([n for n in cfg.data.fetch if n in cfg.datasets])
    print(f"fetch@{name}: " + fetch(name, cfg.datasets[name], synthetic=cfg.synthetic), flush=True)


if __name__ == "__main__":
    run(main, takes=("dataset", "data.fetch"))
