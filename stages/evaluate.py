"""DVC stage `evaluate@<key>`: validates params.yaml, then calls curriculab for one key."""

import sys

from curriculab.cli import main

sys.exit(main(["evaluate", *sys.argv[1:]]))
