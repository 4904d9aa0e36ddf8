"""
The txamqp internals L{ioppy_agent.bus} overrides or calls, checked against
the txamqp installed: an upgrade that renames or removes one of them fails
here, naming it, instead of somewhere on the data path.
"""

import importlib
import re

from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.bus.spec import TXAMQP_CLIENT_ATTRIBUTES, TXAMQP_INTERNALS, load_spec


def installed_txamqp():
    """
    @return: The installed txamqp's version, as a tuple of numbers.
    """
    from importlib.metadata import version
    return tuple(int(part) for part in re.findall(r"\d+", version("txamqp"))[:3])


class InternalsTests(SynchronousTestCase):
    """
    Every name the protocol relies on is there.
    """

    def test_names_exist(self):
        """
        Each class in L{TXAMQP_INTERNALS} has each attribute listed for it.
        """
        missing = []
        for path, names in TXAMQP_INTERNALS.items():
            module, _, name = path.rpartition(".")
            cls = getattr(importlib.import_module(module), name, None)
            if cls is None:
                missing.append(path)
                continue
            missing += [f"{path}.{attr}" for attr in names if not hasattr(cls, attr)]
        self.assertEqual(missing, [], "txamqp no longer has: " + ", ".join(missing))

    def test_client_attributes(self):
        """
        An C{AMQClient} with heartbeats sets each attribute of
        L{TXAMQP_CLIENT_ATTRIBUTES} on itself.
        """
        from twisted.internet.task import Clock
        from txamqp.client import TwistedDelegate
        from txamqp.protocol import AMQClient
        client = AMQClient(TwistedDelegate(), "/", load_spec(), heartbeat=5, clock=Clock())
        missing = [name for name in TXAMQP_CLIENT_ATTRIBUTES if not hasattr(client, name)]
        self.assertEqual(missing, [], "txamqp's AMQClient no longer sets: "
                         + ", ".join(missing))

    def test_spec_metadata(self):
        """
        txamqp's spec objects carry what the protocol reads from them: a
        method's class, id, fields and replies.
        """
        declare = load_spec().classes.byname["queue"].methods.byname["declare"]
        self.assertEqual((declare.klass.id, declare.id), (50, 10))
        self.assertEqual([(r.klass.id, r.id) for r in declare.responses], [(50, 11)])
        nowait = declare.fields.byname["nowait"]
        self.assertEqual(declare.fields.index(nowait), 6)

    def test_version_in_pinned_range(self):
        """
        The txamqp installed is in the range setup.cfg pins, 0.8 up to 0.9.
        """
        self.assertTrue((0, 8) <= installed_txamqp() < (0, 9), installed_txamqp())
