"""Product facts for the engine: the calendar's tick size, multiplier and sessions joined with the
deployment's fees and margin rates (``[engine.products]``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from contracts.calendar import Calendar, product_code
from contracts.config import ProductRates
from contracts.errors import UserError
from services.engine.ledger import Rates, Spec

__all__ = ["specs_for"]


def specs_for(
    instruments: Iterable[str], calendar: Calendar, rates: Mapping[str, ProductRates]
) -> tuple[dict[str, Spec], dict[str, bytes]]:
    """Specs and per-second phase tables of ``instruments``; a product missing from the calendar
    or without rates is one ``UserError`` naming what to add."""
    specs: dict[str, Spec] = {}
    phases: dict[str, bytes] = {}
    for instrument in instruments:
        product = calendar.product(instrument)
        if product is None:
            raise UserError(
                f"{instrument}: product {product_code(instrument)!r} is not in {calendar.source}; "
                "add it under [products] there"
            )
        code = product_code(instrument)
        found = rates.get(code) or rates.get("default")
        if found is None:
            raise UserError(
                f"{instrument}: no fees and margin for product {code!r}; add "
                f"[engine.products.{code}] (or [engine.products.default]) to the deployment file"
            )
        specs[instrument] = Spec(
            instrument,
            product.exchange,
            product.multiplier,
            product.price_tick,
            _rates(found),
            found.close_today_first,
        )
        phases[instrument] = calendar.phase_table(product)
    return specs, phases


def _rates(found: ProductRates) -> Rates:
    """The ledger's rates of a product's table (a side's rate not given: -1, the common one)."""
    r = found
    return Rates(
        r.margin_rate, r.open_per_lot, r.open_rate, r.close_per_lot, r.close_rate,
        r.close_today_per_lot, r.close_today_rate,
        -1.0 if r.long_margin_rate is None else r.long_margin_rate,
        -1.0 if r.short_margin_rate is None else r.short_margin_rate,
        r.long_margin_per_lot, r.short_margin_per_lot, r.margin_price,
    )  # fmt: skip
