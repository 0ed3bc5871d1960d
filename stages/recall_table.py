"""Stage recall_table: metrics/recalls.md, one row per evaluation set (the course's first table)."""

from _common import load_config, run


def main():
    from vpr.eval.evaluate import recall_table
    from vpr.io import atomic_file

    cfg = load_config("recall_table")
    table = recall_table(
        {name: f"metrics/eval/{name}.json" for name in cfg.data.test}, cfg.eval.recall_values
    )
    with atomic_file("metrics/recalls.md") as fh:
        fh.write(table + "\n")
    print(table)


if __name__ == "__main__":
    run(main)
