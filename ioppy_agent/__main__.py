"""
C{python -m ioppy_agent connect ...}: see L{ioppy_agent.agent.cli}.
"""

import sys

from .agent.cli import main

sys.exit(main())
