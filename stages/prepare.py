"""DVC stage `prepare`: validates params.yaml, then calls curriculab."""

import sys

from curriculab.cli import main

if __name__ == "__main__":  # worker processes re-import this module
    sys.exit(main(["prepare", *sys.argv[1:]], stage=True))
