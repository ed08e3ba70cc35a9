"""DVC stage `train@<key>`: validates params.yaml, then calls curriculab for one key."""

import sys

from curriculab.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
