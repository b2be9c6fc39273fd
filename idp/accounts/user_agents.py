"""A person's name for a browser: "Firefox on Windows", read from its User-Agent header.

Only the browser family and the system, never a version: enough for a parent to recognise a
device in Account Preferences, and nothing a page could fingerprint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# First match wins: Edge, Opera and Samsung Internet also say "Chrome", and Chrome also says "Safari".
_BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Edge", re.compile(r"\bEdg(e|A|iOS)?/")),
    ("Opera", re.compile(r"\b(OPR|Opera)/")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/")),
    ("Firefox", re.compile(r"\b(Firefox|FxiOS)/")),
    ("Chrome", re.compile(r"\b(Chrome|HeadlessChrome|CriOS|Chromium)/")),
    ("Safari", re.compile(r"\bVersion/[\d.]+.*\bSafari/")),
)
# iOS and Android before macOS and Linux: an iPhone says "like Mac OS X", Android says "Linux".
_SYSTEMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("iOS", re.compile(r"\b(iPhone|iPad|iPod)\b")),
    ("Android", re.compile(r"\bAndroid\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("macOS", re.compile(r"\b(Macintosh|Mac OS X)\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)


@dataclass(frozen=True)
class DeviceName:
    """The browser family and the system; None where the header does not say."""

    browser: str | None
    system: str | None

    @property
    def summary(self) -> str | None:
        """Return "Firefox (Windows)", or whichever half is known; None when neither is."""
        # No word of any language: the label goes to portals (a claim) that show it in theirs.
        if self.browser and self.system:
            return f"{self.browser} ({self.system})"
        return self.browser or self.system


def device_name(user_agent: str | None) -> DeviceName:
    """Return the browser and system ``user_agent`` names, as far as it names them."""
    text = (user_agent or "")[:512]
    browser = next((name for name, pattern in _BROWSERS if pattern.search(text)), None)
    system = next((name for name, pattern in _SYSTEMS if pattern.search(text)), None)
    return DeviceName(browser, system)
