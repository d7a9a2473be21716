"""`python -m modeling_mtl {predict,embed,evaluate} ...`: see modeling_mtl/cli.py."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
