"""Settlement on MongoDB: the repositories and unit of work that implement the ports of
engine/settle/uow.py, the schema (indexes, money sums), and `MongoSettlement`, the settlement
service (engine/settle/service.py) wired to them plus the document reads REST shows.

Modules: documents (formats), repos (repositories), uow (the transaction), schema (indexes, money
totals), store (MongoSettlement). No decision is made here: see engine/settle/handlers.py.
"""

from engine.settle.model import (
    AddressLimit,
    Conflict,
    CouponAlreadyClaimed,
    CouponNotClaimable,
    CouponSoldOut,
    InvalidSettlementInput,
)
from persistence.settlement.schema import ensure_settlement_indexes, money_totals, settlement_indexes
from persistence.settlement.store import MAX_ADDRESSES, MongoSettlement, PayPage
from persistence.settlement.uow import MongoUnitOfWork, mongo_uow_factory

__all__ = [
    "MAX_ADDRESSES",
    "AddressLimit",
    "Conflict",
    "CouponAlreadyClaimed",
    "CouponNotClaimable",
    "CouponSoldOut",
    "InvalidSettlementInput",
    "MongoSettlement",
    "MongoUnitOfWork",
    "PayPage",
    "ensure_settlement_indexes",
    "money_totals",
    "mongo_uow_factory",
    "settlement_indexes",
]
