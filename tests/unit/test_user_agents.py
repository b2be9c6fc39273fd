"""Naming a device from its User-Agent, and the network shown instead of a place."""

from __future__ import annotations

import pytest

from idp.accounts.own_data import network_of
from idp.accounts.user_agents import DeviceName, device_name


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36",
            DeviceName("Chrome", "Windows"),
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            DeviceName("Edge", "Windows"),
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/18.1 Safari/605.1.15",
            DeviceName("Safari", "macOS"),
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
            DeviceName("Chrome", "iOS"),
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
            "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
            DeviceName("Samsung Internet", "Android"),
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            DeviceName("Firefox", "Linux"),
        ),
        (
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36",
            DeviceName("Chrome", "ChromeOS"),
        ),
        ("curl/8.5.0", DeviceName(None, None)),
        ("", DeviceName(None, None)),
        (None, DeviceName(None, None)),
    ],
)
def test_the_browser_and_system_are_named_without_versions(
    user_agent: str | None, expected: DeviceName
) -> None:
    assert device_name(user_agent) == expected


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::/48"),
        ("not an address", None),
        ("", None),
        (None, None),
    ],
)
def test_the_network_is_shown_not_the_address(address: str | None, network: str | None) -> None:
    assert network_of(address) == network


@pytest.mark.parametrize(
    ("name", "summary"),
    [
        (DeviceName("Firefox", "Windows"), "Firefox (Windows)"),
        (DeviceName("Samsung Internet", None), "Samsung Internet"),
        (DeviceName(None, "iOS"), "iOS"),
        (DeviceName(None, None), None),
    ],
)
def test_the_summary_names_what_is_known_in_no_language(name: DeviceName, summary: str | None) -> None:
    assert name.summary == summary
