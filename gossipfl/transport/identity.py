"""Swarm CA and node identities (DESIGN.md section 4).

* The swarm CA is an Ed25519 key and a self-signed certificate.  The swarm
  id is derived from the CA's public key (first 16 bytes of the SHA-256 of
  its SPKI, hex), so it cannot be claimed by another CA.
* A node has an Ed25519 key and a certificate signed by the CA.  Its node
  id is the SHA-256 of its certificate's SPKI, hex.

Files (PEM): ``ca.key`` / ``ca.crt`` in the swarm directory; ``node.key``,
``node.crt``, ``ca.crt`` (and ``node.csr`` in the two-step flow) in a node
directory.  Private keys are written with mode 0600, and nothing existing
is overwritten unless asked.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_KEY: Final = "ca.key"
CA_CERT: Final = "ca.crt"
NODE_KEY: Final = "node.key"
NODE_CERT: Final = "node.crt"
NODE_CSR: Final = "node.csr"
CA_DAYS: Final = 3650
NODE_DAYS: Final = 825


class IdentityError(Exception):
    """A key, certificate or swarm directory is missing, invalid or would be
    overwritten.  The message names the file and what to do."""


def spki_sha256(public_key: ed25519.Ed25519PublicKey) -> bytes:
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def node_id_of(certificate: x509.Certificate) -> str:
    """SHA-256 of the certificate's SubjectPublicKeyInfo, hex."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def node_id_of_der(der: bytes) -> str:
    return node_id_of(x509.load_der_x509_certificate(der))


def swarm_id_of(ca_certificate: x509.Certificate) -> str:
    return node_id_of(ca_certificate)[:32]


# -- files ---------------------------------------------------------------------------


def _write(path: Path, data: bytes, *, private: bool, force: bool, durable: bool = True) -> None:
    if path.exists() and not force:
        raise IdentityError(f"{path} exists; refusing to overwrite it (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        if durable:
            os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"{what} {path} not found") from None
    except OSError as exc:
        raise IdentityError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path, "certificate"))
    except ValueError as exc:
        raise IdentityError(f"{path} is not a PEM certificate: {exc}") from None


def load_private_key(path: Path) -> ed25519.Ed25519PrivateKey:
    data = _read(path, "private key")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise IdentityError(
            f"{path} is a private key open to other users (mode {mode:04o}); "
            f"restrict it with `chmod 600 {path}`"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise IdentityError(f"{path} holds a {type(key).__name__}, expected an Ed25519 key")
    return key


def _key_pem(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


# -- certificates ------------------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _serial() -> int:
    """A random 159-bit serial with its top bit set: its DER encoding, so
    every certificate's size, is the same each time (a simulated TLS
    handshake then takes the same virtual time in every run)."""
    return x509.random_serial_number() | (1 << 158)


def make_ca(
    name: str = "gossipfl swarm", days: int = CA_DAYS
) -> tuple[ed25519.Ed25519PrivateKey, x509.Certificate]:
    """A new CA key and its self-signed certificate."""
    key = ed25519.Ed25519PrivateKey.generate()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, None)
    )
    return key, certificate


def issue_certificate(
    ca_key: ed25519.Ed25519PrivateKey,
    ca_certificate: x509.Certificate,
    public_key: ed25519.Ed25519PublicKey,
    *,
    days: int = NODE_DAYS,
    not_before: datetime.datetime | None = None,
) -> x509.Certificate:
    """A node certificate for ``public_key`` signed by the swarm CA.

    Its common name is the node id; it may act as TLS client and server.
    """
    start = not_before or _now() - datetime.timedelta(minutes=5)
    node_id = spki_sha256(public_key).hex()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)]))
        .issuer_name(ca_certificate.subject)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, None)
    )


def make_csr(key: ed25519.Ed25519PrivateKey) -> x509.CertificateSigningRequest:
    node_id = spki_sha256(key.public_key()).hex()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, None)


# -- the commands' work -------------------------------------------------------------------


def init_swarm(directory: Path, *, force: bool = False) -> str:
    """Create the swarm CA in ``directory``; returns the swarm id."""
    key, certificate = make_ca()
    _write(directory / CA_KEY, _key_pem(key), private=True, force=force)
    _write(directory / CA_CERT, _cert_pem(certificate), private=False, force=force)
    return swarm_id_of(certificate)


def _load_ca(swarm_dir: Path) -> tuple[ed25519.Ed25519PrivateKey, x509.Certificate]:
    if not (swarm_dir / CA_KEY).exists():
        raise IdentityError(
            f"no swarm CA in {swarm_dir} ({CA_KEY} missing); "
            f"create one with `gossipfl swarm init {swarm_dir}`"
        )
    return load_private_key(swarm_dir / CA_KEY), load_certificate(swarm_dir / CA_CERT)


def _install_certificate(
    node_dir: Path,
    certificate: x509.Certificate,
    ca: x509.Certificate,
    force: bool,
    durable: bool = True,
) -> None:
    _write(
        node_dir / NODE_CERT, _cert_pem(certificate), private=False, force=force, durable=durable
    )
    _write(node_dir / CA_CERT, _cert_pem(ca), private=False, force=True, durable=durable)


def keygen(
    swarm_dir: Path,
    node_dir: Path,
    *,
    force: bool = False,
    key: ed25519.Ed25519PrivateKey | None = None,
    durable: bool = True,
) -> str:
    """A node key and CA-signed certificate in ``node_dir``; returns the node
    id.  ``key``: use this key instead of a new one (a simulation derives
    its nodes' keys from its seed, so node ids repeat from run to run).
    ``durable=False`` skips the fsyncs, for throwaway identities (a
    simulation's thousand, in a temporary folder)."""
    ca_key, ca_certificate = _load_ca(swarm_dir)
    if (node_dir / NODE_KEY).exists() and not force:
        raise IdentityError(
            f"{node_dir / NODE_KEY} exists; refusing to overwrite it (use --force to replace it)"
        )
    key = key or ed25519.Ed25519PrivateKey.generate()
    certificate = issue_certificate(ca_key, ca_certificate, key.public_key())
    _write(node_dir / NODE_KEY, _key_pem(key), private=True, force=force, durable=durable)
    _install_certificate(node_dir, certificate, ca_certificate, force, durable)
    return node_id_of(certificate)


def keygen_csr(node_dir: Path, *, force: bool = False) -> str:
    """A node key and a signing request (``node.csr``) for ``swarm sign``."""
    key = ed25519.Ed25519PrivateKey.generate()
    _write(node_dir / NODE_KEY, _key_pem(key), private=True, force=force)
    csr = make_csr(key)
    _write(
        node_dir / NODE_CSR, csr.public_bytes(serialization.Encoding.PEM), private=False, force=True
    )
    return spki_sha256(key.public_key()).hex()


def sign_request(swarm_dir: Path, csr_path: Path, *, force: bool = False) -> str:
    """Sign ``csr_path``; writes ``node.crt`` and ``ca.crt`` beside it."""
    ca_key, ca_certificate = _load_ca(swarm_dir)
    try:
        csr = x509.load_pem_x509_csr(_read(csr_path, "signing request"))
    except ValueError as exc:
        raise IdentityError(f"{csr_path} is not a PEM certificate signing request: {exc}") from None
    public_key = csr.public_key()
    if not isinstance(public_key, ed25519.Ed25519PublicKey):
        raise IdentityError(f"{csr_path} is for a {type(public_key).__name__}, expected Ed25519")
    if not csr.is_signature_valid:
        raise IdentityError(f"{csr_path} has an invalid signature")
    certificate = issue_certificate(ca_key, ca_certificate, public_key)
    _install_certificate(csr_path.parent, certificate, ca_certificate, force)
    return node_id_of(certificate)


@dataclass(frozen=True)
class NodeIdentity:
    """What a node presents and trusts: paths plus the derived ids."""

    cert_path: Path
    key_path: Path
    ca_path: Path
    node_id: str
    swarm_id: str

    @classmethod
    def load(cls, cert_path: Path, key_path: Path, ca_path: Path) -> NodeIdentity:
        """Load and cross-check a node's files; raises :class:`IdentityError`."""
        certificate = load_certificate(cert_path)
        key = load_private_key(key_path)
        ca = load_certificate(ca_path)
        if spki_sha256(key.public_key()).hex() != node_id_of(certificate):
            raise IdentityError(f"{key_path} is not the key of the certificate {cert_path}")
        ca_key = ca.public_key()
        if not isinstance(ca_key, ed25519.Ed25519PublicKey):
            raise IdentityError(f"{ca_path} is not an Ed25519 swarm CA")
        try:
            ca_key.verify(certificate.signature, certificate.tbs_certificate_bytes)
        except Exception:
            raise IdentityError(f"{cert_path} was not signed by the swarm CA {ca_path}") from None
        now = _now()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise IdentityError(
                f"{cert_path} is valid only from {certificate.not_valid_before_utc:%Y-%m-%d} to "
                f"{certificate.not_valid_after_utc:%Y-%m-%d}; "
                "issue a new one with `gossipfl keygen`"
            )
        return cls(cert_path, key_path, ca_path, node_id_of(certificate), swarm_id_of(ca))

    @classmethod
    def from_dir(cls, node_dir: Path) -> NodeIdentity:
        return cls.load(node_dir / NODE_CERT, node_dir / NODE_KEY, node_dir / CA_CERT)
