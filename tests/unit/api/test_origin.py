"""The CSRF rule for ambient credentials (auth/origin.py), shared by the API routes and the proxy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.auth.origin import same_origin

HOST = "inventiv.example:8003"


@pytest.mark.parametrize("origin, fetch_site, allowed, expected", [
    ("http://inventiv.example:8003", None, (), True),
    ("http://INVENTIV.example:8003/", None, (), True),            # case and a trailing slash do not matter
    ("https://evil.example", None, (), False),
    ("http://inventiv.example", None, (), False),                 # another port is another origin
    ("https://app.inventiv.example", None, (), False),            # a sibling subdomain: same site, not same origin
    ("https://app.inventiv.example", None, ("https://app.inventiv.example",), True),
    ("null", None, (), False),                                   # sandboxed frames, file: pages
    ("null", None, ("null",), True),                              # only if someone explicitly allows it
    (None, None, (), True),                                       # not a browser: no ambient credential
    (None, "same-origin", (), True),
    (None, "none", (), True),                                     # typed in the address bar
    (None, "same-site", (), False),
    (None, "cross-site", (), False),
])
def test_examples(origin, fetch_site, allowed, expected):
    assert same_origin(origin, fetch_site, HOST, allowed) is expected


@given(st.sampled_from(["http", "https"]), st.from_regex(r"[a-z]{1,12}\.[a-z]{2,6}", fullmatch=True),
       st.from_regex(r"[a-z]{1,12}\.[a-z]{2,6}", fullmatch=True))
def test_an_origin_passes_only_for_its_own_host(scheme, host, other):
    assert same_origin(f"{scheme}://{host}", None, host, ())
    assert same_origin(f"{scheme}://{other}", None, host, ()) is (other == host)
