"""A locked-down bus for ``surge up``: NATS users per role, their permissions, TLS.

Every service role gets its own NATS user, allowed to publish and subscribe only
where its job needs it (docs/security.md has the table): a generator can report
stats and heartbeats but cannot start runs or write assignments; the UI can drive
runs through the coordinator API but cannot write assignments or the run store.
``surge up`` writes the server config from ``server_config`` and hands each child
its credentials through SURGE_NATS_USER / SURGE_NATS_PASSWORD_FILE and the CA
through SURGE_NATS_TLS_CA.

Pure apart from ``make_certificates`` and ``write_secrets`` (files under a
directory only the current user can read).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
from pathlib import Path

from msgspec import Struct

from schemas import api, subjects

# approver: a person who may let runs over a quota start (docs/quotas.md); otherwise as cli
ROLES = ("coordinator", "generator", "monitor", "ui", "cli", "approver")

_JS = "$JS.API"
# reading JetStream: bucket/stream info, consumers (KV watch, replay), direct gets
JS_READ = [
    f"{_JS}.INFO", f"{_JS}.STREAM.INFO.>", f"{_JS}.STREAM.NAMES", f"{_JS}.STREAM.LIST",
    f"{_JS}.CONSUMER.CREATE.>", f"{_JS}.CONSUMER.DELETE.>", f"{_JS}.CONSUMER.INFO.>",
    f"{_JS}.CONSUMER.MSG.NEXT.>", f"{_JS}.DIRECT.GET.>", f"{_JS}.STREAM.MSG.GET.>",
    "$JS.FC.>", "$JS.ACK.>",
]
COMMON_PUB = ["_INBOX.>", "$SRV.>"]  # replies, `nats micro` discovery
COMMON_SUB = ["_INBOX.>", "$SRV.>"]


def _kv(bucket: str) -> str:
    return f"$KV.{bucket}.>"


def _create(bucket: str) -> str:
    return f"{_JS}.STREAM.CREATE.KV_{bucket}"


READ_API = [ep.subject for ep in api.ENDPOINTS if ep.read_only]  # the monitor reads runs


def permissions(role: str) -> dict[str, dict[str, list[str]]]:
    """The NATS publish/subscribe allow lists of one role."""
    if role == "coordinator":
        pub = [f"{_JS}.>", subjects.LIVE_ALL, subjects.EVENTS_ALL, subjects.RUNLOG_ALL,
               _kv(subjects.ASSIGN_BUCKET), _kv(subjects.RUNS_BUCKET), _kv(subjects.LEADER_BUCKET),
               _kv(subjects.GENERATORS_BUCKET), _kv(subjects.TESTS_BUCKET),
               _kv(subjects.SCHEDULES_BUCKET), _kv(subjects.FIRES_BUCKET), _kv(subjects.SUITES_BUCKET),
               _kv(subjects.ARCHIVE_BUCKET), _kv(subjects.QUEUE_BUCKET), subjects.TRY_ALL,
               f"$O.{subjects.REPORTS_STORE}.>", "$JS.FC.>",
               "$JS.ACK.>", subjects.MERGED_ALL]
        # HOST_ALL: the monitors' samples for the report's hosts section; MERGED_ALL:
        # merger workers (coordinator credentials) hand the leader partial sums
        sub = [f"{subjects.API}.>", subjects.STATS_ALL, subjects.HOST_ALL, subjects.MERGED_ALL]
    elif role == "generator":
        pub = [*JS_READ, subjects.STATS_ALL, subjects.LOGS_ALL, _kv(subjects.GENERATORS_BUCKET),
               _create(subjects.GENERATORS_BUCKET), _create(subjects.ASSIGN_BUCKET)]
        sub = [subjects.TRY_ALL]  # the request builder's send once, asked by the coordinator
    elif role == "monitor":
        pub = [*JS_READ, subjects.HOST_ALL, subjects.ALERTS_ALL, *READ_API]
        # STATS_ALL: the generators' intervals, counted for Prometheus /metrics (it only
        # listens; the coordinator answers them)
        sub = [subjects.LIVE_ALL, subjects.HOST_ALL, subjects.ALERTS_ALL, subjects.EVENTS_ALL,
               subjects.MONITOR_ALL, subjects.STATS_ALL]
    elif role in ("ui", "cli", "approver"):
        # the UI may be first up and create the registry bucket (it watches it)
        pub = [*JS_READ, f"{subjects.API}.>", subjects.MONITOR_ALL, _create(subjects.GENERATORS_BUCKET)]
        sub = [subjects.LIVE_ALL, subjects.HOST_ALL, subjects.ALERTS_ALL, subjects.EVENTS_ALL]
    else:
        raise ValueError(f"unknown role {role!r}")
    publish: dict[str, list[str]] = {"allow": pub + COMMON_PUB}
    if role in ("ui", "cli"):  # approving a run over its quota is the approver's alone
        publish["deny"] = [subjects.RUN_APPROVE]
    return {"publish": publish, "subscribe": {"allow": sub + COMMON_SUB}}


class TlsFiles(Struct, frozen=True):
    ca: str
    cert: str
    key: str


def server_config(passwords: dict[str, str], tls: TlsFiles | None) -> str:
    """nats.conf lines (JSON is valid NATS config) for the users and TLS."""
    users = [
        {"user": role, "password": passwords[role], "permissions": permissions(role)}
        for role in ROLES if role in passwords
    ]
    text = "authorization " + json.dumps({"users": users}, indent=2) + "\n"
    if tls is not None:
        text += "tls " + json.dumps({"cert_file": tls.cert, "key_file": tls.key,
                                      "ca_file": tls.ca, "timeout": 2}) + "\n"
    return text


def role_env(role: str, secrets_dir: Path, tls: TlsFiles | None) -> dict[str, str]:
    """What a child process of one role needs to connect."""
    env = {"SURGE_NATS_USER": role,
           "SURGE_NATS_PASSWORD_FILE": str(secrets_dir / f"{role}.password")}
    if tls is not None:
        env["SURGE_NATS_TLS_CA"] = tls.ca
    return env


def write_secrets(secrets_dir: Path) -> dict[str, str]:
    """A fresh random password per role, each in its own 0600 file."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    passwords = {}
    for role in ROLES:
        password = secrets.token_urlsafe(24)
        path = secrets_dir / f"{role}.password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        passwords[role] = password
    return passwords


def make_certificates(cert_dir: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TlsFiles:
    """A local CA and a server certificate for ``hosts``, valid for 30 days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    cert_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cert_dir, 0o700)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=30))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Surge local CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(valid[0]).not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "surge nats-server")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0]).not_valid_after(valid[1])
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(ca=str(cert_dir / "ca.pem"), cert=str(cert_dir / "server.pem"),
                     key=str(cert_dir / "server-key.pem"))
    pem = serialization.Encoding.PEM
    Path(files.ca).write_bytes(ca.public_bytes(pem))
    Path(files.cert).write_bytes(cert.public_bytes(pem))
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return files
