"""DVC stage `pretrain@<key>`: validates params.yaml, then calls curriculab for one key."""

import sys

from entry import run

if __name__ == "__main__":  # worker processes re-import this module
    run(["pretrain", *sys.argv[1:]])
