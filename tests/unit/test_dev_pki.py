"""The local stack's development CA (services/devstack/pki.py): made once, certificates renewed within 30 days of
expiry, a gateway certificate naming its site; and the client and server TLS settings (services/common/tls.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.common.tls import TlsError, TlsSettings, server_credentials
from services.devstack.pki import DevPki

pytestmark = pytest.mark.unit


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_ca_and_certificates_are_made_once(tmp_path: Path) -> None:
    pki = DevPki(tmp_path / "tls").ensure(["ingest", "search"], ["site-a"])
    ca, ingest = load(pki.ca), load(pki.server("ingest").cert)
    ingest.verify_directly_issued_by(ca)
    sans = ingest.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "ingest"} <= set(sans.get_values_for_type(x509.DNSName))
    assert (pki.folder / "ca.key").stat().st_mode & 0o077 == 0 and pki.server("ingest").key.stat().st_mode & 0o077 == 0
    gateway = load(pki.gateway("site-a").cert)
    assert gateway.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "site:site-a"
    usages = gateway.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    again = DevPki(tmp_path / "tls").ensure(["ingest", "search"], ["site-a"])  # the next start: nothing new
    assert load(again.ca).serial_number == ca.serial_number
    assert load(again.server("ingest").cert).serial_number == ingest.serial_number


def test_a_certificate_expiring_within_30_days_is_renewed_on_the_next_start(tmp_path: Path) -> None:
    pki = DevPki(tmp_path / "tls").ensure(["ingest", "search"])
    search = load(pki.server("search").cert).serial_number
    pki.issue(pki.server("ingest"), "ingest", server=True, client=True, days=20)  # expires in 20 days
    soon = load(pki.server("ingest").cert).serial_number
    pki.ensure(["ingest", "search"])
    renewed = load(pki.server("ingest").cert)
    assert renewed.serial_number != soon and renewed.not_valid_after_utc - datetime.now(UTC) > timedelta(days=80)
    assert load(pki.server("search").cert).serial_number == search  # the others are kept


def test_a_server_without_its_certificate_files_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="SIGHTLINE_TLS_CERT_FILE"):
        server_credentials(TlsSettings(tls_enabled=True, tls_cert_file=None, tls_key_file=None))
    assert server_credentials(TlsSettings(tls_enabled=False)) is None
    pki = DevPki(tmp_path / "tls").ensure(["ingest"])
    pair = pki.server("ingest")
    assert server_credentials(TlsSettings(tls_cert_file=pair.cert, tls_key_file=pair.key)) is not None


def test_clients_find_the_local_stacks_ca_only_with_dev_keys(tmp_path: Path) -> None:
    assert TlsSettings(tls_ca_file=None, data_dir=tmp_path).ca_path() == tmp_path / "tls" / "ca.crt"
    with pytest.raises(TlsError, match="SIGHTLINE_TLS_CA_FILE"):
        TlsSettings(tls_ca_file=None, dev_keys=False).ca_path()
