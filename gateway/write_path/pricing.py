"""The pricing policy: subtotal, tax and shipping of an order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from gateway.configuration.settings import PricingSettings

_CENT = Decimal("0.01")


def to_cents(amount: Decimal) -> Decimal:
    """Round a money amount to cents, half up."""
    return amount.quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Totals:
    """The money amounts of one order."""

    subtotal: Decimal
    tax_amount: Decimal
    shipping_amount: Decimal

    @property
    def total_amount(self) -> Decimal:
        """Subtotal plus tax plus shipping (the schema checks the same equation)."""
        return self.subtotal + self.tax_amount + self.shipping_amount


@dataclass(frozen=True)
class PricingPolicy:
    """Flat-rate tax on the subtotal; flat shipping, free from a threshold on."""

    tax_rate: Decimal
    shipping_flat: Decimal
    free_shipping_threshold: Decimal | None
    currency: str

    @classmethod
    def from_settings(cls, settings: PricingSettings) -> PricingPolicy:
        """The policy described by the ``pricing`` configuration section."""
        return cls(
            settings.tax_rate,
            settings.shipping_flat,
            settings.free_shipping_threshold,
            settings.currency,
        )

    def totals(self, line_totals: Iterable[Decimal]) -> Totals:
        """The totals of an order whose lines cost ``line_totals``."""
        subtotal = to_cents(sum(line_totals, Decimal(0)))
        free = self.free_shipping_threshold is not None and subtotal >= self.free_shipping_threshold
        shipping = Decimal("0.00") if free else to_cents(self.shipping_flat)
        return Totals(subtotal, to_cents(subtotal * self.tax_rate), shipping)
