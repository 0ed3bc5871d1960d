"""Training: setup, the loop, the session the train stage runs, objectives, methods, add-ons and losses."""
