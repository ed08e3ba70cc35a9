"""DVC stage `aggregate`: validates params.yaml, then calls curriculab."""

import sys

from curriculab.cli import main

sys.exit(main(["aggregate", *sys.argv[1:]]))
