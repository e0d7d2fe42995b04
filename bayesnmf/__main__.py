"""``python -m bayesnmf``: the command line, as the ``bayesnmf`` program."""

import sys

from bayesnmf.cli import main

sys.exit(main())
