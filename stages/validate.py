"""DVC stage `validate`: checks every setting of params.yaml before any other stage runs."""

import sys

from curriculab.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", "params.yaml", "--stamp", "data/.valid", *sys.argv[1:]], stage=True))
