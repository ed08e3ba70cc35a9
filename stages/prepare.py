"""DVC stage `prepare`: validates params.yaml, then calls curriculab."""

import sys

from entry import run

if __name__ == "__main__":  # worker processes re-import this module
    run(["prepare", *sys.argv[1:]])
