import sys

from compound_fer.cli import main

sys.exit(main())
