from decimal import Decimal

from services.finops.money import AMOUNT_QUANTUM, clean_price, format_eur, quantize_amount


def test_amounts_round_half_even_to_the_nano_euro():
    assert quantize_amount(Decimal("0.0000000005")) == Decimal("0.000000000")
    assert quantize_amount(Decimal("0.0000000015")) == Decimal("0.000000002")
    assert quantize_amount(Decimal("1") / Decimal("3")) == Decimal("0.333333333")
    assert quantize_amount(Decimal("2")).as_tuple().exponent == AMOUNT_QUANTUM.as_tuple().exponent


def test_display_is_fixed_point_with_six_decimals_and_never_negative_zero():
    assert format_eur(Decimal("1.5")) == "1.500000"
    assert format_eur(Decimal("0.0416666665")) == "0.041667"
    assert format_eur(Decimal("-0.0000001")) == "0.000000"
    assert format_eur(Decimal("1800")) == "1800.000000"
    assert format_eur(Decimal("2.5"), places=2) == "2.50"


def test_a_negative_or_non_finite_price_bills_as_zero():
    assert clean_price(Decimal("-1")) == 0
    assert clean_price(Decimal("NaN")) == 0
    assert clean_price(Decimal("Infinity")) == 0
    assert clean_price(None) == 0
    assert clean_price(Decimal("2.4900")) == Decimal("2.4900")
