"""
AMQP broker URLs: parsing, validation and a form that is safe to log.

txamqp's C{AMQEndpoint.from_uri} splits C{user:pass@host:port} wrongly when
both credentials and a port are present, so the project parses URLs itself.
"""

from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

DEFAULT_URL = "amqp://guest:guest@localhost/"
DEFAULT_PORT = 5672
DEFAULT_TLS_PORT = 5671


class BadURL(ValueError):
    """
    An AMQP URL that cannot be used.  The message never holds the password.
    """


@dataclass(frozen=True)
class BrokerURL:
    """
    Where the broker is and how to log in to it.

    @ivar vhost: The virtual host, already percent-decoded (C{"/"} by default).
    @ivar tls: Whether to connect with TLS (C{amqps://}).
    """

    host: str
    port: int = DEFAULT_PORT
    username: str = "guest"
    password: str = field(default="guest", repr=False)
    vhost: str = "/"
    tls: bool = False

    def masked(self):
        """
        @return: The URL with the password replaced by C{****}, for logs.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        vhost = "%2F" if self.vhost == "/" else quote(self.vhost, safe="")
        scheme = "amqps" if self.tls else "amqp"
        return f"{scheme}://{quote(self.username, safe='')}:****@{host}:{self.port}/{vhost}"

    __str__ = masked


def _mask_raw(text):
    """
    Mask whatever stands between C{://user:} and C{@} in a URL that could not
    be parsed, so that even a broken URL is never logged with its password.
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    userinfo, at, hostpart = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return text
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:****@{hostpart}"


def parse_amqp_url(text):
    """
    Parse C{amqp://user:pass@host[:port]/vhost}, or C{amqps://...} for TLS
    (port 5671 unless given).

    User, password and vhost are percent-decoded.  An empty path, C{/} or
    C{/%2F} name the default vhost C{/}.

    @raise BadURL: with a message that says what is wrong and never holds the
        password.
    """
    shown = _mask_raw(text)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise BadURL(f"{shown!r} is not a valid AMQP URL ({e})") from None
    if parts.scheme not in ("amqp", "amqps"):
        raise BadURL(
            f"{shown!r}: the scheme must be amqp:// or amqps:// (TLS), as in "
            "amqp://user:password@host:5672/vhost"
        )
    tls = parts.scheme == "amqps"
    if not parts.hostname:
        raise BadURL(f"{shown!r} names no host")
    if parts.query or parts.fragment:
        raise BadURL(
            f"{shown!r}: query parameters and fragments are not accepted; "
            "give settings as command-line options"
        )
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if "/" in path:
        raise BadURL(
            f"{shown!r}: a vhost containing '/' must be written %2F "
            "(for example amqp://host/%2Fmy-vhost)"
        )
    vhost = unquote(path) or "/"
    username = unquote(parts.username) if parts.username is not None else "guest"
    password = unquote(parts.password) if parts.password is not None else "guest"
    if parts.username is not None and parts.password is None:
        raise BadURL(f"{shown!r} has a user name but no password (user:password@)")
    return BrokerURL(
        host=parts.hostname,
        port=port if port is not None else (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
        username=username,
        password=password,
        vhost=vhost,
        tls=tls,
    )
