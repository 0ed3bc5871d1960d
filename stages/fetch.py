"""Stage fetch@<dataset>: produce data/raw/<dataset> from its source (synthetic | url | path)."""
import sys

from _common import run, load_config


def main():
    from vpr.data.sources import fetch
    from vpr.errors import ConfigError

    cfg = load_config("fetch")
    name = sys.argv[1]
    if name not in cfg.data.fetch or name not in cfg.datasets:
        raise ConfigError(f"data.fetch: '{name}' is not a dataset to fetch here ({', '.join(cfg.data.fetch)})")
    print(f"fetch@{name}: " + fetch(name, cfg.datasets[name], synthetic=cfg.synthetic), flush=True)


if __name__ == "__main__":
    run(main)
