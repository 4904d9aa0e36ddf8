"""
C{python -m ioppy_agent connect ...}: see L{ioppy_agent.cli}.
"""

import sys

from .cli import main

sys.exit(main())
