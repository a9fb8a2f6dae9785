"""TLS for TCP connections, keyed by the tree's secret.

Every TCP connection between actors is TLS 1.3 with mutual authentication. Both
sides hold the same certificate: an Ed25519 key derived from the tree's secret
(HKDF-SHA256), self-signed, with fixed fields so every program derives the same
bytes. Each side trusts only that certificate and requires it from its peer, so
completing TLS already proves the peer knows the secret, and everything after it
(the actor handshake, the messages) is encrypted and integrity-protected. This is
the same key ownership as the HMAC handshake (knowing the secret is the whole
credential), moved into a well-kept protocol that also gives secrecy.

Python's ``ssl`` module (3.11) has no TLS-PSK mode; a certificate derived from the
key gives the same property with the standard handshake.
"""

from __future__ import annotations

import datetime
import functools
import os
import ssl
import tempfile

import trio

from ._rundir import runtime_dir

#: What every side's certificate calls itself (not checked: the key is what matters).
_NAME = "notebook_actors tree"


def _derive_pem(secret: bytes) -> tuple[bytes, bytes]:
    """The tree's certificate and private key (PEM), the same for every holder of ``secret``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    from cryptography.x509.oid import NameOID

    seed = HKDF(hashes.SHA256(), 32, salt=b"notebook_actors tls", info=b"ed25519 tree key").derive(secret)
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, None)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@functools.lru_cache(maxsize=8)
def contexts(secret: bytes) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(server, client)`` TLS contexts for the tree keyed by ``secret`` (cached)."""
    cert_pem, key_pem = _derive_pem(secret)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False  # the pinned key is the identity, not a host name
    # ``load_cert_chain`` reads files only: a 0600 file in our private directory
    fd, path = tempfile.mkstemp(prefix=".tls-", suffix=".pem", dir=runtime_dir())
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem + cert_pem)
        for ctx in (server, client):
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_cert_chain(path)
            ctx.load_verify_locations(cadata=cert_pem.decode())
    finally:
        os.unlink(path)
    return server, client


def wrap_client(stream: trio.abc.Stream, secret: bytes) -> trio.SSLStream[trio.abc.Stream]:
    return trio.SSLStream(stream, contexts(secret)[1], server_hostname=None)


def wrap_listener(listener: trio.abc.Listener[trio.abc.Stream], secret: bytes) -> trio.SSLListener[trio.abc.Stream]:
    """A listener whose streams do TLS on first use, i.e. inside the handshake's
    deadline and budget, not in the accept loop."""
    return trio.SSLListener(listener, contexts(secret)[0])
