"""The local stack's development CA and certificates (the `cryptography` package), under `<data_dir>/tls/`.

`DevPki(folder).ensure(servers, sites)` creates the CA once (ca.crt, ca.key 0600, ten years), one server
certificate per server (`<name>.crt` / `<name>.key`, 90 days, for localhost, 127.0.0.1 and the name) and
one camera-gateway client certificate per site (`gateway-<site>.crt`, common name `site:<site>`), and
renews any certificate that expires within 30 days (or that the CA did not sign) on the next start. Tools
trust `ca.crt`; nothing here is for production (the chart takes certificates from Secrets or cert-manager).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.tls import SITE_PREFIX

RENEW_WITHIN = timedelta(days=30)
LEAF_DAYS = 90
CA_DAYS = 3650
# The site of the local stack's simulator and of the test fixtures' camera gateway.
DEV_SITE = "dev-site"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.rename(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class DevPki:
    def __init__(self, folder: Path):
        self.folder = folder

    @property
    def ca(self) -> Path:
        return self.folder / "ca.crt"

    def server(self, name: str) -> Pair:
        return Pair(self.folder / f"{name}.crt", self.folder / f"{name}.key")

    @property
    def tools(self) -> Pair:
        """The client certificate the CLI presents to the local stack's ingest (which requires one)."""
        return Pair(self.folder / "tools.crt", self.folder / "tools.key")

    def gateway(self, site: str = DEV_SITE) -> Pair:
        return Pair(self.folder / f"gateway-{site}.crt", self.folder / f"gateway-{site}.key")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_path = self.folder / "ca.key"
        if key_path.exists() and self.ca.exists():
            cert = x509.load_pem_x509_certificate(self.ca.read_bytes())
            if cert.not_valid_after_utc - datetime.now(UTC) > RENEW_WITHIN:
                key = serialization.load_pem_private_key(key_path.read_bytes(), None)
                assert isinstance(key, ec.EllipticCurvePrivateKey)
                return key, cert
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sightline local stack"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "Sightline development CA")])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False, key_agreement=False,
                                             key_cert_sign=True, crl_sign=True, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        _write(key_path, _key_pem(key), private=True)
        _write(self.ca, _cert_pem(cert))
        return key, cert

    def issue(self, pair: Pair, common_name: str, *, server: bool, client: bool, days: int = LEAF_DAYS,
              not_before: datetime | None = None, dns: Iterable[str] = ()) -> Pair:
        """Write a certificate (and a fresh key) signed by the CA to `pair`, whatever is there."""
        with self._locked():
            return self._issue(*self._ca(), pair, common_name, server=server, client=client, days=days,
                               not_before=not_before, dns=dns)

    def _issue(self, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, pair: Pair, common_name: str,
               *, server: bool, client: bool, days: int = LEAF_DAYS, not_before: datetime | None = None,
               dns: Iterable[str] = ()) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or datetime.now(UTC) - timedelta(minutes=5)
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * client
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
                   .issuer_name(ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start)
                   .not_valid_after(start + timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   # Names the CA's key, so that a verifier holding several CAs of one name (old and new while a
                   # CA is replaced) checks the right one.
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if server:
            names: list[x509.GeneralName] = [x509.DNSName("localhost"), *(x509.DNSName(d) for d in dns),
                                             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        # Key first: a server reloading on the certificate's change then finds the matching key.
        _write(pair.key, _key_pem(key), private=True)
        _write(pair.cert, _cert_pem(cert))
        return pair

    def _fresh(self, pair: Pair, ca_cert: x509.Certificate) -> bool:
        if not (pair.cert.exists() and pair.key.exists()):
            return False
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        return cert.issuer == ca_cert.subject and cert.not_valid_after_utc - datetime.now(UTC) > RENEW_WITHIN \
            and _signed_by(cert, ca_cert)

    def ensure(self, servers: Iterable[str], sites: Iterable[str] = (DEV_SITE,)) -> DevPki:
        """The CA and every certificate, created once and renewed when within 30 days of expiry."""
        with self._locked():
            ca_key, ca_cert = self._ca()
            for name in servers:
                if not self._fresh(self.server(name), ca_cert):
                    self._issue(ca_key, ca_cert, self.server(name), name, server=True, client=True, dns=[name])
            for site in sites:
                if not self._fresh(self.gateway(site), ca_cert):
                    self._issue(ca_key, ca_cert, self.gateway(site), f"{SITE_PREFIX}{site}", server=False,
                                client=True)
            if not self._fresh(self.tools, ca_cert):
                self._issue(ca_key, ca_cert, self.tools, "tools", server=False, client=True)
        return self


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - any failure: not ours
        return False
    return True
