"""The English and Spanish catalogues of the provider and the portal are complete and current.

Fails on a Spanish message left untranslated or fuzzy, on a placeholder the translation lost, on a
catalogue out of date with the sources (extracted again here, as ``make translations`` does), on a
compiled ``.mo`` out of date with its ``.po``, and on words in a template outside ``_()``.
"""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
# Each catalogue: its mapping file, its folder, its templates. The keywords are the Makefile's.
CATALOGUES = {
    "idp": ("babel.cfg", ROOT / "idp" / "translations", ROOT / "idp" / "templates"),
    "portal": (
        "babel-portal.cfg",
        ROOT / "relying_party_demo" / "translations",
        ROOT / "relying_party_demo" / "templates",
    ),
}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "N_": None}
LANGUAGES = ("en", "es")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def catalogue(folder: Path, language: str) -> Catalog:
    with (folder / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po)


def messages(found: Catalog) -> list[Message]:
    return [message for message in found if message.id]


def key(message: Message) -> str:
    return message.id if isinstance(message.id, str) else "\x00".join(message.id)


def extracted(cfg: str) -> set[str]:
    """The msgids in the sources now, as ``pybabel extract`` finds them."""
    with (ROOT / cfg).open() as mapping:
        method_map, options_map = parse_mapping_cfg(mapping)
    found: set[str] = set()
    for _filename, _lineno, text, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=KEYWORDS
    ):
        found.add(text if isinstance(text, str) else "\x00".join(text))
    return found


@pytest.mark.parametrize("name", CATALOGUES)
def test_every_spanish_message_is_translated_and_none_is_fuzzy(name: str) -> None:
    _, folder, _ = CATALOGUES[name]
    spanish = catalogue(folder, "es")
    untranslated = [
        key(m) for m in messages(spanish) if not (m.string if isinstance(m.string, str) else all(m.string))
    ]
    fuzzy = [key(m) for m in messages(spanish) if m.fuzzy]
    assert untranslated == []
    assert fuzzy == []
    assert not spanish.fuzzy  # the header too


@pytest.mark.parametrize("name", CATALOGUES)
def test_spanish_keeps_every_placeholder(name: str) -> None:
    _, folder, _ = CATALOGUES[name]
    lost = []
    for message in messages(catalogue(folder, "es")):
        sources = [message.id] if isinstance(message.id, str) else list(message.id)
        wanted = set().union(*(PLACEHOLDER.findall(source) for source in sources))
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        for translated in strings:
            # A singular form may say "one" in words instead of %(num)d, as the English does.
            if set(PLACEHOLDER.findall(translated)) - wanted or not (
                set(PLACEHOLDER.findall(translated)) >= wanted - {"num"}
            ):
                lost.append((key(message), translated))
    assert lost == []


@pytest.mark.parametrize("name", CATALOGUES)
def test_the_catalogues_match_the_sources(name: str) -> None:
    cfg, folder, _ = CATALOGUES[name]
    in_sources = extracted(cfg)
    with (folder / "messages.pot").open("rb") as pot:
        template = {key(m) for m in messages(read_po(pot))}
    assert in_sources - template == set(), "run `make translations`: new strings are not in the catalogue"
    assert template - in_sources == set(), "run `make translations`: the catalogue keeps strings gone"
    for language in LANGUAGES:
        assert {key(m) for m in messages(catalogue(folder, language))} == in_sources, language


@pytest.mark.parametrize("name", CATALOGUES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalogues_match_their_sources(name: str, language: str) -> None:
    _, folder, _ = CATALOGUES[name]
    with (folder / language / "LC_MESSAGES" / "messages.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)._catalog  # type: ignore[attr-defined]
    expected: dict[object, str] = {}
    for message in messages(catalogue(folder, language)):
        if isinstance(message.id, str):
            if message.string:
                expected[message.id] = message.string
        else:
            # A missing plural form compiles to the English one (the en catalogue's are all empty).
            forms = [form or message.id[min(i, 1)] for i, form in enumerate(message.string)]
            expected.update({(message.id[0], i): form for i, form in enumerate(forms)})
    compiled.pop("", None)  # the header
    assert compiled == expected, "run `make translations`: the .mo is older than the .po"


# --- words outside the catalogue in templates --------------------------------------------------
JINJA = re.compile(r"{#.*?#}|{{.*?}}|{%.*?%}", re.S)
HIDDEN = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)
TAG = re.compile(r"<[^>]*>", re.S)
ATTRIBUTE = re.compile(r'[\w-]+="[^"]*"')
# Attributes a person reads (or hears from a screen reader).
READ_ATTRIBUTES = re.compile(r'\b(?:title|alt|aria-label|placeholder)="([^"]*)"', re.I)
ENTITY = re.compile(r"&#?\w+;")
WORD = re.compile(r"[^\W\d_]{2,}")
# Text that is the same in every language: file formats, and the audit trail's actor syntax.
SAME_IN_EVERY_LANGUAGE = {"XML", "JSON", "CSV", "QR", "staff", "cli"}


def words_outside_the_catalogue(source: str, *, html: bool) -> list[str]:
    visible = HIDDEN.sub(" ", source) if html else source
    attributes = [JINJA.sub(" ", value) for value in READ_ATTRIBUTES.findall(visible)]
    visible = JINJA.sub(" ", visible)
    if html:
        # Attributes a macro prints outside a tag (aria-invalid="true") are markup, not prose.
        visible = ATTRIBUTE.sub(" ", TAG.sub(" ", visible))
    found = []
    for chunk in [visible, *attributes]:
        found += [w for w in WORD.findall(ENTITY.sub(" ", chunk)) if w not in SAME_IN_EVERY_LANGUAGE]
    return found


def templates() -> list[Path]:
    return sorted(
        path
        for _, _, folder in CATALOGUES.values()
        for path in folder.rglob("*")
        if path.suffix in {".html", ".txt"}
    )


@pytest.mark.parametrize("template", templates(), ids=lambda path: str(path.relative_to(ROOT)))
def test_templates_have_no_words_outside_the_catalogue(template: Path) -> None:
    source = template.read_text(encoding="utf-8")
    assert words_outside_the_catalogue(source, html=template.suffix == ".html") == []


def test_the_template_check_finds_bare_words() -> None:
    page = '<h1>{{ _("Sign In") }}</h1><p title="Hello">Welcome back</p><script>var x = "y";</script>'
    assert words_outside_the_catalogue(page, html=True) == ["Welcome", "back", "Hello"]
    assert words_outside_the_catalogue('{{ _("Hello,") }}\n\n{{ link }}\n', html=False) == []
    assert (
        words_outside_the_catalogue('{% macro flag() %} aria-invalid="true"{% endmacro %}', html=True) == []
    )
