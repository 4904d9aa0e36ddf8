"""
The options of every program on the bus (the twistd plugins and
ioppy-capture): L{BusOptions}, where the bus is and how to reach it, and
the checks the programs' options share.
"""

import ipaddress
import math
import os
import re

from twisted.python import usage

from ..bus import DEFAULT_EXCHANGE, DEFAULT_HEARTBEAT, BusConfig
from ..bus.tls import TLSConfigError, TLSSettings, load_ca, load_client_certificate
from ..bus.url import DEFAULT_URL, BadURL, parse_amqp_url

_EXCHANGE = re.compile(r"[A-Za-z0-9_.:-]{1,255}\Z")


def number(options, key, minimum, strictly=False):
    """
    Convert option C{key} to a float of at least (or above) C{minimum}.
    """
    text = options[key]
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise usage.UsageError(f"--{key} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < minimum or (strictly and value == minimum):
        bound = f"more than {minimum:g}" if strictly else f"at least {minimum:g}"
        raise usage.UsageError(f"--{key} {text!r} must be {bound}")
    options[key] = value


def writable_path(options, key):
    """
    Check that the directory of path option C{key} exists.
    """
    path = options[key]
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise usage.UsageError(f"--{key} {path}: the directory {directory} does not exist")


def port_and_address(options, what):
    """
    @return: C{(port, address)} of options C{--<what>-port} and
        C{--<what>-address}, checked; the port C{None} if not given.
    """
    port, address = options[f"{what}-port"], options[f"{what}-address"]
    if port is None:
        return None, address
    try:
        port = int(port)
    except ValueError:
        raise usage.UsageError(f"--{what}-port {port!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise usage.UsageError(f"--{what}-port {port} is outside 1..65535")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise usage.UsageError(f"--{what}-address {address!r} is not an IP "
                               "address") from None
    return port, address


def read_url_file(path):
    """
    @return: The lines of C{path} that are neither empty nor comments: one
        URL per broker.
    @raise usage.UsageError: if there is none or the file cannot be read.
    """
    try:
        with open(path, encoding="utf-8") as f:
            urls = [line.strip() for line in f]
    except OSError as e:
        raise usage.UsageError(f"--url-file {path}: {e.strerror}") from None
    urls = [url for url in urls if url and not url.startswith("#")]
    if not urls:
        raise usage.UsageError(f"--url-file {path} holds no URL")
    return urls


class BusOptions(usage.Options):
    """
    The options of every program on the bus (both twistd plugins and
    ioppy-capture): where the bus is and how to reach it.  L{postOptions}
    leaves a L{BusConfig} in C{self["bus"]}.
    """

    optParameters = [
        ["url-file", None, None,
         "Read the AMQP URLs from this file, one per line (keeps the password out "
         "of ps)."],
        ["exchange", "x", DEFAULT_EXCHANGE, "Topic exchange to publish and bind on."],
        ["tls-ca", None, None, "amqps: PEM file of the CAs that sign the broker's "
                               "certificate (default: the system's CAs)."],
        ["tls-cert", None, None, "amqps: PEM client certificate to present."],
        ["tls-key", None, None, "amqps: PEM private key of --tls-cert (if not in it)."],
        ["heartbeat", None, str(DEFAULT_HEARTBEAT),
         "AMQP heartbeat in seconds: a broker silent for twice this long is taken "
         "for dead and the connection made again (0: no heartbeats)."],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["urls"] = []

    def opt_url(self, url):
        """
        AMQP URL amqp://user:password@host[:port]/vhost, or amqps:// for TLS.
        Give it once per broker of a cluster: on failure the next is tried.
        (default: --url-file, else $AMQP_URL, else amqp://guest:guest@localhost/)
        """
        self["urls"].append(url)

    opt_u = opt_url

    def postOptions(self):
        if self["urls"] and self["url-file"] is not None:
            raise usage.UsageError("give --url or --url-file, not both")
        if self["url-file"] is not None:
            texts = read_url_file(self["url-file"])
        else:
            texts = self["urls"] or [os.environ.get("AMQP_URL") or DEFAULT_URL]
        try:
            self["urls"] = [parse_amqp_url(text) for text in texts]
        except BadURL as e:
            raise usage.UsageError(f"--url: {e}") from None
        self["url"] = self["urls"][0]
        if not _EXCHANGE.match(self["exchange"] or ""):
            raise usage.UsageError(
                f"--exchange {self['exchange']!r}: use 1 to 255 letters, digits, "
                "'_', '-', '.' or ':'")
        self["tls"] = self._tls()
        try:
            self["heartbeat"] = int(self["heartbeat"])
        except ValueError:
            raise usage.UsageError(f"--heartbeat {self['heartbeat']!r} is not a whole "
                                   "number of seconds") from None
        if not 0 <= self["heartbeat"] <= 3600:
            raise usage.UsageError(f"--heartbeat {self['heartbeat']} is outside 0..3600")
        self["bus"] = BusConfig(urls=tuple(self["urls"]), exchange=self["exchange"],
                                tls=self["tls"], heartbeat=self["heartbeat"])

    def _tls(self):
        given = [k for k in ("tls-ca", "tls-cert", "tls-key") if self[k] is not None]
        if not any(url.tls for url in self["urls"]):
            if given:
                raise usage.UsageError(f"--{given[0]} needs an amqps:// URL")
            return None
        if self["tls-key"] is not None and self["tls-cert"] is None:
            raise usage.UsageError("--tls-key needs --tls-cert")
        try:
            ca = load_ca(self["tls-ca"]) if self["tls-ca"] else None
            cert = (load_client_certificate(self["tls-cert"], self["tls-key"])
                    if self["tls-cert"] else None)
        except TLSConfigError as e:
            raise usage.UsageError(str(e)) from None
        return TLSSettings(ca, cert)
