"""
TLS for C{amqps://}: the broker's certificate and host name are verified
against the system's CAs or a given CA file, and a client certificate can be
presented.  Nothing falls back to plain TCP.
"""

import re
from dataclasses import dataclass
from typing import Any

from OpenSSL.crypto import Error as CryptoError
from twisted.internet import ssl

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class TLSConfigError(ValueError):
    """
    A CA, certificate or key file that cannot be used.
    """


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"cannot read the {what} {path}: {e.strerror}") from None


def load_ca(path):
    """
    @return: A trust root holding every certificate in the PEM file C{path}.
    """
    blocks = _PEM_CERT.findall(_read(path, "CA file"))
    if not blocks:
        raise TLSConfigError(f"the CA file {path} holds no PEM certificate")
    try:
        return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(b) for b in blocks])
    except CryptoError as e:
        raise TLSConfigError(f"the CA file {path} is not valid PEM: {e}") from None


def load_client_certificate(cert_path, key_path=None):
    """
    @param key_path: The private key; without it, the key must be in
        C{cert_path} too.
    @return: A L{ssl.PrivateCertificate}.
    """
    pem = _read(cert_path, "certificate")
    key = _read(key_path, "key") if key_path else pem
    if b"PRIVATE KEY-----" not in key:
        raise TLSConfigError(f"no private key for {cert_path}: give --tls-key")
    try:
        return ssl.PrivateCertificate.loadPEM(key + b"\n" + pem)
    except (CryptoError, ValueError) as e:
        raise TLSConfigError(f"the certificate {cert_path} and its key do not load "
                             f"or do not match: {e}") from None


def client_tls(host, ca=None, client_certificate=None):
    """
    @param host: The broker's name or address, checked against its
        certificate.
    @param ca: A trust root from L{load_ca}; the system's CAs if C{None}.
    @param client_certificate: From L{load_client_certificate}, or C{None}.
    @return: Client TLS options for L{twisted.internet.endpoints.wrapClientTLS}.
    """
    return ssl.optionsForClientTLS(
        host, trustRoot=ca if ca is not None else ssl.platformTrust(),
        clientCertificate=client_certificate)


@dataclass(frozen=True)
class TLSSettings:
    """
    What to trust and what to present; the options for one broker come from
    L{for_host}, because the certificate is checked against its host name.

    @ivar ca: A trust root from L{load_ca}, or C{None} for the system's CAs.
    @ivar client_certificate: From L{load_client_certificate}, or C{None}.
    """

    ca: Any = None
    client_certificate: Any = None

    def for_host(self, host):
        """
        @return: Client TLS options for the broker at C{host}.
        """
        return client_tls(host, self.ca, self.client_certificate)
