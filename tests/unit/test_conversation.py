"""
Tests for L{ioppy_agent.bus.conversation}: which methods the broker may
send now.
"""

from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.bus import errors
from ioppy_agent.bus.conversation import REPLIES, Conversation

DECLARE_OK = (50, 11)
BIND_OK = (50, 21)


class ConversationTests(SynchronousTestCase):
    """
    Replies answer requests; requests are the ones this client handles.
    """

    def setUp(self):
        self.conversation = Conversation()

    def assertRefused(self, channel, ids, code):
        error = self.assertRaises(errors.ProtocolViolation, self.conversation.check,
                                  channel, ids, "the method")
        self.assertEqual((error.reply_code, error.class_id, error.method_id), (code, *ids))
        return error

    def test_reply_to_request(self):
        """
        A reply the outstanding request waits for is accepted, once.
        """
        self.conversation.sent(1, {DECLARE_OK})
        self.conversation.check(1, DECLARE_OK, "queue.declare-ok")
        error = self.assertRefused(1, DECLARE_OK, errors.UNEXPECTED_FRAME)
        self.assertIn("the method on channel 1, which answers no request", error.text)

    def test_replies_in_order(self):
        """
        Requests are answered in the order they were sent.
        """
        self.conversation.sent(1, {DECLARE_OK})
        self.conversation.sent(1, {BIND_OK})
        self.assertRefused(1, BIND_OK, errors.UNEXPECTED_FRAME)
        self.conversation.check(1, DECLARE_OK, "")
        self.conversation.check(1, BIND_OK, "")

    def test_reply_on_other_channel(self):
        """
        A reply on a channel with no request outstanding is refused.
        """
        self.conversation.sent(1, {DECLARE_OK})
        self.assertRefused(2, DECLARE_OK, errors.UNEXPECTED_FRAME)

    def test_request_without_reply(self):
        """
        A request that waits for nothing leaves nothing outstanding.
        """
        self.conversation.sent(1, set())
        self.assertRefused(1, DECLARE_OK, errors.UNEXPECTED_FRAME)

    def test_channel_gone(self):
        """
        The requests of a closed channel get no reply.
        """
        self.conversation.sent(1, {DECLARE_OK})
        self.conversation.channel_gone(1)
        self.assertRefused(1, DECLARE_OK, errors.UNEXPECTED_FRAME)

    def test_login_in_order(self):
        """
        connection.start comes once, then connection.tune once.
        """
        self.assertRefused(0, (10, 30), errors.COMMAND_INVALID)
        self.setUp()
        self.conversation.check(0, (10, 10), "connection.start")
        self.assertRefused(0, (10, 10), errors.COMMAND_INVALID)
        self.conversation.check(0, (10, 30), "connection.tune")
        self.assertRefused(0, (10, 30), errors.COMMAND_INVALID)

    def test_requests_handled(self):
        """
        The broker's closes, blocking, flow and consumer cancellation are
        accepted at any time; other requests (here publisher confirms, which
        this client never turns on) are refused.
        """
        for ids in ((10, 50), (10, 60), (10, 61), (20, 20), (20, 40), (60, 30)):
            self.conversation.check(1, ids, "")
        self.assertRefused(1, (60, 80), errors.COMMAND_INVALID)

    def test_replies(self):
        """
        The replies are the -ok methods and basic.get-empty.
        """
        self.assertIn((60, 72), REPLIES)
        self.assertIn((20, 41), REPLIES)
        self.assertNotIn((20, 40), REPLIES)
