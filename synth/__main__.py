"""``python -m synth``: same as ``semedge synth``."""

import sys

from synth.cli import main

sys.exit(main())
