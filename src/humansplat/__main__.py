"""`python -m humansplat ...` is the `humansplat` command."""

import sys

from humansplat.cli import main

sys.exit(main())
