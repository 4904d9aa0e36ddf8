"""
The txamqp side of the protocol: the delegate that answers the broker's
requests, and the channel class that tells the protocol about each request
it sends.
"""

from twisted.logger import Logger
from txamqp.client import TwistedDelegate
from txamqp.protocol import AMQChannel

from .errors import ACCESS_REFUSED, REPLY_SUCCESS


class Delegate(TwistedDelegate):
    """
    Answers the broker's requests: the login, blocking, closes and consumer
    cancellation.
    """

    _log = Logger()

    def connection_start(self, ch, msg):
        ch.connection_start_ok(client_properties=self.client.client_properties,
                               mechanism=self.client.mechanism,
                               response=self.client.response,
                               locale=self.client.locale)
        self.client.login_sent = True

    def connection_tune(self, ch, msg):
        self.client.tune(ch, msg)

    def connection_blocked(self, ch, msg):
        self.client.blocked = True
        self._log.warn("the broker blocked publishing ({reason}); packets are dropped "
                       "until it unblocks", reason=msg.reason)

    def connection_unblocked(self, ch, msg):
        self.client.blocked = False
        self._log.info("the broker unblocked publishing")

    def basic_cancel(self, ch, msg):
        # The broker dropped our consumer (its queue was deleted, say): start
        # over on a new connection, which declares and consumes again.
        self.client.hang_up(REPLY_SUCCESS, f"the broker cancelled consumer {msg.consumer_tag}")

    def connection_close(self, ch, msg):
        self.client.lost_reason = (f"the broker closed the connection: {msg.reply_code} "
                                   f"{msg.reply_text}")
        TwistedDelegate.connection_close(self, ch, msg)

    def channel_close(self, ch, msg):
        # Noted before the channel's waiting requests fail, so that whoever
        # sees them fail knows retrying will not help.
        if msg.reply_code == ACCESS_REFUSED:
            self.client.refused = msg.reply_text
        TwistedDelegate.channel_close(self, ch, msg)
        self.client.channel_closed(ch.id, msg.reply_code, msg.reply_text)


class BusChannel(AMQChannel):
    """
    txamqp's channel, telling the protocol about each request it sends, so
    that the protocol knows which reply may come.
    """

    def invoke(self, method, args, content=None):
        self.client.sending(self.id, method, args)
        return AMQChannel.invoke(self, method, args, content)
