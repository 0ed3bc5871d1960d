"""Stage train: fit the network on the training places, validating every epoch (vpr.train.session): writes
models/best.pt, models/last.pt (an interrupted run resumes from it) and the dvclive log in metrics/train/."""

from _common import load_config, run


def main():
    from vpr.train.session import run_training

    run_training(load_config("train"), script="stages/train.py")


if __name__ == "__main__":
    run(main)
