"""Family letters: one page per student with a fresh Access Password and the steps to an account.

Printing a school's letters issues new Access Passwords (the old ones stop working), so the file
is the only place they exist in clear: it is written with mode 0600, under a temporary name
renamed into place, and the passwords are committed only once it is there. The texts are in the
family's language where the roster gave one we have, else in the district's.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import segno

from idp.audit import audit
from idp.clock import Clock
from idp.db import DbSession
from idp.students.credentials import AccessIssuer, IssuedAccess
from idp.students.models import School
from idp.students.schools import SchoolService

if TYPE_CHECKING:
    from fpdf import FPDF

FONTS = Path(__file__).with_name("fonts")
FONT = "DejaVuSans"


@dataclass(frozen=True)
class LetterText:
    title: str
    greeting: str
    intro: str
    # How the letter names the Access ID and the Access Password (the form's words, in English).
    labels: tuple[str, str]
    steps_title: str
    steps: tuple[str, ...]
    existing_account: str
    shared: str
    single_use: str
    keep_safe: str
    qr_caption: str


LETTER_TEXTS: dict[str, LetterText] = {
    "en": LetterText(
        title="Create your school sign-in account",
        greeting="To the family of {student}",
        intro=(
            "{school} uses one sign-in account for its online portals. With an account you can "
            "see {student} in the school's portals. To create your account you need the Access ID "
            "and the Access Password below."
        ),
        labels=("Access ID", "Access Password"),
        steps_title="How to create your account",
        steps=(
            "Open {register} in a web browser, or scan the QR code with your phone's camera.",
            "Fill in your name, your email address, a username and a password of your own.",
            "Under “Your students”, enter {student}'s name, and the Access ID and the Access "
            "Password exactly as printed above. Choose how you are related to {student}.",
            "Open the link in the email you receive to confirm your address. Then sign in.",
        ),
        existing_account=(
            "Already have an account? Sign in at {account} and use “Add a student” with the same "
            "Access ID and Access Password."
        ),
        shared=(
            "Each parent or guardian may create an account of their own with this Access ID and "
            "Access Password."
        ),
        single_use=(
            "This Access Password works only once. Any other parent or guardian who wants an "
            "account of their own needs a letter of their own: ask the school."
        ),
        keep_safe=(
            "Keep this letter private: whoever has the Access ID and the Access Password can link "
            "{student} to an account. If it is lost, ask the school for a new letter; the old "
            "Access Password then stops working."
        ),
        qr_caption="Scan to open the page",
    ),
    "es": LetterText(
        title="Cree su cuenta de acceso escolar",
        greeting="A la familia de {student}",
        intro=(
            "{school} usa una sola cuenta de acceso para sus portales en línea. Con una cuenta "
            "podrá ver a {student} en los portales de la escuela. Para crear su cuenta necesita el "
            "Access ID (identificador de acceso) y el Access Password (contraseña de acceso) que "
            "aparecen abajo."
        ),
        labels=("Access ID (identificador de acceso)", "Access Password (contraseña de acceso)"),
        steps_title="Cómo crear su cuenta",
        steps=(
            "Abra {register} en un navegador web, o escanee el código QR con la cámara de su teléfono.",
            "Escriba su nombre, su correo electrónico, un nombre de usuario y una contraseña de su elección.",
            "En “Your students” (sus estudiantes), escriba el nombre de {student}, y el Access ID "
            "y el Access Password tal como aparecen arriba. Elija su parentesco con {student}.",
            "Abra el enlace del correo electrónico que recibirá para confirmar su dirección. "
            "Después, inicie sesión.",
        ),
        existing_account=(
            "¿Ya tiene una cuenta? Inicie sesión en {account} y use “Add a student” (agregar un "
            "estudiante) con el mismo Access ID y el mismo Access Password."
        ),
        shared=(
            "Cada padre, madre o tutor puede crear su propia cuenta con este Access ID y este "
            "Access Password."
        ),
        single_use=(
            "Este Access Password solo funciona una vez. Cualquier otro padre, madre o tutor que "
            "quiera su propia cuenta necesita su propia carta: pídala a la escuela."
        ),
        keep_safe=(
            "Guarde esta carta en un lugar seguro: quien tenga el Access ID y el Access Password "
            "puede vincular a {student} a una cuenta. Si la pierde, pida una carta nueva a la "
            "escuela; el Access Password anterior dejará de funcionar."
        ),
        qr_caption="Escanee para abrir la página",
    ),
}
# What rosters put in a language field besides a BCP 47 tag: ISO 639-2 codes and names.
LANGUAGE_ALIASES = {
    "eng": "en",
    "english": "en",
    "spa": "es",
    "spanish": "es",
    "español": "es",
    "espanol": "es",
}


def letter_language(home_language: str | None, district_language: str) -> str:
    """Return the language of a family's letter: theirs when we have its texts, else the district's."""
    for wanted in (home_language, district_language):
        if not wanted:
            continue
        tag = wanted.strip().casefold().replace("_", "-")
        primary = LANGUAGE_ALIASES.get(tag, tag.split("-")[0])
        if primary in LETTER_TEXTS:
            return primary
    return "en"


@dataclass(frozen=True)
class Letter:
    """One page: who it is for, in which language, and the credentials issued for it."""

    student_name: str
    language: str
    access: IssuedAccess


@dataclass(frozen=True)
class LettersWritten:
    path: Path
    school_code: str
    count: int


class NoStudents(LookupError):
    """The school has no active student to write to."""


class LetterFileRefused(OSError):
    """The letters' file cannot be written there (the message says why); nothing changed."""


@dataclass(frozen=True)
class LetterSettings:
    """What every page of a district's letters shares."""

    district_name: str
    district_language: str
    register_url: str
    account_url: str
    single_use: bool


class FamilyLetters:
    def __init__(
        self,
        session: DbSession,
        *,
        schools: SchoolService,
        issuer: AccessIssuer,
        clock: Clock,
        settings: LetterSettings,
    ) -> None:
        self.session = session
        self.schools = schools
        self.issuer = issuer
        self.clock = clock
        self.settings = settings

    def write(self, school_code: str, out: Path, *, actor: str | None = None) -> LettersWritten:
        """Issue fresh Access Passwords to the school's active students, write their letters, commit.

        Raises ``NoSuchSchool``, ``NoStudents`` or ``LetterFileRefused``; then nothing changed.
        """
        school = self.schools.get(school_code)
        students = self.schools.active_students(school.code)
        if not students:
            raise NoStudents(school.code)
        letters = [
            Letter(
                student_name=f"{student.first_name} {student.last_name}",
                language=letter_language(student.home_language, self.settings.district_language),
                access=self.issuer.issue(student, actor=actor),
            )
            for student in students
        ]
        pdf = render_letters(school, letters, self.settings, clock=self.clock)
        audit(
            self.session,
            "family_letters.printed",
            at=self.clock.now(),
            school=school.code,
            students=len(letters),
            actor=actor,
        )
        try:
            write_private(out, pdf)
        except OSError as error:
            self.session.rollback()
            raise LetterFileRefused(f"cannot write {out}: {error.strerror or error}") from error
        try:
            self.session.commit()
        except BaseException:
            # The passwords printed were not stored: a letter that would not work must not stay.
            out.unlink(missing_ok=True)
            raise
        return LettersWritten(path=out, school_code=school.code, count=len(letters))


def write_private(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` readable by its owner alone, whole or not at all."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    # O_EXCL|O_NOFOLLOW: never through a link someone left, never into another's file.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)  # whatever the umask
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def qr_png(url: str) -> bytes:
    """Return the QR code of ``url`` as a PNG, large enough to print crisply at 4 cm."""
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="png", scale=8, border=4)
    return buffer.getvalue()


def render_letters(
    school: School, letters: Sequence[Letter], settings: LetterSettings, *, clock: Clock
) -> bytes:
    """Return the PDF: one page per letter."""
    # Loaded when letters are printed, not at every worker's start (fpdf2 brings fontTools).
    from fpdf import FPDF

    pdf = FPDF(format="letter", unit="mm")
    pdf.set_creation_date(clock.now())
    pdf.set_title(f"{settings.district_name}: {school.name}")
    pdf.set_author(settings.district_name)
    pdf.add_font(FONT, "", FONTS / f"{FONT}.ttf")
    pdf.add_font(FONT, "B", FONTS / f"{FONT}-Bold.ttf")
    # One page per student, whatever the text's length: nothing may spill onto another's page.
    pdf.set_auto_page_break(False)
    pdf.set_margins(20, 18, 20)
    qr = qr_png(settings.register_url)
    for letter in letters:
        _page(pdf, school, letter, settings, qr)
    return bytes(pdf.output())


def _page(pdf: FPDF, school: School, letter: Letter, settings: LetterSettings, qr: bytes) -> None:
    text = LETTER_TEXTS[letter.language]
    names = {
        "student": letter.student_name,
        "school": school.name,
        "register": settings.register_url,
        "account": settings.account_url,
    }

    def paragraph(template: str, size: float = 11, style: str = "", gap: float = 3) -> None:
        pdf.set_font(FONT, style, size)
        pdf.multi_cell(0, size * 0.5, template.format(**names), align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(gap)

    pdf.add_page()
    paragraph(settings.district_name, size=16, style="B", gap=1)
    paragraph(school.name, size=12, gap=0 if school.address else 6)
    if school.address:
        paragraph(school.address, size=9, gap=6)
    paragraph(text.title, size=15, style="B", gap=4)
    paragraph(text.greeting, gap=2)
    paragraph(text.intro, gap=5)

    for label, value in zip(
        text.labels, (letter.access.access_id, letter.access.access_password), strict=True
    ):
        pdf.set_font(FONT, "", 11)
        pdf.cell(95, 10, label, border="LTB")
        pdf.set_font(FONT, "B", 16)
        pdf.cell(0, 10, value, border="RTB", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)

    paragraph(text.steps_title, size=13, style="B", gap=2)
    steps_top = pdf.get_y()
    width = pdf.epw - 50  # the QR code sits to the right of the steps
    for number, step in enumerate(text.steps, start=1):
        pdf.set_font(FONT, "", 11)
        pdf.cell(7, 5.5, f"{number}.")
        pdf.multi_cell(width - 7, 5.5, step.format(**names), align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1.5)
    steps_bottom = pdf.get_y()
    pdf.image(io.BytesIO(qr), x=pdf.l_margin + pdf.epw - 42, y=steps_top, w=42)
    pdf.set_xy(pdf.l_margin + pdf.epw - 42, steps_top + 43)
    pdf.set_font(FONT, "", 8)
    pdf.cell(42, 4, text.qr_caption, align="C")
    pdf.set_xy(pdf.l_margin, max(steps_bottom, steps_top + 48) + 3)

    paragraph(text.existing_account, gap=3)
    paragraph(text.single_use if settings.single_use else text.shared, style="B", gap=3)
    paragraph(text.keep_safe, size=9, gap=0)
