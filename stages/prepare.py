"""DVC stage `prepare`: validates params.yaml, then calls curriculab."""

import sys

from curriculab.cli import main

sys.exit(main(["prepare", *sys.argv[1:]]))
