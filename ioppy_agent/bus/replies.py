"""
What a failed AMQP request says: the broker's reply code and text, and the
cause a txamqp L{Closed} wraps.
"""

from txamqp.client import Closed


def reply_of(error):
    """
    @return: C{(reply_code, reply_text)} carried by a txamqp L{Closed}, or
        C{(None, str(error))}.
    """
    reason = error.args[0] if error.args else None
    if getattr(reason, "method", None) is not None and \
            getattr(reason, "fields", None) is not None:
        try:
            return reason.reply_code, reason.reply_text
        except AttributeError:
            pass
    return None, str(reason if reason is not None else error)


def cause_of(error):
    """
    @return: What a txamqp L{Closed} wraps (the broker's close message, or
        the L{Failure} the connection was lost with), or C{error} itself.
    """
    if isinstance(error, Closed) and error.args:
        return error.args[0]
    return error
