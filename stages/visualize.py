"""Stage visualize@<set>: query + top-k pictures (green = correct, red = wrong) and the recall@N curve."""
import sys

from _common import run, load_config


def main():
    from vpr.viz.report import visualize_set

    cfg = load_config("visualize")
    name = sys.argv[1]
    v = cfg.viz
    written = visualize_set(f"data/features/{name}", f"data/gt/{name}", f"reports/predictions/{name}",
                            f"metrics/curves/{name}.csv", num_queries=v.num_queries, top_k=v.top_k,
                            only_wrong=v.only_wrong, curve_max_n=v.curve_max_n, seed=v.seed)
    print(f"visualize@{name}: {written} pictures in reports/predictions/{name}, curve in metrics/curves/{name}.csv")


if __name__ == "__main__":
    run(main)
