"""DVC stage `train@<key>`: validates params.yaml, then calls curriculab for one key."""

import sys

from curriculab.cli import main

if __name__ == "__main__":  # worker processes re-import this module
    sys.exit(main(["train", *sys.argv[1:]], stage=True))
