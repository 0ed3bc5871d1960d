import sys

from vpr.suites.cli import main

if __name__ == "__main__":
    sys.exit(main())
