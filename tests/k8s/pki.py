"""The certificates and keys a throwaway control plane needs, made with `cryptography`.

One CA signs the apiserver's serving certificate and every client certificate, so the
kubeconfigs verify TLS like a real cluster's do (no insecure-skip-tls-verify). Client identity
comes from the certificate subject: CN is the user, O the groups, which RBAC then authorises.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Short-lived clusters need short-lived certificates; a day covers any test session.
VALIDITY = dt.timedelta(days=1)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name(attributes)


class CertificateAuthority:
    """A CA kept in memory that writes what it issues into `directory`."""

    def __init__(self, directory: Path):
        self.directory = directory
        # ECDSA P-256 keys: generating RSA keys would add a noticeable pause to every session.
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        name = _name("gpuctl-test-ca")
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.pair = CertPair(_write(directory / "ca.crt", self._cert.public_bytes(serialization.Encoding.PEM)),
                             _write(directory / "ca.key", _pem_key(self._key)))

    def issue(self, file_stem: str, common_name: str, *, organizations: tuple[str, ...] = (),
              server_names: tuple[str, ...] = (), server_ips: tuple[str, ...] = ()) -> CertPair:
        """A certificate for a client (no names/IPs) or a server (with the names it answers to)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        server = bool(server_names or server_ips)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations)).issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            alt_names = [x509.DNSName(n) for n in server_names]
            alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return CertPair(_write(self.directory / f"{file_stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
                        _write(self.directory / f"{file_stem}.key", _pem_key(key)))


def service_account_keys(directory: Path) -> CertPair:
    """The key pair the apiserver verifies and the controller-manager signs service-account
    tokens with. RSA because RS256 is what every token consumer accepts. `cert` holds the
    public key (a PEM public key, not a certificate; both flags accept it)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return CertPair(_write(directory / "sa.pub", public), _write(directory / "sa.key", _pem_key(key)))
