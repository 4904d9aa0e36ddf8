"""
Tests for L{ioppy_agent.bus.url}.
"""

from twisted.trial.unittest import SynchronousTestCase

from ioppy_agent.bus.url import BadURL, BrokerURL, parse_amqp_url


class ParseTests(SynchronousTestCase):
    """
    L{parse_amqp_url} turns AMQP URLs into L{BrokerURL}s.
    """

    def test_full(self):
        """
        User, password, host, port and vhost are all read, including the case
        txamqp's own parser gets wrong (credentials and a port).
        """
        self.assertEqual(parse_amqp_url("amqp://alice:s3cret@broker.example:5673/interop"),
                         BrokerURL("broker.example", 5673, "alice", "s3cret", "interop"))

    def test_defaults(self):
        """
        Without port, credentials or path: port 5672, guest/guest, vhost C{/}.
        """
        self.assertEqual(parse_amqp_url("amqp://localhost"),
                         BrokerURL("localhost", 5672, "guest", "guest", "/"))

    def test_empty_path_is_default_vhost(self):
        """
        A path of just C{/} names the default vhost C{/}.
        """
        self.assertEqual(parse_amqp_url("amqp://h/").vhost, "/")

    def test_encoded_slash_vhost(self):
        """
        C{%2F} is the vhost C{/}; other escapes are decoded too.
        """
        self.assertEqual(parse_amqp_url("amqp://h/%2F").vhost, "/")
        self.assertEqual(parse_amqp_url("amqp://h/%2Fsession%201").vhost, "/session 1")

    def test_percent_decoded_credentials(self):
        """
        User and password are percent-decoded, so they may hold C{@} and C{:}.
        """
        url = parse_amqp_url("amqp://us%40er:p%3Aa%40ss@h/v")
        self.assertEqual((url.username, url.password), ("us@er", "p:a@ss"))

    def test_ipv6_host(self):
        """
        A bracketed IPv6 host is read without brackets.
        """
        url = parse_amqp_url("amqp://u:p@[::1]:5672/")
        self.assertEqual((url.host, url.port), ("::1", 5672))

    def test_amqps(self):
        """
        C{amqps://} asks for TLS, on port 5671 unless another is given.
        """
        self.assertEqual(parse_amqp_url("amqps://u:p@h/v"),
                         BrokerURL("h", 5671, "u", "p", "v", tls=True))
        self.assertEqual(parse_amqp_url("amqps://u:p@h:443/v").port, 443)
        self.assertFalse(parse_amqp_url("amqp://u:p@h/v").tls)

    def test_bad_scheme(self):
        """
        Other schemes are refused, naming the expected form.
        """
        e = self.assertRaises(BadURL, parse_amqp_url, "http://h/")
        self.assertIn("amqp://", str(e))

    def test_no_host(self):
        """
        A URL without a host is refused.
        """
        self.assertRaises(BadURL, parse_amqp_url, "amqp:///vhost")

    def test_bad_port(self):
        """
        A port that is not a number, or out of range, is refused.
        """
        self.assertRaises(BadURL, parse_amqp_url, "amqp://u:p@h:port/")
        self.assertRaises(BadURL, parse_amqp_url, "amqp://u:p@h:99999/")

    def test_slash_in_vhost(self):
        """
        An unescaped C{/} inside the vhost is refused with the fix.
        """
        e = self.assertRaises(BadURL, parse_amqp_url, "amqp://h/a/b")
        self.assertIn("%2F", str(e))

    def test_query_refused(self):
        """
        Query parameters are refused rather than ignored.
        """
        self.assertRaises(BadURL, parse_amqp_url, "amqp://h/?heartbeat=5")

    def test_user_without_password(self):
        """
        C{user@host} without a password is refused.
        """
        self.assertRaises(BadURL, parse_amqp_url, "amqp://alice@h/")

    def test_errors_never_show_password(self):
        """
        No error message holds the password, whatever is wrong with the URL.
        """
        for text in ("amqps://alice:hunter2@h:port/", "amqp://alice:hunter2@h:xx/",
                     "amqp://alice:hunter2@h/a/b", "amqp://alice:hunter2@/v",
                     "amqp://alice:hunter2@h/?x=1", "ftp://alice:hunter2@h/"):
            e = self.assertRaises(BadURL, parse_amqp_url, text)
            self.assertNotIn("hunter2", str(e), text)
            self.assertIn("****", str(e), text)


class MaskTests(SynchronousTestCase):
    """
    L{BrokerURL} prints without its password.
    """

    def test_masked(self):
        """
        C{masked()} and C{str()} replace the password with C{****}.
        """
        url = parse_amqp_url("amqp://alice:hunter2@h:5673/v")
        self.assertEqual(url.masked(), "amqp://alice:****@h:5673/v")
        self.assertEqual(str(url), url.masked())

    def test_repr_hides_password(self):
        """
        The repr (used in tracebacks) leaves the password out.
        """
        self.assertNotIn("hunter2", repr(parse_amqp_url("amqp://alice:hunter2@h/")))

    def test_masked_tls(self):
        """
        A TLS URL prints as C{amqps://}.
        """
        self.assertEqual(parse_amqp_url("amqps://u:p@h/v").masked(), "amqps://u:****@h:5671/v")

    def test_masked_default_vhost_and_ipv6(self):
        """
        The default vhost prints as C{%2F}; an IPv6 host gets brackets back.
        """
        self.assertEqual(parse_amqp_url("amqp://u:p@[::1]/").masked(),
                         "amqp://u:****@[::1]:5672/%2F")
