"""`python -m kcompile ...`: the kcompile command line (see kcompile/cli.py)."""
import sys

from .cli import main

sys.exit(main())
