"""`python -m plainrnn.cli …`, the same as the `plainrnn` command."""
import sys

from . import main

sys.exit(main())
