"""python -m vpr.localize PHOTO_OR_FOLDER... --model models/best.pt --database SET"""

import sys

from vpr.localize.cli import main

if __name__ == "__main__":
    sys.exit(main())
