"""Workflow state beside the collection: risk policies, flags, review decisions (the audit), PDQ hashes,
hash banks, the review queue's claims, the webhook outbox and waves.

Relational, not vectors, so it lives in SQLite next to the Milvus database rather than in Milvus.
Milvus stays the system of record for which items exist: every reader here checks item ids
against the store before it reports them.
"""

from __future__ import annotations

from lookalike.workflow.claims import Claim
from lookalike.workflow.db import (
    SYSTEM,
    Decision,
    Details,
    Flag,
    FlagStatus,
    NewFlag,
    Policy,
    Subject,
    Workflow,
)
from lookalike.workflow.outbox import Delivery, DeliveryStatus
from lookalike.workflow.waves import Member, Wave

__all__ = [
    "SYSTEM",
    "Claim",
    "Decision",
    "Delivery",
    "DeliveryStatus",
    "Details",
    "Flag",
    "FlagStatus",
    "Member",
    "NewFlag",
    "Policy",
    "Subject",
    "Wave",
    "Workflow",
]
