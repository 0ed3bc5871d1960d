"""Stage visualize@<set>: query + top-k pictures (green = correct, red = wrong) and the recall@N curve."""

from _common import argument, eval_set_names, load_config, run


def main():
    cfg = load_config("visualize")
    name = argument(eval_set_names(cfg))
    from vpr.viz.visualize import visualize_set

    v = cfg.viz
    written = visualize_set(
        f"data/features/{name}",
        f"data/gt/{name}",
        f"reports/predictions/{name}",
        f"metrics/curves/{name}.csv",
        num_queries=v.num_queries,
        top_k=v.top_k,
        only_wrong=v.only_wrong,
        curve_max_n=v.curve_max_n,
        seed=v.seed,
    )
    print(
        f"visualize@{name}: {written} pictures in reports/predictions/{name}, curve in metrics/curves/{name}.csv"
    )


if __name__ == "__main__":
    run(main, takes=("set", "data.test"))
