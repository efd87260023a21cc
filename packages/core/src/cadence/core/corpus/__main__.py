"""``python -m cadence.core.corpus``: the ``cadence-toy-corpus`` command line."""

from __future__ import annotations

import sys

from cadence.core.corpus.cli import main

sys.exit(main())
