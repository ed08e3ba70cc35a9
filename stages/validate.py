"""DVC stage `validate`: checks every setting of params.yaml before any other stage runs."""

import sys

from entry import run

if __name__ == "__main__":
    run(["validate", "params.yaml", "--stamp", "data/.valid", *sys.argv[1:]])
