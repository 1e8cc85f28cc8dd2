"""The usage linger setting: seconds, finite, 0 to 5; a bad value stops the start with one line."""

from __future__ import annotations

import pytest

from services.api.proxy import ProxySettings


def test_the_default_and_a_given_value():
    assert ProxySettings.from_env({}).usage_linger_s == 0.05
    assert ProxySettings.from_env({"INVENTIV_PROXY_USAGE_LINGER_S": "0"}).usage_linger_s == 0


@pytest.mark.parametrize("raw", ["-0.1", "6", "nan", "inf", "soon"])
def test_bad_values_stop_the_start(raw):
    with pytest.raises(SystemExit, match="INVENTIV_PROXY_USAGE_LINGER_S"):
        ProxySettings.from_env({"INVENTIV_PROXY_USAGE_LINGER_S": raw})
