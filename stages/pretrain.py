"""DVC stage `pretrain@<key>`: validates params.yaml, then calls curriculab for one key."""

import sys

from curriculab.cli import main

sys.exit(main(["pretrain", *sys.argv[1:]]))
