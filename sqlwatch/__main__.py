"""``python -m sqlwatch``."""

import sys

from sqlwatch._cli import main

sys.exit(main())
