"""`python -m procscope`: the same as the `procscope` command."""

import sys

from procscope.cli import main

sys.exit(main())
