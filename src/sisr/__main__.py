"""`python -m sisr` is the `sisr` command."""

import sys

from .cli import main

sys.exit(main())
