"""Money: EUR amounts as ``Decimal`` with one explicit quantum and rounding mode. Pure.

The rule, in full:

- Prices (``hourly_price_eur``) are kept exactly as the billing event carries them; a price
  that is negative or not finite is a producer bug and is billed as zero (see ``clean_price``).
- Arithmetic runs in a private 50-digit context, so no intermediate result is ever rounded.
- An amount that is stored or compared is quantized once to ``AMOUNT_QUANTUM`` (1e-9 EUR,
  a nano-euro) with ``ROUND_HALF_EVEN`` (banker's rounding: no drift up or down over many
  roundings). Costs are quantized on the cumulative cost of an interval, never per piece, so
  pieces always sum to the whole exactly (see ``costing``).
- Amounts shown to people or returned by the API are strings with ``DISPLAY_PLACES`` (6)
  decimals, again ``ROUND_HALF_EVEN``; sums are computed on stored amounts first and rounded
  for display last.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

CURRENCY = "EUR"
ROUNDING = ROUND_HALF_EVEN
AMOUNT_PLACES = 9
AMOUNT_QUANTUM = Decimal(1).scaleb(-AMOUNT_PLACES)  # Decimal("1E-9")
DISPLAY_PLACES = 6
DISPLAY_QUANTUM = Decimal(1).scaleb(-DISPLAY_PLACES)
ZERO = Decimal(0)

# 50 significant digits: a price with 10 digits times a duration in microseconds (< 1e15 for
# 30 years) stays exact before the single division.
_CONTEXT = Context(prec=50, rounding=ROUNDING)


def context() -> Context:
    """The arithmetic context every FinOps computation runs in."""
    return _CONTEXT.copy()


def quantize_amount(value: Decimal) -> Decimal:
    """Round an exact amount to the stored quantum (1e-9 EUR, half-even)."""
    with localcontext(_CONTEXT):
        return Decimal(value).quantize(AMOUNT_QUANTUM, rounding=ROUNDING)


def clean_price(value: Decimal | int | str | None) -> Decimal:
    """A billable hourly price: finite and non-negative, else zero (a producer bug must not
    create negative or infinite costs; the projection counts it in a metric)."""
    if value is None:
        return ZERO
    price = value if isinstance(value, Decimal) else Decimal(str(value))
    if not price.is_finite() or price < 0:
        return ZERO
    with localcontext(_CONTEXT):
        return price + ZERO  # normalises -0 to 0 without touching the scale


def is_clean_price(value: Decimal) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value >= 0


def format_eur(value: Decimal, places: int = DISPLAY_PLACES) -> str:
    """Fixed-point string, e.g. ``format_eur(Decimal("1.5")) == "1.500000"``; never ``-0``."""
    with localcontext(_CONTEXT):
        q = Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUNDING)
    if q.is_zero():
        q = abs(q)
    return f"{q:.{places}f}"


def sum_amounts(values) -> Decimal:
    with localcontext(_CONTEXT):
        total = ZERO
        for v in values:
            total += v
        return total
