import sys

from curriculab.cli import main

sys.exit(main())
