"""age encryption as a pipeline stage: the reference `age` binary, never our own crypto.

Backups are encrypted to public recipients only, so the identity that decrypts
never has to be in the cluster at backup time. Restore and verification read the
identity from a file (a Secret volume) and pass its *path* to `age -d -i`.
The manifest records recipient fingerprints, never the keys themselves.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigError

AGE = "age"
SUFFIX = ".age"
MAX_RECIPIENTS = 20
# X25519 recipients (bech32, 58 data characters) and the SSH keys age also accepts.
_X25519 = re.compile(r"age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}")
_SSH = re.compile(r"(ssh-ed25519|ssh-rsa) [A-Za-z0-9+/]{60,1000}={0,3}")
# The age binary's first line of an encrypted file (no identity needed to see it).
HEADER = b"age-encryption.org/v1\n"


def parse_recipients(texts: Iterable[str]) -> tuple[str, ...]:
    """Recipients from lines (comments and blanks skipped); ConfigError on a malformed one."""
    out: list[str] = []
    for text in texts:
        for raw in re.split(r"[\n,]", text):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("ssh-"):
                line = " ".join(line.split()[:2])  # drop an SSH key's comment
            if not (_X25519.fullmatch(line) or _SSH.fullmatch(line)):
                raise ConfigError(
                    "BACKUP_AGE_RECIPIENTS: not an age recipient (age1... or ssh-ed25519/ssh-rsa "
                    f"public key): {fingerprint(line)}"
                )
            if line not in out:
                out.append(line)
    if len(out) > MAX_RECIPIENTS:
        raise ConfigError(f"BACKUP_AGE_RECIPIENTS: at most {MAX_RECIPIENTS} recipients")
    return tuple(out)


def fingerprint(recipient: str) -> str:
    """A short, stable name for a recipient (what the manifest records)."""
    return "sha256:" + hashlib.sha256(recipient.encode()).hexdigest()[:16]


def encrypt_argv(recipients: tuple[str, ...]) -> tuple[str, ...]:
    """`age -r KEY ...`: public keys are not secrets, so argv may hold them."""
    argv: list[str] = [AGE, "--encrypt"]
    for recipient in recipients:
        argv += ["-r", recipient]
    return tuple(argv)


def decrypt_argv(identity: Path | None) -> tuple[str, ...]:
    if identity is None:
        raise ConfigError(
            "the artifact is encrypted: set BACKUP_AGE_IDENTITY_FILE to the identity's file"
        )
    return (AGE, "--decrypt", "-i", str(identity))
