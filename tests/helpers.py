"""
Helpers shared by the test modules.
"""

import json
import os

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def fixture(routing_key):
    """
    @return: The reference message recorded from ioppytest for
        C{routing_key}: a dict with routing_key, exchange, properties, body.
    """
    with open(os.path.join(FIXTURES, routing_key + ".json"), encoding="utf-8") as f:
        return json.load(f)
