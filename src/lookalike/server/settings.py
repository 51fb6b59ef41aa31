"""Server settings, from keyword arguments or LOOKALIKE_* environment variables."""

from __future__ import annotations

import ipaddress

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookalike.errors import ConfigError

MB = 1024 * 1024
MIN_TOKEN_LENGTH = 12


class ServerSettings(BaseSettings):
    """Everything the server can be told. Each field reads LOOKALIKE_<NAME> from the
    environment (e.g. LOOKALIKE_TOKEN, LOOKALIKE_MAX_UPLOAD_BYTES)."""

    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: str | None = Field(
        None, description="Bearer token required for writes (and to bind a non-loopback host)."
    )
    writable: bool = Field(
        False, description="Enable POST/DELETE /api/images (opens the index for writing)."
    )
    max_upload_bytes: int = Field(32 * MB, ge=1)
    max_pixels: int = Field(100_000_000, ge=1)
    cnn_workers: int = Field(2, ge=1, description="CNN extractions running at once.")
    cnn_queue: int = Field(
        8, ge=0, description="CNN requests allowed to wait; past that the server answers 503."
    )
    retry_after_s: int = Field(1, ge=1)
    default_k: int = Field(20, ge=1)
    max_k: int = Field(200, ge=1)
    thumbnail_cache: str | None = Field(
        None,
        description="Thumbnail cache folder [default: <index>/thumbnails, or the user "
        "cache dir when the index folder is not writable].",
    )

    def check(self) -> None:
        """Refuse unsafe or inconsistent settings (raises ConfigError)."""
        if not is_loopback(self.host) and not (self.token and self.token.strip()):
            raise ConfigError(
                f"binding {self.host!r} (not loopback) needs a token: set --token or "
                "LOOKALIKE_TOKEN"
            )
        if self.token is not None:
            if not self.token.strip():
                raise ConfigError("the token is empty or only whitespace")
            if any(c.isspace() or not c.isprintable() for c in self.token):
                raise ConfigError("the token must not contain spaces or control characters")
            if len(self.token) < MIN_TOKEN_LENGTH:
                raise ConfigError(
                    f"the token must be at least {MIN_TOKEN_LENGTH} characters long "
                    "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
                )
        if self.default_k > self.max_k:
            raise ConfigError(f"default_k ({self.default_k}) exceeds max_k ({self.max_k})")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
