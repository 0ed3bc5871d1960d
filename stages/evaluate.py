"""Stage evaluate@<set>: faiss kNN + recall@N -> metrics/eval/<set>.json (night subset included) and every
query's result -> metrics/eval/<set>.queries.tsv."""

from _common import argument, eval_set_names, load_config, run


def main():
    cfg = load_config("evaluate")
    name = argument(eval_set_names(cfg))
    from vpr.eval.evaluate import evaluate_features
    from vpr.eval.query_results import write_queries
    from vpr.io import write_json

    result = evaluate_features(
        f"data/features/{name}",
        f"data/gt/{name}",
        cfg.eval.recall_values,
        cfg.eval.index,
        getattr(cfg.eval, cfg.eval.index),
    )
    metrics = result.metrics
    write_queries(f"metrics/eval/{name}.queries.tsv", result.queries)
    write_json(f"metrics/eval/{name}.json", metrics)
    if metrics.get("queries_have_coordinates") is False:
        import warnings

        from vpr.errors import DataWarning

        warnings.warn(
            f"evaluate@{name}: the {metrics['num_queries']} queries carry no coordinates: recall skipped "
            f"(counts only in metrics/eval/{name}.json)",
            DataWarning,
        )
        return
    print(
        f"evaluate@{name}: "
        + "  ".join(f"{k} {v:.1f}" for k, v in metrics.items() if k.startswith("R@"))
    )


if __name__ == "__main__":
    run(main, takes=("set", "data.test"))
