"""The audit trail: an AuditEvent for every access and action on patient data, hash-chained."""

from .events import AuditRecord, build_audit_event
from .trail import Auditor, AuditTrail, NullAuditor

__all__ = ["AuditRecord", "AuditTrail", "Auditor", "NullAuditor", "build_audit_event"]
