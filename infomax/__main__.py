"""`python -m infomax VERB ...`, the same as the `infomax` command."""
import sys

from .cli import main

sys.exit(main())
