"""What the Spanish browser walks look for: English words on a page, outside the proper names.

A page is read as a person reads it: the visible text, the window's title, the options of its
lists, and the attributes a tooltip or a screen reader speaks (``title``, ``aria-label``,
``placeholder``, ``alt``).
"""

from __future__ import annotations

import re

from playwright.sync_api import Page

# Words of English that Spanish never uses: one on a page means a sentence left untranslated.
# (Not "no", "me", "a", "has", "error", "portal", "total", "final", "mar", "may", "jun", "jul", "sep",
# "oct", "nov" or "ID": Spanish has them too.)
ENGLISH = frozenset(
    re.findall(
        r"\w+",
        """the and your you of to is are be or at an it in on with for this that will have not was
        were been from by which when where what who how please here there then than into about
        sign signed password passwords account accounts create student students enter choose email
        back least one must new first last username usernames help trouble name relationship school
        verify continue submit forgot recover reset locked lock try again minute minutes hour hours
        second seconds day days previous welcome device devices data delete remove change changed
        save cancel edit download network seen profile language preferences link linked links
        mother father guardian grandparent stepparent other self
        grades attendance print printer friendly course teacher period term
        request page found invalid wrong incorrect required unknown expired
        monday tuesday wednesday thursday friday saturday sunday january february march april june
        july august september october november december jan apr aug dec
        today yesterday ago mr mrs ms""",
    )
)
# Names of people, schools, portals and the district: never translated.
PROPER_NAMES = (
    "Demo School Portal",
    "Lincoln Portal",
    "Lincoln Elementary School",
    "Washington Middle School",
    "School District",
    "Lincoln",
    "Dana",
    "Okafor",
    "Lucía",
    "Gómez",
    "Marta",
    "Inés",
    "Tomás",
    "Navarro",
    "English",  # the language selector names each language in itself
)

READ_TEXT = """() => {
  const attributes = ["title", "aria-label", "placeholder", "alt"];
  const spoken = [...document.querySelectorAll("[title],[aria-label],[placeholder],[alt]")]
    .flatMap(e => attributes.map(a => e.getAttribute(a)).filter(Boolean));
  const options = [...document.querySelectorAll("option")].map(o => o.textContent);
  return [document.title, document.body.innerText, ...spoken, ...options].join("\\n");
}"""


def english_in(text: str) -> list[str]:
    """Return the English words of ``text`` once the proper names are taken out."""
    for name in PROPER_NAMES:
        # Case aside: a style may print a name in capitals.
        text = re.sub(re.escape(name), " ", text, flags=re.IGNORECASE)
    # An error code (invalid_client) is a name programs read, the same in every language.
    words = [word for word in re.findall(r"\w+", text) if "_" not in word]
    return [word for word in words if word.casefold() in ENGLISH]


def english_on(page: Page) -> list[str]:
    """Return the English words a person reads or hears on ``page``."""
    # A click's navigation may have committed its URL before the new page has a body.
    page.wait_for_load_state()
    text = str(page.evaluate(READ_TEXT))
    found = english_in(text)
    if found:
        print(f"--- {page.url}\n{text}")  # the page, for the report
    return found
