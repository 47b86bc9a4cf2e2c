"""``python -m sealwire.cli``: the ``sealwire`` command."""

import sys

from sealwire.cli import main

sys.exit(main())
