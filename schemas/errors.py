"""Errors as values: the exception types services raise and the reply that carries them.

A handler raises a ``SurgeError``; the service edge turns it into an ``ErrorReply``
(``{"error": {"code", "message", "field"}}``) plus the NATS service-error headers.
"""

from __future__ import annotations

from msgspec import Struct


class ErrorBody(Struct, frozen=True, omit_defaults=True):
    code: str  # machine-readable: invalid_plan, bad_request, not_found, ...
    message: str  # for people
    field: str | None = None  # dotted path into the request, e.g. "requests.0.method"


class ErrorReply(Struct, frozen=True):
    error: ErrorBody


class SurgeError(Exception):
    """Base of every error a Surge API answers with. ``status`` is the micro error code."""

    code: str = "internal"
    status: int = 500

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> ErrorBody:
        return ErrorBody(code=self.code, message=self.message, field=self.field)


class BadRequest(SurgeError):
    code = "bad_request"
    status = 400


class InvalidPlan(SurgeError):
    code = "invalid_plan"
    status = 400


class TargetNotAllowed(SurgeError):
    code = "target_not_allowed"
    status = 403


class QuotaExceeded(SurgeError):
    """A run over its target system's quota, where the quota refuses (docs/quotas.md)."""

    code = "quota_exceeded"
    status = 403


class NotFound(SurgeError):
    code = "not_found"
    status = 404


class Conflict(SurgeError):
    code = "conflict"
    status = 409


class NoGenerators(SurgeError):
    code = "no_generators"
    status = 503


class NotLeader(SurgeError):
    code = "not_leader"
    status = 503


class Unavailable(SurgeError):
    code = "unavailable"
    status = 503
