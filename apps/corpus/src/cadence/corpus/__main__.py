"""``python -m cadence.corpus``: the ``cadence-toy-corpus`` command line."""

from __future__ import annotations

import sys

from cadence.corpus.cli import main

sys.exit(main())
