"""Research suites: the project's studies as one command each, with their noise.

    python -m vpr.suites list
    python -m vpr.suites run losses [--seeds 3] [--data cambridge] [--dry-run] [--jobs N] [--shard 1/2]
    python -m vpr.suites table losses [--out reports/suites/losses-synth]

A suite (definitions.yaml) is a named grid: a data profile, a baseline row, variants as params overrides
(single keys and combinations), seeds, the table's layout and the question it answers. ``run`` queues every
variant x seed that is not already in the DVC experiment store with the same params (``dvc exp run --queue``),
runs the queue (``dvc queue start -j N``), waits, and writes the table: per variant and evaluation set (and
its night queries) mean ± std over seeds of R@N, and the R@1 difference to the baseline with its 95 %
interval and verdict, from vpr.compare. Modules: spec (the file), plan (runs and their params), store (what
the experiment store has), runner (DVC's queue), table and render (the outputs), cli.
"""
