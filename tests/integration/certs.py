"""
Certificates made on the spot for the TLS tests: a CA, and server and client
certificates it signs.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject, issuer, public_key):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)))


class Authority:
    """
    A CA whose files are written into C{directory}.

    @ivar cert_path: Its certificate, PEM.
    """

    def __init__(self, directory, name):
        self.directory = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (_builder(_name(name), _name(name), self.key.public_key())
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = self._write(f"{name}-ca.pem", self.cert)

    def _write(self, filename, cert=None, key=None):
        path = os.path.join(self.directory, filename)
        with open(path, "wb") as f:
            if cert is not None:
                f.write(cert.public_bytes(serialization.Encoding.PEM))
            if key is not None:
                f.write(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        return path

    def issue(self, common_name, dns_names=(), addresses=(), client=False):
        """
        @return: C{(cert_path, key_path)} of a new certificate.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.DNSName(n) for n in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (_builder(_name(common_name), self.cert.subject, key.public_key())
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), False))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
        cert = builder.sign(self.key, hashes.SHA256())
        stem = f"{self.name}-{common_name}"
        return self._write(stem + ".pem", cert=cert), self._write(stem + ".key", key=key)
