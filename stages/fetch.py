"""Stage fetch@<dataset>: produce data/raw/<dataset> from its source (synthetic for now)."""
import sys

from _common import run


def main():
    from vpr.config import load_config
    from vpr.data.synthetic.generate import generate

    cfg = load_config()
    name = sys.argv[1]
    if name not in cfg.datasets:
        from vpr.errors import ConfigError
        raise ConfigError(f"datasets.{name}: no such dataset in params.yaml")
    source = cfg.datasets[name]["source"]
    if source == "synthetic":
        summary = generate(f"data/raw/{name}", cfg.synthetic)
        print(f"fetch@{name}: generated {summary['images']} synthetic images")


if __name__ == "__main__":
    run(main)
