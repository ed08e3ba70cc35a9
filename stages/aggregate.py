"""DVC stage `aggregate`: validates params.yaml, then calls curriculab."""

import sys

from entry import run

if __name__ == "__main__":  # worker processes re-import this module
    run(["aggregate", *sys.argv[1:]])
